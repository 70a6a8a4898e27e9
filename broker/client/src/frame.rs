//! Kafka's framing: a 4-byte big-endian size, then a request (header + body) or a response
//! (header + body). The header version depends on the API and its version (flexible
//! versions carry tagged fields in the header), which the codec's [`HeaderVersion`] knows.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why [`read_frame`] returned no frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix announced more than the allowed maximum (or a negative size); the
    /// frame's body was not read.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced size.
        size: i64,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame, or reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Encodes `request` at `version` as one frame ready to write: size prefix, request header
/// (version chosen by the API and `version`) carrying `correlation_id` and `client_id`, body.
/// `Err` with the codec's message if a field cannot be encoded at this version.
pub fn encode_request<Req: Request>(
    request: &Req,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(Req::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_string())));
    let header_version = Req::header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + request.compute_size(version)?))
        .map_err(|e| format!("{e:#}"))?;
    let mut frame = BytesMut::with_capacity(4 + size);
    frame.put_i32(i32::try_from(size).map_err(|_| format!("request of {size} bytes"))?);
    header
        .encode(&mut frame, header_version)
        .and_then(|()| request.encode(&mut frame, version))
        .map_err(|e| format!("{e:#}"))?;
    Ok(frame.freeze())
}

/// Reads one size-prefixed frame and returns it without the prefix; `Ok(None)` if the stream
/// ends cleanly before a frame starts. A size above `max` (or below zero) is refused before
/// anything is allocated for it, so a broken or hostile peer cannot make us reserve memory.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        let n = reader.read(&mut prefix[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        filled += n;
    }
    let size = i32::from_be_bytes(prefix);
    let len = match usize::try_from(size) {
        Ok(len) if len <= max => len,
        _ => {
            return Err(FrameError::TooLarge {
                size: i64::from(size),
                max,
            })
        }
    };
    let mut body = BytesMut::zeroed(len);
    reader.read_exact(&mut body).await?;
    Ok(Some(body.freeze()))
}

/// The correlation id of a response frame (its first four bytes), `None` if it is shorter.
pub fn correlation_id(frame: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

/// Decodes a response frame (without size prefix) to a request sent at `version`: the
/// header at the version that API and version use, then the body. `Err` with the codec's
/// message if either does not decode or bytes are left over.
pub fn decode_response<Resp: Decodable + HeaderVersion>(
    mut frame: Bytes,
    version: i16,
) -> Result<(ResponseHeader, Resp), String> {
    let header = ResponseHeader::decode(&mut frame, Resp::header_version(version))
        .map_err(|e| format!("cannot decode the response header: {e:#}"))?;
    let body = Resp::decode(&mut frame, version)
        .map_err(|e| format!("cannot decode the v{version} response: {e:#}"))?;
    if !frame.is_empty() {
        return Err(format!(
            "{} bytes left over after the v{version} response",
            frame.len()
        ));
    }
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest,
    };
    use tokio::io::AsyncWriteExt;

    fn parse_header(frame: &Bytes, header_version: i16) -> (i32, RequestHeader, Bytes) {
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
        let mut rest = frame.slice(4..);
        let header = RequestHeader::decode(&mut rest, header_version).unwrap();
        (size, header, rest)
    }

    /// A flexible version (Metadata v9+) uses request header v2 (tagged fields); an older
    /// one header v1. Both carry key, version, correlation id and client id, and the size
    /// prefix counts everything after itself.
    #[test]
    fn request_header_version_follows_the_api_version() {
        let request = MetadataRequest::default();
        for (version, header_version) in [(8, 1), (12, 2)] {
            let frame = encode_request(&request, version, 77, Some("oxbow-test")).unwrap();
            let (size, header, mut body) = parse_header(&frame, header_version);
            assert_eq!(size as usize, frame.len() - 4);
            assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.correlation_id, 77);
            assert_eq!(header.client_id.as_deref(), Some("oxbow-test"));
            assert_eq!(
                MetadataRequest::decode(&mut body, version).unwrap(),
                request
            );
            assert!(body.is_empty());
        }
    }

    /// ApiVersions responses always use response header v0 (KIP-511: a client that does not
    /// know the broker's versions must still read the header), even at flexible versions.
    #[test]
    fn api_versions_response_header_is_v0_at_every_version() {
        let response = ApiVersionsResponse::default().with_throttle_time_ms(5);
        let mut frame = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(9)
            .encode(&mut frame, 0)
            .unwrap();
        response.encode(&mut frame, 3).unwrap();
        let (header, decoded) = decode_response::<ApiVersionsResponse>(frame.freeze(), 3).unwrap();
        assert_eq!(header.correlation_id, 9);
        assert_eq!(decoded.throttle_time_ms, 5);
        // And the request side of ApiVersions v3 is flexible: header v2.
        let request = ApiVersionsRequest::default();
        let frame = encode_request(&request, 3, 1, None).unwrap();
        let (_, header, _) = parse_header(&frame, 2);
        assert_eq!(header.client_id, None);
    }

    #[test]
    fn trailing_bytes_are_a_decode_error() {
        let mut frame = BytesMut::new();
        ResponseHeader::default().encode(&mut frame, 0).unwrap();
        ApiVersionsResponse::default()
            .encode(&mut frame, 0)
            .unwrap();
        frame.put_u8(0);
        let err = decode_response::<ApiVersionsResponse>(frame.freeze(), 0).unwrap_err();
        assert!(err.contains("1 bytes left over"), "{err}");
    }

    #[tokio::test]
    async fn frames_are_read_whole_even_when_they_arrive_in_pieces() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for chunk in [&[0u8, 0][..], &[0, 5, 1, 2], &[3, 4, 5, 0, 0, 0, 0]] {
                tx.write_all(chunk).await.unwrap();
                tx.flush().await.unwrap();
            }
        });
        let first = read_frame(&mut rx, 100).await.unwrap().unwrap();
        assert_eq!(&first[..], &[1, 2, 3, 4, 5]);
        let empty = read_frame(&mut rx, 100).await.unwrap().unwrap();
        assert!(empty.is_empty());
        writer.await.unwrap();
        assert!(read_frame(&mut rx, 100).await.unwrap().is_none());
    }

    /// A size above the limit, or a negative one, is refused from the prefix alone; a stream
    /// cut inside a frame is an error, not a short frame.
    #[tokio::test]
    async fn oversized_negative_and_torn_frames_are_refused() {
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        match read_frame(&mut huge, 1 << 20).await {
            Err(FrameError::TooLarge { size, max }) => {
                assert_eq!((size, max), (i64::from(i32::MAX), 1 << 20))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            read_frame(&mut negative, 100).await,
            Err(FrameError::TooLarge { size: -2, .. })
        ));
        let mut torn: &[u8] = &[0, 0, 0, 8, 1, 2];
        assert!(matches!(
            read_frame(&mut torn, 100).await,
            Err(FrameError::Io(_))
        ));
        let mut torn_prefix: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut torn_prefix, 100).await,
            Err(FrameError::Io(_))
        ));
        assert_eq!(correlation_id(&[0, 0, 1, 2, 9]), Some(258));
        assert_eq!(correlation_id(&[0, 0]), None);
    }
}
