//! RemoveRaftVoter (key 81, KIP-853): `kafka-metadata-quorum.sh remove-controller
//! --controller-id N --controller-directory-id D` makes voter N a voter no more.
//!
//! Any node takes it and the active controller carries it out, as for AddRaftVoter
//! (`add_raft_voter.rs`). Oxbow's Raft membership holds no directory ids, so the node id
//! alone names the voter: a directory id that is not the voter's is not refused
//! (Kafka answers VOTER_NOT_FOUND).

use kafka_protocol::messages::{RemoveRaftVoterRequest, RemoveRaftVoterResponse};

use super::add_raft_voter::{change_voters, check_cluster_id};
use super::{ApiError, Ctx};
use crate::metadata::VoterChange;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: RemoveRaftVoterRequest,
) -> RemoveRaftVoterResponse {
    match remove(ctx, request).await {
        Ok(()) => RemoveRaftVoterResponse::default(),
        Err(e) => RemoveRaftVoterResponse::default()
            .with_error_code(e.code)
            .with_error_message(e.message_str()),
    }
}

async fn remove(ctx: &Ctx<'_>, request: RemoveRaftVoterRequest) -> Result<(), ApiError> {
    check_cluster_id(ctx, request.cluster_id.as_deref())?;
    let change = VoterChange::Remove {
        id: request.voter_id,
        directory_id: request.voter_directory_id,
    };
    change_voters(ctx, change).await
}
