//! What each kind of target is sent, built from a [`Notification`] and the
//! target's secrets. Pure: the bodies, the webhook's signature and the
//! mail's text are functions of their inputs, tested without a network.

use ring::hmac;
use serde_json::{json, Value};

use crate::wire::{Notification, NotifyEvent};

/// Header carrying a webhook body's signature: `sha256=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "x-lifeboat-signature";
/// Header naming the event of a webhook body.
pub const EVENT_HEADER: &str = "x-lifeboat-event";
/// PagerDuty's Events API v2.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `namespace/policy`, how people name a policy.
fn policy_ref(n: &Notification) -> String {
    format!("{}/{}", n.namespace, n.policy)
}

/// One line: what happened to which policy.
pub fn headline(n: &Notification) -> String {
    let what = match n.event {
        NotifyEvent::RunFailed => "backup failed",
        NotifyEvent::ObjectiveBreached => "RPO objective breached",
        NotifyEvent::DrillFailed => "restore drill failed",
        NotifyEvent::Recovered => "recovered",
        NotifyEvent::Succeeded => "backup succeeded",
        NotifyEvent::RestoreFinished => "restore finished",
    };
    format!("[lifeboat] {}: {what}", policy_ref(n))
}

/// A Slack-compatible incoming webhook's body.
pub fn slack(n: &Notification) -> Value {
    let icon = if n.event.is_problem() {
        ":rotating_light:"
    } else {
        ":white_check_mark:"
    };
    json!({"text": format!("{icon} {}\n{}", headline(n), n.summary)})
}

/// A generic webhook's body: the notification itself, under a version.
pub fn webhook_body(n: &Notification) -> Vec<u8> {
    let mut v = serde_json::to_value(n).expect("a notification serialises");
    v["version"] = json!(1);
    v["source"] = json!("lifeboat");
    serde_json::to_vec(&v).expect("JSON serialises")
}

/// The value of [`SIGNATURE_HEADER`] for `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
    format!("sha256={}", hex::encode(tag.as_ref()))
}

/// True when `header` is `body`'s signature under `key` (constant time).
pub fn verify_signature(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(tag) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), body, &tag).is_ok()
}

/// A PagerDuty Events API v2 event: a trigger for a problem, a resolve for
/// a recovery (same dedup key as the trigger it closes).
pub fn pagerduty(n: &Notification, routing_key: &str) -> Value {
    if n.event == NotifyEvent::Recovered {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": n.dedup_key,
        });
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.dedup_key,
        "payload": {
            "summary": format!("{}: {}", headline(n), n.summary),
            "source": format!("lifeboat/{}", policy_ref(n)),
            "severity": if n.event == NotifyEvent::ObjectiveBreached { "critical" } else { "error" },
            "timestamp": n.at.to_rfc3339(),
            "component": n.policy,
            "group": n.namespace,
            "class": n.event.as_str(),
            "custom_details": {"subject": n.subject, "event": n.event.as_str()},
        },
    })
}

/// A mail's subject and plain-text body.
pub fn email(n: &Notification) -> (String, String) {
    let mut body = format!(
        "{}\n\nPolicy:  {}\nEvent:   {}\nAt:      {}\n",
        n.summary,
        policy_ref(n),
        n.event.as_str(),
        n.at.to_rfc3339()
    );
    if let Some(s) = &n.subject {
        body.push_str(&format!("About:   {s}\n"));
    }
    body.push_str(&format!(
        "\nkubectl describe backuppolicy -n {} {}\n",
        n.namespace, n.policy
    ));
    (headline(n), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(event: NotifyEvent) -> Notification {
        Notification {
            event,
            namespace: "shop".into(),
            policy: "orders".into(),
            subject: Some("orders-daily-1".into()),
            summary: "run orders-daily-1 failed: pg_dump: connection refused".into(),
            dedup_key: "lifeboat/shop/orders/backup".into(),
            at: "2026-11-21T02:03:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_and_body() {
        let body = webhook_body(&note(NotifyEvent::RunFailed));
        let sig = signature(b"k1", &body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify_signature(b"k1", &body, &sig));
        assert!(!verify_signature(b"k2", &body, &sig));
        let mut changed = body.clone();
        changed[3] ^= 1;
        assert!(!verify_signature(b"k1", &changed, &sig));
        assert!(!verify_signature(b"k1", &body, "sha1=00"));
    }

    #[test]
    fn pagerduty_triggers_a_problem_and_resolves_a_recovery_with_one_key() {
        let t = pagerduty(&note(NotifyEvent::RunFailed), "R");
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["payload"]["severity"], "error");
        assert_eq!(t["payload"]["source"], "lifeboat/shop/orders");
        let r = pagerduty(&note(NotifyEvent::Recovered), "R");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], t["dedup_key"]);
        assert!(r.get("payload").is_none());
    }

    #[test]
    fn slack_and_mail_say_what_happened_to_which_policy() {
        let s = slack(&note(NotifyEvent::RunFailed));
        let text = s["text"].as_str().unwrap();
        assert!(
            text.contains("shop/orders: backup failed") && text.contains("pg_dump"),
            "{text}"
        );
        let (subject, body) = email(&note(NotifyEvent::Recovered));
        assert_eq!(subject, "[lifeboat] shop/orders: recovered");
        assert!(body.contains("About:   orders-daily-1"), "{body}");
        let v: Value =
            serde_json::from_slice(&webhook_body(&note(NotifyEvent::Recovered))).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["version"].as_i64()),
            (Some("recovered"), Some(1))
        );
    }
}
