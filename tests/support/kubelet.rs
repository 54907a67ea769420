//! A stand-in kubelet for tests: runs the one container of a Job spec that
//! `controller::jobs` built, as a kubelet would — Secret volumes
//! materialised from fixture Secrets at their mount paths, env
//! `valueFrom.secretKeyRef` resolved from the same fixtures, the container's
//! command and args run with exactly that environment. The only
//! translations: the image's `lifeboat` is the binary under test, the
//! termination message path is a temp file, and a `persistentVolumeClaim`
//! volume is the host directory the test gives for that claim
//! ([`Claims`]): every argument that is the claim's mountPath, or a path
//! under it, is rewritten to the same path under the host directory (as
//! the termination path is); an emptyDir other than /tmp is a fresh
//! directory under the work directory, translated the same way. A
//! read-only mount is not enforced (that would take a bind mount, i.e.
//! root); tests check the source is unchanged.
//!
//! The container runs as its securityContext's `runAsUser` only when that
//! uid is a user of this machine (in /etc/passwd, e.g. postgres): the
//! stand-in has no user namespaces, so any other uid (the image's 65532,
//! also the file Jobs' default) runs as root, as it always has here; tests
//! rely on that. Running as a real user, what the stand-in materialises is
//! owned as the kubelet would own it ([`RunAs`]).
//!
//! A Job the user gave an ApplicationRestore (labelled
//! [`USER_JOB_LABEL`]: a maintenance switch, a smoke test) is not
//! lifeboat's: its container's command and args run as a plain local
//! process (`sh -c ...`) in the work directory, with the same environment
//! rules; its exit status is the pod's. Every other Job must run tini and
//! lifeboat, as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use lifeboat::api::{BackupPolicy, BackupRun, BackupRunSpec, LocalRef, RunKind, Tier};
use lifeboat::controller::app_restore::user_jobs::USER_JOB_LABEL;
use lifeboat::controller::jobs::JobConfig;
use serde_json::json;

use super::*;

/// Secret name → key → value, as the cluster would hold them.
pub type Secrets = BTreeMap<String, BTreeMap<String, String>>;

/// Claim name → the host directory standing in for its volume.
pub type Claims = BTreeMap<String, PathBuf>;

/// What the kubelet would give the container, then the container's exit.
pub struct Ran {
    pub output: Output,
    pub termination_message: String,
}

/// Runs the Job's container locally. Panics, like a pod stuck in
/// CreateContainerConfigError, when a referenced Secret or key is missing.
pub fn execute(job: &Job, secrets: &Secrets, work: &Path) -> Ran {
    execute_with(job, secrets, &Claims::new(), work)
}

/// [`execute`], with the claims the pod may mount. Panics, like a pod stuck
/// Pending, when it mounts a claim `claims` does not have.
pub fn execute_with(job: &Job, secrets: &Secrets, claims: &Claims, work: &Path) -> Ran {
    run_pod(job, secrets, claims, None, work)
}

/// [`execute`] for a pod that talks to the API server as its service
/// account: the token a kubelet would mount is, here, `kubeconfig` for the
/// test's API server (which authorizes nothing itself; SubjectAccessReviews
/// answer from its RBAC objects). Panics when the pod asks for no token.
pub fn execute_api(job: &Job, secrets: &Secrets, kubeconfig: &Path, work: &Path) -> Ran {
    let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let pod = pod.expect("a pod template");
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "no token mounted"
    );
    assert!(pod.service_account_name.is_some(), "no service account");
    run_pod(job, secrets, &Claims::new(), Some(kubeconfig), work)
}

fn run_pod(
    job: &Job,
    secrets: &Secrets,
    claims: &Claims,
    kubeconfig: Option<&Path>,
    work: &Path,
) -> Ran {
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template");
    assert_eq!(pod.containers.len(), 1, "one container");
    let c = &pod.containers[0];
    let run_as = RunAs::of(pod, c);
    let volumes = pod.volumes.clone().unwrap_or_default();
    // (mountPath, host directory) of each claim mounted.
    let mut claim_mounts: Vec<(String, PathBuf)> = Vec::new();

    for m in c.volume_mounts.clone().unwrap_or_default() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("mount of unknown volume {}", m.name));
        let dir = PathBuf::from(&m.mount_path);
        if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().expect("secretName");
            let Some(data) = secrets.get(name) else {
                assert_eq!(s.optional, Some(true), "Secret {name:?} not found");
                continue;
            };
            std::fs::create_dir_all(&dir).unwrap();
            let items: Vec<(String, String)> = match &s.items {
                Some(items) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in items {
                let value = data
                    .get(&key)
                    .unwrap_or_else(|| panic!("Secret {name:?} has no key {key:?}"));
                let file = dir.join(path);
                std::fs::write(&file, value).unwrap();
                // As the kubelet does: the volume's defaultMode (0644 when unset).
                let mode = s.default_mode.unwrap_or(0o644) as u32;
                std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .unwrap();
                if let Some(r) = &run_as {
                    r.own_secret_file(&file, mode);
                }
            }
        } else if let Some(pvc) = &v.persistent_volume_claim {
            let host = claims
                .get(&pvc.claim_name)
                .unwrap_or_else(|| panic!("claim {:?} not found", pvc.claim_name));
            assert!(m.sub_path.is_none(), "subPath mounts are not translated");
            if let Some(r) = &run_as {
                r.mount(host);
            }
            claim_mounts.push((m.mount_path.trim_end_matches('/').to_string(), host.clone()));
        } else if v.empty_dir.is_some() && m.mount_path == "/tmp" {
            // The host's /tmp stands in for the emptyDir the Job mounts there.
        } else if v.empty_dir.is_some() {
            // Any other emptyDir (a drill's scratch space): a fresh
            // directory, its path translated as a claim's. Its sizeLimit is
            // not enforced.
            let host = work.join(format!("emptydir-{}", v.name));
            let _ = std::fs::remove_dir_all(&host);
            std::fs::create_dir_all(&host).unwrap();
            if let Some(r) = &run_as {
                r.own_empty_dir(&host);
            }
            claim_mounts.push((m.mount_path.trim_end_matches('/').to_string(), host));
        } else {
            panic!(
                "volume {} is neither a Secret, a claim nor an emptyDir",
                v.name
            );
        }
    }

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for e in c.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            env.insert(e.name, v);
            continue;
        }
        let r = e
            .value_from
            .and_then(|f| f.secret_key_ref)
            .unwrap_or_else(|| panic!("{}: only secretKeyRef is resolved here", e.name));
        match secrets.get(&r.name).and_then(|d| d.get(&r.key)) {
            Some(v) => {
                env.insert(e.name, v.clone());
            }
            None => assert_eq!(
                r.optional,
                Some(true),
                "{}: Secret {:?} key {:?} not found",
                e.name,
                r.name,
                r.key
            ),
        }
    }

    let command = c.command.clone().expect("a command");
    let labels = job.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key(USER_JOB_LABEL)) {
        return run_user_container(c, &command, &env, run_as.as_ref(), work);
    }
    // The image's init, then lifeboat: run as written, with this build's
    // lifeboat and the host's tini (scripts/testbed.sh installs it). Outside
    // a pod's PID namespace tini is not PID 1, so it reaps as a subreaper.
    assert_eq!(
        command,
        ["/usr/bin/tini", "--", "lifeboat"],
        "tini as PID 1, then the image's lifeboat"
    );
    let termination_path = c
        .termination_message_path
        .clone()
        .unwrap_or("/dev/termination-log".into());
    let termination_file = work.join("termination-log");
    let _ = std::fs::remove_file(&termination_file);
    if let Some(r) = &run_as {
        r.create_termination_file(&termination_file);
    }
    let args: Vec<String> = c
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if a == termination_path {
                return termination_file.to_str().unwrap().to_string();
            }
            for (at, host) in &claim_mounts {
                if a == *at {
                    return host.to_str().unwrap().to_string();
                }
                if let Some(rest) = a.strip_prefix(&format!("{at}/")) {
                    return host.join(rest).to_str().unwrap().to_string();
                }
            }
            a
        })
        .collect();

    let mut cmd = Command::new(&command[0]);
    if let Some(r) = &run_as {
        r.apply(&mut cmd, &command[0]);
    }
    let output = cmd
        .arg(&command[1])
        .arg(bin())
        .args(&args)
        .env_clear()
        .envs(&env)
        .env("TINI_SUBREAPER", "1")
        .env("PATH", std::env::var("PATH").unwrap())
        .env("LIFEBOAT_PG_BIN", pg_bin())
        .envs(kubeconfig.map(|k| ("KUBECONFIG", k)))
        .stdin(Stdio::null())
        .output()
        .expect("lifeboat runs");
    Ran {
        output,
        termination_message: std::fs::read_to_string(&termination_file).unwrap_or_default(),
    }
}

/// A user's container (not lifeboat's): its command and args as a local
/// process. Its termination message is the log's tail only with
/// FallbackToLogsOnError (the kubelet's default policy, File, leaves none
/// when the program writes none).
fn run_user_container(
    c: &Container,
    command: &[String],
    env: &BTreeMap<String, String>,
    run_as: Option<&RunAs>,
    work: &Path,
) -> Ran {
    assert_ne!(
        command.get(2).map(String::as_str),
        Some("lifeboat"),
        "a user's Job runs the user's program"
    );
    assert!(c.env_from.is_none(), "envFrom is not resolved here");
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&command[0]);
    if let Some(r) = run_as {
        cmd.uid(r.uid).gid(r.gid);
    }
    let output = cmd
        .args(&command[1..])
        .args(c.args.clone().unwrap_or_default())
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap())
        .current_dir(work)
        .stdin(Stdio::null())
        .output()
        .expect("the user's program runs");
    let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    let termination_message = match fallback && !output.status.success() {
        true => stderr(&output),
        false => String::new(),
    };
    Ran {
        output,
        termination_message,
    }
}

/// A container that runs as a user of this machine: the ids it runs as,
/// and the pod's fsGroup.
struct RunAs {
    uid: u32,
    gid: u32,
    fs_group: Option<u32>,
}

impl RunAs {
    /// The container's `runAsUser` (else the pod's) when this machine has
    /// that user and it is not root; its gid is `runAsGroup` (container,
    /// then pod), else the user's own. None: the container runs as root.
    fn of(pod: &PodSpec, c: &Container) -> Option<RunAs> {
        let psc = pod.security_context.as_ref();
        let csc = c.security_context.as_ref();
        let uid = csc.and_then(|s| s.run_as_user);
        let uid = u32::try_from(uid.or(psc.and_then(|s| s.run_as_user))?).ok()?;
        let own_gid = user_gid(uid).filter(|_| uid != 0)?;
        let gid = csc.and_then(|s| s.run_as_group);
        let gid = gid.or(psc.and_then(|s| s.run_as_group));
        let gid = gid.map_or(own_gid, |g| u32::try_from(g).unwrap());
        let fs_group = psc
            .and_then(|s| s.fs_group)
            .map(|g| u32::try_from(g).unwrap());
        // The kubelet adds fsGroup to the supplementary groups; std's
        // CommandExt sets none, so only an fsGroup that is the gid works.
        assert!(
            fs_group.is_none_or(|g| g == gid),
            "fsGroup {fs_group:?} other than the gid {gid}: supplementary groups are not emulated"
        );
        Some(RunAs { uid, gid, fs_group })
    }

    /// A Secret volume's file: with fsGroup, the kubelet gives it to that
    /// group and adds read for owner and group (a read-only volume).
    fn own_secret_file(&self, file: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        self.mount(file);
        let Some(g) = self.fs_group else { return };
        std::os::unix::fs::chown(file, Some(0), Some(g)).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode | 0o440)).unwrap();
    }

    /// An emptyDir: the kubelet makes it 0777.
    fn own_empty_dir(&self, dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        self.mount(dir);
    }

    /// The termination-log file: the kubelet creates it mode 0666.
    fn create_termination_file(&self, file: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(file, "").unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o666)).unwrap();
        self.mount(file);
    }

    /// What is mounted at `path` in a pod is reachable there: every
    /// directory above it on this machine gets o+x where it lacks it (a
    /// test's temp directory is 0700).
    fn mount(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        for dir in path.ancestors().skip(1).filter(|d| d.is_dir()) {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode();
            if mode & 0o001 == 0 {
                let open = std::fs::Permissions::from_mode(mode | 0o001);
                std::fs::set_permissions(dir, open).unwrap();
            }
        }
    }

    /// Runs `cmd` as the user; `init` (tini) and this build's lifeboat, the
    /// image's programs, must be reachable and executable by anyone.
    fn apply(&self, cmd: &mut Command, init: &str) {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        for program in [Path::new(init), Path::new(bin())] {
            self.mount(program);
            let mode = std::fs::metadata(program).unwrap().permissions().mode();
            assert!(
                mode & 0o001 != 0,
                "{} is not executable by others",
                program.display()
            );
        }
        cmd.uid(self.uid).gid(self.gid);
    }
}

/// The primary gid of the user with `uid` in /etc/passwd, if there is one.
fn user_gid(uid: u32) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2] == uid.to_string()).then(|| f[3].parse().ok())?
    })
}

/// A run of the [`world`]'s policy `orders` in `shop`, as the schedule
/// makes one for `tier`.
pub fn run_of(name: &str, tier: Tier) -> BackupRun {
    let mut r = BackupRun::new(
        name,
        BackupRunSpec {
            policy_ref: LocalRef::new("orders"),
            tier,
            kind: RunKind::Full,
            scheduled_at: None,
            deletion_policy: lifeboat::api::DeletionPolicy::Retain,
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.uid = Some(format!("uid-{name}"));
    r
}

/// Builds the backup Job of run `name` of the world's policy, checks that
/// it holds no secret value, runs it with `claims` and returns its
/// summary; its output must name no secret either.
pub fn back_up(
    w: &World,
    claims: &Claims,
    name: &str,
    tier: Tier,
) -> lifeboat::wire::BackupSummary {
    let job =
        lifeboat::controller::jobs::backup_job(&w.policy, &run_of(name, tier), &w.cfg).unwrap();
    let spec = serde_json::to_string(&job).unwrap();
    let ran = execute_with(&job, &w.secrets, claims, w.work.path());
    let log = format!("{}{}", stdout(&ran.output), stderr(&ran.output));
    for (secret, data) in &w.secrets {
        for (key, value) in data {
            // The database's address and user are not secret; its password is.
            let public = secret == "orders-db" && ["host", "port", "user"].contains(&&**key);
            let value = value.trim();
            assert!(
                public || !spec.contains(value),
                "{secret}/{key} is in the Job"
            );
            assert!(
                public || !log.contains(value),
                "{secret}/{key} is in the output"
            );
        }
    }
    assert!(ran.output.status.success(), "the Job failed: {log}");
    lifeboat::wire::BackupSummary::parse(&ran.termination_message).expect("a summary")
}

/// A policy over two buckets of the test S3 server, a database with 500
/// orders, and the fixture Secrets its Jobs reference.
pub struct World {
    pub policy: BackupPolicy,
    pub secrets: Secrets,
    pub cfg: JobConfig,
    /// Test-bed URLs of the two buckets (for listing them).
    pub buckets: [String; 2],
    pub db: String,
    pub _mounts: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

pub fn world() -> World {
    // The role and its grant come from scripts/testbed.sh.
    let db = create_db("jobrun");
    psql(
        &db,
        "create table orders (id int primary key, item text); \
         insert into orders select i, 'item ' || i from generate_series(1, 500) i;",
    );

    let buckets = [bucket("us-east-1"), bucket("eu-west-1")];
    let (b0, r0) = bucket_and_region(&buckets[0]);
    let (b1, r1) = bucket_and_region(&buckets[1]);
    let spec = json!({
        "source": {"postgres": {"connectionSecretRef": {"name": "orders-db"}, "databases": [db]}},
        "schedule": {"daily": "0 2 * * *"},
        "destinations": [
            {"name": "primary", "s3": {"region": r0, "bucket": b0, "prefix": "prod",
                "endpoint": s3_endpoint(), "credentialsSecretRef": {"name": "s3-primary"}}},
            {"name": "dr-eu", "s3": {"region": r1, "bucket": b1, "prefix": "prod",
                "endpoint": s3_endpoint(),
                "credentialsSecretRef": {"name": "s3-dr", "accessKeyIdKey": "id",
                                         "secretAccessKeyKey": "secret"}}}
        ],
        "encryption": {"keySecretRef": {"name": "backup-keys"}}
    });
    let mut policy = BackupPolicy::new("orders", serde_json::from_value(spec).unwrap());
    policy.metadata.namespace = Some("shop".into());
    policy.metadata.uid = Some("policy-uid".into());
    policy.spec.validate().expect("a valid policy");

    let work = tempfile::tempdir().unwrap();
    let key_file = keyfile(work.path(), "k1");
    let secrets: Secrets = [
        (
            "orders-db",
            vec![
                ("host", "127.0.0.1".to_string()),
                ("port", pg_port()),
                ("user", "lifeboat_pw".to_string()),
                ("password", PW_ROLE_PASSWORD.to_string()),
            ],
        ),
        (
            "s3-primary",
            vec![
                ("AWS_ACCESS_KEY_ID", "AKIAJOBRUNPRIMARY".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "jobrun-primary-secret".to_string()),
            ],
        ),
        (
            "s3-dr",
            vec![
                ("id", "AKIAJOBRUNDR".to_string()),
                ("secret", "jobrun-dr-secret".to_string()),
            ],
        ),
        (
            "backup-keys",
            vec![("keys", std::fs::read_to_string(&key_file).unwrap())],
        ),
    ]
    .into_iter()
    .map(|(name, data)| {
        (
            name.to_string(),
            data.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        )
    })
    .collect();

    let mounts = tempfile::tempdir().unwrap();
    let mut cfg = JobConfig::new("lifeboat:test");
    cfg.mount_root = mounts.path().to_str().unwrap().to_string();
    World {
        policy,
        secrets,
        cfg,
        buckets,
        db,
        _mounts: mounts,
        work,
    }
}
