//! The free-space part of the pre-recovery check: a part restored into a
//! PersistentVolumeClaim (files into a claim, a data directory into a
//! volume) needs a claim at least as large as what the plan says it
//! restores. Its size, not its free space: the API does not show what a
//! volume holds. Databases on a server and buckets are not checked: the API
//! shows no server's free disk, and a bucket has no capacity.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::Pass;
use crate::api::app_restore::ApplicationPart;

/// What the controller saw of a part's claim (during preCheck).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimSpace {
    /// The claim does not exist (yet: a configuration part may restore it).
    Missing,
    /// Its capacity as the API gives it (`status.capacity["storage"]`, else
    /// `spec.resources.requests["storage"]`); `None` when it has neither.
    Found(Option<String>),
}

impl ClaimSpace {
    pub fn of(claim: Option<&PersistentVolumeClaim>) -> Self {
        let Some(c) = claim else {
            return ClaimSpace::Missing;
        };
        let bound = c.status.as_ref().and_then(|s| s.capacity.as_ref());
        let requested = c
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref());
        let quantity = bound
            .and_then(|m| m.get("storage"))
            .or_else(|| requested.and_then(|m| m.get("storage")));
        ClaimSpace::Found(quantity.map(|q| q.0.clone()))
    }
}

/// The claim a part restores into, if any.
pub fn claim_of(part: &ApplicationPart) -> Option<&str> {
    let t = &part.target;
    t.files
        .as_ref()
        .map(|f| f.claim_name.as_str())
        .or(t.volume.as_ref().map(|v| v.claim_name.as_str()))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a storage quantity (a number with an optional suffix such as Ki, Mi, Gi, Ti, k, M, G, T)")]
pub struct QuantityError(String);

/// Bytes of a Kubernetes quantity (`10Gi`, `500M`, `1.5Gi`, `2e9`, `1024`),
/// rounded up to a whole byte.
pub fn parse_quantity(text: &str) -> Result<u64, QuantityError> {
    let bad = || QuantityError(text.to_string());
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => match suffix.strip_prefix(['e', 'E']).map(str::parse::<i32>) {
            Some(Ok(exp)) => 10f64.powi(exp),
            _ => return Err(bad()),
        },
    };
    if number.is_empty() || number.starts_with('.') || number.matches('.').count() > 1 {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = (value * factor).ceil();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// The free-space check of every part with a claim: `Ok` with a line per
/// claim checked, `Err` naming the first part that does not fit.
pub(super) fn check(pass: &Pass<'_, '_>) -> Result<Vec<String>, String> {
    let app = pass.obs.app;
    let mut lines = Vec::new();
    for (i, part) in app.spec.parts.iter().enumerate() {
        let Some(claim) = claim_of(part) else {
            continue;
        };
        let Some(seen) = pass.obs.claims.get(i).and_then(Option::as_ref) else {
            continue;
        };
        let name = &part.name;
        let capacity = match seen {
            ClaimSpace::Missing => {
                lines.push(format!(
                    "part {name}: claim {claim} does not exist yet; its space is not checked"
                ));
                continue;
            }
            ClaimSpace::Found(None) => {
                lines.push(format!(
                    "part {name}: claim {claim} shows no storage size; its space is not checked"
                ));
                continue;
            }
            ClaimSpace::Found(Some(q)) => {
                parse_quantity(q).map_err(|e| format!("part {name}: claim {claim}: {e}"))?
            }
        };
        let plan = pass.st.plan.iter().find(|p| p.part == *name);
        let Some(needed) = plan
            .and_then(|p| p.bytes)
            .and_then(|b| u64::try_from(b).ok())
        else {
            lines.push(format!(
                "part {name}: the plan gives no size; claim {claim} not checked"
            ));
            continue;
        };
        // A file backup's plan gives its files' bytes; a physical backup's
        // only its stored (compressed) bytes, a lower bound.
        let what = match part.target.volume.is_some() {
            true => "at least the backup's stored bytes",
            false => "the backup's file bytes",
        };
        if capacity < needed {
            return Err(format!(
                "part {name}: claim {claim} holds {capacity} bytes; the restore needs {what}, {needed} bytes"
            ));
        }
        lines.push(format!(
            "part {name}: claim {claim} holds {capacity} bytes, {what} are {needed}"
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_in_every_form_parse_to_bytes() {
        let cases = [
            ("1024", 1024),
            ("1Ki", 1024),
            ("5Mi", 5 * 1024 * 1024),
            ("10Gi", 10 * 1024u64.pow(3)),
            ("2Ti", 2 * 1024u64.pow(4)),
            ("3k", 3_000),
            ("500M", 500_000_000),
            ("20G", 20_000_000_000),
            ("1T", 1_000_000_000_000),
            ("1.5Gi", 1_610_612_736),
            ("0.5", 1),
            ("2e3", 2_000),
            (" 8Gi ", 8 * 1024u64.pow(3)),
            ("1500m", 2),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_quantity(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn a_claims_size_is_its_bound_capacity_else_its_request() {
        let claim =
            |v: serde_json::Value| -> PersistentVolumeClaim { serde_json::from_value(v).unwrap() };
        let requested = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        let mut bound = requested.clone();
        bound["status"] = json!({"capacity": {"storage": "2Gi"}});
        assert_eq!(
            ClaimSpace::of(Some(&claim(bound))),
            ClaimSpace::Found(Some("2Gi".into()))
        );
        assert_eq!(
            ClaimSpace::of(Some(&claim(requested))),
            ClaimSpace::Found(Some("1Gi".into()))
        );
        assert_eq!(
            ClaimSpace::of(Some(&claim(json!({})))),
            ClaimSpace::Found(None)
        );
        assert_eq!(ClaimSpace::of(None), ClaimSpace::Missing);
    }

    #[test]
    fn garbage_is_refused_with_the_text_in_the_error() {
        for text in [
            "", "Gi", "ten", "1.2.3Gi", "5 Gi", "5Gb", "-1Gi", ".5Gi", "1e",
        ] {
            let e = parse_quantity(text).unwrap_err().to_string();
            assert!(e.contains(&format!("{text:?}")), "{text}: {e}");
            assert!(e.contains("not a storage quantity"), "{e}");
        }
    }
}
