//! What the in-memory API server checks and fills in as a real one does for
//! the kinds config backups meet: a Secret's `stringData` folded into
//! `data`, a Service's assigned `clusterIP`, immutable fields refused, and
//! paged lists (`limit`, `continue`) whose tokens can be made to expire.

use base64::Engine;
use serde_json::{json, Value};

const SECRETS: &str = "api/v1/secrets";
const CONFIGMAPS: &str = "api/v1/configmaps";
const SERVICES: &str = "api/v1/services";

/// What the server sets on an object it is about to store; `loopback`:
/// Service cluster IPs come from 127.0.0.1/32.
pub fn normalize(resource: &str, obj: &mut Value, serial: u64, loopback: bool) {
    if resource == SECRETS {
        if let Some(Value::Object(string_data)) =
            obj.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            let b64 = base64::engine::general_purpose::STANDARD;
            for (k, v) in string_data {
                obj["data"][k] = json!(b64.encode(v.as_str().unwrap_or_default()));
            }
        }
    }
    if resource == SERVICES && obj.pointer("/spec/clusterIP").is_none_or(Value::is_null) {
        let ip = match loopback {
            true => "127.0.0.1".to_string(),
            false => format!("10.96.{}.{}", (serial / 250) % 250, serial % 250 + 1),
        };
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
    }
}

/// Why `next` may not replace `current`, as the API server words it.
pub fn immutable(resource: &str, current: &Value, next: &Value) -> Option<String> {
    if (resource == SECRETS || resource == CONFIGMAPS) && current["immutable"] == json!(true) {
        for field in ["data", "binaryData", "immutable"] {
            if current.get(field) != next.get(field) {
                return Some(format!(
                    "{field}: Forbidden: field is immutable when `immutable` is set"
                ));
            }
        }
    }
    if resource == SERVICES {
        let (was, is) = (&current["spec"]["clusterIP"], &next["spec"]["clusterIP"]);
        if !was.is_null() && was != is {
            return Some(format!(
                "spec.clusterIP: Invalid value: {is}: field is immutable"
            ));
        }
    }
    None
}

/// A list's continue token: the list's resourceVersion and the last key served.
pub fn token(rv: u64, ns: &str, name: &str) -> String {
    hex::encode(serde_json::to_vec(&json!([rv, ns, name])).unwrap())
}

/// Reads a token back: (resourceVersion, namespace, name).
pub fn read_token(token: &str) -> Option<(u64, String, String)> {
    let v: Value = serde_json::from_slice(&hex::decode(token).ok()?).ok()?;
    Some((
        v[0].as_u64()?,
        v[1].as_str()?.to_string(),
        v[2].as_str()?.to_string(),
    ))
}
