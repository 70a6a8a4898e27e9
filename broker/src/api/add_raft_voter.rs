//! AddRaftVoter (key 80, KIP-853): `kafka-metadata-quorum.sh add-controller` makes a
//! controller that joined through `controller.quorum.bootstrap.servers` a voter.
//!
//! Like Kafka's brokers, any node takes the request and the active controller carries it
//! out ([`ControllerRequest::ChangeVoters`]; the rules and errors are in
//! `metadata::quorum::voters`). Checked here, as Kafka's leader does before it looks at the
//! voters: the cluster id (INCONSISTENT_CLUSTER_ID) and a listener named as the controllers'
//! (`controller.listener.names`' first entry) to reach the new voter on (INVALID_REQUEST).

use kafka_protocol::messages::{AddRaftVoterRequest, AddRaftVoterResponse};
use kafka_protocol::ResponseError;

use super::{ApiError, Ctx};
use crate::controller::{ControllerReply, ControllerRequest};
use crate::metadata::VoterChange;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: AddRaftVoterRequest) -> AddRaftVoterResponse {
    match add(ctx, request).await {
        Ok(()) => AddRaftVoterResponse::default(),
        Err(e) => AddRaftVoterResponse::default()
            .with_error_code(e.code)
            .with_error_message(e.message_str()),
    }
}

async fn add(ctx: &Ctx<'_>, request: AddRaftVoterRequest) -> Result<(), ApiError> {
    check_cluster_id(ctx, request.cluster_id.as_deref())?;
    let name = ctx
        .broker
        .config()
        .controller_listener_names
        .first()
        .cloned()
        .unwrap_or_else(|| "CONTROLLER".to_string());
    let listener = request
        .listeners
        .iter()
        .find(|l| l.name.as_str() == name)
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "Provided listeners {:?} do not contain a listener for {name}",
                    request
                        .listeners
                        .iter()
                        .map(|l| l.name.to_string())
                        .collect::<Vec<_>>()
                ),
            )
        })?;
    let change = VoterChange::Add {
        id: request.voter_id,
        directory_id: request.voter_directory_id,
        host: listener.host.to_string(),
        port: listener.port,
        timeout_ms: request.timeout_ms,
    };
    change_voters(ctx, change).await
}

/// Hands a voter change to the active controller (through this node's controller channel)
/// and waits until it is committed or refused.
pub(crate) async fn change_voters(ctx: &Ctx<'_>, change: VoterChange) -> Result<(), ApiError> {
    match ctx
        .broker
        .submit(ControllerRequest::ChangeVoters(change))
        .await?
    {
        ControllerReply::Done => Ok(()),
        other => Err(ApiError::new(
            ResponseError::UnknownServerError,
            format!("unexpected controller reply {other:?}"),
        )),
    }
}

/// INCONSISTENT_CLUSTER_ID when the request names another cluster (a missing id is
/// accepted, as Kafka does).
pub(crate) fn check_cluster_id(ctx: &Ctx<'_>, requested: Option<&str>) -> Result<(), ApiError> {
    let ours = ctx.broker.image().cluster_id.clone();
    match requested {
        Some(id) if id != ours => Err(ApiError::new(
            ResponseError::InconsistentClusterId,
            format!("the request is for cluster {id}, this is cluster {ours}"),
        )),
        _ => Ok(()),
    }
}
