//! `spec.notifications`: where a policy's news goes. Each target has a name
//! and one kind — a Slack-compatible incoming webhook, a generic webhook
//! (JSON body signed with HMAC-SHA256), PagerDuty Events API v2, e-mail over
//! SMTP with STARTTLS, or a heartbeat URL pinged after every successful
//! backup (a dead-man switch). Credentials and URLs stay in Secrets: the
//! controller never reads them, the notify Jobs mount them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{check_ref_name, parse_duration, FieldError, LocalRef, DURATION_PATTERN};

/// Keys the targets' Secrets hold.
pub mod keys {
    /// Slack, webhook and heartbeat targets: the URL to post to.
    pub const URL: &str = "url";
    /// Webhook targets: the HMAC-SHA256 key of the `X-Lifeboat-Signature` header.
    pub const SIGNING_KEY: &str = "signingKey";
    /// PagerDuty targets: the integration's routing key.
    pub const ROUTING_KEY: &str = "routingKey";
    /// E-mail targets: the SMTP login.
    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    /// While a problem lasts, the same news is sent again at most this often
    /// (a breach is re-sent every interval; failed runs of one streak are
    /// sent once per interval). Absent: once per problem (every failed run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub repeat_interval: Option<String>,
    /// Where news goes. (Not required by the schema: a policy written for
    /// the old `webhookSecretRef` shape still reads, and validation names
    /// this field instead of the controller failing to read the policy.)
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub targets: Vec<NotificationTarget>,
}

/// One place news goes: a name and exactly one kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationTarget {
    /// Names the target in errors and reports (never its URL).
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Events to send. Empty: runFailed, objectiveBreached, drillFailed and
    /// recovered (heartbeats: succeeded, their only event).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NotificationEvent>,
    /// Slack-compatible incoming webhook; the Secret's `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SecretTarget>,
    /// JSON POST signed with HMAC-SHA256 (`X-Lifeboat-Signature:
    /// sha256=<hex>`); the Secret's `url` and `signingKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<SecretTarget>,
    /// PagerDuty Events API v2: a trigger per problem (one dedup key per
    /// policy and problem), a resolve when it clears; the Secret's `routingKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<PagerDutyTarget>,
    /// Mail over SMTP with STARTTLS (always required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailTarget>,
    /// Pinged (GET) after each successful backup: a dead-man switch that
    /// alerts when the pings stop; the Secret's `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<SecretTarget>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTarget {
    pub secret_ref: LocalRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagerDutyTarget {
    pub secret_ref: LocalRef,
    /// The Events API v2 endpoint; absent = PagerDuty's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailTarget {
    /// SMTP relay host (STARTTLS is required; its certificate is checked
    /// against this name).
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    #[serde(default = "submission_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    pub from: String,
    #[schemars(length(min = 1, max = 50))]
    pub to: Vec<String>,
    /// Secret with `username` and `password`; absent = no login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
    /// Key in that Secret holding a PEM CA bundle to trust for the relay
    /// (a private relay); absent = the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<String>,
}

fn submission_port() -> u16 {
    587
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum NotificationEvent {
    /// A backup run failed (the Job's error, a pod that never started, a deadline).
    RunFailed,
    /// The RPO objective is breached (`ObjectiveBreached` turned True).
    ObjectiveBreached,
    /// A restore drill failed.
    DrillFailed,
    /// A problem cleared: a backup succeeded after failures, or the RPO is met again.
    Recovered,
    /// A backup run succeeded.
    Succeeded,
    /// A RestoreRequest (not a drill) finished, succeeded or failed.
    RestoreFinished,
    /// A name this version does not know (the schema refuses it; a policy
    /// stored under the old shape, `Failed`, still reads and is refused by
    /// validation).
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

impl NotificationEvent {
    /// What a target without `events` gets.
    pub const DEFAULT: [NotificationEvent; 4] = [
        NotificationEvent::RunFailed,
        NotificationEvent::ObjectiveBreached,
        NotificationEvent::DrillFailed,
        NotificationEvent::Recovered,
    ];
}

/// The kind of a target, for the one match on it.
#[derive(Clone, Copy, Debug)]
pub enum TargetKind<'a> {
    Slack(&'a SecretTarget),
    Webhook(&'a SecretTarget),
    PagerDuty(&'a PagerDutyTarget),
    Email(&'a EmailTarget),
    Heartbeat(&'a SecretTarget),
}

impl NotificationTarget {
    /// The one kind set, or how many were.
    fn kinds(&self) -> Vec<TargetKind<'_>> {
        [
            self.slack.as_ref().map(TargetKind::Slack),
            self.webhook.as_ref().map(TargetKind::Webhook),
            self.pagerduty.as_ref().map(TargetKind::PagerDuty),
            self.email.as_ref().map(TargetKind::Email),
            self.heartbeat.as_ref().map(TargetKind::Heartbeat),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The target's kind; `None` on a spec that did not validate.
    pub fn kind(&self) -> Option<TargetKind<'_>> {
        match self.kinds()[..] {
            [k] => Some(k),
            _ => None,
        }
    }

    /// The events this target gets.
    pub fn wants(&self, event: NotificationEvent) -> bool {
        if self.heartbeat.is_some() {
            return event == NotificationEvent::Succeeded;
        }
        if self.events.is_empty() {
            NotificationEvent::DEFAULT.contains(&event)
        } else {
            self.events.contains(&event)
        }
    }
}

impl Notifications {
    /// The repeat interval, when one is set and valid.
    pub fn repeat(&self) -> Option<chrono::Duration> {
        parse_duration(self.repeat_interval.as_deref()?)
    }

    /// True when some target gets `event`.
    pub fn wants(&self, event: NotificationEvent) -> bool {
        self.targets.iter().any(|t| t.wants(event))
    }

    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        let base = "spec.notifications";
        if let Some(r) = &self.repeat_interval {
            if parse_duration(r).is_none_or(|d| d < chrono::Duration::minutes(1)) {
                errors.push(FieldError::new(
                    format!("{base}.repeatInterval"),
                    format!("{r:?} is not a duration of at least 1m, like 30m, 4h or 1d"),
                ));
            }
        }
        if self.targets.is_empty() {
            errors.push(FieldError::new(
                format!("{base}.targets"),
                "at least one target is required",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let field = format!("{base}.targets[{i}]");
            if !seen.insert(t.name.as_str()) {
                errors.push(FieldError::new(
                    format!("{field}.name"),
                    format!("duplicate target name {:?}", t.name),
                ));
            }
            t.validate(&field, errors);
        }
    }
}

impl NotificationTarget {
    fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 40
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !self.name.starts_with('-')
            && !self.name.ends_with('-');
        if !name_ok {
            errors.push(FieldError::new(
                format!("{field}.name"),
                format!(
                    "{:?} is not a name of lowercase letters, digits and '-' (at most 40)",
                    self.name
                ),
            ));
        }
        let kind = match self.kinds()[..] {
            [k] => k,
            _ => {
                errors.push(FieldError::new(
                    field,
                    "set exactly one of slack, webhook, pagerduty, email, heartbeat",
                ));
                return;
            }
        };
        for (j, e) in self.events.iter().enumerate() {
            let at = format!("{field}.events[{j}]");
            let refuse = |why: &str| FieldError::new(at.clone(), why.to_string());
            match (e, kind) {
                (NotificationEvent::Unknown, _) => errors.push(refuse(
                    "not an event: use runFailed, objectiveBreached, drillFailed, recovered, succeeded or restoreFinished",
                )),
                (_, TargetKind::Heartbeat(_)) if *e != NotificationEvent::Succeeded => errors.push(
                    refuse("a heartbeat is pinged after each successful backup only (succeeded)"),
                ),
                (
                    NotificationEvent::Succeeded | NotificationEvent::RestoreFinished,
                    TargetKind::PagerDuty(_),
                ) => errors.push(refuse(
                    "pagerduty targets take runFailed, objectiveBreached, drillFailed and recovered",
                )),
                _ => {}
            }
        }
        let secret = |sub: &str, r: &LocalRef, errors: &mut Vec<FieldError>| {
            check_ref_name(&format!("{field}.{sub}.secretRef.name"), &r.name, errors);
        };
        match kind {
            TargetKind::Slack(s) => secret("slack", &s.secret_ref, errors),
            TargetKind::Webhook(s) => secret("webhook", &s.secret_ref, errors),
            TargetKind::Heartbeat(s) => secret("heartbeat", &s.secret_ref, errors),
            TargetKind::PagerDuty(p) => {
                secret("pagerduty", &p.secret_ref, errors);
                if let Some(u) = &p.events_url {
                    if !url::Url::parse(u).is_ok_and(|u| ["http", "https"].contains(&u.scheme())) {
                        errors.push(FieldError::new(
                            format!("{field}.pagerduty.eventsUrl"),
                            "not an http(s) URL",
                        ));
                    }
                }
            }
            TargetKind::Email(m) => {
                let f = format!("{field}.email");
                if m.host.is_empty() || m.host.contains(['/', ':', ' ']) {
                    errors.push(FieldError::new(
                        format!("{f}.host"),
                        format!("{:?} is not a host name", m.host),
                    ));
                }
                if m.port == 0 {
                    errors.push(FieldError::new(format!("{f}.port"), "must be 1 to 65535"));
                }
                // An address, or a name and an address (`Lifeboat <lifeboat@example.com>`).
                let address = |a: &str| a.parse::<lettre::message::Mailbox>().is_ok();
                if !address(&m.from) {
                    errors.push(FieldError::new(
                        format!("{f}.from"),
                        format!("{:?} is not an e-mail address", m.from),
                    ));
                }
                if m.to.is_empty() {
                    errors.push(FieldError::new(format!("{f}.to"), "at least one address"));
                }
                for (j, to) in m.to.iter().enumerate() {
                    if !address(to) {
                        errors.push(FieldError::new(
                            format!("{f}.to[{j}]"),
                            format!("{to:?} is not an e-mail address"),
                        ));
                    }
                }
                match (&m.secret_ref, &m.ca_key) {
                    (Some(r), _) => secret("email", r, errors),
                    (None, Some(_)) => errors.push(FieldError::new(
                        format!("{f}.caKey"),
                        "needs secretRef: the CA bundle is read from that Secret",
                    )),
                    (None, None) => {}
                }
            }
        }
    }
}
