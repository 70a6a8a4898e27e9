//! `broker.rack` from the pod's annotations (`oxbow.rack.annotations.file`), for brokers run by
//! oxbow-operator with `spec.rack.topologyKey`.
//!
//! Kubernetes tells a pod nothing about its node's labels, and Strimzi's way round it (an init
//! container that asks the API server and writes `broker.rack` into the config) needs a shell
//! and API access in the pod, which the distroless broker image and its service-account-less
//! pods do not have. So the operator copies the node's label onto the pod as an annotation, the
//! pod template mounts the pod's annotations as a downward-API file, and the broker waits at
//! start until that file holds the annotation: the operator writes it only once the pod is
//! bound to a node, which may be after the container has started, and the kubelet rewrites the
//! file when the annotations change.
//!
//! The file's format is the kubelet's (`fieldpath.FormatMap`): one `key="value"` line per
//! annotation, sorted by key, the value quoted as Go's `%q` (`strconv.Quote`) does.

use std::path::Path;
use std::time::Duration;

use tracing::info;

/// Why the rack cannot be read from the annotations file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RackError {
    /// The annotation's line is not `key="value"` with a Go-quoted value.
    #[error("annotation {annotation} in {file}: {reason}")]
    Malformed {
        /// The annotation looked for.
        annotation: String,
        /// The file read.
        file: String,
        /// What is wrong with its line.
        reason: String,
    },
    /// The annotation is there but empty: no rack to take.
    #[error("annotation {annotation} in {file} is empty: broker.rack must name a rack")]
    Empty {
        /// The annotation looked for.
        annotation: String,
        /// The file read.
        file: String,
    },
    /// `server.max.startup.time.ms` passed before the annotation appeared.
    #[error(
        "annotation {annotation} did not appear in {file} within server.max.startup.time.ms \
         ({waited:?}): {hint}"
    )]
    TimedOut {
        /// The annotation looked for.
        annotation: String,
        /// The file read.
        file: String,
        /// How long the broker waited.
        waited: Duration,
        /// What usually keeps it from appearing.
        hint: &'static str,
    },
}

/// The value of `annotation` in `text`, a downward-API `metadata.annotations` file: `Ok(None)`
/// while the annotation is not there (the operator has not written it yet), its unquoted value
/// when it is. Lines of other annotations are not looked at, so one the kubelet wrote in a way
/// this parser does not know cannot keep the broker from starting. An empty value or a line that
/// is not `annotation="..."` with Go's quoting is an error.
pub fn rack_from_annotations(
    text: &str,
    annotation: &str,
    file: &str,
) -> Result<Option<String>, RackError> {
    let Some(quoted) = text
        .lines()
        .find_map(|line| line.strip_prefix(annotation)?.strip_prefix('='))
    else {
        return Ok(None);
    };
    let value =
        unquote_go(quoted.trim_end_matches('\r')).map_err(|reason| RackError::Malformed {
            annotation: annotation.to_string(),
            file: file.to_string(),
            reason,
        })?;
    if value.is_empty() {
        return Err(RackError::Empty {
            annotation: annotation.to_string(),
            file: file.to_string(),
        });
    }
    Ok(Some(value))
}

/// Undoes Go's `strconv.Quote`: `"..."` with the escapes of a Go interpreted string literal
/// (`\a \b \f \n \r \t \v \\ \" \xNN \NNN \uNNNN \UNNNNNNNN`). Errors say what is wrong.
fn unquote_go(quoted: &str) -> Result<String, String> {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|_| quoted.len() >= 2)
        .ok_or_else(|| format!("value {quoted} is not a double-quoted string"))?;
    // Bytes, not chars: `\xNN` and octal escapes give bytes, which together must be UTF-8.
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {}
            '"' => return Err(format!("unescaped quote in {quoted}")),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
        }
        let escape = chars
            .next()
            .ok_or_else(|| format!("{quoted} ends in a lone backslash"))?;
        let mut hex = |digits: usize| -> Result<u32, String> {
            let text: String = chars.by_ref().take(digits).collect();
            if text.len() != digits || !text.chars().all(|d| d.is_ascii_hexdigit()) {
                return Err(format!("bad \\{escape} escape in {quoted}"));
            }
            u32::from_str_radix(&text, 16).map_err(|e| e.to_string())
        };
        let push_char = |out: &mut Vec<u8>, code: u32| -> Result<(), String> {
            let c = char::from_u32(code)
                .ok_or_else(|| format!("\\{escape} escape of {code:#x} is not a character"))?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            Ok(())
        };
        match escape {
            'a' => out.push(0x07),
            'b' => out.push(0x08),
            'f' => out.push(0x0c),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(0x0b),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            'x' => out.push(u8::try_from(hex(2)?).map_err(|e| e.to_string())?),
            'u' => {
                let code = hex(4)?;
                push_char(&mut out, code)?;
            }
            'U' => {
                let code = hex(8)?;
                push_char(&mut out, code)?;
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let digits = format!("{escape}{rest}");
                let byte = (digits.len() == 3 && digits.chars().all(|d| ('0'..='7').contains(&d)))
                    .then(|| u8::from_str_radix(&digits, 8).ok())
                    .flatten()
                    .ok_or_else(|| format!("bad octal escape \\{digits} in {quoted}"))?;
                out.push(byte);
            }
            other => return Err(format!("unknown escape \\{other} in {quoted}")),
        }
    }
    String::from_utf8(out).map_err(|_| format!("{quoted} does not decode to UTF-8"))
}

/// How often the file is read again while the annotation is missing.
const POLL: Duration = Duration::from_millis(250);
/// How often the wait is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Waits until `file` holds `annotation` and answers its value; gives up after `max` (`None`:
/// never, `server.max.startup.time.ms`'s default). A file that does not exist yet or cannot be
/// read counts as "not there yet" (the kubelet writes it before the container starts, but a
/// hand-run broker may be started first); what it waits for is logged every 5 s.
pub async fn wait_for_rack(
    file: &Path,
    annotation: &str,
    max: Option<Duration>,
) -> Result<String, RackError> {
    wait_for_annotation(
        file,
        annotation,
        max,
        "naming this broker's rack (oxbow-operator writes it from the node's \
         spec.rack.topologyKey label)",
        "is the pod's node labelled with the KafkaCluster's spec.rack.topologyKey?",
    )
    .await
}

/// As [`wait_for_rack`], for the annotation taken as `advertised.listeners`
/// (`oxbow.advertised.listeners.annotation`).
pub async fn wait_for_advertised_listeners(
    file: &Path,
    annotation: &str,
    max: Option<Duration>,
) -> Result<String, RackError> {
    wait_for_annotation(
        file,
        annotation,
        max,
        "naming this broker's advertised listeners (oxbow-operator writes it once the pod is \
         on a node and its external Services have their ports and addresses)",
        "does every external listener's per-broker Service have its node port or load \
         balancer address?",
    )
    .await
}

/// Waits until `file` holds `annotation` (`what` it names, for the log; `hint` for the
/// timeout's error) and answers its value.
async fn wait_for_annotation(
    file: &Path,
    annotation: &str,
    max: Option<Duration>,
    what: &str,
    hint: &'static str,
) -> Result<String, RackError> {
    let shown = file.display().to_string();
    let started = tokio::time::Instant::now();
    let mut logged: Option<tokio::time::Instant> = None;
    loop {
        let text = tokio::fs::read_to_string(file).await;
        if let Ok(text) = &text {
            if let Some(rack) = rack_from_annotations(text, annotation, &shown)? {
                info!(value = %rack, annotation, file = %shown, "read the pod's annotation");
                return Ok(rack);
            }
        }
        let waited = started.elapsed();
        if max.is_some_and(|max| waited >= max) {
            return Err(RackError::TimedOut {
                annotation: annotation.to_string(),
                file: shown,
                waited,
                hint,
            });
        }
        if logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            let state = match &text {
                Ok(_) => "the file does not have it yet".to_string(),
                Err(e) => format!("the file cannot be read yet: {e}"),
            };
            info!(
                annotation,
                file = %shown,
                waited_s = waited.as_secs(),
                "waiting for the pod annotation {what}: {state}"
            );
            logged = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "/etc/podinfo/annotations";

    fn rack(text: &str) -> Result<Option<String>, RackError> {
        rack_from_annotations(text, "oxbow.dev/rack", F)
    }

    #[test]
    fn the_annotations_value_is_the_rack_and_other_annotations_do_not_matter() {
        let text = "kubernetes.io/config.seen=\"2026-11-30T05:00:00Z\"\n\
                    oxbow.dev/config-hash=\"0a1b\"\noxbow.dev/rack=\"zone-a\"\nz=\"\\q broken\"";
        assert_eq!(rack(text), Ok(Some("zone-a".to_string())));
        // The kubelet writes no newline after the last line.
        assert_eq!(
            rack("oxbow.dev/rack=\"eu-west-1b\""),
            Ok(Some("eu-west-1b".into()))
        );
        // A longer key with the same prefix is another annotation.
        assert_eq!(
            rack("oxbow.dev/rack-old=\"x\"\noxbow.dev/racks=\"y\""),
            Ok(None)
        );
    }

    #[test]
    fn a_missing_annotation_means_wait_and_an_empty_one_is_refused() {
        assert_eq!(rack(""), Ok(None));
        assert_eq!(rack("oxbow.dev/config-hash=\"0a1b\""), Ok(None));
        let empty = rack("oxbow.dev/rack=\"\"").unwrap_err();
        assert!(matches!(empty, RackError::Empty { .. }), "{empty:?}");
        assert!(empty.to_string().contains("is empty"), "{empty}");
    }

    #[test]
    fn go_quoting_is_undone() {
        // What strconv.Quote writes for these values.
        for (quoted, value) in [
            (r#""a \"b\" c""#, "a \"b\" c"),
            (r#""back\\slash""#, "back\\slash"),
            (r#""tab\there\nnl\r""#, "tab\there\nnl\r"),
            (r#""\a\b\f\v""#, "\u{7}\u{8}\u{c}\u{b}"),
            (r#""ctl\x01\x7f""#, "ctl\u{1}\u{7f}"),
            (r#""zürich-1""#, "zürich-1"),
            (r#""\u00a0nbsp""#, "\u{a0}nbsp"),
            (r#""\U0001f600""#, "\u{1f600}"),
            (r#""\303\274""#, "ü"),
            (r#""\xc3\xbc""#, "ü"),
        ] {
            assert_eq!(
                rack(&format!("oxbow.dev/rack={quoted}")),
                Ok(Some(value.to_string())),
                "{quoted}"
            );
        }
    }

    #[test]
    fn a_malformed_value_is_an_error_naming_the_annotation() {
        for bad in [
            "zone-a",
            "\"zone-a",
            "\"",
            r#""a\qb""#,
            r#""a\""#,
            r#""a"b""#,
            r#""\x4""#,
            r#""\ud800""#,
            r#""\xff""#,
            r#""\8""#,
        ] {
            let e = rack(&format!("oxbow.dev/rack={bad}")).unwrap_err();
            assert!(matches!(e, RackError::Malformed { .. }), "{bad}: {e:?}");
            assert!(
                e.to_string().starts_with("annotation oxbow.dev/rack in "),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn the_wait_ends_when_the_file_gets_the_annotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("annotations");
        let writer = {
            let file = file.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                tokio::fs::write(&file, "a=\"b\"").await.expect("write");
                tokio::time::sleep(Duration::from_millis(300)).await;
                tokio::fs::write(&file, "a=\"b\"\noxbow.dev/rack=\"zone-b\"")
                    .await
                    .expect("write");
            })
        };
        let got = wait_for_rack(&file, "oxbow.dev/rack", Some(Duration::from_secs(30))).await;
        writer.await.expect("writer");
        assert_eq!(got, Ok("zone-b".to_string()));
    }

    #[tokio::test]
    async fn the_wait_gives_up_after_the_startup_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("annotations");
        std::fs::write(&file, "a=\"b\"").expect("write");
        let e = wait_for_rack(&file, "oxbow.dev/rack", Some(Duration::from_millis(600)))
            .await
            .unwrap_err();
        assert!(matches!(e, RackError::TimedOut { .. }), "{e:?}");
        assert!(e.to_string().contains("spec.rack.topologyKey"), "{e}");
    }
}
