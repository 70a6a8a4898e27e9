//! DescribeLogDirs (key 35): each log dir with its partitions and sizes
//! (`kafka-log-dirs.sh --describe`).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{str_bytes, Ctx};

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.0.as_str().to_string(), t.partitions))
            .collect()
    });
    let results = ctx
        .broker
        .logs()
        .log_dirs_description()
        .into_iter()
        .map(|dir| {
            let (total_bytes, usable_bytes) = disk_space(&dir.path);
            let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
            for p in &dir.partitions {
                let (tp, size) = (&p.tp, p.size_bytes);
                let included = match &wanted {
                    None => true,
                    Some(w) => w
                        .get(&tp.topic)
                        .is_some_and(|ps| ps.contains(&tp.partition)),
                };
                if included {
                    topics.entry(tp.topic.clone()).or_default().push(
                        DescribeLogDirsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_partition_size(size as i64)
                            .with_offset_lag(p.offset_lag)
                            .with_is_future_key(p.is_future),
                    );
                }
            }
            DescribeLogDirsResult::default()
                .with_log_dir(str_bytes(dir.path.display().to_string()))
                .with_total_bytes(if ctx.version >= 4 { total_bytes } else { -1 })
                .with_usable_bytes(if ctx.version >= 4 { usable_bytes } else { -1 })
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            DescribeLogDirsTopic::default()
                                .with_name(TopicName(str_bytes(name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(results)
}

/// Size and free space of the file system holding `path` (-1, -1 if it cannot be read).
fn disk_space(path: &std::path::Path) -> (i64, i64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let unit = s.fragment_size() as i64;
            (s.blocks() as i64 * unit, s.blocks_available() as i64 * unit)
        }
        Err(_) => (-1, -1),
    }
}
