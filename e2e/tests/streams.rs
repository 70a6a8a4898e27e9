//! Kafka Streams with `processing.guarantee=exactly_once_v2` (issue 11) on one broker: a
//! word count (`java/StreamsWordCount.java`, a repartition topic and a changelog topic)
//! killed with -9 mid-way and restarted from its changelog counts every word exactly once,
//! as a read_committed consumer of its output sees. Against oxbow, or Apache Kafka 4.1 with
//! `OXBOW_E2E_TARGET=kafka`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oxbow_e2e::streams::{self, WordCount};
use oxbow_e2e::tools::create_topic;
use oxbow_e2e::{poll_until, tools_or_skip, Broker, Tools};
use serde_json::Value;

/// Input lines of the word count test (3 000 words).
const LINES: usize = 1200;

/// The word count sleeps this long per word it counts, so that the whole input takes it
/// about 20 s and a kill lands while a transaction is open.
const DELAY_MS: u64 = 6;

const WORDS: [&str; 10] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

/// Line `i` of the input: one to four words, the first capitalised and some followed by
/// punctuation (the word count lower-cases and splits on non-word characters).
fn line(i: usize) -> String {
    (0..1 + i % 4)
        .map(|j| {
            let w = WORDS[(i * 7 + j * 3) % WORDS.len()];
            match j {
                0 => format!("{}{}", w[..1].to_uppercase(), &w[1..]),
                1 => format!("{w},"),
                _ => w.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The count of every word in `lines`, as the word count must end with.
fn expected_counts(lines: &[String]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for l in lines {
        for w in l
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty())
        {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// What a read_committed consumer finds in the word count's output
/// (`py/streams_counts.py`): every count committed per word, in order.
fn committed_counts(t: &Tools, b: &Broker, topic: &str) -> BTreeMap<String, Vec<i64>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/streams_counts.py");
    let bs = b.bootstrap();
    let out = t.run("python", &[script, &bs, topic]).ok();
    let v: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("streams_counts.py printed no JSON ({e}):\n{out}"));
    let history = v["history"].as_object().cloned().unwrap_or_default();
    history
        .into_iter()
        .map(|(w, h)| {
            let counts = h
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            (w, counts)
        })
        .collect()
}

/// The last committed count of every word.
fn latest(history: &BTreeMap<String, Vec<i64>>) -> BTreeMap<String, i64> {
    history
        .iter()
        .filter_map(|(w, h)| h.last().map(|c| (w.clone(), *c)))
        .collect()
}

/// Panics when a committed count is above the word's real count: a line counted twice.
fn assert_never_above(history: &BTreeMap<String, Vec<i64>>, want: &BTreeMap<String, i64>) {
    for (w, h) in history {
        let max = want.get(w).copied().unwrap_or(0);
        assert!(
            h.iter().all(|c| *c <= max),
            "{w} counted {h:?}, but it occurs {max} times: counted twice"
        );
    }
}

/// A word count with `exactly_once_v2` (3 input partitions, so three tasks per
/// sub-topology, a repartition topic and the changelog of its `counts` store) reads 1 200
/// lines (3 000 words); once counts are committed it is killed with -9 while it still has
/// words to count, and started again with the same state directory: it restores its store
/// from the changelog (reading it read_committed), the transaction the kill left open is
/// aborted when the new instance takes its transactional id over, and the words of that
/// transaction are counted again. A read_committed consumer of the output then finds
/// exactly each word's count (the latest value per word), no committed count above it at
/// any time, and (the app has no record cache) every count 1, 2, … n of each word exactly
/// once: none of the aborted transaction's. The same test with `at_least_once` fails (a
/// word counted twice).
#[test]
fn streams_exactly_once_v2_word_count_survives_a_kill_without_double_counting() {
    let t = tools_or_skip!();
    let Some(app) = WordCount::build() else {
        return;
    };
    let b = Broker::start_target(&[]);
    let started = Instant::now();
    create_topic(&t, &b, "wc-lines", 3);
    create_topic(&t, &b, "wc-counts", 1);
    let lines: Vec<String> = (0..LINES).map(line).collect();
    let want = expected_counts(&lines);
    let words = want.values().sum::<i64>() as u64;
    let bs = b.bootstrap();
    t.run_stdin(
        "kafka-console-producer.sh",
        &["--bootstrap-server", &bs, "--topic", "wc-lines"],
        &(lines.join("\n") + "\n"),
    )
    .ok();

    let state = b.scratch().join("streams-state");
    let run = || app.start(&bs, "wc-eos", "wc-lines", "wc-counts", &state, DELAY_MS);
    let mut first = run();
    // Wait until counts are committed (so the changelog holds some), a quarter of the words
    // is counted, and at least 20 counted words are not committed yet (in the open
    // transaction), then kill it at once, while it still has words to count.
    let checked = poll_until(
        "committed counts, a quarter of the words counted, 20 of them not committed",
        Duration::from_secs(180),
        || {
            if let Some(status) = first.try_status() {
                panic!("the word count exited ({status}):\n{first}");
            }
            if streams::processed(&first.stdout()) < words / 4 {
                return Err(format!("processed {}", streams::processed(&first.stdout())));
            }
            let history = committed_counts(&t, &b, "wc-counts");
            // Without a record cache each counted word's count is in the output of the
            // transaction that counted it: the committed words are the latest counts' sum.
            let committed: i64 = latest(&history).values().sum();
            // Read after the committed counts, so never below them.
            let processed = streams::processed(&first.stdout());
            if history.is_empty() || processed as i64 - committed < 20 {
                return Err(format!("processed {processed}, committed {committed}"));
            }
            Ok(processed)
        },
    );
    // The reader tends to return just after a commit made counts visible (and a commit may
    // have come while it read): let 40 more words (about 240 ms of a 1 s commit interval)
    // be counted in the open transaction before the kill.
    poll_until("40 more words counted", Duration::from_secs(60), || {
        let processed = streams::processed(&first.stdout());
        if processed >= checked + 40 {
            Ok(())
        } else {
            Err(format!("processed {processed}"))
        }
    });
    first.kill9();
    let processed_first = streams::processed(&first.stdout());
    assert!(
        processed_first < words,
        "the word count counted every word ({processed_first}) before it was killed:\n{first}"
    );
    let at_kill = committed_counts(&t, &b, "wc-counts");
    assert_never_above(&at_kill, &want);
    eprintln!(
        "killed with -9 after counting {processed_first} of {words} words, counts of {} words \
         committed ({:?} since start)",
        at_kill.len(),
        started.elapsed()
    );

    let mut second = run();
    let history = poll_until(
        "the restarted word count's committed counts to be every word's count",
        Duration::from_secs(240),
        || {
            if let Some(status) = second.try_status() {
                panic!("the restarted word count exited ({status}):\n{second}");
            }
            let history = committed_counts(&t, &b, "wc-counts");
            assert_never_above(&history, &want);
            if latest(&history) == want {
                Ok(history)
            } else {
                Err(format!(
                    "latest {:?}, want {want:?}; processed {}",
                    latest(&history),
                    streams::processed(&second.stdout())
                ))
            }
        },
    );
    let out = second.stdout();
    let restored = streams::restored(&out);
    let processed_second = streams::processed(&out);
    eprintln!(
        "restarted: restored {restored} changelog records, counted {processed_second} words; \
         counts {:?} after {:?}; {} committed count records",
        latest(&history),
        started.elapsed(),
        history.values().map(Vec::len).sum::<usize>()
    );
    // Without a record cache every count is written as it changes: read_committed must
    // show each word's counts 1, 2, … n exactly once, none of the aborted transaction's.
    for (w, h) in &history {
        let n = want.get(w).copied().unwrap_or(0);
        assert!(
            h.iter().copied().eq(1..=n),
            "{w}: committed counts {h:?}, want 1..={n} once each"
        );
    }
    assert!(
        restored > 0,
        "the restarted word count restored nothing from its changelog:\n{second}"
    );
    // Words the killed instance had counted in its open transaction were counted again,
    // yet count once: that transaction was aborted.
    assert!(
        processed_first + processed_second > words,
        "no word was counted twice ({processed_first} + {processed_second} of {words}): \
         the kill did not interrupt a transaction"
    );
    assert!(
        streams::states(&out).iter().any(|s| s == "RUNNING"),
        "{second}"
    );
    second.term();
}

#[test]
fn the_expected_counts_follow_the_generated_lines() {
    let lines: Vec<String> = (0..4).map(line).collect();
    assert_eq!(
        lines,
        vec![
            "Alpha",
            "Hotel alpha,",
            "Echo hotel, alpha",
            "Bravo echo, hotel alpha"
        ]
    );
    let counts = expected_counts(&lines);
    assert_eq!(counts["alpha"], 4);
    assert_eq!(counts["hotel"], 3);
    assert_eq!(counts.values().sum::<i64>(), 10);
}
