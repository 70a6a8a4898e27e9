//! Metadata (key 3): brokers, controller, topics with ids, partitions with leader, epoch,
//! replicas and ISR. Auto-creates requested topics when `auto.create.topics.enable` and the
//! client allows it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, Ctx};
use crate::broker::NewTopic;
use crate::metadata::{topic_name, TopicImage};

/// Kafka sends -2147483648 for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: MetadataRequest) -> MetadataResponse {
    let broker = ctx.broker;
    // v0 has no "all topics" marker: an empty list means all topics; v1+ uses null.
    let requested: Option<Vec<(Option<String>, Uuid)>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && ctx.version == 0 => None,
        // A topic asked for by id is looked up by id, whatever its name says: the Java client
        // leaves the name at its default, "" (Kafka's broker looks at the ids first too). The
        // consumer asks so for the topics of an assignment it cannot name, e.g. those the
        // broker matched to its regular expression subscription.
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| {
                    let name = t
                        .name
                        .filter(|_| t.topic_id.is_nil())
                        .map(|n| n.0.as_str().to_string());
                    (name, t.topic_id)
                })
                .collect(),
        ),
    };
    // Kafka before v4 always allows auto-creation.
    let allow_auto_create = ctx.version < 4 || request.allow_auto_topic_creation;

    let mut topics = Vec::new();
    match requested {
        None => {
            let image = broker.image();
            for topic in image.topics.values() {
                topics.push(topic_response(ctx, topic));
            }
        }
        Some(list) => {
            for (name, id) in list {
                let image = broker.image();
                let found = match &name {
                    Some(name) => image.topic(name).cloned(),
                    None => image.topic_by_id(&id).cloned(),
                };
                if let Some(topic) = found {
                    topics.push(topic_response(ctx, &topic));
                    continue;
                }
                let Some(name) = name else {
                    topics.push(
                        MetadataResponseTopic::default()
                            .with_topic_id(id)
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
                    );
                    continue;
                };
                let error = |code: ResponseError| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(str_bytes(name.clone()))))
                        .with_error_code(code.code())
                        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                };
                if topic_name::validate(&name).is_err() {
                    topics.push(error(ResponseError::InvalidTopicException));
                } else if allow_auto_create
                    && broker.config().auto_create_topics_enable
                    && !topic_name::is_internal(&name)
                {
                    let new = NewTopic {
                        name: name.clone(),
                        num_partitions: -1,
                        replication_factor: -1,
                        ..Default::default()
                    };
                    match broker.create_topic(new, false).await {
                        // Like Kafka, answer LEADER_NOT_AVAILABLE for a topic created by this
                        // request; clients retry and then see it with its leaders.
                        Ok(_) => topics.push(error(ResponseError::LeaderNotAvailable)),
                        Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                            match broker.image().topic(&name) {
                                Some(t) => topics.push(topic_response(ctx, t)),
                                None => topics.push(error(ResponseError::LeaderNotAvailable)),
                            }
                        }
                        Err(e) => topics.push(error(
                            ResponseError::try_from_code(e.code)
                                .unwrap_or(ResponseError::UnknownServerError),
                        )),
                    }
                } else {
                    topics.push(error(ResponseError::UnknownTopicOrPartition));
                }
            }
        }
    }

    let image = broker.image();
    let brokers = broker
        .brokers_on(&image, &ctx.listener.name)
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_rack(rack.map(str_bytes))
        })
        .collect();
    let controller = broker.controller_id_for_clients();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id((ctx.version >= 2).then(|| str_bytes(image.cluster_id.clone())))
        .with_controller_id(BrokerId(if ctx.version >= 1 { controller } else { -1 }))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn topic_response(ctx: &Ctx<'_>, topic: &TopicImage) -> MetadataResponseTopic {
    let image = ctx.broker.image();
    let listener = ctx.listener.name.as_str();
    let reachable = |id: i32| ctx.broker.endpoint_of(&image, id, listener).is_some();
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            // Kafka's KRaftMetadataCache: replicas that are fenced, unregistered or have no
            // endpoint on this listener are offline (v5+).
            let offline: Vec<BrokerId> = if ctx.version >= 5 {
                p.replicas
                    .iter()
                    .copied()
                    .filter(|r| !reachable(*r))
                    .map(BrokerId)
                    .collect()
            } else {
                vec![]
            };
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(if ctx.version >= 7 { p.leader_epoch } else { -1 })
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
                .with_offline_replicas(offline);
            if p.leader < 0 {
                // No leader (every ISR member is fenced): clients wait and retry.
                return partition.with_error_code(ResponseError::LeaderNotAvailable.code());
            }
            if reachable(p.leader) {
                return partition;
            }
            // A leader without an endpoint on this listener is LISTENER_NOT_FOUND (v6+;
            // LEADER_NOT_AVAILABLE before) with no leader.
            let code = if ctx.version >= 6 {
                ResponseError::ListenerNotFound
            } else {
                ResponseError::LeaderNotAvailable
            };
            partition
                .with_error_code(code.code())
                .with_leader_id(BrokerId(-1))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(if ctx.version >= 10 {
            topic.id
        } else {
            Uuid::nil()
        })
        .with_is_internal(ctx.version >= 1 && topic_name::is_internal(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
