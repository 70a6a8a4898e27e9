//! Incremental fetch sessions (KIP-227), with Apache Kafka's rules.
//!
//! A full fetch (epoch 0) names every partition and gets a session id back if the cache has
//! room; later requests of that session (epoch 1, 2, ...) name only partitions whose fetch
//! parameters changed plus the ones to forget, and the response leaves out partitions with
//! nothing new (no records, same high watermark and log start offset, no error). Epoch -1
//! (FINAL) closes a session. Unknown session ids are FETCH_SESSION_ID_NOT_FOUND, a wrong
//! epoch INVALID_FETCH_SESSION_EPOCH, switching between topic names (< v13) and topic ids
//! (v13+) within a session FETCH_SESSION_TOPIC_ID_ERROR.
//!
//! The cache holds at most `max.incremental.fetch.session.cache.slots` sessions. A new
//! session may evict, in this order: the least recently used session unused for longer than
//! [`EVICTION_MS`]; else the smallest evictable session if the new one is at least as
//! valuable (followers' sessions outrank consumers', then more partitions outrank fewer) —
//! where sessions younger than [`EVICTION_MS`] are only evictable by a follower's session, and
//! followers' young sessions not at all.
//!
//! As in Kafka 4.x, the slots are split over [`NUM_FETCH_SESSION_CACHE_SHARDS`] shards, each
//! with its own lock, so fetches of different consumers do not contend on one lock: each
//! shard holds `slots / 8` sessions (integer division, so fewer than 8 slots mean no
//! sessions at all, as in Kafka) and owns one eighth of the positive session ids; a new
//! session goes to the next shard round-robin, a request finds its session's shard from the
//! id alone. Eviction happens within a shard.
//!
//! [`FetchSessionCacheShard`] is pure state with explicit time: the fetch handler drives it
//! through [`FetchSessionCache`], the tests use logical time.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use uuid::Uuid;

/// Kafka's `FetchMetadata.INVALID_SESSION_ID`: no session.
pub const INVALID_SESSION_ID: i32 = 0;
/// Kafka's `FetchMetadata.INITIAL_EPOCH`: a full request that may create a session.
pub const INITIAL_EPOCH: i32 = 0;
/// Kafka's `FetchMetadata.FINAL_EPOCH`: a full request that must not create a session.
pub const FINAL_EPOCH: i32 = -1;
/// Kafka's minimum idle time before a session counts as stale (hard-coded there too:
/// `min.incremental.fetch.session.eviction.ms` is not a broker config).
pub const EVICTION_MS: i64 = 120_000;
/// Kafka's `KafkaBroker.NumFetchSessionCacheShards`: how many shards the cache's slots and
/// session ids are split over.
pub const NUM_FETCH_SESSION_CACHE_SHARDS: usize = 8;

/// Kafka's `FetchMetadata.nextEpoch`: epochs count up from 1 and wrap to 1.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// How a session names a partition's topic: by name before Fetch v13, by id from v13.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicKey {
    /// Fetch v12 and older.
    Name(String),
    /// Fetch v13 and newer.
    Id(Uuid),
}

/// A partition as a session keys it.
pub type SessionPartitionKey = (TopicKey, i32);

/// What a fetch asks of one partition (the request's fields, or the session's cached copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRequest {
    /// Topic name; `None` when a v13+ topic id is not known to this broker.
    pub topic: Option<String>,
    /// Topic id (nil before v13).
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// Offset to read from.
    pub fetch_offset: i64,
    /// `partition_max_bytes`.
    pub max_bytes: i32,
    /// `current_leader_epoch` (-1: not checked).
    pub current_leader_epoch: i32,
    /// The follower's log start offset (-1 for consumers).
    pub log_start_offset: i64,
    /// `last_fetched_epoch` (-1: none).
    pub last_fetched_epoch: i32,
}

impl PartitionRequest {
    /// The session key of this partition for requests of `version`.
    pub fn key(&self, version: i16) -> SessionPartitionKey {
        let topic = if version >= 13 {
            TopicKey::Id(self.topic_id)
        } else {
            TopicKey::Name(self.topic.clone().unwrap_or_default())
        };
        (topic, self.partition)
    }
}

/// What a response said about one partition: what decides whether an incremental response
/// must carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOutcome {
    /// Bytes of records returned.
    pub records_size: usize,
    /// High watermark returned.
    pub high_watermark: i64,
    /// Log start offset returned.
    pub log_start_offset: i64,
    /// Error code returned.
    pub error_code: i16,
}

#[derive(Debug, Clone)]
struct CachedPartition {
    request: PartitionRequest,
    high_watermark: i64,
    local_log_start_offset: i64,
}

impl CachedPartition {
    /// Kafka's `CachedPartition.maybeUpdateResponseData`: whether the partition goes into
    /// the response; with `update`, remembers what was sent.
    fn must_respond(&mut self, out: &PartitionOutcome, update: bool) -> bool {
        let mut must = out.records_size > 0;
        if self.high_watermark != out.high_watermark {
            must = true;
            if update {
                self.high_watermark = out.high_watermark;
            }
        }
        if self.local_log_start_offset != out.log_start_offset {
            must = true;
            if update {
                self.local_log_start_offset = out.log_start_offset;
            }
        }
        if out.error_code != 0 {
            // Forget the high watermark so the partition is sent again once the error clears.
            if update {
                self.high_watermark = -1;
            }
            must = true;
        }
        must
    }
}

#[derive(Debug)]
struct Session {
    privileged: bool,
    uses_topic_ids: bool,
    partitions: IndexMap<SessionPartitionKey, CachedPartition>,
    creation_ms: i64,
    last_used_ms: i64,
    epoch: i32,
    /// Size recorded in the eviction sets (Kafka's `cachedSize`).
    cached_size: usize,
}

/// Kafka's `EvictableKey` order: consumers' sessions before followers', then fewer
/// partitions before more, then by id.
type EvictableKey = (bool, usize, i32);

/// How to serve one fetch request, decided from its session fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchContext {
    /// No session: answer every requested partition, session id 0.
    Sessionless(Vec<PartitionRequest>),
    /// A full request that may create a session once the response is known
    /// ([`FetchSessionCache::create_session`]).
    Full(Vec<PartitionRequest>),
    /// An incremental request: read every partition of the session in its order, answer
    /// those [`FetchSessionCache::complete_incremental`] selects.
    Incremental {
        /// The session's id.
        session_id: i32,
        /// The session's partitions with their current fetch parameters.
        partitions: Vec<PartitionRequest>,
    },
    /// The request fails as a whole with this error (session id 0, no partitions).
    Error(ResponseError),
}

/// The broker's fetch sessions: [`NUM_FETCH_SESSION_CACHE_SHARDS`] shards, each behind its
/// own lock, held only for these short calls and never while reading logs.
#[derive(Debug)]
pub struct FetchSessionCache {
    shards: Vec<Mutex<FetchSessionCacheShard>>,
    /// Session ids each shard owns (Kafka's `sessionIdRange`): shard `n` draws its ids from
    /// `max(1, n * range) .. (n + 1) * range`.
    session_id_range: i32,
    /// Round-robin position for new sessions (Kafka's `FetchSessionCache.counter`).
    next_shard: AtomicUsize,
}

impl FetchSessionCache {
    /// A cache of `max.incremental.fetch.session.cache.slots` = `slots` split over
    /// [`NUM_FETCH_SESSION_CACHE_SHARDS`] shards of `slots / 8` sessions each.
    pub fn new(slots: usize) -> Self {
        let shards = NUM_FETCH_SESSION_CACHE_SHARDS;
        let session_id_range = i32::MAX / shards as i32;
        FetchSessionCache {
            shards: (0..shards)
                .map(|n| {
                    Mutex::new(FetchSessionCacheShard::new(
                        slots / shards,
                        session_id_range,
                        n as i32,
                    ))
                })
                .collect(),
            session_id_range,
            next_shard: AtomicUsize::new(0),
        }
    }

    /// Number of sessions cached over all shards.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|n| self.lock(n).len()).sum()
    }

    /// Whether no session is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, FetchSessionCacheShard> {
        self.shards[shard].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard owning `session_id` (Kafka's `getCacheShard`), `None` for ids no shard
    /// owns (negative, or in the few ids above the last shard's range): no session has
    /// them, so they are not found. (Kafka's lookup fails with an index error there.)
    fn shard_of(&self, session_id: i32) -> Option<usize> {
        let n = usize::try_from(session_id / self.session_id_range).ok()?;
        (n < self.shards.len()).then_some(n)
    }

    /// Kafka's `FetchManager.newContext`; see [`FetchSessionCacheShard::new_context`]. Locks
    /// only the shard of `session_id`.
    pub fn new_context(
        &self,
        version: i16,
        session_id: i32,
        epoch: i32,
        partitions: Vec<PartitionRequest>,
        forgotten: &[SessionPartitionKey],
        now_ms: i64,
    ) -> FetchContext {
        let full = epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH;
        match self.shard_of(session_id) {
            Some(n) if session_id != INVALID_SESSION_ID || !full => self
                .lock(n)
                .new_context(version, session_id, epoch, partitions, forgotten, now_ms),
            // A full request without a session (or naming one no shard owns) touches no
            // shard.
            _ if full => FetchSessionCacheShard::full_context(epoch, partitions),
            _ => FetchContext::Error(ResponseError::FetchSessionIdNotFound),
        }
    }

    /// Kafka's `FullFetchContext` after the read: creates the session in the next shard
    /// round-robin; see [`FetchSessionCacheShard::create_session`].
    pub fn create_session(
        &self,
        version: i16,
        privileged: bool,
        partitions: &[PartitionRequest],
        outcomes: &[PartitionOutcome],
        now_ms: i64,
    ) -> i32 {
        let n = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.lock(n)
            .create_session(version, privileged, partitions, outcomes, now_ms)
    }

    /// Kafka's `IncrementalFetchContext` after the read; see
    /// [`FetchSessionCacheShard::complete_incremental`].
    pub fn complete_incremental(
        &self,
        session_id: i32,
        outcomes: &[PartitionOutcome],
    ) -> Vec<bool> {
        match self.shard_of(session_id) {
            Some(n) => self.lock(n).complete_incremental(session_id, outcomes),
            None => vec![true; outcomes.len()],
        }
    }
}

/// One shard of the fetch session cache (Kafka's `FetchSessionCacheShard`). Not
/// synchronised: [`FetchSessionCache`] holds it behind its lock.
#[derive(Debug)]
pub struct FetchSessionCacheShard {
    max_entries: usize,
    /// Ids this shard draws: `max(1, shard_num * session_id_range)` up to (not including)
    /// `(shard_num + 1) * session_id_range`.
    session_id_range: i32,
    shard_num: i32,
    sessions: HashMap<i32, Session>,
    last_used: BTreeSet<(i64, i32)>,
    evictable_by_all: BTreeSet<EvictableKey>,
    evictable_by_privileged: BTreeSet<EvictableKey>,
    /// Source of session ids (a fixed seed would make ids predictable across restarts).
    rng_state: u64,
}

impl FetchSessionCacheShard {
    /// An empty shard of at most `max_entries` sessions (0 disables sessions) whose ids lie
    /// in shard `shard_num`'s part of `session_id_range`-sized ranges.
    pub fn new(max_entries: usize, session_id_range: i32, shard_num: i32) -> Self {
        FetchSessionCacheShard {
            max_entries,
            session_id_range: session_id_range.max(1),
            shard_num,
            sessions: HashMap::new(),
            last_used: BTreeSet::new(),
            evictable_by_all: BTreeSet::new(),
            evictable_by_privileged: BTreeSet::new(),
            rng_state: Uuid::new_v4().as_u64_pair().0 | 1,
        }
    }

    /// Number of sessions cached.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is cached.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Kafka's `FetchManager.newContext`: applies a request's session fields. `partitions`
    /// are the request's partitions in request order, `forgotten` its forgotten topics' keys.
    pub fn new_context(
        &mut self,
        version: i16,
        session_id: i32,
        epoch: i32,
        partitions: Vec<PartitionRequest>,
        forgotten: &[SessionPartitionKey],
        now_ms: i64,
    ) -> FetchContext {
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            // Any session named by a full request is closed.
            if session_id != INVALID_SESSION_ID {
                self.remove(session_id);
            }
            return Self::full_context(epoch, partitions);
        }
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return FetchContext::Error(ResponseError::FetchSessionIdNotFound);
        };
        if session.epoch != epoch {
            return FetchContext::Error(ResponseError::InvalidFetchSessionEpoch);
        }
        if session.uses_topic_ids != (version >= 13) {
            return FetchContext::Error(ResponseError::FetchSessionTopicIdError);
        }
        for p in &partitions {
            match session.partitions.get_mut(&p.key(version)) {
                Some(cached) => cached.request = p.clone(),
                None => {
                    session.partitions.insert(
                        p.key(version),
                        CachedPartition {
                            request: p.clone(),
                            high_watermark: -1,
                            local_log_start_offset: -1,
                        },
                    );
                }
            }
        }
        for key in forgotten {
            session.partitions.shift_remove(key);
        }
        if session.partitions.is_empty() {
            self.remove(session_id);
            return FetchContext::Sessionless(partitions);
        }
        session.epoch = next_epoch(session.epoch);
        let partitions = session
            .partitions
            .values()
            .map(|c| c.request.clone())
            .collect();
        self.touch(session_id, now_ms);
        FetchContext::Incremental {
            session_id,
            partitions,
        }
    }

    /// The context of a full request (epoch 0 or FINAL): FINAL never creates a session.
    fn full_context(epoch: i32, partitions: Vec<PartitionRequest>) -> FetchContext {
        if epoch == FINAL_EPOCH {
            FetchContext::Sessionless(partitions)
        } else {
            FetchContext::Full(partitions)
        }
    }

    /// Kafka's `FullFetchContext` after the read: caches a new session of `partitions` with
    /// what the response said about each (same order) and returns its id, or
    /// [`INVALID_SESSION_ID`] if the cache is full and nothing may be evicted.
    pub fn create_session(
        &mut self,
        version: i16,
        privileged: bool,
        partitions: &[PartitionRequest],
        outcomes: &[PartitionOutcome],
        now_ms: i64,
    ) -> i32 {
        let size = partitions.len();
        let room = self.sessions.len() < self.max_entries
            || (self.max_entries > 0 && self.try_evict(privileged, (privileged, size, 0), now_ms));
        if !room {
            return INVALID_SESSION_ID;
        }
        let mut cached = IndexMap::with_capacity(size);
        for (p, o) in partitions.iter().zip(outcomes) {
            cached.insert(
                p.key(version),
                CachedPartition {
                    request: p.clone(),
                    high_watermark: o.high_watermark,
                    local_log_start_offset: o.log_start_offset,
                },
            );
        }
        let id = self.new_session_id();
        self.sessions.insert(
            id,
            Session {
                privileged,
                uses_topic_ids: version >= 13,
                partitions: cached,
                creation_ms: now_ms,
                last_used_ms: now_ms,
                epoch: next_epoch(INITIAL_EPOCH),
                cached_size: 0,
            },
        );
        self.last_used.insert((now_ms, id));
        self.touch(id, now_ms);
        id
    }

    /// Kafka's `IncrementalFetchContext` after the read: which of the session's partitions
    /// (`outcomes` in the order [`FetchContext::Incremental`] listed them) the response
    /// carries. Carried partitions move to the end of the session's order, so the next
    /// fetch reads the others first (fairness under `max_bytes`).
    pub fn complete_incremental(
        &mut self,
        session_id: i32,
        outcomes: &[PartitionOutcome],
    ) -> Vec<bool> {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            // Evicted meanwhile: answer everything, as if the session still held.
            return vec![true; outcomes.len()];
        };
        let mut carried = Vec::with_capacity(outcomes.len());
        let mut moved = Vec::new();
        for ((key, cached), out) in session.partitions.iter_mut().zip(outcomes) {
            let must = cached.must_respond(out, true);
            if must {
                moved.push(key.clone());
            }
            carried.push(must);
        }
        for key in moved {
            if let Some(c) = session.partitions.shift_remove(&key) {
                session.partitions.insert(key, c);
            }
        }
        carried
    }

    /// Removes a session; true if it existed.
    pub fn remove(&mut self, session_id: i32) -> bool {
        let Some(s) = self.sessions.remove(&session_id) else {
            return false;
        };
        self.last_used.remove(&(s.last_used_ms, session_id));
        let key = (s.privileged, s.cached_size, session_id);
        self.evictable_by_all.remove(&key);
        self.evictable_by_privileged.remove(&key);
        true
    }

    /// Kafka's `touch`: refreshes the session's last-used time and its eviction keys.
    fn touch(&mut self, id: i32, now_ms: i64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        self.last_used.remove(&(s.last_used_ms, id));
        s.last_used_ms = now_ms;
        self.last_used.insert((now_ms, id));
        let old = (s.privileged, s.cached_size, id);
        self.evictable_by_all.remove(&old);
        self.evictable_by_privileged.remove(&old);
        s.cached_size = s.partitions.len();
        let key = (s.privileged, s.cached_size, id);
        let old_enough = now_ms - s.creation_ms > EVICTION_MS;
        if !s.privileged || old_enough {
            self.evictable_by_privileged.insert(key);
        }
        if old_enough {
            self.evictable_by_all.insert(key);
        }
    }

    /// Kafka's `tryEvict` (see the module docs).
    fn try_evict(&mut self, privileged: bool, key: EvictableKey, now_ms: i64) -> bool {
        let Some(&(last_used, id)) = self.last_used.first() else {
            return false;
        };
        if now_ms - last_used > EVICTION_MS {
            return self.remove(id);
        }
        let set = if privileged {
            &self.evictable_by_privileged
        } else {
            &self.evictable_by_all
        };
        match set.first() {
            Some(&victim) if key >= victim => self.remove(victim.2),
            _ => false,
        }
    }

    /// A random id of this shard's range not in use (Kafka draws them at random too, so a
    /// client cannot guess another client's session).
    fn new_session_id(&mut self) -> i32 {
        let low = self.shard_num.saturating_mul(self.session_id_range).max(1);
        let high = self
            .shard_num
            .saturating_add(1)
            .saturating_mul(self.session_id_range);
        let span = u64::try_from(high.saturating_sub(low)).unwrap_or(0).max(1);
        loop {
            // xorshift64*: enough to make ids unpredictable to a casual client.
            let mut x = self.rng_state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.rng_state = x;
            let draw = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
            let id = low.saturating_add((draw % span) as i32);
            if id > 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(topic: &str, partition: i32, fetch_offset: i64) -> PartitionRequest {
        PartitionRequest {
            topic: Some(topic.to_string()),
            topic_id: Uuid::nil(),
            partition,
            fetch_offset,
            max_bytes: 1 << 20,
            current_leader_epoch: -1,
            log_start_offset: -1,
            last_fetched_epoch: -1,
        }
    }

    fn out(records_size: usize, high_watermark: i64) -> PartitionOutcome {
        PartitionOutcome {
            records_size,
            high_watermark,
            log_start_offset: 0,
            error_code: 0,
        }
    }

    /// A shard of `max_entries` owning every positive id, as a one-shard cache would.
    fn shard(max_entries: usize) -> FetchSessionCacheShard {
        FetchSessionCacheShard::new(max_entries, i32::MAX, 0)
    }

    fn full_session(cache: &mut FetchSessionCacheShard, n: i32, now: i64) -> i32 {
        let parts: Vec<_> = (0..n).map(|p| req("t", p, 0)).collect();
        let ctx = cache.new_context(12, 0, INITIAL_EPOCH, parts.clone(), &[], now);
        assert_eq!(ctx, FetchContext::Full(parts.clone()));
        let outs = vec![out(0, 10); parts.len()];
        cache.create_session(12, false, &parts, &outs, now)
    }

    #[test]
    fn incremental_requests_follow_the_epochs_and_leave_out_unchanged_partitions() {
        let mut cache = shard(10);
        let id = full_session(&mut cache, 3, 0);
        assert_ne!(id, INVALID_SESSION_ID);
        // Epoch 1 with only partition 1's offset changed: all three are read, in order.
        let ctx = cache.new_context(12, id, 1, vec![req("t", 1, 5)], &[], 1);
        let FetchContext::Incremental { partitions, .. } = ctx else {
            panic!("expected an incremental context, got {ctx:?}");
        };
        let offsets: Vec<_> = partitions
            .iter()
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        assert_eq!(offsets, vec![(0, 0), (1, 5), (2, 0)]);
        // Only partition 2 has news (records); 0 and 1 are left out.
        let carried = cache.complete_incremental(id, &[out(0, 10), out(0, 10), out(100, 12)]);
        assert_eq!(carried, vec![false, false, true]);
        // A stale epoch is refused; the right one (2) works; a high watermark change counts.
        assert_eq!(
            cache.new_context(12, id, 1, vec![], &[], 2),
            FetchContext::Error(ResponseError::InvalidFetchSessionEpoch)
        );
        assert!(matches!(
            cache.new_context(12, id, 2, vec![], &[], 2),
            FetchContext::Incremental { .. }
        ));
        assert_eq!(
            cache.complete_incremental(id, &[out(0, 11), out(0, 10), out(0, 12)]),
            vec![true, false, false]
        );
    }

    #[test]
    fn unknown_sessions_topic_id_switches_and_final_epochs() {
        let mut cache = shard(10);
        assert_eq!(
            cache.new_context(12, 1234, 1, vec![], &[], 0),
            FetchContext::Error(ResponseError::FetchSessionIdNotFound)
        );
        let id = full_session(&mut cache, 2, 0);
        assert_eq!(
            cache.new_context(13, id, 1, vec![], &[], 1),
            FetchContext::Error(ResponseError::FetchSessionTopicIdError)
        );
        // FINAL closes the session and answers sessionless.
        assert_eq!(
            cache.new_context(12, id, FINAL_EPOCH, vec![req("t", 0, 0)], &[], 1),
            FetchContext::Sessionless(vec![req("t", 0, 0)])
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        let mut cache = shard(10);
        let id = full_session(&mut cache, 2, 0);
        let forget = [
            (TopicKey::Name("t".into()), 0),
            (TopicKey::Name("t".into()), 1),
        ];
        assert_eq!(
            cache.new_context(12, id, 1, vec![], &forget, 1),
            FetchContext::Sessionless(vec![])
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_stale_sessions_then_smaller_old_ones() {
        let mut cache = shard(2);
        let a = full_session(&mut cache, 5, 0);
        let b = full_session(&mut cache, 1, 1_000);
        // Both recently used and younger than EVICTION_MS: no room for a consumer.
        assert_eq!(full_session(&mut cache, 10, 2_000), INVALID_SESSION_ID);
        // Once older than EVICTION_MS but still in use, the smaller one (b) goes for a
        // session with more partitions, not for one with fewer.
        let later = EVICTION_MS + 10_000;
        assert!(matches!(
            cache.new_context(12, a, 1, vec![], &[], later),
            FetchContext::Incremental { .. }
        ));
        assert!(matches!(
            cache.new_context(12, b, 1, vec![], &[], later),
            FetchContext::Incremental { .. }
        ));
        assert_eq!(
            full_session(&mut cache, 1, later),
            INVALID_SESSION_ID,
            "a 1-partition session evicts only sessions of at most 1 partition with a smaller id"
        );
        let c = full_session(&mut cache, 3, later + 1);
        assert_ne!(c, INVALID_SESSION_ID);
        assert_eq!(
            cache.new_context(12, b, 2, vec![], &[], later + 2),
            FetchContext::Error(ResponseError::FetchSessionIdNotFound)
        );
        // A session idle for longer than EVICTION_MS is evicted by anyone.
        let much_later = later + EVICTION_MS + 1;
        assert_ne!(full_session(&mut cache, 1, much_later), INVALID_SESSION_ID);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn zero_slots_never_create_sessions() {
        let mut cache = shard(0);
        assert_eq!(full_session(&mut cache, 1, 0), INVALID_SESSION_ID);
    }

    /// A full fetch through the sharded cache, as the fetch handler makes it.
    fn cached_session(cache: &FetchSessionCache, n: i32, now: i64) -> i32 {
        let parts: Vec<_> = (0..n).map(|p| req("t", p, 0)).collect();
        let ctx = cache.new_context(12, 0, INITIAL_EPOCH, parts.clone(), &[], now);
        assert_eq!(ctx, FetchContext::Full(parts.clone()));
        cache.create_session(12, false, &parts, &vec![out(0, 10); parts.len()], now)
    }

    #[test]
    fn slots_are_split_over_eight_shards_picked_round_robin() {
        let range = i32::MAX / NUM_FETCH_SESSION_CACHE_SHARDS as i32;
        // 16 slots: two sessions per shard; the 17th young consumer session finds every
        // shard full.
        let cache = FetchSessionCache::new(16);
        let ids: Vec<i32> = (0..17).map(|_| cached_session(&cache, 1, 0)).collect();
        for (i, &id) in ids[..16].iter().enumerate() {
            let shard = (i % NUM_FETCH_SESSION_CACHE_SHARDS) as i32;
            assert!(
                id >= (shard * range).max(1) && id < (shard + 1) * range,
                "session {i} ({id}) outside shard {shard}'s ids"
            );
        }
        assert_eq!(ids[16], INVALID_SESSION_ID);
        assert_eq!(cache.len(), 16);
        // Each session is found again through its id alone, in its own shard.
        for &id in &ids[..16] {
            assert!(
                matches!(
                    cache.new_context(12, id, 1, vec![], &[], 1),
                    FetchContext::Incremental { session_id, .. } if session_id == id
                ),
                "session {id} not found"
            );
            assert_eq!(cache.complete_incremental(id, &[out(0, 10)]), vec![false]);
        }
        // Ids no shard owns are unknown sessions; a full request naming one is served.
        for id in [-5, i32::MAX] {
            assert_eq!(
                cache.new_context(12, id, 1, vec![], &[], 1),
                FetchContext::Error(ResponseError::FetchSessionIdNotFound)
            );
            assert_eq!(
                cache.new_context(12, id, INITIAL_EPOCH, vec![], &[], 1),
                FetchContext::Full(vec![])
            );
        }
        // A full request naming a session closes it in its shard.
        cache.new_context(12, ids[3], INITIAL_EPOCH, vec![], &[], 2);
        assert_eq!(cache.len(), 15);
    }

    #[test]
    fn fewer_slots_than_shards_mean_no_sessions() {
        // As in Kafka: 7 / 8 = 0 sessions per shard.
        let cache = FetchSessionCache::new(7);
        assert_eq!(cached_session(&cache, 1, 0), INVALID_SESSION_ID);
        assert!(cache.is_empty());
    }
}
