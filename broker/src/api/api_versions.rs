//! ApiVersions (key 18): the APIs and version ranges this broker serves.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx, SUPPORTED_APIS};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

/// `group.version` (KIP-848): level 1 turns the consumer rebalance protocol on. Kafka 4.1
/// supports levels 0-1 and a cluster formatted with it finalizes 1, which clients and
/// `kafka-features.sh describe` read here.
const GROUP_VERSION: (i16, i16) = (0, 1);
const GROUP_VERSION_FINALIZED: i16 = 1;

pub(crate) async fn handle(ctx: &Ctx<'_>, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    if ctx.version < 3 {
        // Feature fields exist from v3 only.
        return ApiVersionsResponse::default().with_api_keys(api_keys());
    }
    // metadata.version is what Kafka 4.x clients look at to decide on newer features; we
    // report the level whose RPCs we implement (3.3-IV3 = level 7, the first KRaft-only level
    // with all the basics) and keep it finalized at that level.
    const METADATA_VERSION_LEVEL: i16 = 7;
    let mut supported = vec![SupportedFeatureKey::default()
        .with_name(str_bytes("metadata.version"))
        .with_min_version(1)
        .with_max_version(METADATA_VERSION_LEVEL)];
    // Before v4 a supported range starting at 0 breaks older clients' parsing (KAFKA-17011),
    // so Kafka leaves such features out of v3 responses (they stay finalized).
    if ctx.version >= 4 {
        supported.push(
            SupportedFeatureKey::default()
                .with_name(str_bytes("group.version"))
                .with_min_version(GROUP_VERSION.0)
                .with_max_version(GROUP_VERSION.1),
        );
        // kraft.version 1 (KIP-853): the voter set can change at runtime.
        supported.push(
            SupportedFeatureKey::default()
                .with_name(str_bytes("kraft.version"))
                .with_min_version(0)
                .with_max_version(1),
        );
    }
    let mut finalized = vec![
        FinalizedFeatureKey::default()
            .with_name(str_bytes("metadata.version"))
            .with_min_version_level(METADATA_VERSION_LEVEL)
            .with_max_version_level(METADATA_VERSION_LEVEL),
        FinalizedFeatureKey::default()
            .with_name(str_bytes("group.version"))
            .with_min_version_level(GROUP_VERSION_FINALIZED)
            .with_max_version_level(GROUP_VERSION_FINALIZED),
    ];
    // kraft.version 1 where the voters can change at runtime (a replicated quorum); a
    // feature at level 0 is not finalized at all, as in Kafka.
    let kraft_version = ctx.broker.kraft_version();
    if kraft_version > 0 {
        finalized.push(
            FinalizedFeatureKey::default()
                .with_name(str_bytes("kraft.version"))
                .with_min_version_level(kraft_version)
                .with_max_version_level(kraft_version),
        );
    }
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_supported_features(supported)
        .with_finalized_features_epoch(0)
        .with_finalized_features(finalized)
}

/// The response to an ApiVersions request of a version we do not serve: v0 encoding,
/// UNSUPPORTED_VERSION, and our ranges (KIP-511), so the client can pick a version we serve.
pub(crate) fn unsupported_version_response(correlation_id: i32) -> anyhow::Result<Bytes> {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, 0)?;
    response.encode(&mut out, 0)?;
    Ok(out.freeze())
}
