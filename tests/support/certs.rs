//! Test certificate authorities, issued with the openssl CLI: a CA and a
//! server certificate it signed, for servers that speak TLS on loopback
//! (the SMTP relay, an S3 server behind a private CA).

use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `ca.pem` (a new CA), and `cert.pem` / `key.pem` for `san` (an
/// openssl subjectAltName such as `DNS:localhost` or `IP:127.0.0.1`) signed
/// by it, into `dir`.
pub fn issue(dir: &Path, san: &str) {
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(ok.success(), "openssl {args:?}");
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("san.ext"), format!("subjectAltName={san}\n")).unwrap();
    let req = |extra: &[&str], key: &str, out: &str| {
        let base = [
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", out,
        ];
        openssl(&[&base[..], extra].concat());
    };
    req(
        &["-x509", "-days", "2", "-subj", "/CN=lifeboat test CA"],
        "ca.key",
        "ca.pem",
    );
    req(
        &["-subj", "/CN=lifeboat test server"],
        "key.pem",
        "leaf.csr",
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "cert.pem",
    ]);
}
