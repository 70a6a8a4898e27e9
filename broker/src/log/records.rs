//! Streaming reader of the records inside a v2 record batch.
//!
//! A batch's header is never trusted for allocation: the declared record count only bounds
//! the loop, every length is checked against the bytes actually present, and compressed
//! batches are inflated as a stream, one record at a time. Memory is therefore bounded by
//! what a caller asks to keep ([`Detail`]): nothing for [`Detail::Skip`] (timestamps and
//! offsets, whether a key is present), one key for [`Detail::Key`], one whole record for
//! [`Detail::Full`] — never the whole inflated batch. A 1 MB gzip batch that inflates to
//! 1 GB costs the CPU to inflate it (Kafka pays the same) but no memory.
//!
//! Errors follow Kafka's record iterator (`DefaultRecordBatch.RecordIterator`,
//! `DefaultRecord.readFrom`): a batch whose records end before the declared count, a record
//! whose fields overrun its declared size, or bytes left over after the last record are
//! `INVALID_RECORD` ("Incorrect declared batch size ..."). A compressed payload that cannot
//! be inflated is `CORRUPT_MESSAGE`.

use std::io::{self, BufRead, BufReader, Read};

use super::batch::{BatchHeader, HEADER_SIZE};
use super::error::{Error, Result};

/// How much of each record [`RecordStream::next_record`] keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Offsets, timestamps and key/value presence only; key and value bytes are skipped.
    Skip,
    /// As `Skip`, plus the key bytes.
    Key,
    /// The whole record: key, and the encoded bytes from the offset delta to the end.
    Full,
}

/// One record as read by [`RecordStream::next_record`]; borrows the stream's buffer, so
/// it is valid until the next call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordView<'a> {
    /// The record's attributes byte (unused by Kafka today, kept verbatim).
    pub(crate) attributes: u8,
    /// Absolute offset (batch base offset + offset delta).
    pub(crate) offset: i64,
    /// Absolute timestamp (batch base timestamp + timestamp delta); for LogAppendTime
    /// batches callers use the batch's max timestamp instead, as Kafka does.
    pub(crate) timestamp: i64,
    /// Whether the record has a key (key length >= 0).
    pub(crate) has_key: bool,
    /// The key bytes, kept for [`Detail::Key`] and [`Detail::Full`].
    pub(crate) key: Option<&'a [u8]>,
    /// Whether the record has a value (a null value is a tombstone).
    pub(crate) has_value: bool,
    /// [`Detail::Full`] only: encoded bytes from the offset delta to the end of the record
    /// (offset delta, key, value, headers), to copy verbatim when re-encoding the record.
    pub(crate) tail: &'a [u8],
}

/// Bound on what a snappy block may inflate to relative to its compressed size: the
/// format's densest element (a 3-byte copy of 64 bytes) expands about 21x, so a block
/// declaring more is lying and is refused before anything is allocated for it.
const SNAPPY_MAX_EXPANSION: usize = 32;

/// Read buffer between the decompressor and the record parser (small records are parsed
/// byte by byte).
const READ_BUFFER: usize = 16 * 1024;

/// Iterates over the records of one batch (see the [module docs](self)).
pub(crate) struct RecordStream<'a> {
    header: BatchHeader,
    input: BufReader<Box<dyn Read + 'a>>,
    remaining: i32,
    /// Bytes of the current record's body not yet consumed.
    limit: u64,
    /// The kept bytes of the current record (key, or tail for `Full`).
    buf: Vec<u8>,
    recording: bool,
}

impl std::fmt::Debug for RecordStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream")
            .field("base_offset", &self.header.base_offset)
            .field("remaining", &self.remaining)
            .finish()
    }
}

fn invalid(h: &BatchHeader, what: &str) -> Error {
    Error::InvalidRecord(format!("batch at offset {}: {what}", h.base_offset))
}

fn premature_eof(h: &BatchHeader) -> Error {
    invalid(h, "Incorrect declared batch size, premature EOF reached")
}

impl<'a> RecordStream<'a> {
    /// Starts reading the records of `batch` (one whole batch, header included), inflating
    /// as its compression codec says. Fails with `CORRUPT_MESSAGE` for an unknown codec or a
    /// compressed payload whose framing is broken.
    pub(crate) fn new(batch: &'a [u8], header: &BatchHeader) -> Result<RecordStream<'a>> {
        let payload = batch.get(HEADER_SIZE..).unwrap_or_default();
        let input: Box<dyn Read + 'a> = match header.compression() {
            0 => Box::new(payload),
            1 => Box::new(flate2::read::MultiGzDecoder::new(payload)),
            2 => Box::new(SnappyReader::new(payload)),
            3 => Box::new(lz4::Decoder::new(payload).map_err(|e| decompress_error(header, &e))?),
            4 => Box::new(
                zstd::stream::read::Decoder::with_buffer(payload)
                    .map_err(|e| decompress_error(header, &e))?,
            ),
            c => {
                return Err(Error::CorruptMessage(format!(
                    "batch at offset {} uses unknown compression codec {c}",
                    header.base_offset
                )))
            }
        };
        Ok(RecordStream {
            header: *header,
            input: BufReader::with_capacity(READ_BUFFER, input),
            remaining: header.records_count.max(0),
            limit: 0,
            buf: Vec::new(),
            recording: false,
        })
    }

    /// Reads the next record keeping `detail` of it; `Ok(None)` after the declared count.
    /// After the last record, bytes left in the batch are an error (Kafka's "records still
    /// remaining").
    pub(crate) fn next_record(&mut self, detail: Detail) -> Result<Option<RecordView<'_>>> {
        if self.header.records_count < 0 {
            return Err(invalid(
                &self.header,
                &format!("Found invalid record count {}", self.header.records_count),
            ));
        }
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        self.buf.clear();
        self.recording = false;
        self.limit = u64::MAX;
        let len = self.varint()?;
        let len = u64::try_from(len).map_err(|_| invalid(&self.header, "negative record size"))?;
        self.limit = len;
        let attributes = self.byte()?;
        let ts_delta = self.varlong()?;
        self.recording = detail == Detail::Full;
        let off_delta = self.varint()?;
        let key_len = self.varint()?;
        let key_start = self.buf.len();
        let has_key = key_len >= 0;
        if has_key {
            self.take(key_len as u64, detail != Detail::Skip)?;
        }
        let key_end = self.buf.len();
        let value_len = self.varint()?;
        if value_len >= 0 {
            self.take(value_len as u64, false)?;
        }
        let headers = self.varint()?;
        if headers < 0 {
            return Err(invalid(
                &self.header,
                &format!("Found invalid number of record headers {headers}"),
            ));
        }
        for _ in 0..headers {
            let k = self.varint()?;
            if k < 0 {
                return Err(invalid(&self.header, "Invalid negative header key size"));
            }
            self.take(k as u64, false)?;
            let v = self.varint()?;
            if v >= 0 {
                self.take(v as u64, false)?;
            }
        }
        if self.limit != 0 {
            return Err(invalid(
                &self.header,
                &format!(
                    "Invalid record size: {} bytes of the record's {len} bytes were not read",
                    self.limit
                ),
            ));
        }
        if self.remaining == 0 {
            self.ensure_none_remaining()?;
        }
        let h = &self.header;
        // In Full mode the buffer holds the tail; the key lies at its recorded position.
        let buf = &self.buf[..];
        Ok(Some(RecordView {
            attributes,
            offset: h.base_offset.wrapping_add(i64::from(off_delta)),
            timestamp: h.base_timestamp.wrapping_add(ts_delta),
            has_key,
            key: (has_key && detail != Detail::Skip).then(|| &buf[key_start..key_end]),
            has_value: value_len >= 0,
            tail: if detail == Detail::Full { buf } else { &[] },
        }))
    }

    fn ensure_none_remaining(&mut self) -> Result<()> {
        let empty = match self.input.fill_buf() {
            Ok(rest) => rest.is_empty(),
            Err(e) => return Err(self.io_error(e)),
        };
        if !empty {
            return Err(invalid(
                &self.header,
                "Incorrect declared batch size, records still remaining in file",
            ));
        }
        Ok(())
    }

    fn io_error(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            premature_eof(&self.header)
        } else {
            decompress_error(&self.header, &e)
        }
    }

    /// One byte of the current record (counted against its declared size).
    fn byte(&mut self) -> Result<u8> {
        if self.limit == 0 {
            return Err(invalid(
                &self.header,
                "Invalid record size: a field runs past the record's declared size",
            ));
        }
        let mut b = [0u8; 1];
        match self.input.read_exact(&mut b) {
            Ok(()) => {}
            Err(e) => return Err(self.io_error(e)),
        }
        self.limit -= 1;
        if self.recording {
            self.buf.push(b[0]);
        }
        Ok(b[0])
    }

    fn varlong(&mut self) -> Result<i64> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.byte()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(invalid(&self.header, "varlong is too long"));
            }
        }
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A zigzag varint that must fit 32 bits (Kafka's `readVarint` fails past 5 bytes).
    fn varint(&mut self) -> Result<i32> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| invalid(&self.header, "varint does not fit 32 bits"))
    }

    /// Consumes `n` bytes of the current record, keeping them if `keep` (or recording).
    /// Nothing is allocated for bytes that are not present.
    fn take(&mut self, n: u64, keep: bool) -> Result<()> {
        if n > self.limit {
            return Err(invalid(
                &self.header,
                &format!(
                    "Invalid record size: a field of {n} bytes runs past the record's declared size"
                ),
            ));
        }
        let copied = if keep || self.recording {
            (&mut self.input)
                .take(n)
                .read_to_end(&mut self.buf)
                .map_err(|e| self.io_error(e))? as u64
        } else {
            io::copy(&mut (&mut self.input).take(n), &mut io::sink())
                .map_err(|e| self.io_error(e))?
        };
        if copied != n {
            return Err(premature_eof(&self.header));
        }
        self.limit -= n;
        Ok(())
    }
}

/// Kafka's `LogValidator` walk over a client batch's records: every record is read (as a
/// stream, keeping nothing), so a batch whose records do not add up to its header is
/// refused as Kafka refuses it instead of being stored for consumers to choke on. Returns
/// whether some record has no key (refused on compacted topics).
pub(crate) fn validate_client_batch(batch: &[u8], h: &BatchHeader) -> Result<bool> {
    let mut records = RecordStream::new(batch, h)?;
    let mut missing_key = false;
    while let Some(r) = records.next_record(Detail::Skip)? {
        missing_key |= !r.has_key;
    }
    Ok(missing_key)
}

fn decompress_error(h: &BatchHeader, e: &dyn std::fmt::Display) -> Error {
    Error::CorruptMessage(format!(
        "cannot decompress batch at offset {}: {e}",
        h.base_offset
    ))
}

/// Kafka's snappy framing (snappy-java's `SnappyOutputStream`: a 16-byte magic header,
/// then blocks of `[u32 compressed length][raw snappy block]`), inflated one block at a
/// time; without the magic the payload is one raw snappy block, as snappy-java accepts.
struct SnappyReader<'a> {
    rest: &'a [u8],
    started: bool,
    block: Vec<u8>,
    pos: usize,
}

const SNAPPY_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

impl<'a> SnappyReader<'a> {
    fn new(payload: &'a [u8]) -> Self {
        SnappyReader {
            rest: payload,
            started: false,
            block: Vec::new(),
            pos: 0,
        }
    }

    fn inflate(&mut self, compressed: &[u8]) -> io::Result<()> {
        let bad = |e: snap::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let len = snap::raw::decompress_len(compressed).map_err(bad)?;
        if len > compressed.len().saturating_mul(SNAPPY_MAX_EXPANSION) + 64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snappy block of {} bytes declares {len} inflated bytes",
                    compressed.len()
                ),
            ));
        }
        self.block.clear();
        self.block.resize(len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(bad)?;
        self.block.truncate(n);
        self.pos = 0;
        Ok(())
    }

    /// Inflates the next block into `self.block`; false at the end of the payload.
    fn next_block(&mut self) -> io::Result<bool> {
        if !self.started {
            self.started = true;
            if self.rest.len() < SNAPPY_MAGIC.len() || &self.rest[..16] != SNAPPY_MAGIC {
                let raw = std::mem::take(&mut self.rest);
                if raw.is_empty() {
                    return Ok(false);
                }
                self.inflate(raw)?;
                return Ok(true);
            }
            self.rest = &self.rest[SNAPPY_MAGIC.len()..];
        }
        if self.rest.is_empty() {
            return Ok(false);
        }
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated snappy block length",
            ));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some(block) = rest.get(..len) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snappy block declares {len} bytes, {} remain", rest.len()),
            ));
        };
        self.rest = &rest[len..];
        self.inflate(block)?;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::test_util::{batch, Spec};
    use super::*;
    use kafka_protocol::records::Compression;

    fn keys(b: &[u8]) -> Result<Vec<Option<Vec<u8>>>> {
        let h = BatchHeader::parse(b).unwrap();
        let mut s = RecordStream::new(b, &h)?;
        let mut out = Vec::new();
        while let Some(r) = s.next_record(Detail::Full)? {
            out.push(r.key.map(<[u8]>::to_vec));
        }
        Ok(out)
    }

    #[test]
    fn reads_every_codec() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(&Spec {
                count: 5,
                compression,
                ..Spec::default()
            });
            let got = keys(&b).unwrap();
            let want: Vec<_> = (0..5)
                .map(|i| Some(format!("key-{i}").into_bytes()))
                .collect();
            assert_eq!(got, want, "{compression:?}");
        }
    }

    #[test]
    fn declared_count_beyond_the_bytes_is_invalid_record_without_allocating() {
        // The header of issue 15's 128-byte Produce: 2^31-1 records declared, none present.
        let mut b = batch(&Spec::default());
        b.truncate(HEADER_SIZE);
        let len = (HEADER_SIZE - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let e = keys(&b).unwrap_err();
        assert_eq!(e.kafka_code(), 87, "{e}");
        assert!(e.to_string().contains("premature EOF"), "{e}");
    }

    #[test]
    fn leftover_bytes_and_oversized_fields_are_invalid_record() {
        let mut b = batch(&Spec {
            count: 2,
            ..Spec::default()
        });
        // Declare one record fewer: the second is "still remaining".
        b[57..61].copy_from_slice(&1i32.to_be_bytes());
        assert!(keys(&b)
            .unwrap_err()
            .to_string()
            .contains("records still remaining"));
        // A record declaring a huge size with few bytes behind it.
        let mut b = batch(&Spec::default());
        b[HEADER_SIZE] = 0xfe;
        b.truncate(HEADER_SIZE + 1);
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0x07]);
        assert_eq!(keys(&b).unwrap_err().kafka_code(), 87);
    }

    #[test]
    fn snappy_block_declaring_gigabytes_is_refused_before_allocating() {
        // A raw snappy block whose length preamble claims 2^32-1 bytes.
        let mut b = batch(&Spec::default());
        b.truncate(HEADER_SIZE);
        b[21..23].copy_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        let e = keys(&b).unwrap_err();
        assert_eq!(e.kafka_code(), 2, "{e}");
    }
}
