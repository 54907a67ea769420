//! The operator's commands: controller, status (the on-call table), crds.

use super::args::{ControllerArgs, OutputArg, StatusArgs};
use super::print::print_json;
use crate::commands;
use std::process::ExitCode;

/// `lifeboat controller`: runs until stopped; its failure is exit 1.
pub async fn controller(a: ControllerArgs) -> Result<ExitCode, commands::Error> {
    let identity = a.identity.unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "lifeboat-controller".into())
    });
    let opts = crate::controller::Options {
        image: a.image,
        metrics_addr: a.metrics_addr,
        namespace: a.namespace,
        lease_namespace: a.leader_election_namespace,
        lease_name: a.lease_name,
        identity,
        leader_election: a.leader_election,
        status_page: a.status_page,
    };
    if let Err(e) = crate::controller::run(opts).await {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat status`.
pub async fn status(a: StatusArgs) -> Result<ExitCode, commands::Error> {
    let policies = commands::status::load(&commands::status::StatusOptions {
        namespace: a.namespace,
        all_namespaces: a.all_namespaces,
        context: a.context,
    })
    .await?;
    let now = chrono::Utc::now();
    let statuses = crate::status::summarize(&policies, now);
    match a.output {
        OutputArg::Json => print_json(&statuses),
        OutputArg::Table => print!("{}", crate::status::table(&statuses, now)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat crds`.
pub fn crds() -> Result<ExitCode, commands::Error> {
    print!("{}", crate::api::crds_yaml());
    Ok(ExitCode::SUCCESS)
}
