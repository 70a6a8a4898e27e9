//! A Kafka Streams 4.1 application for the transaction tests: the word count of
//! `tests/java/StreamsWordCount.java`, compiled with the JDK's `javac` against the Kafka
//! Streams jars `e2e/scripts/install-tools.sh` puts in `kafka-streams-4.1.0/libs` (Kafka's
//! own `WordCountDemo` is not published on Maven Central for 4.x). The classes are cached
//! in `$OXBOW_CACHE/streams-classes/<hash of the source>`, so only a changed source is
//! compiled again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{cache_dir, in_ci, Background, KAFKA_VERSION};

/// The source of the word count.
const SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/java/StreamsWordCount.java"
);

/// The compiled word count and the classpath it runs with.
pub struct WordCount {
    classes: PathBuf,
    streams_home: PathBuf,
}

impl WordCount {
    /// Compiles the word count (or finds it compiled). Returns `None` after a loud message
    /// when the Streams jars are not installed outside CI; panics under `CI=true`, or when
    /// `javac` fails.
    pub fn build() -> Option<WordCount> {
        let streams_home = cache_dir().join(format!("kafka-streams-{KAFKA_VERSION}"));
        if !streams_home.join(".stamp").is_file() {
            let msg = format!(
                "Kafka Streams {KAFKA_VERSION} jars missing in {}: run `e2e/scripts/install-tools.sh`.",
                streams_home.display()
            );
            assert!(
                !in_ci(),
                "{msg} CI=true: end-to-end tests are never skipped in CI."
            );
            eprintln!("!! SKIPPING end-to-end test: {msg}");
            return None;
        }
        let source = fs::read(SOURCE).unwrap_or_else(|e| panic!("cannot read {SOURCE}: {e}"));
        let classes = cache_dir()
            .join("streams-classes")
            .join(format!("{:016x}", fnv1a64(&source)));
        if !classes.join("StreamsWordCount.class").is_file() {
            compile(&streams_home, &classes);
        }
        Some(WordCount {
            classes,
            streams_home,
        })
    }

    /// Starts the word count as application `app_id` from `input` to `output` with
    /// `processing.guarantee=exactly_once_v2`, its state in `state_dir`, sleeping `delay_ms`
    /// per input line.
    pub fn start(
        &self,
        bootstrap: &str,
        app_id: &str,
        input: &str,
        output: &str,
        state_dir: &Path,
        delay_ms: u64,
    ) -> Background {
        let classpath = format!(
            "{}:{}/libs/*",
            self.classes.display(),
            self.streams_home.display()
        );
        let log_config = format!(
            "-Dlog4j2.configurationFile={}/config/log4j2.properties",
            self.streams_home.display()
        );
        let state_dir = state_dir.display().to_string();
        let delay = delay_ms.to_string();
        Background::spawn(
            java_tool("java"),
            "java",
            &[
                "-Xmx256m",
                "-XX:+UseSerialGC",
                &log_config,
                "-cp",
                &classpath,
                "StreamsWordCount",
                bootstrap,
                app_id,
                input,
                output,
                &state_dir,
                &delay,
            ],
        )
    }
}

/// `$JAVA_HOME/bin/<tool>`, else `<tool>` from `PATH`.
fn java_tool(tool: &str) -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) => PathBuf::from(home).join("bin").join(tool),
        None => PathBuf::from(tool),
    }
}

/// Compiles [`SOURCE`] into `classes` (through a temporary directory renamed at the end, so
/// a concurrent or interrupted build never leaves half a directory behind).
fn compile(streams_home: &Path, classes: &Path) {
    let tmp = classes.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
    let libs = format!("{}/libs/*", streams_home.display());
    let out = Command::new(java_tool("javac"))
        .args(["-cp", &libs, "-d"])
        .arg(&tmp)
        .arg(SOURCE)
        .output()
        .unwrap_or_else(|e| panic!("cannot run javac: {e}"));
    assert!(
        out.status.success(),
        "javac {SOURCE} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test may have compiled the same source meanwhile: either copy will do.
    if fs::rename(&tmp, classes).is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust releases (the cache key).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The JSON events the word count printed so far.
pub fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// How many input lines the word count has processed (its last `processed` event), 0
/// before the first.
pub fn processed(stdout: &str) -> u64 {
    events(stdout)
        .iter()
        .rev()
        .find(|e| e["name"] == "processed")
        .and_then(|e| e["count"].as_u64())
        .unwrap_or(0)
}

/// The records restored from changelogs, summed over every `restored` event.
pub fn restored(stdout: &str) -> u64 {
    events(stdout)
        .iter()
        .filter(|e| e["name"] == "restored")
        .filter_map(|e| e["records"].as_u64())
        .sum()
}

/// The states the application went through, in order (`REBALANCING`, `RUNNING`, ...).
pub fn states(stdout: &str) -> Vec<String> {
    events(stdout)
        .iter()
        .filter(|e| e["name"] == "state")
        .filter_map(|e| e["state"].as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn events_are_read_from_the_printed_lines() {
        let out = "{\"name\":\"state\",\"state\":\"RUNNING\"}\nnoise\n\
                   {\"name\":\"processed\",\"count\":1}\n{\"name\":\"processed\",\"count\":2}\n\
                   {\"name\":\"restored\",\"store\":\"counts\",\"partition\":0,\"records\":3}\n\
                   {\"name\":\"restored\",\"store\":\"counts\",\"partition\":1,\"records\":4}\n";
        assert_eq!(processed(out), 2);
        assert_eq!(restored(out), 7);
        assert_eq!(states(out), vec!["RUNNING"]);
        assert_eq!(processed(""), 0);
    }
}
