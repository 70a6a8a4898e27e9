//! The broker under test of the CLI and group suites (`cli_tools.rs`, `groups.rs`): one node,
//! or a cluster of combined broker,controller nodes, chosen by `OXBOW_E2E_BROKERS` (`1`, the
//! default, or `3`), so the same test bodies run against both shapes without a copy. The
//! implementation is `OXBOW_E2E_TARGET`'s (oxbow or Apache Kafka 4.1), as everywhere.
//!
//! A cluster of three has Kafka's production-like settings for replicated data:
//! `default.replication.factor=3`, `offsets.topic.replication.factor=3` and
//! `min.insync.replicas=2` (see [`Cluster`] for the rest). Tests that are single-broker by
//! nature, or that add nothing on three brokers, call [`Target::single_broker_only`] first,
//! which says so visibly and skips them.
//!
//! On a cluster, the tests that neither restart brokers nor need settings of their own share
//! one cluster per suite: each such test calls [`Target::runs_on_the_shared_cluster`] first
//! (and returns), and the suite's [`run_on_one_cluster`] test runs their bodies as scenarios
//! against one cluster, two at a time (their topic and group names differ). Starting three
//! brokers per test, and Apache Kafka's JVMs above all, cost more than most tests take.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tools::Bootstrap;
use crate::{Broker, Cluster, Flavor, Tools};

/// Why a test that checks nothing replication-specific skips the cluster phase (the reason
/// given to [`Target::single_broker_only`] by most single-broker tests).
pub const COVERED_BY_ONE_BROKER: &str =
    "nothing replication-specific: the single-broker run covers it, and the cluster phase \
     keeps to CI's time budget";

/// `OXBOW_E2E_BROKERS`: how many brokers the CLI and group suites run against (default 1).
/// Panics on anything but a positive number.
pub fn brokers_from_env() -> usize {
    match std::env::var("OXBOW_E2E_BROKERS").ok().as_deref() {
        None | Some("") => 1,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("OXBOW_E2E_BROKERS={n:?}: expected a number of brokers (1 or 3)"),
        },
    }
}

enum Shape {
    Single(Broker),
    Cluster(Cluster),
}

/// One broker or a cluster (see the module documentation). Dropping it stops every node.
pub struct Target {
    shape: Shape,
    /// Several tests' scenarios run on it ([`run_on_one_cluster`]).
    shared: bool,
}

/// A test body that can run on a target another test's body uses too: its name (the test's)
/// and the body.
pub type Scenario = (&'static str, fn(&Tools, &Target));

/// `OXBOW_E2E_SHARED_THREADS`: how many scenarios run at once on a shared cluster (default 2).
fn shared_threads() -> usize {
    std::env::var("OXBOW_E2E_SHARED_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(2)
}

/// With a cluster (`OXBOW_E2E_BROKERS` above 1): starts one with `overrides` and runs every
/// scenario on it, [`shared_threads`] at a time, each announced and timed on stderr; a
/// scenario's panic is caught so the others still run, and this panics at the end naming
/// every scenario that failed. With one broker it does nothing: each scenario is then a test
/// of its own. `OXBOW_E2E_SCENARIOS=a,b` runs only the named ones (to debug one).
pub fn run_on_one_cluster(t: &Tools, overrides: &[(&str, &str)], scenarios: &[Scenario]) {
    let n = brokers_from_env();
    if n == 1 {
        eprintln!("the scenarios run as tests of their own against one broker");
        return;
    }
    let only: Option<Vec<String>> = std::env::var("OXBOW_E2E_SCENARIOS")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect());
    let chosen: Vec<&Scenario> = scenarios
        .iter()
        .filter(|(name, _)| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name)))
        .collect();
    let mut target = Target::start(overrides);
    target.shared = true;
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..shared_threads().min(chosen.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((name, body)) = chosen.get(i) else {
                    break;
                };
                eprintln!("scenario {name}: started on the shared cluster of {n}");
                let begun = Instant::now();
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(t, &target)));
                let took = begun.elapsed();
                match outcome {
                    Ok(()) => eprintln!("scenario {name}: ok ({took:.1?})"),
                    Err(_) => {
                        eprintln!("scenario {name}: FAILED ({took:.1?})");
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(name.to_string());
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    eprintln!(
        "{} scenario(s) on one cluster of {n} in {:.1?}",
        chosen.len(),
        started.elapsed()
    );
    if !failed.is_empty() {
        panic!(
            "scenario(s) failed on the shared cluster (their panics are printed above): {}\n{}",
            failed.join(", "),
            target.log_tail(80)
        );
    }
}

/// The whole of a test whose body also runs as a scenario on the suite's shared cluster:
/// returns at once without the tools (see [`crate::tools_or_skip!`]) or when the suite runs
/// on a cluster ([`Target::runs_on_the_shared_cluster`]: [`run_on_one_cluster`] runs `body`
/// there); otherwise runs `body` on a target of its own from `start`. The whole test:
/// `run_alone_unless_shared(test_name!(), start, name_on)`.
pub fn run_alone_unless_shared(test: &str, start: fn() -> Target, body: fn(&Tools, &Target)) {
    let Some(t) = Tools::locate() else {
        return;
    };
    if Target::runs_on_the_shared_cluster(test) {
        return;
    }
    body(&t, &start());
}

impl Target {
    /// Starts the target: `OXBOW_E2E_TARGET`'s implementation, `OXBOW_E2E_BROKERS` nodes;
    /// `overrides` go into every node's server.properties (they win over the cluster's).
    pub fn start(overrides: &[(&str, &str)]) -> Target {
        let flavor = Flavor::from_env();
        let n = brokers_from_env();
        if n == 1 {
            return Target {
                shape: Shape::Single(Broker::launch(flavor, overrides, &[])),
                shared: false,
            };
        }
        // min.insync.replicas=2 needs three replicas to leave room for one broker down.
        let min_isr = if n >= 3 { "2" } else { "1" };
        let mut settings: Vec<(&str, &str)> = vec![("min.insync.replicas", min_isr)];
        settings.extend_from_slice(overrides);
        Target {
            shape: Shape::Cluster(Cluster::start(flavor, n, &settings)),
            shared: false,
        }
    }

    /// True (after saying so on stderr) when the suite runs against a cluster and the calling
    /// test's body runs as a scenario of the suite's [`run_on_one_cluster`] test instead; call
    /// it first: `if Target::runs_on_the_shared_cluster("name") { return; }`.
    pub fn runs_on_the_shared_cluster(test: &str) -> bool {
        let n = brokers_from_env();
        if n == 1 {
            return false;
        }
        eprintln!("{test}: runs as a scenario on the suite's shared cluster of {n}");
        true
    }

    /// True when other tests' scenarios run on this target too: checks of everything on it
    /// (every topic, every group) must ignore what is not the caller's.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// True (after saying why on stderr) when the suite runs against several brokers and the
    /// calling test checks something only one broker has; call it before starting anything:
    /// `if Target::single_broker_only("name", "reason") { return; }`.
    pub fn single_broker_only(test: &str, reason: &str) -> bool {
        let n = brokers_from_env();
        if n == 1 {
            return false;
        }
        eprintln!("single-broker test, skipped with OXBOW_E2E_BROKERS={n}: {test}: {reason}");
        true
    }

    /// Which implementation runs.
    pub fn flavor(&self) -> Flavor {
        match &self.shape {
            Shape::Single(b) => b.flavor(),
            Shape::Cluster(c) => c.flavor(),
        }
    }

    /// Number of brokers.
    pub fn brokers(&self) -> usize {
        match &self.shape {
            Shape::Single(_) => 1,
            Shape::Cluster(c) => c.len(),
        }
    }

    /// True for a cluster of several brokers.
    pub fn is_cluster(&self) -> bool {
        matches!(self.shape, Shape::Cluster(_))
    }

    /// The replication factor a topic gets by default (`default.replication.factor`).
    pub fn replication_factor(&self) -> usize {
        self.brokers().min(3)
    }

    /// The `node.id`s, in order: 0 for one broker, 0..n for a cluster.
    pub fn node_ids(&self) -> Vec<i32> {
        (0..self.brokers() as i32).collect()
    }

    /// Node `id` (the single broker is node 0).
    pub fn node(&self, id: usize) -> &Broker {
        match &self.shape {
            Shape::Single(b) => {
                assert_eq!(id, 0, "a single broker is node 0");
                b
            }
            Shape::Cluster(c) => c.node(id),
        }
    }

    /// `host:port` of every running broker, comma-separated (`--bootstrap-server`).
    pub fn bootstrap(&self) -> String {
        match &self.shape {
            Shape::Single(b) => b.bootstrap(),
            Shape::Cluster(c) => c.bootstrap(),
        }
    }

    /// A scratch directory that lives as long as the target.
    pub fn scratch(&self) -> PathBuf {
        self.node(0).scratch()
    }

    /// Restarts every broker with SIGTERM: the broker, or the cluster's nodes one after the
    /// other (a rolling restart), each back in every ISR before the next goes, as operators
    /// restart a cluster.
    pub fn restart(&mut self) {
        match &mut self.shape {
            Shape::Single(b) => b.restart(),
            Shape::Cluster(c) => c.rolling_restart(),
        }
    }

    /// Kills every broker with SIGKILL and starts them again (a power loss): the broker, or
    /// all the cluster's nodes at once, then waits for every ISR to be full again.
    pub fn kill9_all_and_start_again(&mut self) {
        match &mut self.shape {
            Shape::Single(b) => {
                b.kill9();
                b.start_again();
            }
            Shape::Cluster(c) => c.kill9_all_and_start_again(),
        }
    }

    /// The last `lines` lines of every node's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.node_ids()
            .iter()
            .map(|&id| {
                let log = self.node(id as usize).log();
                let all: Vec<&str> = log.lines().collect();
                format!(
                    "--- node {id} log (tail) ---\n{}",
                    all[all.len().saturating_sub(lines)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls (every 200 ms, up to `timeout`) until every partition of every topic has a
    /// leader and all its replicas in sync; panics with every node's log after `timeout`.
    pub fn wait_for_full_isrs(&self, timeout: Duration) {
        if let Shape::Cluster(c) = &self.shape {
            c.wait_for_full_isrs(timeout);
        }
    }
}

impl Bootstrap for Target {
    fn bootstrap_servers(&self) -> String {
        self.bootstrap()
    }
}
