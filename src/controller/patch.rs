//! The merge patches the controller writes status with.

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: changed
/// fields, and `null` for fields `new` dropped (serde skips absent options,
/// and a merge patch that leaves a field out keeps its old value).
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Map, Value};
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (key, nv) in n {
                match o.get(key) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => {
                        patch.insert(key.clone(), merge_patch(ov, nv));
                    }
                    None => {
                        patch.insert(key.clone(), nv.clone());
                    }
                }
            }
            for key in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_changes_and_nulls_removals() {
        let old = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": [1], "gone": "x"});
        let new = json!({"a": 1, "b": {"x": 1, "y": 3}, "c": [1, 2], "added": true});
        assert_eq!(
            merge_patch(&old, &new),
            json!({"b": {"y": 3}, "c": [1, 2], "added": true, "gone": null})
        );
        assert_eq!(merge_patch(&new, &new), json!({}));
    }
}
