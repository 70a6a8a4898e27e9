//! Helpers shared by the fuzz targets (each includes this file as a module).

/// Recomputes the CRC of every whole batch in `records` (Kafka's CRC-32C from the
/// attributes field to the end of the batch).
pub(crate) fn fix_crcs(records: &mut [u8]) {
    let mut pos = 0usize;
    while pos + 61 <= records.len() {
        let len = i32::from_be_bytes([
            records[pos + 8],
            records[pos + 9],
            records[pos + 10],
            records[pos + 11],
        ]);
        if len < 49 {
            return;
        }
        let end = (pos + 12 + len as usize).min(records.len());
        let crc = crc32c::crc32c(&records[pos + 21..end]);
        records[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}
