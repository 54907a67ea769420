//! E-mail targets: one message over SMTP with STARTTLS required (lettre on
//! rustls, the TLS the rest of lifeboat uses), logged in with the Secret's
//! `username` and `password` when mounted, the relay's certificate checked
//! against the system's roots or the Secret's CA bundle (`ca.pem`).

use std::path::Path;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::retry::GiveUp;
use super::{message, read_secret, NotifyError, SendOptions};
use crate::wire::{Notification, NotifyKind, NotifyTarget};

/// File name of the CA bundle in the target's Secret directory.
pub const CA_FILE: &str = "ca.pem";

pub(super) async fn send(
    n: &Notification,
    t: &NotifyTarget,
    opts: SendOptions,
) -> Result<(), NotifyError> {
    let NotifyKind::Email {
        host,
        port,
        from,
        to,
        dir,
    } = &t.kind
    else {
        unreachable!("called for e-mail targets only");
    };
    let fail = |message: String| NotifyError::Email {
        target: t.name.clone(),
        message,
    };
    let (subject, body) = message::email(n);
    let mut mail = Message::builder()
        .from(
            from.parse::<Mailbox>()
                .map_err(|e| fail(format!("from: {e}")))?,
        )
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for a in to {
        mail = mail.to(a.parse::<Mailbox>().map_err(|e| fail(format!("to: {e}")))?);
    }
    let mail = mail.body(body).map_err(|e| fail(e.to_string()))?;

    let mut tls = TlsParameters::builder(host.clone());
    let mut credentials = None;
    if let Some(dir) = dir {
        let ca = Path::new(dir).join(CA_FILE);
        if ca.exists() {
            let pem = std::fs::read(&ca).map_err(|source| NotifyError::Secret {
                target: t.name.clone(),
                file: ca.display().to_string(),
                source,
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| fail(format!("{CA_FILE}: {e}")))?;
            tls = tls.add_root_certificate(cert);
        }
        if Path::new(dir).join("username").exists() {
            credentials = Some(Credentials::new(
                read_secret(&t.name, dir, "username")?,
                read_secret(&t.name, dir, "password")?,
            ));
        }
    }
    let tls = tls.build_rustls().map_err(|e| fail(format!("TLS: {e}")))?;
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(*port)
        .tls(Tls::Required(tls))
        .timeout(Some(opts.timeout));
    if let Some(c) = credentials {
        transport = transport.credentials(c);
    }
    let transport = transport.build();

    let mut failed = 0;
    loop {
        failed += 1;
        let error = match transport.send(mail.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_permanent() || e.is_tls() => return Err(fail(e.to_string())),
            Err(e) => e,
        };
        match opts.retry.next_wait(failed, None) {
            Ok(wait) => {
                tracing::info!(target_name = %t.name, error = %error, "retrying");
                tokio::time::sleep(wait).await;
            }
            Err(GiveUp::Exhausted | GiveUp::TooLong(_)) => {
                return Err(fail(format!("{error} (after {failed} attempts)")))
            }
        }
    }
}
