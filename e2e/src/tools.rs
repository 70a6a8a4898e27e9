//! Apache Kafka's command-line tools against whatever a test runs: one [`Broker`], a
//! [`Cluster`], the CLI and group suites' [`crate::Target`], or a `host:port,…` list
//! ([`Bootstrap`]). The suites share these so that every one of them runs a tool, creates a
//! topic or reads a tool's table the same way, with the same checks.

use std::collections::BTreeMap;

use crate::{Broker, Cluster, ToolOutput, Tools};

/// What a tool connects to: one broker, a cluster, or a `host:port,…` list.
pub trait Bootstrap {
    /// `host:port,…` for `--bootstrap-server`.
    fn bootstrap_servers(&self) -> String;
}

impl Bootstrap for Broker {
    fn bootstrap_servers(&self) -> String {
        self.bootstrap()
    }
}

impl Bootstrap for Cluster {
    fn bootstrap_servers(&self) -> String {
        self.bootstrap()
    }
}

impl Bootstrap for str {
    fn bootstrap_servers(&self) -> String {
        self.to_string()
    }
}

impl Bootstrap for String {
    fn bootstrap_servers(&self) -> String {
        self.clone()
    }
}

/// Runs `<tool> --bootstrap-server <b> <args>` with [`crate::TOOL_TIMEOUT`]; the exit status
/// is not checked (callers say `.ok()` or `.failed()`).
pub fn run_on(t: &Tools, b: &(impl Bootstrap + ?Sized), tool: &str, args: &[&str]) -> ToolOutput {
    let bs = b.bootstrap_servers();
    let mut all = vec!["--bootstrap-server", bs.as_str()];
    all.extend_from_slice(args);
    t.run(tool, &all)
}

/// `kafka-topics.sh --bootstrap-server <b> <args>` (exit status not checked).
pub fn topics(t: &Tools, b: &(impl Bootstrap + ?Sized), args: &[&str]) -> ToolOutput {
    run_on(t, b, "kafka-topics.sh", args)
}

/// `kafka-configs.sh --bootstrap-server <b> <args>` (exit status not checked).
pub fn configs(t: &Tools, b: &(impl Bootstrap + ?Sized), args: &[&str]) -> ToolOutput {
    run_on(t, b, "kafka-configs.sh", args)
}

/// `kafka-consumer-groups.sh --bootstrap-server <b> <args>` (exit status not checked).
pub fn groups(t: &Tools, b: &(impl Bootstrap + ?Sized), args: &[&str]) -> ToolOutput {
    run_on(t, b, "kafka-consumer-groups.sh", args)
}

/// Creates `topic` with `partitions` partitions (the broker's default replication factor);
/// panics unless the tool succeeds and prints `Created topic <topic>.` on a line of its own.
pub fn create_topic(t: &Tools, b: &(impl Bootstrap + ?Sized), topic: &str, partitions: u32) {
    create_topic_with(t, b, topic, partitions, &[]);
}

/// Like [`create_topic`], with more `kafka-topics.sh --create` arguments (`extra`: e.g.
/// `--config k=v`, `--replication-factor n`).
pub fn create_topic_with(
    t: &Tools,
    b: &(impl Bootstrap + ?Sized),
    topic: &str,
    partitions: u32,
    extra: &[&str],
) {
    let p = partitions.to_string();
    let mut args = vec!["--create", "--topic", topic, "--partitions", &p];
    args.extend_from_slice(extra);
    topics(t, b, &args)
        .ok()
        .expect_line(&format!("Created topic {topic}."));
}

/// `kafka-console-producer.sh` writing one record per line of `lines` to `topic`, with more
/// arguments `extra`; panics unless it exits 0.
pub fn produce_lines(
    t: &Tools,
    b: &(impl Bootstrap + ?Sized),
    topic: &str,
    lines: &str,
    extra: &[&str],
) -> ToolOutput {
    let bs = b.bootstrap_servers();
    let mut args = vec!["--bootstrap-server", bs.as_str(), "--topic", topic];
    args.extend_from_slice(extra);
    t.run_stdin("kafka-console-producer.sh", &args, lines).ok()
}

/// kcat producing one record per line of `input` to `topic` (`extra`: e.g. `-p 0`, `-K:`,
/// `-X acks=all`); panics unless it exits 0.
pub fn kcat_produce(
    t: &Tools,
    b: &(impl Bootstrap + ?Sized),
    topic: &str,
    extra: &[&str],
    input: &str,
) -> ToolOutput {
    let bs = b.bootstrap_servers();
    let mut args = vec!["-b", bs.as_str(), "-P", "-t", topic];
    args.extend_from_slice(extra);
    t.run_stdin("kcat", &args, input).ok()
}

/// The lines `kafka-get-offsets.sh --topic <topic> --time <time>` prints
/// (`topic:partition:offset`, in partition order); panics unless it exits 0. `time` is `-1`
/// (the log end offsets), `-2` (the log start offsets) or a timestamp.
pub fn get_offsets(
    t: &Tools,
    b: &(impl Bootstrap + ?Sized),
    topic: &str,
    time: &str,
) -> Vec<String> {
    let out = run_on(
        t,
        b,
        "kafka-get-offsets.sh",
        &["--topic", topic, "--time", time],
    )
    .ok();
    out.lines().iter().map(|s| s.to_string()).collect()
}

/// Partition → log end offset of `topic`, from `kafka-get-offsets.sh --time -1`; panics
/// unless the tool exits 0 and every line is `topic:partition:offset`.
pub fn end_offsets(t: &Tools, b: &(impl Bootstrap + ?Sized), topic: &str) -> BTreeMap<i32, i64> {
    get_offsets(t, b, topic, "-1")
        .iter()
        .map(|l| {
            let parsed = l
                .rsplit_once(':')
                .and_then(|(rest, offset)| Some((rest.rsplit_once(':')?.1, offset)))
                .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)));
            parsed.unwrap_or_else(|| panic!("not topic:partition:offset: {l:?}"))
        })
        .collect()
}

/// Rows of a table printed by `kafka-consumer-groups.sh`: the header is the first stdout
/// line whose first word is `first_col`; each following non-empty line is a row, cut at the
/// columns where the header's words start (cells may be empty, e.g. GROUP-INSTANCE-ID of a
/// dynamic member). `COORDINATOR (ID)` is one column; whitespace inside a cell is collapsed
/// to one space. No such header: no rows.
pub fn table(out: &ToolOutput, first_col: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = out.stdout.lines();
    let Some(header) = lines.find(|l| l.split_whitespace().next() == Some(first_col)) else {
        return Vec::new();
    };
    // (name, start column)
    let mut cols: Vec<(String, usize)> = Vec::new();
    let mut prev_space = true;
    for (i, c) in header.char_indices() {
        if !c.is_whitespace() && prev_space {
            let word = header[i..].split_whitespace().next().unwrap_or_default();
            match cols.last_mut() {
                Some(last) if header[i..].starts_with("(ID)") => last.0.push_str(" (ID)"),
                _ => cols.push((word.to_string(), i)),
            }
        }
        prev_space = c.is_whitespace();
    }
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            cols.iter()
                .enumerate()
                .map(|(i, (name, start))| {
                    let end = cols.get(i + 1).map_or(l.len(), |c| c.1.min(l.len()));
                    let cell = l.get((*start).min(l.len())..end).unwrap_or("");
                    (
                        name.clone(),
                        cell.split_whitespace().collect::<Vec<_>>().join(" "),
                    )
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stdout: &str) -> ToolOutput {
        use std::os::unix::process::ExitStatusExt;
        ToolOutput {
            cmdline: "kafka-consumer-groups.sh".into(),
            status: std::process::ExitStatus::from_raw(0),
            stdout: stdout.into(),
            stderr: String::new(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn table_cuts_rows_at_the_header_columns() {
        let out = output(
            "\nConsumer group 'g' has no active members.\n\n\
             GROUP  COORDINATOR (ID)      STATE  #MEMBERS\n\
             g      127.0.0.1:9092  (0)   Empty  0\n\
             \n\
             GROUP  TOPIC\n",
        );
        let rows = table(&out, "GROUP");
        assert_eq!(rows.len(), 1, "the first table only, up to its blank line");
        assert_eq!(rows[0]["GROUP"], "g");
        assert_eq!(rows[0]["COORDINATOR (ID)"], "127.0.0.1:9092 (0)");
        assert_eq!(rows[0]["STATE"], "Empty");
        assert_eq!(rows[0]["#MEMBERS"], "0");
        assert!(table(&out, "TOPIC").is_empty(), "no header starting TOPIC");
    }

    #[test]
    fn table_keeps_empty_cells_empty() {
        let out = output(
            "GROUP  CONSUMER-ID  GROUP-INSTANCE-ID  HOST\n\
             g      c-1                             /127.0.0.1\n",
        );
        let rows = table(&out, "GROUP");
        assert_eq!(rows[0]["CONSUMER-ID"], "c-1");
        assert_eq!(rows[0]["GROUP-INSTANCE-ID"], "");
        assert_eq!(rows[0]["HOST"], "/127.0.0.1");
    }
}
