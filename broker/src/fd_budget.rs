//! How many partitions this process can host with the file descriptors it may open.
//!
//! A partition's active segment keeps its three files open (`.log`, `.index`,
//! `.timeindex`); rolled segments open their `.log` on demand through a broker-wide cache of
//! `oxbow.max.segment.cache.slots` handles (`crate::log::segment_files`) and their indexes
//! only to write them. So the descriptors a broker needs are three per partition, however
//! many segments each has, plus the cache's slots — and a broker that runs out of them
//! cannot create a log, accept a connection or — worst — start again. Partition-creating
//! requests are therefore checked against that sum under `RLIMIT_NOFILE` (`ulimit -n`),
//! keeping [`RESERVED_FDS`] for connections and transient files, and against the
//! configurable `oxbow.max.partitions` cap; start-up refuses, with a message naming
//! `ulimit -n`, to load more partitions than the limit allows, instead of failing half-way.

use std::path::Path;

/// Descriptors a hosted partition keeps: its active segment's three files.
pub const FDS_PER_PARTITION: u64 = 3;

/// Descriptors kept free for client connections, checkpoints and the metadata store.
pub const RESERVED_FDS: u64 = 512;

/// Bounds of the derived [`default_segment_cache_slots`].
pub const SEGMENT_CACHE_SLOTS_RANGE: (u64, u64) = (16, 4096);

/// `oxbow.max.segment.cache.slots` when not configured: an eighth of the descriptors beyond
/// [`RESERVED_FDS`], between 16 and 4096 (64 under the common `ulimit -n 1024`, 4096 from
/// about 33,000 on). Most of the budget stays for partitions; a reader of a segment whose
/// handle was evicted pays one `open`.
pub fn default_segment_cache_slots(soft_limit: u64) -> u64 {
    let (min, max) = SEGMENT_CACHE_SLOTS_RANGE;
    (soft_limit.saturating_sub(RESERVED_FDS) / 8).clamp(min, max)
}

/// The process's soft and hard `RLIMIT_NOFILE`.
pub fn nofile_limits() -> (u64, u64) {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => (soft, hard),
        // Unknown: assume the common default so checks stay conservative.
        Err(_) => (1024, 1024),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as the JVM does for Apache Kafka
/// (`-XX:+MaxFDLimit`), so a broker started from a shell with the default soft limit of
/// 1024 gets what the administrator allowed. Returns the soft limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    let (soft, hard) = nofile_limits();
    if soft < hard {
        let r =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
        match r {
            Ok(()) => return hard,
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open files limit"),
        }
    }
    soft
}

/// Descriptors open in this process now (entries of `/proc/self/fd`); 0 where unknown.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Why `adding` new partitions do not fit, or `None` if they do. `hosted` partitions exist,
/// `cap` is `oxbow.max.partitions`, `soft_limit` the open files limit, `open` the
/// descriptors in use now and `cache_slots` the segment file cache's size. What is in use
/// is the larger of `open` and what the hosted partitions and a full cache may hold. The
/// message is the one the client sees.
pub fn refuse_new_partitions(
    adding: u64,
    hosted: u64,
    cap: u64,
    soft_limit: u64,
    open: u64,
    cache_slots: u64,
) -> Option<String> {
    if hosted.saturating_add(adding) > cap {
        return Some(format!(
            "Adding {adding} partition(s) would make this broker host {}, more than oxbow.max.partitions={cap}.",
            hosted.saturating_add(adding)
        ));
    }
    let committed = open.max(
        hosted
            .saturating_mul(FDS_PER_PARTITION)
            .saturating_add(cache_slots),
    );
    let free = soft_limit
        .saturating_sub(committed)
        .saturating_sub(RESERVED_FDS);
    let needed = adding.saturating_mul(FDS_PER_PARTITION);
    if needed > free {
        return Some(format!(
            "Adding {adding} partition(s) needs {needed} more open files ({FDS_PER_PARTITION} per partition), but only {free} of this broker's limit of {soft_limit} are free ({committed} for {hosted} partitions and {cache_slots} segment cache slots, {RESERVED_FDS} kept for connections); raise the limit (ulimit -n) or host fewer partitions."
        ));
    }
    None
}

/// Counts the segment files (`<20 digits>.log`) in the partition directories under
/// `log_dir`, and the partition directories themselves.
pub fn count_segments(log_dir: &Path) -> (u64, u64) {
    let (mut partitions, mut segments) = (0u64, 0u64);
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // The metadata store's directory is named like a partition but is not one.
        if name == crate::log::METADATA_DIR
            || crate::log::TopicPartition::from_dir_name(name).is_none()
        {
            continue;
        }
        partitions += 1;
        if let Ok(files) = std::fs::read_dir(entry.path()) {
            segments += files
                .flatten()
                .filter(|f| {
                    f.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".log"))
                        .is_some_and(|stem| {
                            stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .count() as u64;
        }
    }
    (partitions, segments)
}

/// The start-up check: the active segments of `partitions` partitions on disk and of
/// `missing` partitions that metadata knows but that have no directory yet, plus
/// `cache_slots` cached segment files, must leave [`RESERVED_FDS`] free under `soft_limit`
/// beside the `open` descriptors. How many segments the partitions have (`segments`, named
/// in the message) does not matter: rolled ones are opened on demand. The error names
/// `ulimit -n` and the counts so an operator can act; nothing has been opened or changed
/// when it is returned.
pub fn check_startup(
    partitions: u64,
    segments: u64,
    missing: u64,
    soft_limit: u64,
    open: u64,
    cache_slots: u64,
) -> Result<(), String> {
    let total = partitions.saturating_add(missing);
    let needed = total
        .saturating_mul(FDS_PER_PARTITION)
        .saturating_add(cache_slots)
        .saturating_add(open)
        .saturating_add(RESERVED_FDS);
    if needed > soft_limit {
        return Err(format!(
            "{total} partitions ({segments} segments on disk, {missing} partitions still to create) need about {needed} open files ({FDS_PER_PARTITION} per partition for its active segment, {cache_slots} oxbow.max.segment.cache.slots, {RESERVED_FDS} kept for connections, {open} in use), more than this process's limit of {soft_limit}: raise it with `ulimit -n {}` (or LimitNOFILE= in a systemd unit) and start again; no data was touched",
            needed.next_power_of_two().max(needed + 1024)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_and_the_descriptor_budget_both_refuse() {
        let slots = default_segment_cache_slots(20_000);
        assert_eq!(slots, 2436);
        assert_eq!(refuse_new_partitions(10, 0, 100, 20_000, 50, slots), None);
        let cap = refuse_new_partitions(10, 95, 100, 20_000, 50, slots).unwrap();
        assert!(cap.contains("oxbow.max.partitions=100"), "{cap}");
        // Issue 15: 15,619 partitions with ulimit -n 20000.
        let fds = refuse_new_partitions(15_619, 1, 100_000, 20_000, 60, slots).unwrap();
        assert!(fds.contains("ulimit -n") && fds.contains("46857"), "{fds}");
        // 20000 - 512 reserved - 2436 slots leave room for 5,684 partitions.
        assert_eq!(
            refuse_new_partitions(5_683, 1, 100_000, 20_000, 60, slots),
            None
        );
        assert!(refuse_new_partitions(5_684, 1, 100_000, 20_000, 60, slots).is_some());
        // More descriptors in use than the budget accounts for (e.g. connections) count.
        assert!(refuse_new_partitions(5_683, 1, 100_000, 20_000, 9_000, slots).is_some());
    }

    #[test]
    fn start_up_counts_partitions_not_segments() {
        let slots = default_segment_cache_slots(1024);
        assert_eq!(slots, 64);
        // 100 partitions of 200 segments each fit under ulimit -n 1024: only active
        // segments and the cache's slots are open at once.
        assert!(check_startup(100, 20_000, 0, 1024, 10, slots).is_ok());
        // Even the active segments do not fit: refused, naming ulimit -n and the counts.
        let e = check_startup(6_660, 6_660, 8_959, 20_000, 10, 2436).unwrap_err();
        assert!(
            e.contains("ulimit -n") && e.contains("15619 partitions"),
            "{e}"
        );
        let e = check_startup(150, 300, 0, 1024, 10, slots).unwrap_err();
        assert!(e.contains("150 partitions (300 segments on disk"), "{e}");
    }

    #[test]
    fn derived_cache_slots_stay_within_bounds() {
        assert_eq!(default_segment_cache_slots(256), 16);
        assert_eq!(default_segment_cache_slots(4096), 448);
        assert_eq!(default_segment_cache_slots(1 << 20), 4096);
    }

    #[test]
    fn counts_segments_of_partition_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t-0");
        std::fs::create_dir(&p).unwrap();
        for f in [
            "00000000000000000000.log",
            "00000000000000000042.log",
            "00000000000000000000.index",
        ] {
            std::fs::write(p.join(f), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join(crate::log::METADATA_DIR)).unwrap();
        assert_eq!(count_segments(dir.path()), (1, 2));
    }
}
