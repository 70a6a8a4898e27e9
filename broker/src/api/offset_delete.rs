//! OffsetDelete (key 47): delete a group's committed offsets for partitions it does not
//! subscribe to (`kafka-consumer-groups.sh --delete-offsets`).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::Ctx;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.as_str().to_string(), p.partition_index))
        })
        .collect();
    match ctx
        .broker
        .groups()
        .delete_offsets(ctx.broker, request.group_id.0.as_str(), &partitions)
        .await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(codes) => {
            let mut codes = codes.into_iter();
            OffsetDeleteResponse::default().with_topics(
                request
                    .topics
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(codes.next().unwrap_or(0))
                            })
                            .collect();
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
        }
    }
}
