//! `spec.source.volume`: the files on a PersistentVolumeClaim, backed up by
//! a Job that mounts the claim read-only and runs `lifeboat backup --path`.
//! Who the Job reads as is the user's call: the uid that owns the data
//! (`runAsUser`, default [`DEFAULT_RUN_AS`], the image's non-root user),
//! within the restricted Pod Security Standard, or root with only
//! CAP_DAC_READ_SEARCH (`readAsRoot`), which that standard refuses.

use std::path::{Component, Path};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{check_ref_name, FieldError};

/// The uid (and gid) a volume backup reads as when the policy does not
/// say: the image's non-root user. Files it cannot read fail the run
/// (or are skipped and listed, with `skipUnreadable`).
pub const DEFAULT_RUN_AS: i64 = 65532;

/// Files on a PersistentVolumeClaim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    /// The claim, in the policy's namespace; mounted read-only.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// A directory inside the volume to back up instead of all of it
    /// (relative, no `..`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Only files and links matching one of these globs (relative to the
    /// backed-up directory); directories are always kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Leave out what matches, and everything under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Leave out files that cannot be read, listing them in the run's
    /// report, instead of failing the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_unreadable: bool,
    /// The uid the Job reads as: the owner of the data. Default 65532 (the
    /// image's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_user: Option<i64>,
    /// The gid the Job reads as; default runAsUser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_group: Option<i64>,
    /// Read as root (uid 0) with only CAP_DAC_READ_SEARCH, whoever owns the
    /// files. Breaks the restricted Pod Security Standard: the namespace
    /// must allow it (baseline or privileged).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_as_root: bool,
}

impl VolumeSource {
    /// The directory backed up, relative to the volume's root ("" = all of it).
    pub fn sub_dir(&self) -> &str {
        self.sub_path.as_deref().unwrap_or("").trim_matches('/')
    }

    /// The uid and gid the Job reads as (0 with `readAsRoot`).
    pub fn uid_gid(&self) -> (i64, i64) {
        uid_gid(self.read_as_root, self.run_as_user, self.run_as_group)
    }

    pub(super) fn validate(&self, errors: &mut Vec<FieldError>) {
        let field = "spec.source.volume";
        check_ref_name(&format!("{field}.claimName"), &self.claim_name, errors);
        if let Some(sub) = &self.sub_path {
            if let Err(e) = check_sub_path(sub) {
                errors.push(FieldError::new(format!("{field}.subPath"), e));
            }
        }
        check_globs(field, &self.include, &self.exclude, errors);
        let ids = (self.run_as_user, self.run_as_group);
        check_ids(field, ("readAsRoot", self.read_as_root), ids, errors);
    }
}

/// The uid and gid a file Job runs as: 0 as root, else `uid` (default
/// [`DEFAULT_RUN_AS`]) and `gid` (default the uid).
pub fn uid_gid(as_root: bool, uid: Option<i64>, gid: Option<i64>) -> (i64, i64) {
    if as_root {
        return (0, 0);
    }
    let uid = uid.unwrap_or(DEFAULT_RUN_AS);
    (uid, gid.unwrap_or(uid))
}

/// `runAsUser`/`runAsGroup` under `field`: 1 or more, and not with the
/// flag (`root`: its name and value) that runs the Job as root.
pub fn check_ids(
    field: &str,
    root: (&str, bool),
    (uid, gid): (Option<i64>, Option<i64>),
    errors: &mut Vec<FieldError>,
) {
    let (flag, as_root) = root;
    for (name, id) in [("runAsUser", uid), ("runAsGroup", gid)] {
        match id {
            Some(id) if as_root => errors.push(FieldError::new(
                format!("{field}.{name}"),
                format!("{id} conflicts with {flag}: true (which runs as uid 0)"),
            )),
            Some(id) if id < 1 => errors.push(FieldError::new(
                format!("{field}.{name}"),
                format!("must be 1 or more (set {flag}: true to run as root)"),
            )),
            _ => {}
        }
    }
}

/// `<field>.include[i]` and `<field>.exclude[i]` that are not globs (a
/// volume's paths, a bucket's keys).
pub(super) fn check_globs(
    field: &str,
    include: &[String],
    exclude: &[String],
    errors: &mut Vec<FieldError>,
) {
    for (name, globs) in [("include", include), ("exclude", exclude)] {
        for (i, g) in globs.iter().enumerate() {
            if let Err(e) = globset::Glob::new(g) {
                errors.push(FieldError::new(
                    format!("{field}.{name}[{i}]"),
                    format!("{g:?} is not a glob: {}", e.kind()),
                ));
            }
        }
    }
}

/// A path inside a volume: relative, plain names only (no `..`, no `.`).
pub fn check_sub_path(sub: &str) -> Result<(), String> {
    let p = Path::new(sub);
    if sub.is_empty()
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{sub:?} must be a relative path inside the volume, without .. or ."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: serde_json::Value) -> Vec<String> {
        let s: VolumeSource = serde_json::from_value(v).unwrap();
        let mut errors = Vec::new();
        s.validate(&mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(fields(json!({"claimName": "data", "subPath": "app/uploads"})).is_empty());
        for bad in ["../etc", "/abs", "a/../../b", "./a", ""] {
            assert_eq!(
                fields(json!({"claimName": "data", "subPath": bad})),
                ["spec.source.volume.subPath"],
                "{bad:?}"
            );
        }
        assert_eq!(
            fields(json!({"claimName": "Data", "include": ["*.txt", "a[b"], "exclude": ["{x"]})),
            [
                "spec.source.volume.claimName",
                "spec.source.volume.include[1]",
                "spec.source.volume.exclude[0]"
            ]
        );
        assert_eq!(
            fields(json!({"claimName": "d", "readAsRoot": true, "runAsUser": 1000})),
            ["spec.source.volume.runAsUser"]
        );
        assert_eq!(
            fields(json!({"claimName": "d", "runAsGroup": 0})),
            ["spec.source.volume.runAsGroup"]
        );
    }

    #[test]
    fn reads_as_the_owner_given_or_the_image_user() {
        let s = |v| serde_json::from_value::<VolumeSource>(v).unwrap().uid_gid();
        assert_eq!(s(json!({"claimName": "d"})), (65532, 65532));
        assert_eq!(
            s(json!({"claimName": "d", "runAsUser": 1000})),
            (1000, 1000)
        );
        assert_eq!(
            s(json!({"claimName": "d", "runAsUser": 1000, "runAsGroup": 2000})),
            (1000, 2000)
        );
        assert_eq!(s(json!({"claimName": "d", "readAsRoot": true})), (0, 0));
    }
}
