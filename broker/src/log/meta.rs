//! Small metadata files: a log dir's `meta.properties`, a partition's `partition.metadata`,
//! and Kafka's textual form of UUIDs (URL-safe base64 without padding, 22 characters).

use std::collections::BTreeMap;
use std::path::Path;

use uuid::Uuid;

use super::checkpoint::write_atomic;
use super::error::{Error, Result};

/// File name of a log dir's identity file.
pub const META_PROPERTIES: &str = "meta.properties";
/// File name of a partition's topic-id file.
pub const PARTITION_METADATA: &str = "partition.metadata";

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Formats a UUID the way Kafka prints `Uuid` (URL-safe base64, no padding), which is what
/// users see in `kafka-topics --describe` and in `partition.metadata`.
pub fn uuid_to_kafka_string(id: Uuid) -> String {
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        let chars = 1 + chunk.len();
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
        }
    }
    out
}

/// Parses Kafka's base64 UUID form; `None` if it is not exactly 16 bytes of URL-safe base64.
pub fn uuid_from_kafka_string(s: &str) -> Option<Uuid> {
    let s = s.trim().trim_end_matches('=');
    if s.len() != 22 {
        return None;
    }
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(16);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    let arr: [u8; 16] = out.try_into().ok()?;
    Some(Uuid::from_bytes(arr))
}

/// A random UUID as Kafka generates them: never one whose string form starts with '-'
/// (it would look like a command-line flag) and never the reserved all-zero id.
pub fn random_kafka_uuid() -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if !id.is_nil() && !uuid_to_kafka_string(id).starts_with('-') {
            return id;
        }
    }
}

fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=').or_else(|| l.split_once(':'))?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The `node.id` and `cluster.id` that `dir/meta.properties` pins, if the file exists (either
/// may be absent from an old file). Read-only: the metadata quorum checks them before it
/// opens its log, because a voter started on another node's data must not vote with it.
pub fn stored_meta_ids(dir: &Path) -> Result<Option<(Option<String>, Option<String>)>> {
    let path = dir.join(META_PROPERTIES);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let props = parse_properties(&text);
            let node = props
                .get("node.id")
                .or_else(|| props.get("broker.id"))
                .cloned();
            Ok(Some((node, props.get("cluster.id").cloned())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", &path, e)),
    }
}

/// Ensures `dir/meta.properties` exists and agrees with this broker. Creates it (with a new
/// `directory.id`) when missing; fails naming the file when `node.id` or `cluster.id` differ,
/// because that means the directory belongs to another broker or cluster. Returns the
/// directory id.
pub(crate) fn ensure_meta_properties(dir: &Path, node_id: i32, cluster_id: &str) -> Result<String> {
    let path = dir.join(META_PROPERTIES);
    let bad = |reason: String| Error::BadMetadata {
        path: path.clone(),
        reason,
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => Some(parse_properties(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    let mut props = match existing {
        None => BTreeMap::new(),
        Some(props) => {
            let version = props.get("version").map(String::as_str).unwrap_or("0");
            let stored_node = match version {
                "0" => props.get("broker.id").or_else(|| props.get("node.id")),
                "1" => props.get("node.id"),
                v => return Err(bad(format!("unsupported meta.properties version {v}"))),
            };
            if let Some(stored) = stored_node {
                if stored.parse::<i32>().ok() != Some(node_id) {
                    return Err(bad(format!(
                        "stored node.id {stored} doesn't match the configured node.id {node_id}; \
                         this directory belongs to another broker"
                    )));
                }
            }
            if let Some(stored) = props.get("cluster.id") {
                if stored != cluster_id {
                    return Err(bad(format!(
                        "stored cluster.id {stored} doesn't match the configured cluster id {cluster_id}"
                    )));
                }
            }
            let complete = version == "1"
                && props.contains_key("node.id")
                && props.contains_key("cluster.id")
                && props
                    .get("directory.id")
                    .is_some_and(|d| uuid_from_kafka_string(d).is_some());
            if complete {
                return Ok(props.get("directory.id").cloned().unwrap_or_default());
            }
            props
        }
    };
    // Create or upgrade to the v1 (KRaft) layout.
    props.remove("broker.id");
    props.insert("version".into(), "1".into());
    props.insert("node.id".into(), node_id.to_string());
    props.insert("cluster.id".into(), cluster_id.to_string());
    let dir_id = match props.get("directory.id") {
        Some(d) if uuid_from_kafka_string(d).is_some() => d.clone(),
        _ => uuid_to_kafka_string(random_kafka_uuid()),
    };
    props.insert("directory.id".into(), dir_id.clone());
    let mut text = String::from("#\n#Written by oxbow-broker\n");
    for (k, v) in &props {
        text.push_str(&format!("{k}={v}\n"));
    }
    write_atomic(&path, text.as_bytes())?;
    Ok(dir_id)
}

/// Reads a partition's topic id from `partition.metadata`, if the file exists.
pub(crate) fn read_partition_metadata(dir: &Path) -> Result<Option<Uuid>> {
    let path = dir.join(PARTITION_METADATA);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    let props = parse_properties(&text);
    let id = props
        .get("topic_id")
        .and_then(|s| uuid_from_kafka_string(s))
        .ok_or_else(|| Error::BadMetadata {
            path: path.clone(),
            reason: "missing or malformed topic_id".into(),
        })?;
    Ok(Some(id))
}

/// Writes `partition.metadata` in Kafka's format.
pub(crate) fn write_partition_metadata(dir: &Path, id: Uuid) -> Result<()> {
    let text = format!("version: 0\ntopic_id: {}\n", uuid_to_kafka_string(id));
    write_atomic(&dir.join(PARTITION_METADATA), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_uuid_strings_round_trip() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let s = uuid_to_kafka_string(id);
        assert_eq!(s, "ASNFZ4mrze8BI0VniavN7w");
        assert_eq!(uuid_from_kafka_string(&s), Some(id));
        for _ in 0..100 {
            let r = random_kafka_uuid();
            assert_eq!(uuid_from_kafka_string(&uuid_to_kafka_string(r)), Some(r));
        }
        assert_eq!(uuid_from_kafka_string("short"), None);
    }

    #[test]
    fn meta_properties_created_then_validated() {
        let d = tempfile::tempdir().unwrap();
        let id = ensure_meta_properties(d.path(), 1, "clusterA").unwrap();
        let text = std::fs::read_to_string(d.path().join(META_PROPERTIES)).unwrap();
        assert!(text.contains("version=1\n"), "{text}");
        assert!(text.contains("node.id=1\n"), "{text}");
        assert!(text.contains("cluster.id=clusterA\n"), "{text}");
        assert!(text.contains(&format!("directory.id={id}\n")), "{text}");
        assert_eq!(ensure_meta_properties(d.path(), 1, "clusterA").unwrap(), id);
        let err = ensure_meta_properties(d.path(), 2, "clusterA").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("meta.properties") && msg.contains("node.id"),
            "{msg}"
        );
        assert!(ensure_meta_properties(d.path(), 1, "other").is_err());
    }
}
