//! aiosmtpd (tests/support/smtp_server.py) as the SMTP relay of the e-mail
//! notification tests: STARTTLS required, a login, each message a file.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::k8s::skip_or_fail;

/// aiosmtpd with STARTTLS required and a login, on `port`; mail lands in `maildir`.
pub struct Smtp(Child);

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts it with a CA and a certificate for localhost signed by it
/// (`dir/ca.pem`), accepting `user` / `password`; `None` (skipped) when
/// aiosmtpd is not installed.
pub fn start(dir: &Path, port: u16, user: &str, password: &str) -> Option<Smtp> {
    if Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .map_or(true, |s| !s.success())
    {
        skip_or_fail("aiosmtpd is not installed (python3 -m pip install aiosmtpd)");
        return None;
    }
    super::certs::issue(dir, "DNS:localhost");
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .args([dir.join("cert.pem"), dir.join("key.pem"), dir.join("mail")])
        .args([user, password])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready"), "aiosmtpd: {line}");
    Some(Smtp(child))
}
