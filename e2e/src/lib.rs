//! End-to-end tests: real tools against real brokers.
//!
//! The harness starts brokers as separate processes and drives them with the
//! tools people really use: Apache Kafka's own CLI tools (4.1.0, installed from
//! Maven Central by `e2e/scripts/install-tools.sh`), kcat, and the Python clients
//! kafka-python and confluent-kafka.
//!
//! * [`Tools::locate`] finds the installed tools (in `$OXBOW_CACHE`, default
//!   `~/.cache/oxbow`). Missing tools fail loudly under `CI=true`; elsewhere the
//!   tests skip with a loud message.
//! * [`Broker::start`] runs `oxbow-broker`; [`KafkaBroker::start`] runs a real
//!   single-node Apache Kafka 4.1 (KRaft combined mode) from the same jars;
//!   [`Broker::start_target`] picks one by `OXBOW_E2E_TARGET` (`oxbow`, the
//!   default, or `kafka`), so the same suite can prove that its assertions
//!   describe what Apache Kafka really does.
//! * [`Target::start`] is what the CLI and group suites run against: one broker, or a
//!   cluster of three with `OXBOW_E2E_BROKERS=3` (replication factor 3, min.insync.replicas
//!   2), of `OXBOW_E2E_TARGET`'s implementation.
//! * [`Tools::run`] runs a tool with a timeout and returns what it printed; [`tools`] runs
//!   Kafka's tools against a broker, a cluster or a [`Target`] (topics, configs, groups,
//!   offsets, their tables) the same way for every suite.

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod cluster_tools;
pub mod copier;
pub mod group_member;
pub mod netns;
pub mod streams;
pub mod target;
pub mod tools;

pub use target::Target;

/// The Apache Kafka version the tools (and the reference broker) come from.
pub const KAFKA_VERSION: &str = "4.1.0";

/// Default timeout for one tool invocation.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// True when running under CI (`CI=true`): nothing may be skipped there.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI").ok().as_deref(),
        Some("true") | Some("1") | Some("TRUE") | Some("True")
    )
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e crate has a parent directory")
        .to_path_buf()
}

/// `$OXBOW_CACHE`, default `~/.cache/oxbow`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OXBOW_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache").join("oxbow")
}

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// The installed external tools.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Directory with Kafka's tool wrappers (`kafka-topics.sh`, ...).
    pub kafka_bin: PathBuf,
    /// The kcat binary.
    pub kcat: PathBuf,
    /// Python interpreter of the venv holding kafka-python and confluent-kafka.
    pub python: PathBuf,
}

impl Tools {
    /// Finds the tools installed by `e2e/scripts/install-tools.sh`.
    ///
    /// Returns `None` (after a loud message) when they are missing outside CI;
    /// panics when they are missing under `CI=true`.
    pub fn locate() -> Option<Tools> {
        let cache = cache_dir();
        let kafka_bin = cache.join(format!("kafka-{KAFKA_VERSION}")).join("bin");
        let python = cache.join("venv").join("bin").join("python");
        let kcat = find_in_path("kcat");
        let mut missing = Vec::new();
        if !kafka_bin.join("kafka-topics.sh").is_file() {
            missing.push(format!(
                "Kafka {KAFKA_VERSION} tools in {}",
                kafka_bin.display()
            ));
        }
        if !python.is_file() {
            missing.push(format!("Python venv {}", python.display()));
        }
        if kcat.is_none() {
            missing.push("kcat on PATH".to_string());
        }
        if missing.is_empty() {
            return Some(Tools {
                kafka_bin,
                kcat: kcat.expect("checked"),
                python,
            });
        }
        let msg = format!(
            "e2e tools missing: {}. Run `e2e/scripts/install-tools.sh` (cache: $OXBOW_CACHE, default ~/.cache/oxbow).",
            missing.join(", ")
        );
        if in_ci() {
            panic!("{msg} CI=true: end-to-end tests are never skipped in CI.");
        }
        eprintln!();
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!! SKIPPING end-to-end test: {msg}");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        None
    }

    /// Path of a tool: `kcat`, `python`, or one of Kafka's `*.sh` tools.
    pub fn path(&self, name: &str) -> PathBuf {
        match name {
            "kcat" => self.kcat.clone(),
            "python" | "python3" => self.python.clone(),
            _ => self.kafka_bin.join(name),
        }
    }

    /// Runs a tool with [`TOOL_TIMEOUT`] and no standard input.
    pub fn run(&self, name: &str, args: &[&str]) -> ToolOutput {
        self.run_with(name, args, None, TOOL_TIMEOUT)
    }

    /// Runs a tool, feeding `stdin` to it (then closing it).
    pub fn run_stdin(&self, name: &str, args: &[&str], stdin: &str) -> ToolOutput {
        self.run_with(name, args, Some(stdin.as_bytes()), TOOL_TIMEOUT)
    }

    /// Runs a tool with the given standard input and timeout.
    ///
    /// Panics (with everything it printed so far) when the timeout expires.
    pub fn run_with(
        &self,
        name: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> ToolOutput {
        let path = self.path(name);
        let mut cmd = Command::new(&path);
        cmd.args(args);
        run_command(cmd, name, args, stdin, timeout)
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a prepared command with a timeout, capturing stdout and stderr.
pub fn run_command(
    mut cmd: Command,
    name: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> ToolOutput {
    let cmdline = std::iter::once(name.to_string())
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin piped");
        let data = data.to_vec();
        thread::spawn(move || {
            // A tool may exit before reading everything; that shows in its output.
            let _ = pipe.write_all(&data);
        })
    });
    let out_reader = spawn_reader(child.stdout.take().expect("stdout piped"));
    let err_reader = spawn_reader(child.stderr.take().expect("stderr piped"));
    let deadline = started + timeout;
    let status = loop {
        match child.try_wait().expect("waiting for a tool") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let elapsed = started.elapsed();
    match status {
        Some(status) => ToolOutput {
            cmdline,
            status,
            stdout,
            stderr,
            elapsed,
        },
        None => panic!(
            "`{cmdline}` did not finish within {timeout:?}; killed it.\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        ),
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a tool printed, and how it exited.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to standard output.
    pub stdout: String,
    /// Everything written to standard error.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl ToolOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics (showing all output) unless the tool exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "expected success from:\n{self}");
        self
    }

    /// Panics (showing all output) if the tool exited 0.
    #[track_caller]
    pub fn failed(self) -> Self {
        assert!(!self.success(), "expected a failure from:\n{self}");
        self
    }

    /// stdout followed by stderr.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Non-empty stdout lines, trailing whitespace removed.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Panics unless stdout or stderr contains `needle`.
    #[track_caller]
    pub fn expect_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle) || self.stderr.contains(needle),
            "expected output containing {needle:?} from:\n{self}"
        );
        self
    }

    /// Panics unless stdout has a line (trimmed) equal to `line`.
    #[track_caller]
    pub fn expect_line(&self, line: &str) -> &Self {
        assert!(
            self.stdout.lines().any(|l| l.trim() == line),
            "expected a stdout line {line:?} from:\n{self}"
        );
        self
    }

    /// Returns the first stdout line (trimmed) starting with `prefix`; panics if none.
    #[track_caller]
    pub fn line_starting_with(&self, prefix: &str) -> &str {
        match self
            .stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
        {
            Some(l) => l,
            None => panic!("expected a stdout line starting with {prefix:?} from:\n{self}"),
        }
    }
}

impl fmt::Display for ToolOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "$ {}\n(exit: {}, {:.1}s)",
            self.cmdline,
            self.status,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

// ---------------------------------------------------------------------------
// Brokers
// ---------------------------------------------------------------------------

/// Which broker implementation a [`Broker`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `oxbow-broker`.
    Oxbow,
    /// Apache Kafka 4.1, single node, KRaft combined mode.
    Kafka,
}

impl Flavor {
    /// `OXBOW_E2E_TARGET`: `oxbow` (default) or `kafka`.
    pub fn from_env() -> Flavor {
        match std::env::var("OXBOW_E2E_TARGET").ok().as_deref() {
            None | Some("") | Some("oxbow") => Flavor::Oxbow,
            Some("kafka") => Flavor::Kafka,
            Some(other) => panic!("OXBOW_E2E_TARGET={other:?}: expected `oxbow` or `kafka`"),
        }
    }
}

/// A broker process on a loopback port with its own temporary data directory.
///
/// Dropping it kills the process; if the thread is panicking (a failing test),
/// the broker's log is printed first.
pub struct Broker {
    flavor: Flavor,
    dir: tempfile::TempDir,
    /// Address the client listener binds and advertises (`127.0.0.1` unless in a namespace).
    host: String,
    /// Network namespace the process runs in (see [`netns`]), if any.
    netns: Option<String>,
    port: u16,
    controller_port: u16,
    overrides: Vec<(String, String)>,
    child: Option<Child>,
    /// Frozen by [`Broker::pause`] (SIGSTOP) and not resumed yet.
    paused: bool,
    log_path: PathBuf,
    starts: u32,
    /// Extra environment for the process (e.g. KAFKA_HEAP_OPTS).
    env: Vec<(String, String)>,
    /// `ulimit -n` (soft and hard) for the next starts, if set.
    open_files_limit: Option<u64>,
    /// False for a controller-only node: it has no client listener, so readiness is its
    /// CONTROLLER port and clients are never pointed at it.
    serves_clients: bool,
    /// Extra arguments for Kafka's `kafka-storage.sh format` (a dynamic quorum's
    /// `--initial-controllers …` or `--no-initial-controllers`).
    format_args: Vec<String>,
}

/// Where a broker listens and runs: its client address, network namespace and ports.
struct Endpoint {
    host: String,
    netns: Option<String>,
    port: u16,
    controller_port: u16,
}

impl Endpoint {
    /// On loopback in the harness's own network namespace.
    fn loopback(port: u16, controller_port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".to_string(),
            netns: None,
            port,
            controller_port,
        }
    }
}

/// Starts real Apache Kafka brokers (see [`Broker`]).
pub struct KafkaBroker;

impl KafkaBroker {
    /// A real single-node Apache Kafka 4.1 with default settings.
    pub fn start() -> Broker {
        Self::start_with(&[])
    }

    /// A real single-node Apache Kafka 4.1; `overrides` go into its server.properties.
    pub fn start_with(overrides: &[(&str, &str)]) -> Broker {
        Broker::launch(Flavor::Kafka, overrides, &[])
    }
}

impl Broker {
    /// oxbow-broker with default settings.
    pub fn start() -> Broker {
        Self::start_with(&[])
    }

    /// oxbow-broker; `overrides` (Kafka property names) go into its server.properties.
    /// In values, `{port}` stands for the client port the harness waits on and
    /// `{controller_port}` for Kafka's controller port (so a test can spell out `listeners`).
    pub fn start_with(overrides: &[(&str, &str)]) -> Broker {
        Broker::launch(Flavor::Oxbow, overrides, &[])
    }

    /// The broker under test, chosen by `OXBOW_E2E_TARGET` (`oxbow` or `kafka`).
    pub fn start_target(overrides: &[(&str, &str)]) -> Broker {
        Broker::launch(Flavor::from_env(), overrides, &[])
    }

    /// Starts a broker of the given flavor with extra process environment.
    pub fn launch(flavor: Flavor, overrides: &[(&str, &str)], env: &[(&str, &str)]) -> Broker {
        let port = free_port();
        let controller_port = if flavor == Flavor::Kafka {
            free_port()
        } else {
            0
        };
        let mut broker = Broker::prepare(
            flavor,
            Endpoint::loopback(port, controller_port),
            overrides,
            env,
        );
        broker.spawn();
        broker
    }

    /// A broker with its config written (and Kafka's storage formatted) but not started:
    /// a [`Cluster`] starts all its nodes before waiting for any, because a KRaft node is
    /// not ready until a quorum of voters runs.
    fn prepare(
        flavor: Flavor,
        endpoint: Endpoint,
        overrides: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Broker {
        Self::prepare_with(flavor, endpoint, overrides, env, |_| {})
    }

    /// [`Broker::prepare`] with `adjust` applied before the config is written and the
    /// storage formatted.
    fn prepare_with(
        flavor: Flavor,
        endpoint: Endpoint,
        overrides: &[(&str, &str)],
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Broker),
    ) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix(match flavor {
                Flavor::Oxbow => "oxbow-e2e-",
                Flavor::Kafka => "kafka-e2e-",
            })
            .tempdir()
            .expect("temp dir");
        let log_path = dir.path().join("broker.log");
        let Endpoint {
            host,
            netns,
            port,
            controller_port,
        } = endpoint;
        let mut broker = Broker {
            flavor,
            host,
            netns,
            port,
            controller_port,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            paused: false,
            log_path,
            starts: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            open_files_limit: None,
            serves_clients: true,
            format_args: Vec::new(),
            dir,
        };
        adjust(&mut broker);
        broker.write_config();
        if flavor == Flavor::Kafka {
            broker.format_kafka_storage();
        }
        broker
    }

    /// Which implementation this is.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// False for a controller-only node (no client listener).
    pub fn serves_clients(&self) -> bool {
        self.serves_clients
    }

    /// `<host>:<port>` of the client listener (`127.0.0.1` unless the node runs in a
    /// network namespace).
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the running broker, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while frozen by [`Broker::pause`].
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The broker's data directory (`log.dirs`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The generated server.properties.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("server.properties")
    }

    /// File receiving the broker's stdout and stderr (all runs, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A scratch directory that lives as long as the broker.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        fs::create_dir_all(&p).expect("scratch dir");
        p
    }

    /// Stops the broker with SIGTERM and waits for it to exit (panics if it
    /// does not exit within 60 s).
    pub fn stop(&mut self) {
        if self.paused {
            // A frozen process would not see SIGTERM until thawed.
            self.resume();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait().expect("waiting for the broker") {
                Some(status) => {
                    self.note(&format!("stopped by SIGTERM: {status}"));
                    return;
                }
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{:?} broker did not exit within 60 s of SIGTERM; killed it.\n{}",
                        self.flavor,
                        self.log_dump()
                    );
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Kills the broker with SIGKILL (no chance to flush or clean up).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.paused = false;
            self.note("killed with SIGKILL");
        }
    }

    /// Freezes the running process with SIGSTOP: it keeps its sockets and state but answers
    /// nothing, as a broker in a long GC pause or a stalled VM. [`Broker::resume`] thaws it.
    pub fn pause(&mut self) {
        self.signal("STOP");
        self.paused = true;
        self.note("paused with SIGSTOP");
    }

    /// Thaws a process frozen by [`Broker::pause`] (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("CONT");
        self.paused = false;
        self.note("resumed with SIGCONT");
    }

    fn signal(&self, sig: &str) {
        let Some(pid) = self.pid() else {
            panic!("SIG{sig}: the broker is not running");
        };
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "kill -{sig} {pid}: {status:?}"
        );
    }

    /// Stops (SIGTERM) if running, then starts again on the same port and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Sets `key` to `value` in the stopped broker's server.properties (replacing an
    /// override of the same key) for the starts that follow.
    pub fn set_override(&mut self, key: &str, value: &str) {
        assert!(self.child.is_none(), "broker is still running");
        self.overrides.retain(|(k, _)| k != key);
        self.overrides.push((key.to_string(), value.to_string()));
        self.write_config();
    }

    /// Starts again after [`Broker::stop`] or [`Broker::kill9`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "broker is still running");
        self.spawn();
    }

    /// Replaces the stopped broker's data directory by an empty one, as a new disk or a pod's
    /// fresh `emptyDir` would; for Kafka formatted again with the same cluster id, as one
    /// prepares a node's new disk before starting it.
    pub fn wipe_data(&mut self) {
        assert!(self.child.is_none(), "broker is still running");
        let dir = self.data_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the data dir");
        if self.flavor == Flavor::Kafka {
            self.format_kafka_storage();
        }
        self.note("data directory wiped");
    }

    /// Sets the open files limit (`ulimit -n`, soft and hard, so the broker cannot raise
    /// it) of the starts that follow; `None` inherits the harness's.
    pub fn set_open_files_limit(&mut self, limit: Option<u64>) {
        self.open_files_limit = limit;
    }

    /// Starts the stopped broker expecting it to exit (a refused start-up) within 30 s;
    /// returns what it printed. Panics if it is still running then.
    pub fn start_until_exit(&mut self) -> ToolOutput {
        assert!(self.child.is_none(), "broker is still running");
        let cmd = self.command();
        let name = cmd.get_program().to_string_lossy().into_owned();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.note("start expected to exit");
        run_command(cmd, &name, &args, None, Duration::from_secs(30))
    }

    fn note(&self, what: &str) {
        if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(f, "===== e2e harness: {what} =====");
        }
    }

    fn write_config(&self) {
        let data = self.data_dir();
        fs::create_dir_all(&data).expect("data dir");
        let mut props = String::from("# generated by oxbow-e2e\n");
        let mut put = |k: &str, v: &str| {
            if !self.overrides.iter().any(|(ok, _)| ok == k) {
                props.push_str(&format!("{k}={v}\n"));
            }
        };
        put("node.id", "0");
        put("log.dirs", &data.display().to_string());
        if self.flavor == Flavor::Kafka {
            let c = self.controller_port;
            // Kafka's storage tool reads the file too, so the listeners go in it.
            put(
                "listeners",
                &format!(
                    "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{c}",
                    self.port
                ),
            );
            put(
                "advertised.listeners",
                &format!("PLAINTEXT://127.0.0.1:{}", self.port),
            );
            put("process.roles", "broker,controller");
            // A dynamic quorum (KIP-853) is found through its bootstrap servers instead.
            if !self
                .overrides
                .iter()
                .any(|(k, _)| k == "controller.quorum.bootstrap.servers")
            {
                put("controller.quorum.voters", &format!("0@127.0.0.1:{c}"));
            }
            put("controller.listener.names", "CONTROLLER");
            put(
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            );
            put("inter.broker.listener.name", "PLAINTEXT");
            put("offsets.topic.replication.factor", "1");
            put("transaction.state.log.replication.factor", "1");
            put("transaction.state.log.min.isr", "1");
            put("share.coordinator.state.topic.replication.factor", "1");
            put("share.coordinator.state.topic.min.isr", "1");
            put("group.initial.rebalance.delay.ms", "0");
        }
        for (k, v) in &self.overrides {
            let v = v
                .replace("{host}", &self.host)
                .replace("{port}", &self.port.to_string())
                .replace("{controller_port}", &self.controller_port.to_string());
            props.push_str(&format!("{k}={v}\n"));
        }
        fs::write(self.config_path(), props).expect("write server.properties");
    }

    /// `--override` arguments: oxbow gets its listeners on the command line.
    fn listener_overrides(&self) -> Vec<String> {
        if self.flavor == Flavor::Kafka {
            return Vec::new();
        }
        let has = |k: &str| self.overrides.iter().any(|(ok, _)| ok == k);
        let p = self.port;
        let mut args = Vec::new();
        if !has("listeners") {
            args.push(format!("listeners=PLAINTEXT://127.0.0.1:{p}"));
        }
        if !has("advertised.listeners") {
            args.push(format!("advertised.listeners=PLAINTEXT://127.0.0.1:{p}"));
        }
        args.into_iter()
            .flat_map(|a| ["--override".to_string(), a])
            .collect()
    }

    fn kafka_bin() -> PathBuf {
        match Tools::locate() {
            Some(t) => t.kafka_bin,
            None => panic!(
                "Apache Kafka {KAFKA_VERSION} is not installed: run e2e/scripts/install-tools.sh"
            ),
        }
    }

    fn format_kafka_storage(&self) {
        let bin = Self::kafka_bin();
        let mut cmd = Command::new(bin.join("kafka-storage.sh"));
        let cluster_id = "b3hib3ctZTJlLWNsdXN0QQ"; // any 16-byte base64 id
        let cfg = self.config_path().display().to_string();
        let mut args = vec!["format", "-t", cluster_id, "-c", &cfg];
        args.extend(self.format_args.iter().map(String::as_str));
        cmd.args(&args);
        let out = run_command(
            cmd,
            "kafka-storage.sh",
            &args,
            None,
            Duration::from_secs(120),
        );
        assert!(out.success(), "formatting Kafka storage failed:\n{out}");
    }

    /// The command that starts the broker, with its environment and open files limit.
    fn command(&self) -> Command {
        let program = match self.flavor {
            Flavor::Oxbow => oxbow_broker_bin(),
            Flavor::Kafka => Self::kafka_bin().join("kafka-server-start.sh"),
        };
        // `ip netns exec` enters the namespace and execs the broker (same pid, so signals
        // reach the broker itself); `ulimit -n` runs in a shell that then becomes the broker.
        let mut cmd = match (&self.netns, self.open_files_limit) {
            (None, None) => Command::new(program),
            (ns, limit) => {
                let mut c = match ns {
                    None => Command::new("bash"),
                    Some(ns) => {
                        let mut c = Command::new("ip");
                        c.args(["netns", "exec", ns, "bash"]);
                        c
                    }
                };
                match limit {
                    None => c.args(["-c", r#"exec "$@""#, "bash"]),
                    Some(limit) => c
                        .args(["-c", r#"ulimit -n "$1" && shift && exec "$@""#, "bash"])
                        .arg(limit.to_string()),
                };
                c.arg(program);
                c
            }
        };
        if self.flavor == Flavor::Kafka {
            cmd.env("KAFKA_HEAP_OPTS", "-Xmx512m -Xms512m");
            cmd.env("LOG_DIR", self.dir.path().join("kafka-logs"));
        }
        cmd.arg(self.config_path()).args(self.listener_overrides());
        if self.flavor == Flavor::Oxbow {
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "info");
            }
            // The log goes to a file that is printed on failure: no colour codes.
            cmd.env("NO_COLOR", "1");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(&mut self) {
        let start_offset = self.spawn_process();
        self.wait_ready(start_offset);
    }

    /// Starts the process without waiting for it; answers where its log starts.
    fn spawn_process(&mut self) -> u64 {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("broker log file");
        let start_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        self.starts += 1;
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        self.note(&format!("start #{}: {:?}", self.starts, cmd));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        self.child = Some(child);
        start_offset
    }

    fn wait_ready(&mut self, log_offset: u64) {
        let timeout = match self.flavor {
            Flavor::Oxbow => Duration::from_secs(30),
            Flavor::Kafka => Duration::from_secs(120),
        };
        let deadline = Instant::now() + timeout;
        let probe = if self.serves_clients {
            self.bootstrap()
        } else {
            format!("{}:{}", self.host, self.controller_port)
        };
        let addr: SocketAddr = match probe.parse() {
            Ok(a) => a,
            Err(e) => panic!("broker address {probe}: {e}"),
        };
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("spawned")
                .try_wait()
                .expect("try_wait")
            {
                self.child = None;
                panic!(
                    "{:?} broker exited during startup ({status}).\n{}",
                    self.flavor,
                    self.log_dump()
                );
            }
            let port_open = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            let ready = port_open
                && match self.flavor {
                    Flavor::Oxbow => true,
                    // Kafka opens its port a moment before it is done starting.
                    Flavor::Kafka => self
                        .log()
                        .get(log_offset as usize..)
                        .is_some_and(|l| l.contains("Kafka Server started")),
                };
            if ready {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{:?} broker not ready on {addr} within {timeout:?}.\n{}",
                    self.flavor,
                    self.log_dump()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_dump(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(300);
        format!(
            "===== {:?} broker log {} (last {} of {} lines) =====\n{}\n===== end of broker log =====",
            self.flavor,
            self.log_path.display(),
            lines.len() - from,
            lines.len(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.log_dump());
            if std::env::var_os("OXBOW_E2E_KEEP").is_some() {
                let kept = self.dir.path().to_path_buf();
                eprintln!("OXBOW_E2E_KEEP: leaving {}", kept.display());
                std::mem::forget(std::mem::replace(
                    &mut self.dir,
                    tempfile::tempdir().expect("temp dir"),
                ));
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a node of a [`Cluster`] is (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `broker,controller`: a voter with a client listener.
    Combined,
    /// `broker`: a client listener, not a voter (a quorum observer).
    Broker,
    /// `controller`: a voter with only its CONTROLLER listener.
    Controller,
}

impl Role {
    fn process_roles(self) -> &'static str {
        match self {
            Role::Combined => "broker,controller",
            Role::Broker => "broker",
            Role::Controller => "controller",
        }
    }

    fn votes(self) -> bool {
        self != Role::Broker
    }
}

/// Several nodes forming one cluster: by default every node is a combined broker and
/// controller (`process.roles=broker,controller`), a voter in `controller.quorum.voters`, with
/// a client listener `PLAINTEXT` and a `CONTROLLER` listener on loopback ports;
/// [`Cluster::start_roles`] mixes broker-only and controller-only nodes. The same settings
/// run oxbow and Apache Kafka, with equal timeouts, so a test's assertions hold for both.
pub struct Cluster {
    /// Declared before `net`: the brokers die before their namespaces go.
    nodes: Vec<Broker>,
    /// The namespaces and bridges when the nodes run isolated from each other's failures.
    net: Option<netns::NetLab>,
}

impl Cluster {
    /// `n` nodes of the broker under test (`OXBOW_E2E_TARGET`); `overrides` go into every
    /// node's server.properties (after the cluster settings, so they win).
    pub fn start_target(n: usize, overrides: &[(&str, &str)]) -> Cluster {
        Cluster::start(Flavor::from_env(), n, overrides)
    }

    /// `n` nodes of `flavor`, all started before any is waited for.
    pub fn start(flavor: Flavor, n: usize, overrides: &[(&str, &str)]) -> Cluster {
        Cluster::launch(flavor, &vec![Role::Combined; n], overrides, None, false)
    }

    /// `n` combined voters whose quorum can change its voters at runtime (KIP-853), so that
    /// [`Cluster::add_joining_node`] and `kafka-metadata-quorum.sh add-controller` /
    /// `remove-controller` can change it. Apache Kafka needs it formatted so
    /// (`kafka-storage.sh format --initial-controllers id@host:port:directory-id,…`, the nodes
    /// configured with `controller.quorum.bootstrap.servers`, kraft.version 1); oxbow's nodes
    /// get the same list as its config key `oxbow.initial.controllers` beside the same
    /// bootstrap servers (one shared config, as the operator writes it; oxbow has no format
    /// step).
    pub fn start_dynamic(flavor: Flavor, n: usize, overrides: &[(&str, &str)]) -> Cluster {
        Cluster::launch(flavor, &vec![Role::Combined; n], overrides, None, true)
    }

    /// Starts one more combined node (`node.id` the next index, answered) that joins the
    /// quorum through `controller.quorum.bootstrap.servers` (every voter's CONTROLLER
    /// listener) without being a voter: a non-voter until AddRaftVoter adds it (Kafka's
    /// storage is formatted with `--no-initial-controllers`). Waits until it is ready.
    pub fn add_joining_node(&mut self) -> usize {
        assert!(self.net.is_none(), "joining nodes run on loopback only");
        let index = self.nodes.len();
        let flavor = self.flavor();
        let bootstrap_servers = self
            .nodes
            .iter()
            .filter(|n| {
                n.overrides
                    .iter()
                    .any(|(k, v)| k == "process.roles" && v.contains("controller"))
            })
            .map(|n| format!("127.0.0.1:{}", n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let id = index.to_string();
        let mut props: Vec<(&str, &str)> = self.nodes[0]
            .overrides
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "node.id" | "controller.quorum.voters" | "controller.quorum.bootstrap.servers"
                )
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        props.push(("node.id", &id));
        props.push(("controller.quorum.bootstrap.servers", &bootstrap_servers));
        let mut node = Broker::prepare_with(
            flavor,
            Endpoint::loopback(free_port(), free_port()),
            &props,
            &[],
            |b| {
                if flavor == Flavor::Kafka {
                    b.format_args = vec!["--no-initial-controllers".to_string()];
                }
            },
        );
        node.spawn();
        self.nodes.push(node);
        index
    }

    /// One node of `flavor` per entry of `roles` (node `i` has `node.id` `i`); the voters are
    /// the combined and controller-only nodes. Waits until Metadata lists every node that
    /// has the broker role.
    pub fn start_roles(flavor: Flavor, roles: &[Role], overrides: &[(&str, &str)]) -> Cluster {
        Cluster::launch(flavor, roles, overrides, None, false)
    }

    /// `n` nodes of `flavor`, each in its own network namespace (see [`netns`]): clients reach
    /// every node's `PLAINTEXT` listener on a client bridge, the nodes talk to each other
    /// (`inter.broker.listener.name=REPLICATION`, the `CONTROLLER` listener) over an internal
    /// bridge, so [`Cluster::isolate`] can cut one node off from the others while clients still
    /// reach it. Err (the reason, for a skip message) when namespaces cannot be made here (not
    /// root).
    pub fn start_partitionable(
        flavor: Flavor,
        n: usize,
        overrides: &[(&str, &str)],
    ) -> Result<Cluster, String> {
        let lab = netns::NetLab::create(n)?;
        Ok(Cluster::launch(
            flavor,
            &vec![Role::Combined; n],
            overrides,
            Some(lab),
            false,
        ))
    }

    fn launch(
        flavor: Flavor,
        roles: &[Role],
        overrides: &[(&str, &str)],
        net: Option<netns::NetLab>,
        dynamic: bool,
    ) -> Cluster {
        let n = roles.len();
        let endpoints: Vec<Endpoint> = (0..n)
            .map(|i| match &net {
                None => Endpoint::loopback(free_port(), free_port()),
                Some(lab) => Endpoint {
                    host: lab.client_addr(i),
                    netns: Some(lab.namespace(i)),
                    port: netns::CLIENT_PORT,
                    controller_port: netns::CONTROLLER_PORT,
                },
            })
            .collect();
        let voters = endpoints
            .iter()
            .enumerate()
            .filter(|(id, _)| roles[*id].votes())
            .map(|(id, e)| match &net {
                None => format!("{id}@127.0.0.1:{}", e.controller_port),
                Some(lab) => format!("{id}@{}:{}", lab.internal_addr(id), e.controller_port),
            })
            .collect::<Vec<_>>()
            .join(",");
        // A dynamic quorum on Kafka: the voters' directory ids are chosen here and written by
        // `kafka-storage.sh format --initial-controllers`; the nodes find the quorum through
        // `controller.quorum.bootstrap.servers`. Oxbow takes the same list as
        // `oxbow.initial.controllers` (its directory ids are accepted and ignored).
        let dynamic_kafka = dynamic && flavor == Flavor::Kafka;
        let voter_ids: Vec<usize> = (0..n).filter(|i| roles[*i].votes()).collect();
        let bootstrap_servers = voter_ids
            .iter()
            .map(|i| format!("127.0.0.1:{}", endpoints[*i].controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let initial_controllers = voter_ids
            .iter()
            .map(|i| {
                format!(
                    "{i}@127.0.0.1:{}:{}",
                    endpoints[*i].controller_port,
                    directory_id(*i)
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let brokers = roles.iter().filter(|r| **r != Role::Controller).count();
        let rf = brokers.min(3).to_string();
        let min_isr = if brokers >= 3 { "2" } else { "1" };
        let mut nodes: Vec<Broker> = endpoints
            .into_iter()
            .enumerate()
            .map(|(index, endpoint)| {
                let id = index.to_string();
                // Namespaced nodes replicate and vote on their internal address only.
                let (listeners, advertised, protocols, inter_broker) = match &net {
                    None => (
                        "PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}"
                            .to_string(),
                        "PLAINTEXT://{host}:{port}".to_string(),
                        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                        "PLAINTEXT",
                    ),
                    Some(lab) => {
                        let internal = lab.internal_addr(index);
                        (
                            format!(
                                "PLAINTEXT://{{host}}:{{port}},\
                                 REPLICATION://{internal}:{},\
                                 CONTROLLER://{internal}:{{controller_port}}",
                                netns::REPLICATION_PORT
                            ),
                            format!(
                                "PLAINTEXT://{{host}}:{{port}},REPLICATION://{internal}:{}",
                                netns::REPLICATION_PORT
                            ),
                            "PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT,CONTROLLER:PLAINTEXT",
                            "REPLICATION",
                        )
                    }
                };
                let role = roles[index];
                // A broker-only node has no CONTROLLER listener (Kafka refuses one); a
                // controller-only node nothing else, and advertises that one.
                let (listeners, advertised) = match role {
                    Role::Combined => (listeners, advertised),
                    Role::Broker => (
                        listeners
                            .split(',')
                            .filter(|l| !l.starts_with("CONTROLLER:"))
                            .collect::<Vec<_>>()
                            .join(","),
                        advertised,
                    ),
                    Role::Controller => {
                        let controller: String = listeners
                            .split(',')
                            .filter(|l| l.starts_with("CONTROLLER:"))
                            .collect();
                        (controller.clone(), controller)
                    }
                };
                let mut props: Vec<(&str, &str)> = vec![
                    ("node.id", &id),
                    ("process.roles", role.process_roles()),
                    ("listeners", &listeners),
                    ("advertised.listeners", &advertised),
                    ("controller.listener.names", "CONTROLLER"),
                    ("listener.security.protocol.map", protocols),
                    ("inter.broker.listener.name", inter_broker),
                    ("controller.quorum.voters", &voters),
                    ("default.replication.factor", &rf),
                    ("offsets.topic.replication.factor", &rf),
                    ("transaction.state.log.replication.factor", &rf),
                    ("transaction.state.log.min.isr", min_isr),
                    ("share.coordinator.state.topic.replication.factor", &rf),
                    ("share.coordinator.state.topic.min.isr", min_isr),
                    ("group.initial.rebalance.delay.ms", "0"),
                    // Equal, explicit failure detection on both implementations (Kafka's
                    // defaults, spelled out so a change of default cannot skew a comparison).
                    ("broker.session.timeout.ms", "9000"),
                    ("broker.heartbeat.interval.ms", "2000"),
                    ("replica.lag.time.max.ms", "30000"),
                ];
                if dynamic {
                    props.retain(|(k, _)| *k != "controller.quorum.voters");
                    props.push(("controller.quorum.bootstrap.servers", &bootstrap_servers));
                    if flavor == Flavor::Oxbow {
                        props.push(("oxbow.initial.controllers", &initial_controllers));
                    }
                }
                props.extend(overrides.iter().copied());
                // Later entries win; keep the last value of each key only.
                let mut seen = std::collections::HashSet::new();
                let mut deduped: Vec<(&str, &str)> = props
                    .into_iter()
                    .rev()
                    .filter(|(k, _)| seen.insert(*k))
                    .collect();
                deduped.reverse();
                if role == Role::Controller {
                    // Not a broker: no inter-broker listener of its own.
                    deduped.retain(|(k, _)| *k != "inter.broker.listener.name");
                }
                Broker::prepare_with(flavor, endpoint, &deduped, &[], |b| {
                    b.serves_clients = role != Role::Controller;
                    if dynamic_kafka {
                        b.format_args = if role.votes() {
                            vec![
                                "--initial-controllers".to_string(),
                                initial_controllers.clone(),
                            ]
                        } else {
                            vec!["--no-initial-controllers".to_string()]
                        };
                    }
                })
            })
            .collect();
        let offsets: Vec<u64> = nodes.iter_mut().map(Broker::spawn_process).collect();
        for (node, offset) in nodes.iter_mut().zip(offsets) {
            node.wait_ready(offset);
        }
        let cluster = Cluster { nodes, net };
        cluster.wait_for_brokers(brokers);
        cluster
    }

    /// Which implementation the nodes run.
    pub fn flavor(&self) -> Flavor {
        self.nodes[0].flavor()
    }

    /// Every running node's client address, comma-separated (not those frozen by
    /// [`Broker::pause`]: they accept connections but answer nothing).
    pub fn bootstrap(&self) -> String {
        self.bootstrap_excluding(&[])
    }

    /// Like [`Cluster::bootstrap`] without the nodes in `excluded` (e.g. an isolated node
    /// whose view of the cluster is stale).
    pub fn bootstrap_excluding(&self, excluded: &[usize]) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(id, n)| {
                n.serves_clients && n.pid().is_some() && !n.is_paused() && !excluded.contains(id)
            })
            .map(|(_, n)| n.bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id` (its `node.id` is its index).
    pub fn node(&self, id: usize) -> &Broker {
        &self.nodes[id]
    }

    /// Node `id`, to stop, kill or restart it.
    pub fn node_mut(&mut self, id: usize) -> &mut Broker {
        &mut self.nodes[id]
    }

    /// Cuts node `id` off from the other nodes (replication and controller traffic) while
    /// clients still reach it. Panics unless the cluster was started with
    /// [`Cluster::start_partitionable`].
    pub fn isolate(&self, id: usize) {
        match &self.net {
            Some(lab) => lab.isolate(id),
            None => panic!("isolate: the cluster was not started with start_partitionable"),
        }
    }

    /// Reconnects node `id` to the other nodes after [`Cluster::isolate`].
    pub fn heal(&self, id: usize) {
        match &self.net {
            Some(lab) => lab.heal(id),
            None => panic!("heal: the cluster was not started with start_partitionable"),
        }
    }

    /// The one-way cut of node `id`'s CONTROLLER listener: while applied, the other nodes cannot
    /// open connections to it, while node `id` still connects to theirs (see
    /// [`netns::InboundCut`]). Panics unless the cluster was started with
    /// [`Cluster::start_partitionable`].
    pub fn controller_inbound_cut(&self, id: usize) -> netns::InboundCut {
        match &self.net {
            Some(lab) => lab.inbound_cut(id, netns::CONTROLLER_PORT),
            None => panic!("controller_inbound_cut: not started with start_partitionable"),
        }
    }

    /// Number of nodes, running or not.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Cluster metadata as kcat sees it through the running nodes (`kcat -L -J`).
    pub fn metadata(&self) -> Option<serde_json::Value> {
        let out = Command::new("kcat")
            .args(["-b", &self.bootstrap(), "-L", "-J", "-m", "5"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Cluster metadata as node `id` alone answers it (`kcat -L -J`); `None` if it does not.
    pub fn metadata_from(&self, id: usize) -> Option<serde_json::Value> {
        let out = Command::new("kcat")
            .args(["-b", &self.nodes[id].bootstrap(), "-L", "-J", "-m", "5"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits (up to `timeout`) until every running broker reports every partition of every
    /// topic with a leader and all its replicas in its ISR. Asking each broker, not any one,
    /// so a broker that has not caught up with the metadata cannot answer for the others.
    pub fn wait_for_full_isrs(&self, timeout: Duration) {
        let serving: Vec<usize> = (0..self.nodes.len())
            .filter(|&id| {
                let n = &self.nodes[id];
                n.serves_clients && n.pid().is_some() && !n.is_paused()
            })
            .collect();
        self.wait_until(timeout, "every partition's replicas all in sync", |c| {
            serving.iter().all(|&id| {
                c.metadata_from(id).is_some_and(|m| {
                    m["topics"].as_array().is_some_and(|topics| {
                        topics.iter().all(|t| {
                            t["partitions"].as_array().is_some_and(|parts| {
                                parts.iter().all(|p| {
                                    let count =
                                        |k: &str| p[k].as_array().map_or(usize::MAX, Vec::len);
                                    p["leader"].as_i64().unwrap_or(-1) >= 0
                                        && count("isrs") == count("replicas")
                                })
                            })
                        })
                    })
                })
            })
        });
    }

    /// Restarts every node with SIGTERM one after the other (controlled shutdowns), each
    /// back in Metadata and in every ISR before the next goes.
    pub fn rolling_restart(&mut self) {
        let brokers = self.nodes.iter().filter(|n| n.serves_clients).count();
        for id in 0..self.nodes.len() {
            self.nodes[id].restart();
            self.wait_for_brokers(brokers);
            self.wait_for_full_isrs(Duration::from_secs(120));
        }
    }

    /// Kills every node with SIGKILL (a power loss), starts them all again (before waiting
    /// for any: a voter is not ready until a quorum runs), and waits until Metadata lists
    /// every broker and every ISR is full again.
    pub fn kill9_all_and_start_again(&mut self) {
        for node in &mut self.nodes {
            node.kill9();
        }
        let offsets: Vec<u64> = self.nodes.iter_mut().map(Broker::spawn_process).collect();
        for (node, offset) in self.nodes.iter_mut().zip(offsets) {
            node.wait_ready(offset);
        }
        let brokers = self.nodes.iter().filter(|n| n.serves_clients).count();
        self.wait_for_brokers(brokers);
        self.wait_for_full_isrs(Duration::from_secs(120));
    }

    /// Waits (up to 90 s) until Metadata lists `n` brokers.
    pub fn wait_for_brokers(&self, n: usize) {
        self.wait_until(
            Duration::from_secs(90),
            &format!("{n} brokers in Metadata"),
            |c| {
                c.metadata()
                    .and_then(|m| m["brokers"].as_array().map(Vec::len))
                    == Some(n)
            },
        );
    }

    /// Polls `done` every 200 ms until it holds; panics with `what` and every node's log
    /// tail after `timeout`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&Cluster) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() >= deadline {
                let logs: Vec<String> = self.nodes.iter().map(Broker::log_dump).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    logs.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Polls `check` every 200 ms until it returns `Ok`, and returns its value; panics after
/// `timeout` with `what` and the last `Err` (which describes what was seen).
#[track_caller]
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen:\n{last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A tool running in the background; stdout and stderr are collected as they come.
pub struct Background {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Background {
    pub fn spawn(program: PathBuf, name: &str, args: &[&str]) -> Background {
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        collect_lines(child.stdout.take().expect("stdout"), out.clone());
        collect_lines(child.stderr.take().expect("stderr"), err.clone());
        Background {
            name: format!("{name} {}", args.join(" ")),
            child: Some(child),
            status: None,
            out,
            err,
        }
    }

    /// A Kafka tool or `python` (see [`Tools::path`]).
    pub fn tool(t: &Tools, tool: &str, args: &[&str]) -> Background {
        Background::spawn(t.path(tool), tool, args)
    }

    /// The exit status if the process has exited (without waiting); `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.status = Some(s);
            }
        }
        self.status
    }

    /// Everything the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.out.lock().expect("lock").clone()
    }

    /// Sends `sig` and waits (up to 60 s) for the process to exit.
    pub fn signal_and_wait(&mut self, sig: &str) -> ExitStatus {
        let mut child = self.child.take().expect("still running");
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within 60 s of SIG{sig}:\n{self}",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.status = Some(status);
        status
    }

    /// SIGTERM (clean shutdown: Java shutdown hooks, Python `close()`).
    pub fn term(&mut self) -> ExitStatus {
        self.signal_and_wait("TERM")
    }

    /// SIGKILL: no goodbye to the broker.
    pub fn kill9(&mut self) {
        self.signal_and_wait("KILL");
    }
}

fn collect_lines<R: Read + Send + 'static>(r: R, into: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            into.lock().expect("lock").push_str(&line);
            line.clear();
        }
    });
}

impl fmt::Display for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(80)..].join("\n")
        };
        writeln!(f, "$ {} ({:?})", self.name, self.status)?;
        writeln!(f, "--- stdout (tail) ---\n{}", tail(self.stdout()))?;
        write!(
            f,
            "--- stderr (tail) ---\n{}",
            tail(self.err.lock().expect("lock").clone())
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if thread::panicking() {
                eprintln!("{self}");
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `OXBOW_BROKER_BIN`, else `<workspace>/target/debug/oxbow-broker`
/// (honouring `CARGO_TARGET_DIR`). Panics if the binary does not exist.
pub fn oxbow_broker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OXBOW_BROKER_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "OXBOW_BROKER_BIN={} does not exist",
            p.display()
        );
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_relative() {
                workspace_root().join(t)
            } else {
                t
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    let p = target.join("debug").join("oxbow-broker");
    assert!(
        p.is_file(),
        "{} does not exist: run `cargo build -p oxbow-broker` first (or set OXBOW_BROKER_BIN)",
        p.display()
    );
    p
}

/// Where [`free_port`] hands out ports: below Linux's default ephemeral range (32768–60999).
/// A port the kernel picked for `bind(0)` and that was released again can be handed out
/// once more as the source port of any outgoing connection (another test's client, a
/// broker's replica fetcher) before the broker under test binds it: CI saw
/// `cannot bind listener CONTROLLER://127.0.0.1:38595: Address already in use` that way.
/// Ports outside the ephemeral range are only ever taken by an explicit bind.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A TCP port on 127.0.0.1 that is free now and that this process has not handed out
/// before. Each process starts at its own place in [`TEST_PORTS`] (from its pid), so test
/// binaries running side by side do not walk the same ports.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let start = (std::process::id() * 97) % span;
        let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 in {TEST_PORTS:?}")
}

/// Where [`expected_failure_on_oxbow`] records each expected failure, for run-tests.sh to
/// report: `<workspace>/target/e2e-expected-failures.log`.
pub fn expected_failures_log() -> PathBuf {
    workspace_root()
        .join("target")
        .join("e2e-expected-failures.log")
}

/// Runs a test `body` that describes Apache Kafka's behaviour but that oxbow cannot pass
/// yet (`why` says what is missing). Against Kafka the body must pass. Against oxbow a
/// failure is the expected outcome: it is recorded as `XFAIL` in
/// [`expected_failures_log`] (run-tests.sh prints the list) and the test returns; a body
/// that passes on oxbow fails the test as `XPASS`, so the marker is removed as soon as the
/// feature works and the test starts guarding it.
pub fn expected_failure_on_oxbow(flavor: Flavor, test: &str, why: &str, body: impl FnOnce()) {
    if flavor == Flavor::Kafka {
        body();
        return;
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    match outcome {
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            let first_line = message.lines().next().unwrap_or_default();
            let line = format!("XFAIL {test}: {why} (failed with: {first_line})\n");
            eprint!("{line}");
            if let Ok(mut f) = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(expected_failures_log())
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
        Ok(()) => panic!(
            "XPASS {test}: it passes on oxbow now; remove its expected_failure_on_oxbow marker \
             ({why})"
        ),
    }
}

/// Gets the tools or returns from the calling test (skip outside CI; panics in CI).
#[macro_export]
macro_rules! tools_or_skip {
    () => {
        match $crate::Tools::locate() {
            Some(tools) => tools,
            None => return,
        }
    };
}

/// The name of the function it is written in, without its module path: in a test, the
/// test's name.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        let path = ::std::any::type_name_of_val(&here);
        let path = path.strip_suffix("::here").unwrap_or(path);
        path.rsplit("::").next().unwrap_or(path)
    }};
}

/// Gets the tools or returns from the calling test: without the tools as
/// [`tools_or_skip!`] does, and when the suite runs on several brokers and the test
/// (named `$test`, by default the calling function's name) checks something only one
/// broker has, saying why (`$reason`), as [`Target::single_broker_only`] does. Use it
/// first: `let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);`.
#[macro_export]
macro_rules! single_broker_tools_or_skip {
    ($reason:expr $(,)?) => {
        $crate::single_broker_tools_or_skip!($crate::test_name!(), $reason)
    };
    ($test:expr, $reason:expr $(,)?) => {{
        let tools = $crate::tools_or_skip!();
        if $crate::Target::single_broker_only($test, $reason) {
            return;
        }
        tools
    }};
}

/// A Kafka directory id (a uuid in URL-safe base64 without padding) for node `node`: the
/// clock and the node id, so ids differ between nodes and runs.
fn directory_id(node: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(nanos ^ 0x5a5a_5a5a_5a5a_5a5a).to_be_bytes());
    bytes[8..].copy_from_slice(&(node as u64 + 1).to_be_bytes());
    let mut out = String::with_capacity(22);
    let (mut acc, mut bits) = (0u32, 0);
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_name_is_the_calling_functions_own() {
        assert_eq!(test_name!(), "test_name_is_the_calling_functions_own");
    }
}
