//! The pod side of file backups and restores on a PersistentVolumeClaim:
//! the claim mounted at a fixed path (read-only for a backup), the
//! identity the pod reads or writes as, and — for a ReadWriteOnce claim a
//! running pod already mounts — the node the Job must run on. Pure: the
//! controller reads the claim and the pods and hands them in.
//!
//! The pod keeps its fsGroup (the Secret files are 0440 for that group):
//! the kubelet applies fsGroup ownership only to writable mounts, so the
//! read-only claim's files keep their group.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume, VolumeMount,
};

use super::pod::PodNeeds;
use crate::api::policy::VolumeSource;
use crate::schedule::Tier;

/// Where a volume backup's claim is mounted (read-only).
pub const SOURCE_MOUNT: &str = "/var/lib/lifeboat/source";
/// The only capability a `readAsRoot` backup gets: read any file and search
/// any directory, whatever their modes; nothing else root can do.
pub const READ_CAPABILITY: &str = "DAC_READ_SEARCH";

/// `<mount>/<sub>`, or the mount itself for an empty `sub`.
pub fn path_in(mount: &str, sub: &str) -> String {
    let sub = sub.trim_matches('/');
    if sub.is_empty() {
        mount.to_string()
    } else {
        format!("{mount}/{sub}")
    }
}

/// The claim as a pod volume named `name`, mounted at `at`.
pub fn claim_needs(name: &str, claim: &str, at: &str, read_only: bool) -> PodNeeds {
    PodNeeds {
        volumes: vec![Volume {
            name: name.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: read_only.then_some(true),
            }),
            ..Default::default()
        }],
        mounts: vec![VolumeMount {
            name: name.into(),
            mount_path: at.into(),
            read_only: read_only.then_some(true),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A volume source's part of its backup pod: `--path` under the read-only
/// mount, the globs, and the identity it reads as.
pub fn backup_needs(v: &VolumeSource) -> PodNeeds {
    let mut needs = claim_needs("source", &v.claim_name, SOURCE_MOUNT, true);
    needs
        .args
        .extend(["--path".into(), path_in(SOURCE_MOUNT, v.sub_dir())]);
    for g in &v.include {
        needs.args.extend(["--include".into(), g.clone()]);
    }
    for g in &v.exclude {
        needs.args.extend(["--exclude".into(), g.clone()]);
    }
    if v.skip_unreadable {
        needs.args.push("--skip-unreadable".into());
    }
    let (uid, gid) = v.uid_gid();
    needs.run_as = Some(uid);
    needs.run_as_group = Some(gid);
    if v.read_as_root {
        needs.add_capabilities = vec![READ_CAPABILITY.into()];
    }
    needs
}

/// The weekly and monthly tiers re-read every file or object (`--full`): a
/// change the file's times and inode (an object's size and ETag) hide is
/// caught within a week.
pub fn tier_args(tier: Tier) -> Vec<String> {
    match tier {
        Tier::Weekly | Tier::Monthly => vec!["--full".into()],
        Tier::Daily | Tier::Manual => Vec::new(),
    }
}

/// Whether the claim may be mounted read-write by one node only.
pub fn is_single_node(pvc: &PersistentVolumeClaim) -> bool {
    let modes = pvc
        .status
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .or_else(|| pvc.spec.as_ref().and_then(|s| s.access_modes.clone()))
        .unwrap_or_default();
    modes.iter().any(|m| m == "ReadWriteOnce")
}

/// The node of a running pod that mounts `claim`, when the claim is
/// ReadWriteOnce: a Job elsewhere could not mount it.
pub fn node_for(claim: &str, pvc: Option<&PersistentVolumeClaim>, pods: &[Pod]) -> Option<String> {
    if !pvc.is_some_and(is_single_node) {
        return None;
    }
    pods.iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .is_some_and(|vs| {
                    vs.iter().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == claim)
                    })
                })
        })
        .find_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
}

/// Requires the Job's pod to run on `node` (by the node's name, as a
/// DaemonSet's pods are placed), on top of the template's own node
/// affinity: each of its terms gets the requirement.
pub fn pin_to_node(job: &mut Job, node: &str) {
    let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    let on_node = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = pod.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: Vec::new(),
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields
            .get_or_insert_with(Vec::new)
            .push(on_node.clone());
    }
}

/// The claim a volume policy's Job mounts, if any.
pub fn claim_of(job: &Job) -> Option<String> {
    job.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(modes: &[&str]) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": modes}}),
        )
        .unwrap()
    }

    fn pod(claim: &str, node: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("app-{node}")},
            "spec": {"nodeName": node, "containers": [{"name": "app"}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn a_running_pod_of_a_single_node_claim_names_the_node() {
        let pods = [
            pod("other", "n1", "Running"),
            pod("data", "n2", "Succeeded"),
            pod("data", "n3", "Running"),
        ];
        let rwo = pvc(&["ReadWriteOnce"]);
        assert_eq!(node_for("data", Some(&rwo), &pods).as_deref(), Some("n3"));
        assert_eq!(
            node_for("data", Some(&pvc(&["ReadWriteMany"])), &pods),
            None
        );
        assert_eq!(node_for("data", None, &pods), None);
        assert_eq!(node_for("data", Some(&rwo), &pods[..2]), None);
    }

    #[test]
    fn pinning_adds_the_node_to_every_term() {
        let mut job: Job = serde_json::from_value(json!({"spec": {"template": {"spec": {
            "containers": [],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}
        }}}}))
        .unwrap();
        pin_to_node(&mut job, "n3");
        let v = serde_json::to_value(&job).unwrap();
        let terms = &v["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        for t in terms.as_array().unwrap() {
            assert_eq!(
                t["matchFields"],
                json!([{"key": "metadata.name", "operator": "In", "values": ["n3"]}])
            );
            assert!(t["matchExpressions"].is_array());
        }
        let mut bare: Job =
            serde_json::from_value(json!({"spec": {"template": {"spec": {"containers": []}}}}))
                .unwrap();
        pin_to_node(&mut bare, "n1");
        let v = serde_json::to_value(&bare).unwrap();
        assert_eq!(
            v.pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0"),
            Some(&json!("n1"))
        );
    }
}
