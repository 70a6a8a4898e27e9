//! Leader election between operator replicas with a `coordination.k8s.io` Lease, so that a
//! Deployment of two or more replicas reconciles with exactly one of them at a time and another
//! takes over when it goes.
//!
//! The Lease is kept by `kube-lease-manager` (server-side apply on the Lease, so two replicas
//! cannot both take a free lease). Timing follows client-go's defaults, which Strimzi's
//! operator and controller-runtime use too: a holder that stops renewing loses the lease
//! [`LEASE_SECONDS`] after its last renewal; it renews [`RENEW_BEFORE_SECONDS`] before that.
//! A replica that shuts down (SIGTERM, `kubectl delete pod`) releases the lease on its way
//! out, so the next one leads within a second or two instead of waiting out the lease.
//!
//! A replica that loses the lease while leading stops at once and exits non-zero (the caller
//! turns [`Outcome::Lost`] into an error): its controllers' caches and in-flight decisions
//! (a roll half done, a reassignment batch) belong to the term it lost, and the kubelet's
//! restart makes it a fresh candidate. This is what controller-runtime does. Leases are not
//! fencing tokens: a replica cut off from the API server may act for up to a renewal period
//! after another took over. Every write the operator makes is idempotent (server-side apply,
//! deleting a pod only when the plan from observed state says so), which keeps that overlap
//! harmless.

use std::future::Future;

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

/// Seconds a lease lasts after its holder's last renewal (client-go's `LeaseDuration`).
pub const LEASE_SECONDS: u64 = 15;
/// The holder renews this many seconds before its lease would expire, so a renewal retried
/// once or twice still lands in time (client-go renews every 2 s within a 10 s deadline).
pub const RENEW_BEFORE_SECONDS: u64 = 5;

/// Which Lease the replicas compete for, and who this replica is.
#[derive(Clone, Debug)]
pub struct Election {
    /// Name of the Lease (the chart uses the release's full name, so two releases in one
    /// namespace do not share one).
    pub lease: String,
    /// Namespace of the Lease: the operator's own.
    pub namespace: String,
    /// This replica's identity in `spec.holderIdentity`: its pod name.
    pub identity: String,
}

/// How leading ended.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The work finished (the controllers stopped on SIGTERM/SIGINT).
    Done(T),
    /// Another replica holds the lease now; this one must stop acting.
    Lost,
    /// SIGTERM/SIGINT arrived before this replica ever led.
    Stopped,
}

/// Waits until this replica holds the Lease, then runs `work` for as long as it keeps it.
/// The lease is released when this returns, whatever the outcome.
pub async fn run_as_leader<F: Future>(
    client: Client,
    election: &Election,
    work: F,
) -> anyhow::Result<Outcome<F::Output>> {
    let manager = LeaseManagerBuilder::new(client, &election.lease)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(RENEW_BEFORE_SECONDS)
        .build()
        .await
        .with_context(|| {
            format!(
                "cannot use Lease {}/{} for leader election",
                election.namespace, election.lease
            )
        })?;
    let (mut leading, keeper) = manager.watch().await;
    tracing::info!(
        lease = %election.lease,
        namespace = %election.namespace,
        identity = %election.identity,
        "waiting to lead"
    );
    let acquired = tokio::select! {
        acquired = async { leading.wait_for(|&l| l).await.is_ok() } => acquired,
        () = shutdown_signal() => {
            drop(leading);
            let _ = keeper.await;
            return Ok(Outcome::Stopped);
        }
    };
    if !acquired {
        anyhow::bail!("the lease keeper stopped before this replica led");
    }
    tracing::info!(lease = %election.lease, identity = %election.identity, "leading");
    let outcome = tokio::select! {
        out = work => Outcome::Done(out),
        // A closed channel (the keeper gave up) counts as lost: nobody renews our lease.
        _ = async { leading.wait_for(|&l| !l).await.is_ok() } => Outcome::Lost,
    };
    if matches!(outcome, Outcome::Lost) {
        tracing::error!(lease = %election.lease, identity = %election.identity, "lost the lease: stopping");
    }
    // Closing the channel makes the keeper release the lease (if still ours) and end.
    drop(leading);
    match tokio::time::timeout(std::time::Duration::from_secs(5), keeper).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the lease keeper failed"),
        Err(_) => tracing::warn!("the lease was not released within 5 s; it expires by itself"),
    }
    Ok(outcome)
}

/// Resolves on SIGTERM or SIGINT (what the kubelet and a terminal send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
