//! OffsetFetch (key 9): committed offsets of a group (one group before v8, many after).
//! Partitions without a commit report offset -1, as Kafka does.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};
use crate::group::CommittedOffset;

type Fetched = Vec<(String, i32, Option<CommittedOffset>)>;
type ByTopic = Vec<(String, Vec<(i32, Row)>)>;

/// A partition's committed offset, or the error it is answered with.
type Row = Result<Option<CommittedOffset>, i16>;

/// The committed offsets of `group`. With `require_stable` (v7+, what read_committed
/// consumers ask), a partition with offsets committed in a transaction that has not ended
/// is answered UNSTABLE_OFFSET_COMMIT, as Kafka does, so the consumer waits for the
/// transaction's outcome instead of starting from the previous offset.
async fn fetch(
    ctx: &Ctx<'_>,
    group: &str,
    wanted: Option<Vec<(String, i32)>>,
    require_stable: bool,
) -> Result<Vec<(String, i32, Row)>, i16> {
    if group.is_empty() {
        return Err(ResponseError::InvalidGroupId.code());
    }
    let groups = ctx.broker.groups();
    let rows: Fetched = groups.fetch_offsets(ctx.broker, group, wanted).await?;
    let unstable = if require_stable {
        groups.pending_txn_partitions(group)
    } else {
        Default::default()
    };
    Ok(rows
        .into_iter()
        .map(|(t, p, c)| {
            let row = if unstable.contains(&(t.clone(), p)) {
                Err(ResponseError::UnstableOffsetCommit.code())
            } else {
                Ok(c)
            };
            (t, p, row)
        })
        .collect())
}

/// Groups `rows` by topic, preserving first-seen order.
fn by_topic(rows: Vec<(String, i32, Row)>) -> ByTopic {
    let mut out: ByTopic = Vec::new();
    for (topic, partition, committed) in rows {
        match out.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, ps)) => ps.push((partition, committed)),
            None => out.push((topic, vec![(partition, committed)])),
        }
    }
    out
}

pub(crate) async fn handle(ctx: &Ctx<'_>, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.version;
    if v >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            groups.push({
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .flat_map(|t| {
                            let name = t.name.0.as_str().to_string();
                            t.partition_indexes
                                .into_iter()
                                .map(move |p| (name.clone(), p))
                        })
                        .collect()
                });
                let member = g.member_id.as_ref().map(|m| m.as_str());
                let checked = ctx
                    .broker
                    .groups()
                    .check_fetch_member(ctx.broker, g.group_id.0.as_str(), member, g.member_epoch)
                    .await;
                let fetched = match checked {
                    Ok(()) => {
                        fetch(ctx, g.group_id.0.as_str(), wanted, request.require_stable).await
                    }
                    Err(code) => Err(code),
                };
                match fetched {
                    Err(code) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code),
                    Ok(rows) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_topics(
                            by_topic(rows)
                                .into_iter()
                                .map(|(topic, ps)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(str_bytes(topic)))
                                        .with_partitions(
                                            ps.into_iter()
                                                .map(|(p, c)| {
                                                    let (offset, epoch, meta, code) = parts(c);
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_error_code(code)
                                                        .with_committed_offset(offset)
                                                        .with_committed_leader_epoch(epoch)
                                                        .with_metadata(Some(str_bytes(meta)))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        ),
                }
            });
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .flat_map(|t| {
                let name = t.name.0.as_str().to_string();
                t.partition_indexes
                    .into_iter()
                    .map(move |p| (name.clone(), p))
            })
            .collect()
    });
    let group: GroupId = request.group_id;
    let require_stable = v >= 7 && request.require_stable;
    match fetch(ctx, group.0.as_str(), wanted, require_stable).await {
        Err(code) if v >= 2 => OffsetFetchResponse::default().with_error_code(code),
        Err(_) => OffsetFetchResponse::default(),
        Ok(rows) => OffsetFetchResponse::default().with_topics(
            by_topic(rows)
                .into_iter()
                .map(|(topic, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, c)| {
                                    let (offset, epoch, meta, code) = parts(c);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(if v >= 5 {
                                            epoch
                                        } else {
                                            -1
                                        })
                                        .with_metadata(Some(str_bytes(meta)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

/// Offset, leader epoch, metadata and error code of a row (an error reports offset -1).
fn parts(c: Row) -> (i64, i32, String, i16) {
    match c {
        Ok(Some(c)) => (c.offset, c.leader_epoch, c.metadata, 0),
        Ok(None) => (-1, -1, String::new(), 0),
        Err(code) => (-1, -1, String::new(), code),
    }
}
