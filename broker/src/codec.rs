//! Readers and writers for the primitive types of Kafka's generated message schemas, as the
//! coordinators' own records use them (`__consumer_offsets`, `__transaction_state`): big-endian
//! integers, INT16-length strings, INT32-length bytes, and for flexible versions unsigned
//! varints, compact strings and tagged fields.
//!
//! Requests and responses are decoded by `kafka-protocol`; these records are not part of its
//! generated set, and their decoders must report a truncated or malformed stored record as an
//! error the loader can skip, never panic on it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A stored record that cannot be decoded: what was wrong with it. The loader names the
/// topic and partition when it logs and skips the record.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("malformed record: {0}")]
pub struct DecodeError(pub &'static str);

/// Writes a STRING (INT16 length, then UTF-8 bytes).
pub fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

/// Writes a NULLABLE_STRING (length -1 for null).
pub fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

/// Writes BYTES (INT32 length, then the bytes).
pub fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// Writes an UNSIGNED_VARINT.
pub fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Reads an UNSIGNED_VARINT (at most 5 bytes).
pub fn get_uvarint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let mut v: u32 = 0;
    for i in 0..5 {
        if !buf.has_remaining() {
            return Err(DecodeError("truncated varint"));
        }
        let b = buf.get_u8();
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint longer than 5 bytes"))
}

/// Skips a tagged-field section (count, then tag, size and data of each field).
pub fn skip_tagged_fields(buf: &mut Bytes) -> Result<(), DecodeError> {
    for _ in 0..get_uvarint(buf)? {
        get_uvarint(buf)?;
        let size = get_uvarint(buf)? as usize;
        if buf.remaining() < size {
            return Err(DecodeError("truncated tagged field"));
        }
        buf.advance(size);
    }
    Ok(())
}

/// Reads an INT8.
pub fn get_i8(buf: &mut Bytes) -> Result<i8, DecodeError> {
    if buf.remaining() < 1 {
        return Err(DecodeError("truncated int8"));
    }
    Ok(buf.get_i8())
}

/// Reads an INT16.
pub fn get_i16(buf: &mut Bytes) -> Result<i16, DecodeError> {
    if buf.remaining() < 2 {
        return Err(DecodeError("truncated int16"));
    }
    Ok(buf.get_i16())
}

/// Reads an INT32.
pub fn get_i32(buf: &mut Bytes) -> Result<i32, DecodeError> {
    if buf.remaining() < 4 {
        return Err(DecodeError("truncated int32"));
    }
    Ok(buf.get_i32())
}

/// Reads an INT64.
pub fn get_i64(buf: &mut Bytes) -> Result<i64, DecodeError> {
    if buf.remaining() < 8 {
        return Err(DecodeError("truncated int64"));
    }
    Ok(buf.get_i64())
}

fn take_utf8(buf: &mut Bytes, len: usize) -> Result<String, DecodeError> {
    if buf.remaining() < len {
        return Err(DecodeError("truncated string"));
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
}

/// Reads a NULLABLE_STRING.
pub fn get_nullable_str(buf: &mut Bytes) -> Result<Option<String>, DecodeError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    take_utf8(buf, len as usize).map(Some)
}

/// Reads a STRING; null is an error.
pub fn get_str(buf: &mut Bytes) -> Result<String, DecodeError> {
    get_nullable_str(buf)?.ok_or(DecodeError("unexpected null string"))
}

/// Reads a COMPACT_STRING (UNSIGNED_VARINT length + 1); null is an error.
pub fn get_compact_str(buf: &mut Bytes) -> Result<String, DecodeError> {
    let len = get_uvarint(buf)?
        .checked_sub(1)
        .ok_or(DecodeError("unexpected null string"))? as usize;
    take_utf8(buf, len)
}

/// Reads BYTES; a null (-1 length) reads as empty, which is how the coordinators treat it.
pub fn get_bytes(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(DecodeError("truncated bytes"));
    }
    Ok(buf.split_to(len))
}

/// Writes a COMPACT_ARRAY or COMPACT_STRING length: the stored value is length + 1, 0 meaning
/// null.
pub fn put_compact_len(buf: &mut BytesMut, len: Option<usize>) {
    put_uvarint(buf, len.map_or(0, |n| n as u32 + 1));
}

/// Reads a COMPACT_ARRAY or COMPACT_STRING length; `None` for null.
pub fn get_compact_len(buf: &mut Bytes) -> Result<Option<usize>, DecodeError> {
    Ok(get_uvarint(buf)?.checked_sub(1).map(|n| n as usize))
}

/// Writes a COMPACT_NULLABLE_STRING (a COMPACT_STRING when `s` is set).
pub fn put_compact_str(buf: &mut BytesMut, s: Option<&str>) {
    put_compact_len(buf, s.map(str::len));
    if let Some(s) = s {
        buf.put_slice(s.as_bytes());
    }
}

/// Reads a COMPACT_NULLABLE_STRING.
pub fn get_compact_nullable_str(buf: &mut Bytes) -> Result<Option<String>, DecodeError> {
    match get_compact_len(buf)? {
        Some(len) => take_utf8(buf, len).map(Some),
        None => Ok(None),
    }
}

/// Reads a COMPACT_ARRAY that must not be null, `item` reading one element. A count larger
/// than the bytes left is an error before anything is allocated (every element takes at
/// least one byte).
pub fn get_compact_array<T>(
    buf: &mut Bytes,
    mut item: impl FnMut(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let len = get_compact_len(buf)?.ok_or(DecodeError("unexpected null array"))?;
    if len > buf.remaining() {
        return Err(DecodeError("array longer than the record"));
    }
    (0..len).map(|_| item(buf)).collect()
}

/// Reads a UUID (16 bytes, most significant first, as Kafka's `Uuid` is written).
pub fn get_uuid(buf: &mut Bytes) -> Result<uuid::Uuid, DecodeError> {
    if buf.remaining() < 16 {
        return Err(DecodeError("truncated uuid"));
    }
    let mut b = [0u8; 16];
    buf.copy_to_slice(&mut b);
    Ok(uuid::Uuid::from_bytes(b))
}

/// Writes an empty tagged-field section (every tagged field at its default).
pub fn put_empty_tagged_fields(buf: &mut BytesMut) {
    put_uvarint(buf, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_varints_round_trip_and_truncation_is_an_error() {
        let mut buf = BytesMut::new();
        put_str(&mut buf, "héllo");
        put_nullable_str(&mut buf, None);
        put_uvarint(&mut buf, 300);
        put_bytes(&mut buf, b"\x00\x01");
        let mut b = buf.freeze();
        assert_eq!(get_str(&mut b), Ok("héllo".to_string()));
        assert_eq!(get_nullable_str(&mut b), Ok(None));
        assert_eq!(get_uvarint(&mut b), Ok(300));
        assert_eq!(get_bytes(&mut b).map(|b| b.to_vec()), Ok(vec![0, 1]));
        assert_eq!(get_i8(&mut b), Err(DecodeError("truncated int8")));

        let mut short = Bytes::from_static(&[0, 5, b'a']);
        assert_eq!(get_str(&mut short), Err(DecodeError("truncated string")));
        let mut long_varint = Bytes::from_static(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert_eq!(
            get_uvarint(&mut long_varint),
            Err(DecodeError("varint longer than 5 bytes"))
        );
        let mut compact = Bytes::from_static(&[3, b'o', b'k']);
        assert_eq!(get_compact_str(&mut compact), Ok("ok".to_string()));
    }
}
