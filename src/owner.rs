//! Whose backups a key may vouch for. Several policies can share one key
//! Secret; without this, a backup copied from one policy's prefix to
//! another's (by anyone who can write the bucket) would authenticate and
//! restore as the other's. A manifest records the namespace and policy that
//! wrote it, inside what its MAC covers, and a reader told whose backups it
//! reads (`--owner` / `LIFEBOAT_OWNER`, which the operator sets on every
//! Job) refuses a manifest of anyone else.

use std::fmt;
use std::str::FromStr;

/// A BackupPolicy's identity: `namespace/policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub policy: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.policy)
    }
}

impl FromStr for Owner {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((namespace, policy)) = s.split_once('/') else {
            return Err(format!("owner {s:?}: expected <namespace>/<policy>"));
        };
        // Kubernetes object names: what the operator passes is always one.
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 253
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !name_ok(namespace) || !name_ok(policy) {
            return Err(format!(
                "owner {s:?}: namespace and policy must be Kubernetes names (a-z 0-9 - .)"
            ));
        }
        Ok(Owner {
            namespace: namespace.into(),
            policy: policy.into(),
        })
    }
}

/// What a manifest says about who wrote it, as the reader compares it.
pub enum Verdict {
    Same,
    /// Written before manifests recorded their namespace: the policy name
    /// matched, the namespace cannot be checked.
    NoNamespace,
    /// Someone else's backup; says whose.
    Other(String),
}

/// Compares the writer a manifest records with the owner a reader expects.
pub fn judge(expected: &Owner, policy: &str, namespace: Option<&str>) -> Verdict {
    let found = || match namespace {
        Some(ns) => format!("{ns}/{policy}"),
        None => format!("policy {policy}"),
    };
    if policy != expected.policy {
        return Verdict::Other(found());
    }
    match namespace {
        Some(ns) if ns == expected.namespace => Verdict::Same,
        Some(_) => Verdict::Other(found()),
        None => Verdict::NoNamespace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_parse_as_kubernetes_names_only() {
        let o: Owner = "shop/orders".parse().unwrap();
        assert_eq!(
            (o.namespace.as_str(), o.policy.as_str()),
            ("shop", "orders")
        );
        assert_eq!(o.to_string(), "shop/orders");
        for bad in [
            "orders",
            "/orders",
            "shop/",
            "shop/orders/x",
            "Shop/orders",
            "a b/c",
        ] {
            assert!(bad.parse::<Owner>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_the_same_namespace_and_policy_is_the_same() {
        let o: Owner = "shop/orders".parse().unwrap();
        assert!(matches!(judge(&o, "orders", Some("shop")), Verdict::Same));
        assert!(matches!(judge(&o, "orders", None), Verdict::NoNamespace));
        let Verdict::Other(who) = judge(&o, "orders", Some("other")) else {
            panic!("another namespace passed")
        };
        assert_eq!(who, "other/orders");
        assert!(matches!(
            judge(&o, "billing", Some("shop")),
            Verdict::Other(_)
        ));
        assert!(matches!(judge(&o, "billing", None), Verdict::Other(_)));
    }
}
