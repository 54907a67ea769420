//! A private S3 endpoint behind its own certificate authority (MinIO with a
//! company CA): the destination's `ca-file` makes lifeboat trust exactly
//! that CA for it. The S3 server is moto serving TLS with a certificate this
//! test issues (issue 13, item 4).

mod support;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use support::certs;
use support::*;

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto over TLS with a certificate issued in `dir` (support::certs); its
/// https endpoint, with bucket `bkt` made.
fn start_tls_s3(dir: &Path) -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-c", "cert.pem", "-k", "key.pem"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto starts");
    let server = Server(child);
    let endpoint = format!("https://127.0.0.1:{port}");
    let ca = dir.join("ca.pem");
    let curl = |method: &str, url: &str| {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--cacert"])
            .arg(&ca)
            .args(["-X", method, url])
            .status()
            .unwrap()
            .success()
    };
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        curl("GET", &endpoint)
    });
    assert!(up, "moto over TLS did not start on {endpoint}");
    assert!(curl("PUT", &format!("{endpoint}/bkt")), "create bucket");
    (server, endpoint)
}

#[test]
fn a_private_ca_is_trusted_for_its_endpoint_only_when_named() {
    let dir = tempfile::tempdir().unwrap();
    let minio = dir.path().join("minio");
    certs::issue(&minio, "IP:127.0.0.1");
    certs::issue(&dir.path().join("stranger"), "IP:127.0.0.1");
    let (_server, endpoint) = start_tls_s3(&minio);
    let keys = keyfile(dir.path(), "k");
    let k = keys.to_str().unwrap();
    let db = create_db("tls");
    psql(
        &db,
        "create table t (v text); insert into t values ('over tls')",
    );
    let url = |ca: Option<&str>| {
        let mut u = url::Url::parse("s3://bkt/p").unwrap();
        u.query_pairs_mut()
            .append_pair("region", "us-east-1")
            .append_pair("endpoint", &endpoint);
        if let Some(ca) = ca {
            u.query_pairs_mut()
                .append_pair("ca-file", dir.path().join(ca).to_str().unwrap());
        }
        format!("minio={u}")
    };

    // The system's roots do not know the private CA: refused, in one line
    // that names the destination.
    let err = backup(&db, k, &[&url(None)]).fails();
    assert!(
        err.contains("minio") && err.contains("invalid peer certificate"),
        "{err}"
    );
    assert!(err.lines().count() <= 3, "{err}");
    // Another CA is not this endpoint's either.
    let err = backup(&db, k, &[&url(Some("stranger/ca.pem"))]).fails();
    assert!(
        err.contains("minio") && err.contains("invalid peer certificate"),
        "{err}"
    );
    // Not a certificate at all: said before any request, naming the file.
    let err = backup(&db, k, &[&url(Some("minio/key.pem"))]).fails();
    assert!(
        err.contains("minio/key.pem") && err.contains("no PEM certificate"),
        "{err}"
    );

    let ok = url(Some("minio/ca.pem"));
    let id = backup(&db, k, &[&ok]).json().ok()["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let target = unique("tls_restored");
    let r = restore(&[&ok], k).create(&target).json().ok();
    assert_eq!(r["backup_id"], id.as_str());
    assert_eq!(psql(&target, "select v from t"), "over tls");
}
