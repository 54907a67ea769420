//! An S3 endpoint whose certificate is signed by a private authority (MinIO
//! or Ceph behind a company CA): the destination's `ca-file` replaces the
//! system's roots for that endpoint only. The file is checked here, because
//! the SDK's client panics on a PEM it cannot read.

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::path::Path;

/// An HTTPS client trusting exactly the certificates in `ca_file`.
pub fn client_trusting(ca_file: &Path) -> Result<SharedHttpClient, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("ca-file {}: {e}", ca_file.display()))?;
    check_authorities(&pem).map_err(|p| format!("ca-file {}: {p}", ca_file.display()))?;
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
        .build()
        .map_err(|e| format!("ca-file {}: {e}", ca_file.display()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

/// At least one certificate, and every one usable as a trust anchor.
fn check_authorities(pem: &[u8]) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        roots
            .add(c)
            .map_err(|e| format!("certificate {} is not usable: {e}", i + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_a_usable_certificate_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 3] = [
            ("empty.pem", b"", "holds no PEM certificate"),
            (
                "key.pem",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "holds no PEM certificate",
            ),
            (
                "junk.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not usable",
            ),
        ];
        for (name, bytes, said) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let Err(err) = client_trusting(&path) else {
                panic!("{name} accepted")
            };
            assert!(err.contains(name) && err.contains(said), "{name}: {err}");
        }
        let missing = client_trusting(&dir.path().join("absent.pem"))
            .err()
            .unwrap();
        assert!(missing.contains("absent.pem"), "{missing}");
    }
}
