//! Arguments of the operator's commands: controller, status.

use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct ControllerArgs {
    /// Image of the Jobs the controller creates (this binary's image).
    #[arg(long, env = "LIFEBOAT_IMAGE")]
    pub image: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "LIFEBOAT_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "LIFEBOAT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace of the leader-election Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "lifeboat-system")]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "LIFEBOAT_LEASE_NAME",
        default_value = "lifeboat-controller"
    )]
    pub lease_name: String,
    /// Elect a leader through a Lease (off: exactly one replica must run).
    #[arg(long, env = "LIFEBOAT_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// This replica's name in the Lease (default: POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Serve a read-only status page at / on the metrics address: per
    /// policy its health, run history and recovery points (no Secret is read).
    #[arg(long, env = "LIFEBOAT_STATUS_PAGE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub status_page: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputArg {
    Table,
    Json,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Namespace (default: the kube context's).
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: OutputArg,
}
