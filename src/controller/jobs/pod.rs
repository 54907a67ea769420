//! The shape every data-plane pod shares: one non-root container with a
//! read-only root, the policy's jobTemplate applied, and what it is given
//! ([`PodNeeds`]) — all by reference: Secret volumes exposing only the keys
//! it needs, environment variables from `secretKeyRef`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::destinations;
use super::{JobConfig, COMMAND, CONTAINER, KEY_SECRET_KEY, RUN_AS};
use crate::api::policy::JobTemplate;
use crate::api::{BackupPolicy, ConnectionSecretRef, S3CredentialsRef};
use crate::wire::TERMINATION_LOG;

/// What a pod is given beyond the common shape: arguments, environment,
/// volumes and their mounts, and the service account it runs as.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodNeeds {
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
    /// Used when the policy's jobTemplate names none.
    pub service_account: Option<String>,
    /// The uid (and gid) the pod runs as, when not the image's ([`RUN_AS`]).
    pub run_as: Option<i64>,
    /// The gid, when not the uid.
    pub run_as_group: Option<i64>,
    /// Capabilities added to the container (which drops all others); only
    /// a pod that runs as root (uid 0) asks for any.
    pub add_capabilities: Vec<String>,

    /// The pod talks to the API server as `service_account` (config
    /// backups): its token is mounted and that account wins over others.
    pub api_access: bool,
}

impl PodNeeds {
    /// Adds `other`'s needs after these.
    pub fn add(&mut self, other: PodNeeds) {
        self.args.extend(other.args);
        self.env.extend(other.env);
        self.volumes.extend(other.volumes);
        self.mounts.extend(other.mounts);
        self.service_account = self.service_account.take().or(other.service_account);
        self.run_as = self.run_as.or(other.run_as);
        self.run_as_group = self.run_as_group.or(other.run_as_group);
        self.add_capabilities.extend(other.add_capabilities);

        self.api_access |= other.api_access;
    }

    /// A writable /tmp (TMPDIR): the root filesystem is read-only, and
    /// temporary files (the libpq passfile) go there.
    pub fn tmp() -> Self {
        PodNeeds {
            env: vec![plain_env("TMPDIR", "/tmp".into())],
            volumes: vec![Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            }],
            mounts: vec![mount("tmp", "/tmp")],
            ..Default::default()
        }
    }

    /// The policy's master keys, mounted as the key file (`LIFEBOAT_KEY_FILE`),
    /// vouching only for this policy's backups (`LIFEBOAT_OWNER`, src/owner.rs).
    pub fn keys(policy: &BackupPolicy, cfg: &JobConfig) -> Self {
        use kube::ResourceExt;
        let owner = format!(
            "{}/{}",
            policy.namespace().unwrap_or_default(),
            policy.name_any()
        );
        PodNeeds {
            env: vec![
                plain_env("LIFEBOAT_KEY_FILE", cfg.key_file()),
                plain_env("LIFEBOAT_OWNER", owner),
            ],
            volumes: vec![secret_volume(
                "keys",
                &policy.spec.encryption.key_secret_ref.name,
                vec![(KEY_SECRET_KEY, KEY_SECRET_KEY)],
            )],
            mounts: vec![mount("keys", &format!("{}/keys", cfg.root()))],
            ..Default::default()
        }
    }

    /// The database connection of `conn`'s Secret: host, port, user and
    /// sslmode as env references, the password as a mounted file
    /// (`--password-file`).
    pub fn database(conn: &ConnectionSecretRef, cfg: &JobConfig) -> Self {
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
        PodNeeds {
            args: vec!["--password-file".into(), cfg.password_file()],
            env: vec![
                env_from_secret("PGHOST", conn.host_key(), false),
                // libpq defaults the port (5432) and sslmode (prefer) when absent.
                env_from_secret("PGPORT", conn.port_key(), true),
                env_from_secret("PGUSER", conn.user_key(), false),
                env_from_secret("PGSSLMODE", conn.sslmode_key(), true),
            ],
            volumes: vec![secret_volume(
                "db",
                &conn.name,
                vec![(conn.password_key(), "password")],
            )],
            mounts: vec![mount("db", &format!("{}/db", cfg.root()))],
            ..Default::default()
        }
    }

    /// What every pod that reads or writes backups gets: /tmp, the master
    /// keys and each destination's credentials.
    pub fn bucket_access(policy: &BackupPolicy, cfg: &JobConfig) -> Self {
        let mut needs = PodNeeds::tmp();
        needs.add(PodNeeds::keys(policy, cfg));
        needs.add(destinations::credentials(policy, cfg));
        needs
    }
}

pub(crate) fn plain_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    }
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

/// An S3 credentials Secret as the volume `volume`, its two keys mounted
/// as `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` files in `dir` (what a
/// location's `credentials=` directory holds).
pub(crate) fn s3_credentials(volume: &str, creds: &S3CredentialsRef, dir: &str) -> PodNeeds {
    PodNeeds {
        volumes: vec![secret_volume(
            volume,
            &creds.name,
            vec![
                (creds.access_key_id_key(), "AWS_ACCESS_KEY_ID"),
                (creds.secret_access_key_key(), "AWS_SECRET_ACCESS_KEY"),
            ],
        )],
        mounts: vec![mount(volume, dir)],
        ..Default::default()
    }
}

/// A Job's identity and ownership.
pub(crate) struct JobMeta<'a> {
    pub name: String,
    pub namespace: &'a str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner: OwnerReference,
}

/// A Job running one data-plane pod, never restarted in place (a retry is
/// a new pod, within the backoff limit).
pub(crate) fn job(
    meta: JobMeta<'_>,
    needs: PodNeeds,
    policy: &BackupPolicy,
    cfg: &JobConfig,
) -> Job {
    let template = policy.spec.job_template.clone().unwrap_or_default();
    let pod = pod_spec(policy, cfg, needs, "Never");
    Job {
        metadata: ObjectMeta {
            name: Some(meta.name),
            namespace: Some(meta.namespace.into()),
            labels: Some(meta.labels.clone()),
            annotations: (!meta.annotations.is_empty()).then_some(meta.annotations),
            owner_references: Some(vec![meta.owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(cfg.backoff_limit),
            active_deadline_seconds: template
                .active_deadline_seconds
                .or(cfg.active_deadline_seconds),
            ttl_seconds_after_finished: Some(
                template
                    .ttl_seconds_after_finished
                    .unwrap_or(cfg.ttl_seconds_after_finished),
            ),
            template: PodTemplateSpec {
                metadata: Some(pod_meta(&template, meta.labels)),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// A pod's labels and annotations: the jobTemplate's, then lifeboat's own
/// labels over them (the Job and its status reads select on those).
pub(crate) fn pod_meta(template: &JobTemplate, labels: BTreeMap<String, String>) -> ObjectMeta {
    let mut all = template.pod_labels.clone().unwrap_or_default();
    all.extend(labels);
    ObjectMeta {
        labels: Some(all),
        annotations: template.pod_annotations.clone(),
        ..Default::default()
    }
}

/// What a pod asks for when the jobTemplate does not say: enough to be
/// scheduled sensibly. No limits: pg_dump's memory grows with the schema.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("250m".into())),
            ("memory".to_string(), Quantity("256Mi".into())),
        ])),
        ..Default::default()
    }
}

/// The pod of every data-plane workload: one non-root container with a
/// read-only root, the policy's jobTemplate applied.
pub(crate) fn pod_spec(
    policy: &BackupPolicy,
    cfg: &JobConfig,
    needs: PodNeeds,
    restart_policy: &str,
) -> PodSpec {
    let template = policy.spec.job_template.clone().unwrap_or_default();
    let uid = needs.run_as.unwrap_or(RUN_AS);
    let gid = needs.run_as_group.unwrap_or(uid);
    // Root only by a policy's explicit opt-in (readAsRoot), with the
    // capabilities it names and no others.
    let non_root = uid != 0;
    let add = (!needs.add_capabilities.is_empty()).then(|| needs.add_capabilities.clone());
    let container = Container {
        name: CONTAINER.into(),
        image: Some(template.image.clone().unwrap_or_else(|| cfg.image.clone())),
        image_pull_policy: cfg.image_pull_policy.clone(),
        command: Some(COMMAND.map(String::from).to_vec()),
        args: Some(needs.args),
        env: Some(
            needs
                .env
                .into_iter()
                .chain(template.env.clone().unwrap_or_default())
                .collect(),
        ),
        volume_mounts: Some(needs.mounts),
        resources: Some(template.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(non_root),
            run_as_user: Some(uid),
            run_as_group: Some(gid),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add,
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
        service_account_name: if needs.api_access {
            needs.service_account
        } else {
            template
                .service_account_name
                .clone()
                .or(needs.service_account)
                .or_else(|| cfg.service_account.clone())
        },
        // Only a config backup talks to the API server (as the account the
        // policy names); IRSA and workload identity bring their own token volume.
        automount_service_account_token: Some(needs.api_access),
        enable_service_links: Some(false),
        node_selector: template.node_selector.clone(),
        tolerations: template.tolerations.clone(),
        priority_class_name: template.priority_class_name.clone(),
        image_pull_secrets: template.image_pull_secrets.clone(),
        affinity: template.affinity.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(non_root),
            run_as_user: Some(uid),
            run_as_group: Some(gid),
            // Secret files are mode 0440 with this group. The kubelet does
            // not apply it to a read-only claim (a volume backup's source).
            fs_group: Some(gid),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        volumes: Some(needs.volumes),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}
