//! Job specs for the data plane, and the results they report back. Pure: no
//! IO, no clock, no Secret contents.
//!
//! A BackupRun becomes a batch/v1 Job ([`backup_job`]) whose one container
//! runs `lifeboat backup` against the policy's source and every destination;
//! an expired run's backup is deleted by a Job running `lifeboat prune`
//! ([`prune_job`]). Everything secret reaches the pod by reference only:
//!
//! | what | how | where in the pod |
//! |---|---|---|
//! | DB host, port, user, sslmode | env `valueFrom.secretKeyRef` | `PGHOST`, `PGPORT`, `PGUSER`, `PGSSLMODE` |
//! | DB password | Secret volume, one item | `<mount_root>/db/password` → `--password-file` |
//! | master keys | Secret volume, key [`KEY_SECRET_KEY`] | `<mount_root>/keys/keys` → `LIFEBOAT_KEY_FILE` |
//! | S3 credentials, per destination | Secret volume | `<mount_root>/s3/<destination>/` → `credentials=` in the URL |
//!
//! so the controller needs no `get secrets`, and a missing Secret shows up as
//! the pod's `CreateContainerConfigError` rather than as a controller error.
//! The container writes a compact JSON summary to its termination message;
//! [`parse_job_result`] turns it into the run's artifacts.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::Deserialize;

use crate::api::policy::{Compression, Destination, PostgresMethod, SourceKind};
use crate::api::run::{Artifact, SourceInfo};
use crate::api::{BackupPolicy, BackupRun, RunKind};

/// Where Secrets are mounted in the pod unless [`JobConfig::mount_root`] says otherwise.
pub const DEFAULT_MOUNT_ROOT: &str = "/var/run/lifeboat";
/// Key in the encryption Secret that holds the key file (`lifeboat keygen`):
/// `kubectl create secret generic backup-keys --from-file=keys=./lifeboat.keys`.
pub const KEY_SECRET_KEY: &str = "keys";
/// Where the container leaves its JSON summary for the controller.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The distroless "nonroot" uid/gid; the image's user (see Dockerfile).
pub const RUN_AS: i64 = 65532;
/// Name of the single container in every Job.
pub const CONTAINER: &str = "lifeboat";

pub const LABEL_POLICY: &str = "lifeboat.dev/policy";
pub const LABEL_RUN: &str = "lifeboat.dev/run";
pub const LABEL_TIER: &str = "lifeboat.dev/tier";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const ANNOTATION_BACKUP_ID: &str = "lifeboat.dev/backup-id";

/// Settings of the controller that every Job shares.
#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    /// Agent image; a policy's `jobTemplate.image` overrides it.
    pub image: String,
    /// Directory under which Secrets are mounted in the pod.
    pub mount_root: String,
    /// Service account when the policy names none.
    pub service_account: Option<String>,
    pub image_pull_policy: Option<String>,
    /// Pod retries; each retry is a fresh backup with a new id.
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
    /// How long a finished Job stays when the policy does not say; long
    /// enough for a controller that was down to read its result.
    pub ttl_seconds_after_finished: i32,
}

impl Default for JobConfig {
    /// For tests and local runs; `lifeboat controller` always sets the image.
    fn default() -> Self {
        Self::new("lifeboat:dev")
    }
}

impl JobConfig {
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            mount_root: DEFAULT_MOUNT_ROOT.to_string(),
            service_account: None,
            image_pull_policy: None,
            backoff_limit: 2,
            active_deadline_seconds: None,
            ttl_seconds_after_finished: 86_400,
        }
    }

    pub(crate) fn root(&self) -> &str {
        self.mount_root.trim_end_matches('/')
    }

    /// Directory holding a destination's S3 credentials in the pod.
    pub fn credentials_dir(&self, destination: &str) -> String {
        format!("{}/s3/{destination}", self.root())
    }

    /// The database password file in the pod.
    pub fn password_file(&self) -> String {
        format!("{}/db/password", self.root())
    }

    /// The master key file in the pod.
    pub fn key_file(&self) -> String {
        format!("{}/keys/{KEY_SECRET_KEY}", self.root())
    }
}

/// Why no Job could be built. Each names the field to fix, for the run's
/// condition; none is worth a retry until the spec changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("{field} is not set")]
    Missing { field: &'static str },
    #[error("{field}: {message}")]
    Unsupported { field: String, message: String },
    #[error("spec.policyRef.name: the run names policy {run:?}, not {policy:?}")]
    WrongPolicy { run: String, policy: String },
    #[error("metadata.namespace: the run is in {run:?}, its policy in {policy:?}")]
    WrongNamespace { run: String, policy: String },
    #[error("{0:?} is not a backup id")]
    BadBackupId(String),
}

impl JobError {
    /// The field a status condition should name.
    pub fn field(&self) -> &str {
        match self {
            JobError::Missing { field } => field,
            JobError::Unsupported { field, .. } => field,
            JobError::WrongPolicy { .. } => "spec.policyRef.name",
            JobError::WrongNamespace { .. } => "metadata.namespace",
            JobError::BadBackupId(_) => "status.backupId",
        }
    }
}

/// The name of the Job that backs up `run`: the same on every reconcile and
/// every replica, so creating it twice is a conflict, not a duplicate backup.
pub fn backup_job_name(run: &str) -> String {
    bounded_name(run, "backup")
}

/// The name of the Job that prunes `run`'s backup.
pub fn prune_job_name(run: &str) -> String {
    bounded_name(run, "prune")
}

/// `<base>-<suffix>` within 63 characters (a Job's name becomes a pod label).
/// A longer base is cut and a hash of the whole keeps names distinct.
pub(crate) fn bounded_name(base: &str, suffix: &str) -> String {
    let name = format!("{base}-{suffix}");
    if name.len() <= 63 {
        return name;
    }
    let hash = short_hash(base);
    let room = 63 - suffix.len() - hash.len() - 2;
    let cut = base[..room].trim_end_matches(['-', '.']);
    format!("{cut}-{hash}-{suffix}")
}

pub(super) fn short_hash(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    hex::encode(&d.as_ref()[..4])
}

/// A label value (≤ 63 characters) for a name that may be longer.
pub(crate) fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        name.to_string()
    } else {
        let hash = short_hash(name);
        let cut = name[..63 - hash.len() - 1].trim_end_matches(['-', '.']);
        format!("{cut}-{hash}")
    }
}

/// The destination's URL without query: `s3://bucket/<prefix>/<namespace>/<policy>`,
/// as the Job's summary names it.
pub fn destination_base(namespace: &str, policy: &str, dest: &Destination) -> String {
    let prefix = dest.s3.prefix.as_deref().unwrap_or("").trim_matches('/');
    let mut path = String::new();
    if !prefix.is_empty() {
        path.push_str(prefix);
        path.push('/');
    }
    path.push_str(&format!("{namespace}/{policy}"));
    format!("s3://{}/{path}", dest.s3.bucket)
}

/// The `--to`/`--from` URL of a destination as the pod sees it.
pub fn destination_url(
    namespace: &str,
    policy: &str,
    dest: &Destination,
    cfg: &JobConfig,
) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("region", &dest.s3.region);
    if let Some(e) = &dest.s3.endpoint {
        q.append_pair("endpoint", e);
    }
    if let Some(c) = &dest.s3.storage_class {
        q.append_pair("storage-class", c);
    }
    if dest.s3.credentials_secret_ref.is_some() {
        q.append_pair("credentials", &cfg.credentials_dir(&dest.name));
    }
    format!(
        "{}?{}",
        destination_base(namespace, policy, dest),
        q.finish()
    )
}

/// True when the backup Job reads its backup back (`verification.readBack`, default on).
pub fn reads_back(policy: &BackupPolicy) -> bool {
    policy
        .spec
        .verification
        .as_ref()
        .is_none_or(|v| v.read_back)
}

/// The arguments of `lifeboat backup` for a run of `policy`.
pub fn backup_args(
    policy: &BackupPolicy,
    run: &BackupRun,
    cfg: &JobConfig,
) -> Result<Vec<String>, JobError> {
    let (namespace, name) = policy_id(policy)?;
    let spec = &policy.spec;
    let pg = match (spec.source.kind(), &spec.source.postgres) {
        (Some(SourceKind::Postgres), Some(pg)) => pg,
        (Some(kind), _) => {
            return Err(unsupported(
                format!("spec.source.{kind}"),
                "this version backs up PostgreSQL sources only",
            ))
        }
        (None, _) => {
            return Err(unsupported(
                "spec.source",
                "set exactly one of postgres, volume, bucket, config",
            ))
        }
    };
    if pg.include_role_passwords {
        // Saying "backed up" while leaving out what was asked for is worse than failing.
        return Err(unsupported(
            "spec.source.postgres.includeRolePasswords",
            "role passwords are not yet saved with the globals",
        ));
    }
    if run.spec.kind == RunKind::Drill {
        return Err(unsupported(
            "spec.kind",
            "restore drills are RestoreRequests made from verification.restoreDrill, not BackupRuns",
        ));
    }
    let mut args = vec!["backup".to_string()];
    if pg.method == PostgresMethod::Physical {
        // A base backup is the whole cluster: databases do not apply.
        args.extend(["--method".into(), "physical".into()]);
    } else {
        if pg.all_databases {
            args.push("--all-databases".into());
        }
        for db in &pg.databases {
            args.extend(["--database".into(), db.clone()]);
        }
    }
    for dest in &spec.destinations {
        args.extend(["--to".into(), destination_url(namespace, name, dest, cfg)]);
    }
    args.extend([
        "--password-file".into(),
        cfg.password_file(),
        "--compression".into(),
        compression_arg(policy).into(),
        "--policy".into(),
        name.to_string(),
        "--tier".into(),
        run.spec.tier.to_string(),
        "--report-file".into(),
        TERMINATION_LOG.into(),
        "--json".into(),
    ]);
    if reads_back(policy) {
        args.push("--verify".into());
    }
    Ok(args)
}

/// The `--compression` value of the policy's encryption settings.
pub(super) fn compression_arg(policy: &BackupPolicy) -> &'static str {
    match policy.spec.encryption.compression {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
        Compression::None => "none",
    }
}

/// The Job that makes `run`'s backup. Owned by the run (deleting the run
/// deletes the Job), named by [`backup_job_name`].
pub fn backup_job(
    policy: &BackupPolicy,
    run: &BackupRun,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    let (namespace, policy_name) = policy_id(policy)?;
    let run_name = run.metadata.name.as_deref().ok_or(JobError::Missing {
        field: "metadata.name",
    })?;
    let run_ns = run.metadata.namespace.as_deref().ok_or(JobError::Missing {
        field: "metadata.namespace",
    })?;
    if run_ns != namespace {
        return Err(JobError::WrongNamespace {
            run: run_ns.into(),
            policy: namespace.into(),
        });
    }
    if run.spec.policy_ref.name != policy_name {
        return Err(JobError::WrongPolicy {
            run: run.spec.policy_ref.name.clone(),
            policy: policy_name.into(),
        });
    }
    let owner = run.controller_owner_ref(&()).ok_or(JobError::Missing {
        field: "metadata.uid",
    })?;
    // First: it names the field of an unsupported source precisely.
    let args = backup_args(policy, run, cfg)?;
    let pg = policy
        .spec
        .source
        .postgres
        .as_ref()
        .ok_or_else(|| unsupported("spec.source", "no postgres source"))?;

    let Access {
        env,
        volumes,
        mounts,
    } = access(policy, cfg, Some(&pg.connection_secret_ref));

    let mut labels = base_labels("backup", policy_name);
    labels.insert(LABEL_RUN.into(), label_value(run_name));
    labels.insert(LABEL_TIER.into(), run.spec.tier.to_string());
    Ok(job(JobParts {
        name: backup_job_name(run_name),
        namespace,
        labels,
        annotations: BTreeMap::new(),
        owner,
        args,
        env,
        volumes,
        mounts,
        policy,
        cfg,
    }))
}

/// The Job that deletes backup `backup_id` from every destination of
/// `policy`. `owner` is usually the expired BackupRun, whose finalizer holds
/// it until this Job succeeds.
pub fn prune_job(
    policy: &BackupPolicy,
    run_name: &str,
    backup_id: &str,
    owner: OwnerReference,
    cfg: &JobConfig,
) -> Result<Job, JobError> {
    let (namespace, policy_name) = policy_id(policy)?;
    if !crate::catalog::valid_backup_id(backup_id) {
        return Err(JobError::BadBackupId(backup_id.into()));
    }
    let mut args = vec!["prune".to_string()];
    for dest in &policy.spec.destinations {
        args.extend([
            "--from".into(),
            destination_url(namespace, policy_name, dest, cfg),
        ]);
    }
    args.extend(["--backup".into(), backup_id.into(), "--json".into()]);
    let mut volumes = common_volumes();
    let mut mounts = common_mounts();
    add_destination_volumes(policy, cfg, &mut volumes, &mut mounts);
    let mut labels = base_labels("prune", policy_name);
    labels.insert(LABEL_RUN.into(), label_value(run_name));
    let annotations = BTreeMap::from([(ANNOTATION_BACKUP_ID.to_string(), backup_id.to_string())]);
    Ok(job(JobParts {
        name: prune_job_name(run_name),
        namespace,
        labels,
        annotations,
        owner,
        args,
        env: common_env(),
        volumes,
        mounts,
        policy,
        cfg,
    }))
}

/// What a data-plane pod gets, all by reference: the database connection
/// (when it has one), the master keys, each destination's credentials, /tmp.
pub(crate) struct Access {
    pub env: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

pub(crate) fn access(
    policy: &BackupPolicy,
    cfg: &JobConfig,
    database: Option<&crate::api::ConnectionSecretRef>,
) -> Access {
    let mut env = Vec::new();
    let mut volumes = common_volumes();
    let mut mounts = common_mounts();
    if let Some(conn) = database {
        add_database_access(conn, cfg, &mut env, &mut volumes, &mut mounts);
    }
    add_key_access(policy, cfg, &mut env, &mut volumes, &mut mounts);
    env.extend(common_env());
    add_destination_volumes(policy, cfg, &mut volumes, &mut mounts);
    Access {
        env,
        volumes,
        mounts,
    }
}

/// The database connection of `conn`'s Secret: host, port, user and sslmode
/// as env references, the password as a mounted file (`--password-file`).
pub(crate) fn add_database_access(
    conn: &crate::api::ConnectionSecretRef,
    cfg: &JobConfig,
    env: &mut Vec<EnvVar>,
    volumes: &mut Vec<Volume>,
    mounts: &mut Vec<VolumeMount>,
) {
    let env_from_secret = |var: &str, key: &str, optional: bool| EnvVar {
        name: var.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: conn.name.clone(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    env.extend([
        env_from_secret("PGHOST", conn.host_key(), false),
        // libpq defaults the port (5432) and sslmode (prefer) when absent.
        env_from_secret("PGPORT", conn.port_key(), true),
        env_from_secret("PGUSER", conn.user_key(), false),
        env_from_secret("PGSSLMODE", conn.sslmode_key(), true),
    ]);
    volumes.push(secret_volume(
        "db",
        &conn.name,
        vec![(conn.password_key(), "password")],
    ));
    mounts.push(mount("db", &format!("{}/db", cfg.root())));
}

/// The policy's master keys, mounted as the key file (`LIFEBOAT_KEY_FILE`).
pub(crate) fn add_key_access(
    policy: &BackupPolicy,
    cfg: &JobConfig,
    env: &mut Vec<EnvVar>,
    volumes: &mut Vec<Volume>,
    mounts: &mut Vec<VolumeMount>,
) {
    env.push(plain_env("LIFEBOAT_KEY_FILE", cfg.key_file()));
    volumes.push(secret_volume(
        "keys",
        &policy.spec.encryption.key_secret_ref.name,
        vec![(KEY_SECRET_KEY, KEY_SECRET_KEY)],
    ));
    mounts.push(mount("keys", &format!("{}/keys", cfg.root())));
}

pub(crate) fn policy_id(policy: &BackupPolicy) -> Result<(&str, &str), JobError> {
    let namespace = policy
        .metadata
        .namespace
        .as_deref()
        .ok_or(JobError::Missing {
            field: "metadata.namespace",
        })?;
    let name = policy.metadata.name.as_deref().ok_or(JobError::Missing {
        field: "metadata.name",
    })?;
    Ok((namespace, name))
}

pub(crate) fn unsupported(field: impl Into<String>, message: &str) -> JobError {
    JobError::Unsupported {
        field: field.into(),
        message: message.into(),
    }
}

pub(crate) fn plain_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    }
}

pub(crate) fn common_env() -> Vec<EnvVar> {
    // The root filesystem is read-only: temporary files (the libpq passfile)
    // go to the emptyDir at /tmp.
    vec![plain_env("TMPDIR", "/tmp".into())]
}

pub(crate) fn common_volumes() -> Vec<Volume> {
    vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }]
}

pub(crate) fn common_mounts() -> Vec<VolumeMount> {
    vec![mount("tmp", "/tmp")]
}

pub(crate) fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: (volume != "tmp").then_some(true),
        ..Default::default()
    }
}

/// A Secret volume exposing only `items` (key → file name): a Secret holding
/// more than the Job needs does not leak the rest into the pod.
pub(crate) fn secret_volume(volume: &str, secret: &str, items: Vec<(&str, &str)>) -> Volume {
    Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(
                items
                    .into_iter()
                    .map(|(key, path)| KeyToPath {
                        key: key.into(),
                        path: path.into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            // Readable by the pod's group (fsGroup) only.
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn add_destination_volumes(
    policy: &BackupPolicy,
    cfg: &JobConfig,
    volumes: &mut Vec<Volume>,
    mounts: &mut Vec<VolumeMount>,
) {
    for (i, dest) in policy.spec.destinations.iter().enumerate() {
        let Some(creds) = &dest.s3.credentials_secret_ref else {
            continue;
        };
        // Volume names are DNS labels; destination names may be 63 long already.
        let volume = format!("s3-{i}");
        volumes.push(secret_volume(
            &volume,
            &creds.name,
            vec![
                (creds.access_key_id_key(), "AWS_ACCESS_KEY_ID"),
                (creds.secret_access_key_key(), "AWS_SECRET_ACCESS_KEY"),
            ],
        ));
        mounts.push(mount(&volume, &cfg.credentials_dir(&dest.name)));
    }
}

pub(crate) fn base_labels(component: &str, policy: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "lifeboat".into()),
        (LABEL_COMPONENT.into(), component.into()),
        ("app.kubernetes.io/managed-by".into(), "lifeboat".into()),
        (LABEL_POLICY.into(), label_value(policy)),
    ])
}

pub(crate) struct JobParts<'a> {
    pub name: String,
    pub namespace: &'a str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner: OwnerReference,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
    pub policy: &'a BackupPolicy,
    pub cfg: &'a JobConfig,
}

pub(crate) fn job(p: JobParts<'_>) -> Job {
    let template = p.policy.spec.job_template.clone().unwrap_or_default();
    let cfg = p.cfg;
    let pod = pod_spec(p.policy, cfg, p.args, p.env, p.mounts, p.volumes, "Never");
    Job {
        metadata: ObjectMeta {
            name: Some(p.name),
            namespace: Some(p.namespace.into()),
            labels: Some(p.labels.clone()),
            annotations: (!p.annotations.is_empty()).then_some(p.annotations),
            owner_references: Some(vec![p.owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(cfg.backoff_limit),
            active_deadline_seconds: cfg.active_deadline_seconds,
            ttl_seconds_after_finished: Some(
                template
                    .ttl_seconds_after_finished
                    .unwrap_or(cfg.ttl_seconds_after_finished),
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(p.labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The pod of every data-plane workload: one non-root container with a
/// read-only root, the policy's jobTemplate applied.
pub(super) fn pod_spec(
    policy: &BackupPolicy,
    cfg: &JobConfig,
    args: Vec<String>,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    volumes: Vec<Volume>,
    restart_policy: &str,
) -> PodSpec {
    let template = policy.spec.job_template.clone().unwrap_or_default();
    let container = Container {
        name: CONTAINER.into(),
        image: Some(template.image.clone().unwrap_or_else(|| cfg.image.clone())),
        image_pull_policy: cfg.image_pull_policy.clone(),
        command: Some(vec!["lifeboat".into()]),
        args: Some(args),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources: template.resources.clone(),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        termination_message_path: Some(TERMINATION_LOG.into()),
        // A crash before the summary is written still tells why, from the log's tail.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    PodSpec {
        containers: vec![container],
        restart_policy: Some(restart_policy.into()),
        service_account_name: template
            .service_account_name
            .clone()
            .or_else(|| cfg.service_account.clone()),
        // The Job never talks to the API server; IRSA and workload identity
        // bring their own token volume.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        node_selector: template.node_selector.clone(),
        tolerations: template.tolerations.clone(),
        priority_class_name: template.priority_class_name.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            // Secret files are mode 0440 with this group.
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volumes: Some(volumes),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// An owner reference to `obj` with `controller: true`, for [`prune_job`].
pub fn owner_of<K: Resource<DynamicType = ()>>(obj: &K) -> Option<OwnerReference> {
    obj.controller_owner_ref(&())
}

/// What a backup Job reported in its termination message.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobResult {
    pub backup_id: String,
    #[serde(default)]
    pub server_version: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    /// Destination URLs (without query) that hold the backup.
    pub committed: Vec<String>,
    #[serde(default)]
    pub failed: Vec<String>,
    /// Destinations read back and checked; `None` when the Job did not verify.
    #[serde(default)]
    pub verified: Option<Vec<String>>,
    pub objects: Vec<ResultObject>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ResultObject {
    /// Key relative to the destination's prefix (`backups/<id>/<part>.lbk`).
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("the Job left no termination message")]
    Empty,
    /// Not a summary: the container failed before writing one and the
    /// message is the tail of its log (FallbackToLogsOnError).
    #[error("the termination message is not a backup summary: {0}")]
    NotASummary(String),
    #[error("the summary names backup id {0:?}, which is not a backup id")]
    BadBackupId(String),
}

/// Parses a backup Job's termination message.
pub fn parse_job_result(termination_message: &str) -> Result<JobResult, ResultError> {
    let text = termination_message.trim();
    if text.is_empty() {
        return Err(ResultError::Empty);
    }
    let result: JobResult =
        serde_json::from_str(text).map_err(|e| ResultError::NotASummary(e.to_string()))?;
    if !crate::catalog::valid_backup_id(&result.backup_id) {
        return Err(ResultError::BadBackupId(result.backup_id));
    }
    Ok(result)
}

impl JobResult {
    /// The run's artifacts: every object in every destination of `policy`
    /// that holds the backup, keyed as in that destination's bucket.
    pub fn artifacts(&self, policy: &BackupPolicy) -> Vec<Artifact> {
        let (Some(namespace), Some(name)) = (
            policy.metadata.namespace.as_deref(),
            policy.metadata.name.as_deref(),
        ) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for dest in &policy.spec.destinations {
            let base = destination_base(namespace, name, dest);
            if !self.committed.contains(&base) {
                continue;
            }
            let verified = self.verified.as_ref().is_some_and(|v| v.contains(&base));
            let dir = base
                .strip_prefix(&format!("s3://{}/", dest.s3.bucket))
                .unwrap_or_default();
            for o in &self.objects {
                out.push(Artifact {
                    destination: dest.name.clone(),
                    key: format!("{dir}/{}", o.key),
                    bytes: i64::try_from(o.size).unwrap_or(i64::MAX),
                    sha256: o.sha256.clone(),
                    verified,
                });
            }
        }
        out
    }

    /// Names of the policy's destinations that hold the backup.
    pub fn committed_destinations(&self, policy: &BackupPolicy) -> Vec<String> {
        let namespace = policy.namespace().unwrap_or_default();
        let name = policy.name_any();
        policy
            .spec
            .destinations
            .iter()
            .filter(|d| {
                self.committed
                    .contains(&destination_base(&namespace, &name, d))
            })
            .map(|d| d.name.clone())
            .collect()
    }

    /// True when every committed destination was read back and passed.
    pub fn fully_verified(&self) -> bool {
        self.verified
            .as_ref()
            .is_some_and(|v| self.committed.iter().all(|c| v.contains(c)))
    }

    /// Bytes stored per destination.
    pub fn stored_bytes(&self) -> i64 {
        i64::try_from(self.bytes_out).unwrap_or(i64::MAX)
    }

    pub fn source_info(&self) -> SourceInfo {
        SourceInfo {
            server_version: (!self.server_version.is_empty()).then(|| self.server_version.clone()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BackupRunSpec, LocalRef, Tier};
    use serde_json::{json, Value};

    fn policy(extra: Value) -> BackupPolicy {
        let mut spec = json!({
            "source": {"postgres": {
                "connectionSecretRef": {"name": "orders-db", "passwordKey": "pw"},
                "databases": ["orders", "billing"]}},
            "schedule": {"daily": "0 2 * * *"},
            "destinations": [
                {"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk-primary",
                    "prefix": "/prod/", "endpoint": "http://minio:9000",
                    "storageClass": "STANDARD_IA",
                    "credentialsSecretRef": {"name": "s3-primary"}}},
                {"name": "dr-eu", "s3": {"region": "eu-west-1", "bucket": "bk-dr",
                    "credentialsSecretRef": {"name": "s3-dr", "accessKeyIdKey": "id",
                                             "secretAccessKeyKey": "secret"}}},
                {"name": "ambient", "s3": {"region": "us-west-2", "bucket": "bk-irsa"}}
            ],
            "encryption": {"keySecretRef": {"name": "backup-keys"}},
            "jobTemplate": {
                "resources": {"limits": {"memory": "256Mi"}},
                "nodeSelector": {"pool": "backup"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}],
                "serviceAccountName": "orders-backup"
            }
        });
        merge(&mut spec, extra);
        let mut p = BackupPolicy::new("orders", serde_json::from_value(spec).unwrap());
        p.metadata.namespace = Some("shop".into());
        p.metadata.uid = Some("policy-uid".into());
        p
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn run(name: &str) -> BackupRun {
        let mut r = BackupRun::new(
            name,
            BackupRunSpec {
                policy_ref: LocalRef::new("orders"),
                tier: Tier::Daily,
                kind: RunKind::Full,
                scheduled_at: None,
            },
        );
        r.metadata.namespace = Some("shop".into());
        r.metadata.uid = Some("run-uid-1".into());
        r
    }

    fn cfg() -> JobConfig {
        JobConfig::new("registry.example/lifeboat:1.0")
    }

    fn pod(job: &Job) -> &PodSpec {
        job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn args(job: &Job) -> Vec<String> {
        pod(job).containers[0].args.clone().unwrap()
    }

    fn values_after(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn secrets_reach_the_job_by_reference_only() {
        // (tests/job_runs.rs also checks that no fixture Secret value appears
        // in the serialised Job.)
        let job = backup_job(&policy(json!({})), &run("orders-daily-1"), &cfg()).unwrap();
        // Every env var is either a reference or a non-secret path/setting.
        for e in pod(&job).containers[0].env.as_ref().unwrap() {
            match (&e.value, &e.value_from) {
                (Some(v), None) => {
                    assert!(["LIFEBOAT_KEY_FILE", "TMPDIR"].contains(&e.name.as_str()));
                    assert!(v.starts_with('/'), "{}={v}", e.name);
                }
                (None, Some(src)) => {
                    let r = src.secret_key_ref.as_ref().unwrap();
                    assert_eq!(r.name, "orders-db");
                }
                other => panic!("{}: {other:?}", e.name),
            }
        }
        // No password anywhere in argv, only the file it is in.
        let a = args(&job);
        assert!(!a.iter().any(|x| x == "--password"));
        assert_eq!(
            values_after(&a, "--password-file"),
            ["/var/run/lifeboat/db/password"]
        );
    }

    #[test]
    fn database_connection_comes_from_secret_references() {
        let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
        let env = pod(&job).containers[0].env.clone().unwrap();
        let reference = |var: &str| {
            let e = env.iter().find(|e| e.name == var).unwrap();
            let r = e
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .clone()
                .unwrap();
            (r.name, r.key, r.optional)
        };
        assert_eq!(
            reference("PGHOST"),
            ("orders-db".into(), "host".into(), None)
        );
        assert_eq!(
            reference("PGPORT"),
            ("orders-db".into(), "port".into(), Some(true))
        );
        assert_eq!(
            reference("PGUSER"),
            ("orders-db".into(), "user".into(), None)
        );
        assert_eq!(
            reference("PGSSLMODE"),
            ("orders-db".into(), "sslmode".into(), Some(true))
        );
        assert!(!env.iter().any(|e| e.name.contains("PASSWORD")));

        let vols = pod(&job).volumes.clone().unwrap();
        let secret = |name: &str| {
            vols.iter()
                .find(|v| v.name == name)
                .unwrap()
                .secret
                .clone()
                .unwrap()
        };
        let db = secret("db");
        assert_eq!(db.secret_name.as_deref(), Some("orders-db"));
        let items = db.items.unwrap();
        assert_eq!(items.len(), 1, "only the password is mounted");
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("pw", "password")
        );
        let keys = secret("keys");
        assert_eq!(keys.secret_name.as_deref(), Some("backup-keys"));
        assert_eq!(
            env.iter()
                .find(|e| e.name == "LIFEBOAT_KEY_FILE")
                .unwrap()
                .value
                .as_deref(),
            Some("/var/run/lifeboat/keys/keys")
        );
    }

    #[test]
    fn every_destination_gets_its_url_and_its_own_credentials() {
        let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
        let to = values_after(&args(&job), "--to");
        assert_eq!(
            to,
            [
                "s3://bk-primary/prod/shop/orders?region=us-east-1&endpoint=http%3A%2F%2Fminio%3A9000&storage-class=STANDARD_IA&credentials=%2Fvar%2Frun%2Flifeboat%2Fs3%2Fprimary",
                "s3://bk-dr/shop/orders?region=eu-west-1&credentials=%2Fvar%2Frun%2Flifeboat%2Fs3%2Fdr-eu",
                // No Secret: the ambient identity (IRSA), no credentials=.
                "s3://bk-irsa/shop/orders?region=us-west-2",
            ]
        );
        let p = pod(&job);
        let mounts = p.containers[0].volume_mounts.clone().unwrap();
        let mounted = |path: &str| {
            let m = mounts.iter().find(|m| m.mount_path == path).unwrap();
            assert_eq!(m.read_only, Some(true));
            let v = p
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .find(|v| v.name == m.name)
                .unwrap();
            let s = v.secret.clone().unwrap();
            let items: Vec<_> = s
                .items
                .unwrap()
                .into_iter()
                .map(|i| (i.key, i.path))
                .collect();
            (s.secret_name.unwrap(), items)
        };
        assert_eq!(
            mounted("/var/run/lifeboat/s3/primary"),
            (
                "s3-primary".to_string(),
                vec![
                    ("AWS_ACCESS_KEY_ID".into(), "AWS_ACCESS_KEY_ID".into()),
                    (
                        "AWS_SECRET_ACCESS_KEY".into(),
                        "AWS_SECRET_ACCESS_KEY".into()
                    )
                ]
            )
        );
        assert_eq!(
            mounted("/var/run/lifeboat/s3/dr-eu"),
            (
                "s3-dr".to_string(),
                vec![
                    ("id".into(), "AWS_ACCESS_KEY_ID".into()),
                    ("secret".into(), "AWS_SECRET_ACCESS_KEY".into())
                ]
            )
        );
        assert!(!mounts.iter().any(|m| m.mount_path.ends_with("/ambient")));
    }

    #[test]
    fn backup_args_carry_databases_policy_tier_report_and_verification() {
        let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
        let a = args(&job);
        assert_eq!(a[0], "backup");
        assert_eq!(values_after(&a, "--database"), ["orders", "billing"]);
        assert_eq!(values_after(&a, "--policy"), ["orders"]);
        assert_eq!(values_after(&a, "--tier"), ["daily"]);
        assert_eq!(values_after(&a, "--compression"), ["zstd"]);
        assert_eq!(values_after(&a, "--report-file"), [TERMINATION_LOG]);
        assert!(a.contains(&"--json".to_string()));
        assert!(
            a.contains(&"--verify".to_string()),
            "readBack defaults to on"
        );
        assert_eq!(
            pod(&job).containers[0].command.as_deref(),
            Some(&["lifeboat".to_string()][..])
        );

        let p = policy(json!({"verification": {"readBack": false},
            "source": {"postgres": {"databases": [], "allDatabases": true}},
            "encryption": {"compression": "gzip"}}));
        let a = backup_args(&p, &run("r"), &cfg()).unwrap();
        assert!(!a.contains(&"--verify".to_string()));
        assert!(a.contains(&"--all-databases".to_string()));
        assert!(values_after(&a, "--database").is_empty());
        assert_eq!(values_after(&a, "--compression"), ["gzip"]);
    }

    #[test]
    fn pod_is_locked_down() {
        let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
        let p = pod(&job);
        assert_eq!(p.restart_policy.as_deref(), Some("Never"));
        assert_eq!(p.automount_service_account_token, Some(false));
        let psc = p.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65532));
        assert_eq!(psc.fs_group, Some(65532));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let c = &p.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(65532));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        // A writable /tmp (TMPDIR) is the only writable place.
        let tmp = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == "/tmp")
            .unwrap();
        assert!(p
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .any(|v| v.name == tmp.name && v.empty_dir.is_some()));
        assert!(c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "TMPDIR" && e.value.as_deref() == Some("/tmp")));
        for v in p.volumes.as_ref().unwrap() {
            if let Some(s) = &v.secret {
                assert_eq!(s.default_mode, Some(0o440), "{}", v.name);
            }
        }
    }

    #[test]
    fn job_template_is_applied() {
        let job = backup_job(&policy(json!({})), &run("r"), &cfg()).unwrap();
        let p = pod(&job);
        assert_eq!(p.service_account_name.as_deref(), Some("orders-backup"));
        assert_eq!(p.node_selector.as_ref().unwrap()["pool"], "backup");
        assert_eq!(
            p.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        let limits = p.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .clone()
            .unwrap();
        assert_eq!(limits["memory"].0, "256Mi");
        assert_eq!(
            p.containers[0].image.as_deref(),
            Some("registry.example/lifeboat:1.0")
        );

        let mut c = cfg();
        c.service_account = Some("lifeboat-agent".into());
        let p2 = policy(
            json!({"jobTemplate": {"serviceAccountName": null, "image": "mine:2",
                                               "ttlSecondsAfterFinished": 60}}),
        );
        let job = backup_job(&p2, &run("r"), &c).unwrap();
        assert_eq!(
            pod(&job).service_account_name.as_deref(),
            Some("lifeboat-agent")
        );
        assert_eq!(pod(&job).containers[0].image.as_deref(), Some("mine:2"));
        assert_eq!(
            job.spec.as_ref().unwrap().ttl_seconds_after_finished,
            Some(60)
        );
    }

    #[test]
    fn job_is_owned_by_the_run_labelled_and_named_deterministically() {
        let r = run("orders-daily-20261125t0200");
        let a = backup_job(&policy(json!({})), &r, &cfg()).unwrap();
        let b = backup_job(&policy(json!({})), &r, &cfg()).unwrap();
        assert_eq!(a, b, "same inputs, same Job");
        assert_eq!(
            a.metadata.name.as_deref(),
            Some("orders-daily-20261125t0200-backup")
        );
        assert_eq!(a.metadata.namespace.as_deref(), Some("shop"));
        let owners = a.metadata.owner_references.clone().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "BackupRun");
        assert_eq!(owners[0].api_version, "lifeboat.dev/v1alpha1");
        assert_eq!(owners[0].name, "orders-daily-20261125t0200");
        assert_eq!(owners[0].uid, "run-uid-1");
        assert_eq!(owners[0].controller, Some(true));
        let labels = a.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_POLICY], "orders");
        assert_eq!(labels[LABEL_RUN], "orders-daily-20261125t0200");
        assert_eq!(labels[LABEL_TIER], "daily");
        assert_eq!(labels["app.kubernetes.io/name"], "lifeboat");
        assert_eq!(labels[LABEL_COMPONENT], "backup");
        let spec = a.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        assert_eq!(
            spec.template.metadata.as_ref().unwrap().labels.as_ref(),
            Some(&labels)
        );
    }

    #[test]
    fn long_names_stay_valid_and_distinct() {
        let long_a = format!("{}-a", "x".repeat(200));
        let long_b = format!("{}-b", "x".repeat(200));
        let a = backup_job_name(&long_a);
        let b = backup_job_name(&long_b);
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.ends_with("-backup"));
        assert!(crate::api::is_dns_label(&a), "{a}");
        assert_eq!(a, backup_job_name(&long_a));
        let job = backup_job(&policy(json!({})), &run(&long_a), &cfg()).unwrap();
        let labels = job.metadata.labels.unwrap();
        assert!(labels[LABEL_RUN].len() <= 63);
        assert_eq!(prune_job_name("r1"), "r1-prune");
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let p = policy(json!({}));
        let mut r = run("r");
        r.metadata.uid = None;
        assert_eq!(
            backup_job(&p, &r, &cfg()).unwrap_err().field(),
            "metadata.uid"
        );
        let mut r = run("r");
        r.spec.policy_ref = LocalRef::new("other");
        assert_eq!(
            backup_job(&p, &r, &cfg()).unwrap_err().field(),
            "spec.policyRef.name"
        );
        let mut r = run("r");
        r.metadata.namespace = Some("elsewhere".into());
        assert_eq!(
            backup_job(&p, &r, &cfg()).unwrap_err().field(),
            "metadata.namespace"
        );
        let physical =
            policy(json!({"source": {"postgres": {"method": "physical", "databases": []}}}));
        let a = args(&backup_job(&physical, &run("r"), &cfg()).unwrap());
        let i = a.iter().position(|x| x == "--method").unwrap();
        assert_eq!(a[i + 1], "physical");
        assert!(!a.contains(&"--database".to_string()));
        let volume =
            policy(json!({"source": {"postgres": null, "volume": {"claimName": "uploads"}}}));
        assert_eq!(
            backup_job(&volume, &run("r"), &cfg()).unwrap_err().field(),
            "spec.source.volume"
        );
        let mut drill = run("r");
        drill.spec.kind = RunKind::Drill;
        assert_eq!(
            backup_job(&p, &drill, &cfg()).unwrap_err().field(),
            "spec.kind"
        );
        let owner = owner_of(&run("r")).unwrap();
        assert_eq!(
            prune_job(&p, "r", "not-an-id", owner, &cfg()).unwrap_err(),
            JobError::BadBackupId("not-an-id".into())
        );
    }

    #[test]
    fn prune_job_deletes_one_backup_from_every_destination() {
        let p = policy(json!({}));
        let r = run("orders-daily-1");
        let id = "20261125T020000.000Z-a1b2c3";
        let job = prune_job(&p, "orders-daily-1", id, owner_of(&r).unwrap(), &cfg()).unwrap();
        let a = args(&job);
        assert_eq!(a[0], "prune");
        assert_eq!(values_after(&a, "--backup"), [id]);
        assert_eq!(values_after(&a, "--from").len(), 3);
        assert!(values_after(&a, "--from")[0]
            .contains("credentials=%2Fvar%2Frun%2Flifeboat%2Fs3%2Fprimary"));
        assert_eq!(job.metadata.name.as_deref(), Some("orders-daily-1-prune"));
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[ANNOTATION_BACKUP_ID],
            id
        );
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()[LABEL_COMPONENT],
            "prune"
        );
        assert_eq!(
            job.metadata.owner_references.as_ref().unwrap()[0].uid,
            "run-uid-1"
        );
        // Pruning needs no database and no key.
        let c = &pod(&job).containers[0];
        assert!(!c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name.starts_with("PG")));
        let vols: Vec<_> = pod(&job)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| v.name.clone())
            .collect();
        assert_eq!(vols, ["tmp", "s3-0", "s3-1"]);
    }

    fn summary(verified: Option<Vec<&str>>) -> String {
        json!({
            "backup_id": "20261125T020000.000Z-a1b2c3",
            "server_version": "15.8",
            "bytes_in": 1000, "bytes_out": 400, "seconds": 1.5,
            "committed": ["s3://bk-primary/prod/shop/orders", "s3://bk-irsa/shop/orders"],
            "failed": ["s3://bk-dr/shop/orders"],
            "verified": verified,
            "objects": [
                {"key": "backups/20261125T020000.000Z-a1b2c3/globals.lbk", "size": 100, "sha256": "a".repeat(64)},
                {"key": "backups/20261125T020000.000Z-a1b2c3/db-0.lbk", "size": 300, "sha256": "b".repeat(64)}
            ]
        })
        .to_string()
    }

    #[test]
    fn job_result_becomes_artifacts_per_destination() {
        let r = parse_job_result(&format!(
            "{}\n",
            summary(Some(vec!["s3://bk-primary/prod/shop/orders"]))
        ))
        .unwrap();
        assert_eq!(r.backup_id, "20261125T020000.000Z-a1b2c3");
        let p = policy(json!({}));
        let arts = r.artifacts(&p);
        assert_eq!(arts.len(), 4);
        assert_eq!(
            arts[0],
            Artifact {
                destination: "primary".into(),
                key: "prod/shop/orders/backups/20261125T020000.000Z-a1b2c3/globals.lbk".into(),
                bytes: 100,
                sha256: "a".repeat(64),
                verified: true,
            }
        );
        assert_eq!(arts[2].destination, "ambient");
        assert_eq!(
            arts[3].key,
            "shop/orders/backups/20261125T020000.000Z-a1b2c3/db-0.lbk"
        );
        assert!(!arts[2].verified, "ambient was not verified");
        assert!(!r.fully_verified());
        assert_eq!(r.committed_destinations(&p), ["primary", "ambient"]);
        assert_eq!(r.stored_bytes(), 400);
        assert_eq!(r.source_info().server_version.as_deref(), Some("15.8"));

        let unverified = parse_job_result(&summary(None)).unwrap();
        assert!(unverified.artifacts(&p).iter().all(|a| !a.verified));
    }

    #[test]
    fn a_log_tail_is_not_a_result() {
        assert!(matches!(parse_job_result("  "), Err(ResultError::Empty)));
        assert!(matches!(
            parse_job_result("error: pg_dump failed: connection refused"),
            Err(ResultError::NotASummary(_))
        ));
        let bad = summary(None).replace("20261125T020000.000Z-a1b2c3", "../../etc");
        assert!(matches!(
            parse_job_result(&bad),
            Err(ResultError::BadBackupId(_))
        ));
    }
}
