//! `oxbow-broker [server.properties] [--override key=value ...]` — started like
//! `kafka-server-start.sh`. With no file it runs a single-node broker on 127.0.0.1:9092 with
//! its data in `./oxbow-data`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use oxbow_broker::broker::Broker;
use oxbow_broker::config::BrokerConfig;
use oxbow_broker::controller_node::ControllerNode;
use oxbow_broker::server;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// A Kafka-compatible broker.
#[derive(Debug, Parser)]
#[command(name = "oxbow-broker", version, about)]
struct Args {
    /// A Kafka `server.properties` file. Without one, a single-node broker starts on
    /// 127.0.0.1:9092 with its data in ./oxbow-data.
    config: Option<PathBuf>,
    /// Overrides a property of the file, as `kafka-server-start.sh --override` does.
    #[arg(long = "override", value_name = "KEY=VALUE", value_parser = parse_override)]
    overrides: Vec<(String, String)>,
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not of the form key=value")),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: logs piped to a file, journald or
        // `kubectl logs` stay plain text. NO_COLOR (no-color.org) turns them off everywhere.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let args = Args::parse();
    let loaded = match &args.config {
        Some(path) => BrokerConfig::from_file(path, &args.overrides),
        None => BrokerConfig::default_single_node(&args.overrides),
    };
    let (config, warnings) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            error!("invalid configuration: {e}");
            eprintln!("oxbow-broker: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    for w in warnings {
        warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxbow-broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async {
        let config = resolve_advertised_listeners(config, &args).await?;
        run(config).await
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("oxbow-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGTERM or SIGINT.
async fn until_signalled() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = int.recv() => info!("SIGINT received, shutting down"),
    }
    Ok(())
}

/// `process.roles=controller`: a voter and controller that serves no clients.
async fn run_controller_only(config: BrokerConfig) -> anyhow::Result<()> {
    let node = ControllerNode::start(config).await?;
    let (stop, stopped) = watch::channel(false);
    let timers = {
        let node = Arc::new(node);
        let running = node.clone();
        (
            node,
            tokio::spawn(async move { running.run(stopped).await }),
        )
    };
    let signalled = tokio::select! {
        signalled = until_signalled() => signalled,
        reason = timers.0.halted() => Err(anyhow::anyhow!("halting: {reason}")),
    };
    let _ = stop.send(true);
    let (node, task) = timers;
    let _ = task.await;
    node.shutdown().await;
    signalled
}

/// With `oxbow.rack.annotations.file` and no `broker.rack`: waits (bounded by
/// `server.max.startup.time.ms`) until the pod's annotations name this broker's rack, and takes
/// it as `broker.rack`. Before anything is bound or joined: a broker registers its rack once, at
/// start, and the controller places replicas by it.
async fn resolve_rack(config: &mut BrokerConfig) -> anyhow::Result<()> {
    let Some(file) = config.rack_annotations_file.clone() else {
        return Ok(());
    };
    if let Some(rack) = &config.broker_rack {
        info!(rack = %rack, "broker.rack is set: oxbow.rack.annotations.file is not read");
        return Ok(());
    }
    let max = startup_limit(config);
    let rack =
        oxbow_broker::config::rack::wait_for_rack(&file, &config.rack_annotation, max).await?;
    config.set_rack(rack);
    Ok(())
}

/// `server.max.startup.time.ms` as a bound on a wait; `None` for Long.MAX_VALUE (the default)
/// or anything too long for a deadline: no limit.
fn startup_limit(config: &BrokerConfig) -> Option<Duration> {
    u64::try_from(config.server_max_startup_time_ms)
        .ok()
        .map(Duration::from_millis)
        .filter(|d| tokio::time::Instant::now().checked_add(*d).is_some())
}

/// With `oxbow.advertised.listeners.annotation`: waits (bounded by
/// `server.max.startup.time.ms`) until the pod's annotations file holds it, then loads the
/// configuration again with its value as `advertised.listeners`, as `--override` would give
/// it, so the value is checked like any other (a listener name `listeners` lacks is refused).
async fn resolve_advertised_listeners(
    config: BrokerConfig,
    args: &Args,
) -> anyhow::Result<BrokerConfig> {
    let Some(annotation) = config.advertised_listeners_annotation.clone() else {
        return Ok(config);
    };
    let Some(file) = config
        .pod_annotations_file
        .clone()
        .or_else(|| config.rack_annotations_file.clone())
    else {
        anyhow::bail!(
            "invalid configuration: oxbow.advertised.listeners.annotation needs \
             oxbow.pod.annotations.file, the pod's annotations file it is read from"
        );
    };
    let value = oxbow_broker::config::rack::wait_for_advertised_listeners(
        &file,
        &annotation,
        startup_limit(&config),
    )
    .await?;
    let mut overrides = args.overrides.clone();
    overrides.push(("advertised.listeners".to_string(), value.clone()));
    let loaded = match &args.config {
        Some(path) => BrokerConfig::from_file(path, &overrides),
        None => BrokerConfig::default_single_node(&overrides),
    };
    let (config, _warnings) = loaded.map_err(|e| {
        anyhow::anyhow!(
            "invalid configuration: advertised.listeners={value} from the pod annotation \
             {annotation}: {e}"
        )
    })?;
    info!(advertised_listeners = %value, annotation, "advertised.listeners from the pod's annotation");
    Ok(config)
}

async fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    resolve_rack(&mut config).await?;
    if !config.quorum.broker {
        return run_controller_only(config).await;
    }
    let (broker, quorum) = if config.quorum.is_replicated() {
        let (broker, quorum) = Broker::start_replicated(config).await?;
        (broker, Some(quorum))
    } else {
        let broker = tokio::task::spawn_blocking(move || Broker::open(config))
            .await
            .context("start-up panicked")??;
        (broker, None)
    };
    // Registered and unfenced before clients are served, so Metadata lists this broker
    // (bounded: a node whose quorum is not up yet starts serving and keeps trying).
    broker.register(Duration::from_secs(30)).await;
    let listeners = server::bind(&broker).await?;
    let (stop, stopped) = watch::channel(false);
    let reaction = tokio::spawn(broker.clone().run_reaction(stopped.clone()));
    let lifecycle = tokio::spawn(broker.clone().run_lifecycle(stopped.clone()));
    let background = tokio::spawn(broker.clone().run_background(stopped.clone()));
    let coordinator = {
        let broker = broker.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move { broker.groups().run(broker.as_ref(), stopped).await })
    };
    let transactions = {
        let broker = broker.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move { broker.txns().run(&broker, stopped).await })
    };
    let metrics = match broker.config().metrics_listener {
        Some(addr) => {
            let exporter = oxbow_broker::metrics::exporter(Arc::downgrade(&broker));
            let (_, task) = oxbow_metrics::bind_and_serve(addr, exporter, stopped.clone())
                .await
                .with_context(|| format!("cannot bind oxbow.metrics.listener {addr}"))?;
            Some(task)
        }
        None => None,
    };
    let serving = tokio::spawn(server::serve(broker.clone(), listeners, stopped));

    // A voter whose Raft core died halts the process, as Kafka's fatal-fault handler does: it
    // could neither move its leaderships away nor learn metadata any more, and a supervisor
    // restarts it with its files intact.
    let halted = async {
        match &quorum {
            Some(quorum) => quorum.halted().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        signalled = until_signalled() => signalled?,
        reason = halted => anyhow::bail!("halting: {reason}"),
    }
    broker.controlled_shutdown().await;
    let _ = stop.send(true);
    let _ = serving.await;
    let _ = lifecycle.await;
    let _ = reaction.await;
    let _ = background.await;
    let _ = coordinator.await;
    let _ = transactions.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    let broker: Arc<Broker> = broker;
    let closed = tokio::task::spawn_blocking(move || broker.shutdown())
        .await
        .context("shutdown panicked")?;
    if let Some(quorum) = quorum {
        quorum.shutdown().await;
    }
    closed
}
