//! What a newcomer sees when starting `oxbow-broker` by hand with its output piped (to a
//! file, journald or `kubectl logs`): plain text, and no warnings about the broker's own files.
//!
//! oxbow only: these are properties of our binary's output, not of Kafka's.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oxbow_e2e::{free_port, oxbow_broker_bin};

/// Starts the broker on `dir` with stderr piped, waits until it listens, stops it with
/// SIGTERM and returns everything it printed.
fn run_once(dir: &std::path::Path, port: u16) -> String {
    let mut child = Command::new(oxbow_broker_bin())
        .args([
            "--override",
            &format!("listeners=PLAINTEXT://127.0.0.1:{port}"),
            "--override",
            &format!("log.dirs={}", dir.display()),
        ])
        // The user's environment, not the harness's: no NO_COLOR, default log level.
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start oxbow-broker");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line.contains("listening") {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("broker did not start listening within 30 s; output:\n{out}");
            }
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    reader.join().expect("reader thread");
    out.extend(rx.try_iter().map(|l| l + "\n"));
    assert!(exit.success(), "SIGTERM exit {exit:?}; output:\n{out}");
    out
}

#[test]
fn piped_output_is_plain_text_without_warnings_about_own_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // The second start finds the data directory (with the metadata log) the first one made.
    for start in ["first", "second"] {
        let out = run_once(dir.path(), port);
        assert!(
            !out.contains('\u{1b}'),
            "{start} start wrote ANSI escape codes into a pipe:\n{out}"
        );
        for line in out.lines() {
            assert!(
                !line.contains("__cluster_metadata-0"),
                "{start} start logged about its own metadata directory: {line}"
            );
            assert!(
                !line.contains(" WARN ") && !line.contains(" ERROR "),
                "{start} start of a default broker logged a warning: {line}"
            );
        }
        assert!(out.contains("broker started"), "{out}");
    }
}
