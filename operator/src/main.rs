//! `oxbow-operator [--namespace NS] [--log-level LEVEL]`: reconciles KafkaCluster resources
//! into running Oxbow clusters, and KafkaTopic resources into their topics, until SIGTERM/SIGINT. Talks to the API server with the
//! in-cluster service account (or `$KUBECONFIG` outside a pod).

use std::io::IsTerminal;

use anyhow::Context as _;
use clap::Parser;
use oxbow_operator::leader;
use tracing_subscriber::EnvFilter;

/// Command line of the operator.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Reconciles KafkaCluster resources into running Oxbow clusters"
)]
struct Args {
    /// Watch KafkaClusters in this namespace only (namespaced mode); every namespace if unset.
    #[arg(long)]
    namespace: Option<String>,
    /// Log filter (`info`, `debug`, `oxbow_operator=debug,kube=info`, ...); `RUST_LOG` wins
    /// when set.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Serve Prometheus metrics on `/metrics` at this address (`0.0.0.0:8080`); off if
    /// unset.
    #[arg(long)]
    metrics_address: Option<std::net::SocketAddr>,
    /// Reconcile only while holding a `coordination.k8s.io` Lease, so that several replicas
    /// (a Deployment with `replicas: 2`) take turns instead of acting together. The chart
    /// turns it on; off by default for one operator run by hand.
    #[arg(long)]
    leader_election: bool,
    /// Name of that Lease.
    #[arg(long, default_value = "oxbow-operator")]
    leader_election_lease: String,
    /// Namespace of that Lease; the pod's own (`POD_NAMESPACE`) if unset.
    #[arg(long)]
    leader_election_namespace: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .context("invalid --log-level")?;
    // Colour codes only for a terminal: in a pod they would litter the logs.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes API access (in-cluster service account or KUBECONFIG)")?;
    tracing::info!(
        namespace = args.namespace.as_deref().unwrap_or("<all>"),
        version = env!("CARGO_PKG_VERSION"),
        "oxbow-operator starting"
    );
    let instance = std::env::var("POD_NAME").ok();
    // The metrics listener lives as long as the process: it has no state to flush.
    let (_metrics_stop, metrics_stopped) = tokio::sync::watch::channel(false);
    if let Some(addr) = args.metrics_address {
        oxbow_metrics::bind_and_serve(addr, oxbow_operator::metrics::exporter(), metrics_stopped)
            .await
            .with_context(|| format!("cannot bind --metrics-address {addr}"))?;
    }
    // KafkaClusters and KafkaTopics are reconciled side by side, each by its own controller.
    let controllers = {
        let (client, namespace, instance) = (client.clone(), args.namespace, instance.clone());
        async move {
            tokio::join!(
                oxbow_operator::controller::run(
                    client.clone(),
                    namespace.clone(),
                    instance.clone()
                ),
                oxbow_operator::topic::controller::run(client, namespace, instance),
            );
        }
    };
    if !args.leader_election {
        controllers.await;
        tracing::info!("oxbow-operator stopped");
        return Ok(());
    }
    let election = leader::Election {
        lease: args.leader_election_lease,
        namespace: args
            .leader_election_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .context("--leader-election needs --leader-election-namespace or POD_NAMESPACE")?,
        // Two processes must never share an identity: outside a pod, a random one.
        identity: instance.unwrap_or_else(|| format!("oxbow-operator-{}", uuid::Uuid::new_v4())),
    };
    match leader::run_as_leader(client, &election, controllers).await? {
        leader::Outcome::Done(()) | leader::Outcome::Stopped => {
            tracing::info!("oxbow-operator stopped");
            Ok(())
        }
        leader::Outcome::Lost => anyhow::bail!(
            "lost Lease {}/{} to another replica",
            election.namespace,
            election.lease
        ),
    }
}
