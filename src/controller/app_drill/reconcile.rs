//! The IO of an ApplicationDrill reconcile, as named steps: dereference
//! (its ApplicationRestores, which of its scratch namespaces exist, the
//! service account's permission to delete them when a drill is due) → [`decide`] →
//! create the drill's ApplicationRestore → delete old drills and the
//! scratch namespaces of a finished one → the finished drill as each part
//! policy's `lastDrill` → update the status → metrics.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{decide, due_slot, policy_needs, Observed, DRILL_LABEL};
use crate::api::app_drill::ApplicationDrill;
use crate::api::app_restore::ApplicationRestore;
use crate::api::policy::LastDrill;
use crate::api::BackupPolicy;
use crate::controller::apply::{
    create_if_absent, delete_if_present, measured, namespace, next_action, patch_status,
};
use crate::controller::jobs::label_value;
use crate::controller::{cache, is_not_found, Context, Error};

/// Observe → decide → apply for one drill.
pub async fn reconcile(drill: Arc<ApplicationDrill>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured(&ctx, "applicationdrill", reconcile_drill(&drill, &ctx)).await
}

async fn reconcile_drill(drill: &ApplicationDrill, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(drill)?;
    let name = drill.name_any();
    let restores: Api<ApplicationRestore> = ctx.api(&ns);
    let selector = format!("{DRILL_LABEL}={}", label_value(&name));
    let mine: Vec<ApplicationRestore> = restores
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::dereference(format!(
            "the restores of drill {ns}/{name}"
        )))?
        .items
        .into_iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == drill.uid().as_ref())
        })
        .collect();
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let mut existing = Vec::new();
    for scratch in &drill.spec.scratch_namespaces {
        let found = namespaces
            .get_opt(scratch)
            .await
            .map_err(Error::dereference(format!("namespace {scratch}")))?;
        if found.is_some() {
            existing.push(scratch.clone());
        }
    }
    let now = ctx.settings.clock.now();
    let access = match due_slot(drill, &mine, now) {
        Some(_) => Some(denied(ctx, drill, &ns).await?),
        None => None,
    };
    let obs = Observed {
        drill,
        restores: &mine,
        existing: &existing,
        access: access.as_ref().map(|a| a.as_deref()),
        now,
    };
    let d = decide(obs, ctx.settings.resync);

    if let Some(r) = &d.create {
        if create_if_absent(&restores, r).await? {
            tracing::info!(drill = %name, restore = %r.name_any(), "started application drill");
        }
    }
    for old in &d.delete_restores {
        delete_if_present(&restores, old, &DeleteParams::background()).await?;
    }
    for scratch in &d.delete_namespaces {
        delete_if_present(&namespaces, scratch, &DeleteParams::default()).await?;
        tracing::info!(drill = %name, namespace = %scratch, "deleting scratch namespace");
    }
    if let Some((policies, last)) = &d.policy_drill {
        record_on_policies(ctx, &ns, policies, last).await?;
    }
    let drills: Api<ApplicationDrill> = ctx.api(&ns);
    patch_status(&drills, &name, drill.status.as_ref(), d.status.as_ref()).await?;
    if let Some(o) = &d.outcome {
        for policy in &o.policies {
            ctx.metrics.record_application_drill(&ns, policy, o);
        }
    }
    ctx.publish(drill, &d.events).await;
    Ok(next_action(d.requeue_after))
}

/// Writes `last` as the `status.lastDrill` of each of `policies` that
/// [`policy_needs`] it (a policy that is gone is skipped). A merge patch of
/// that field alone, so the policy controller's own status writes keep
/// theirs; it reads the field back to decide its own drills and metrics.
async fn record_on_policies(
    ctx: &Context,
    ns: &str,
    policies: &[String],
    last: &LastDrill,
) -> Result<(), Error> {
    let api: Api<BackupPolicy> = ctx.api(ns);
    for name in policies {
        let Some(policy) = cache::policy(ctx, ns, name).await? else {
            continue;
        };
        let current = policy.status.as_ref().and_then(|s| s.last_drill.as_deref());
        if !policy_needs(current, last) {
            continue;
        }
        let patch = json!({ "status": { "lastDrill": last } });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(policy = %name, drill = %last.run, "recorded application drill")
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::update_status(format!("BackupPolicy {name}"))(e)),
        }
    }
    Ok(())
}

/// The first scratch namespace the drill's service account may not delete
/// (IO). Asked by name: the account should be allowed exactly these, by a
/// ClusterRole with `resourceNames` (a namespace that does not exist yet
/// cannot hold a RoleBinding).
async fn denied(
    ctx: &Context,
    drill: &ApplicationDrill,
    ns: &str,
) -> Result<Option<String>, Error> {
    let Some(account) = &drill.spec.service_account_name else {
        return Ok(None);
    };
    let reviews: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    for scratch in &drill.spec.scratch_namespaces {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{ns}:{account}")),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    // A namespace is its own namespace to RBAC.
                    namespace: Some(scratch.clone()),
                    name: Some(scratch.clone()),
                    verb: Some("delete".into()),
                    group: Some(String::new()),
                    resource: Some("namespaces".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| Error::Dereference {
                what: format!("the permissions of {ns}/{account}"),
                source,
            })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            return Ok(Some(format!(
                "service account {ns}/{account} cannot delete namespace {scratch}: allow it with a ClusterRole limited by resourceNames: [{scratch}]"
            )));
        }
    }
    Ok(None)
}
