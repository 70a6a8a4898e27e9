//! The transaction coordinator's parts (issue 11), as Apache Kafka 4.1 shapes them:
//!
//! - [`records`]: `__transaction_state`'s record formats (Kafka's `TransactionLogKey` and
//!   `TransactionLogValue`), the partition that owns a transactional id, the topic's configs;
//! - [`state`]: one transactional id's state machine (Empty, Ongoing, PrepareCommit,
//!   PrepareAbort, CompleteCommit, CompleteAbort, Dead, PrepareEpochFence) with Kafka's
//!   transitions and error codes, pure and tested with logical time;
//! - [`coordinator`]: the coordinator — these states per `__transaction_state` partition,
//!   loaded and dropped with its leadership as the group coordinator does, the
//!   FindCoordinator / InitProducerId / AddPartitionsToTxn / AddOffsetsToTxn / EndTxn
//!   paths, end markers written by the partition leaders (this broker's own, or sent to
//!   the others by [`markers`]), timed-out transactions aborted, idle transactional ids
//!   expired (`transactional.id.expiration.ms`: [`state::expired_ids`] picks them, a
//!   tombstone of each key is written so a restart does not bring them back),
//!   and what DescribeTransactions and ListTransactions report;
//! - [`markers`]: the markers to partitions other brokers lead, grouped by destination,
//!   queued per broker and sent as WriteTxnMarkers over the inter-broker listener (one
//!   request in flight per broker, carrying every transaction queued for it), and which
//!   answers are retried;
//! - [`listing`]: ListTransactions' filters (states, producer ids, KIP-994's duration,
//!   KIP-1152's transactional id pattern).
//!
//! What `kafka-transactions.sh` reads and writes beyond the coordinator is the partition
//! leaders': DescribeProducers answers from each log's producer state
//! ([`crate::log::PartitionLog::active_producers`]), and WriteTxnMarkers (what
//! `Admin.abortTransaction` sends for a hanging transaction) writes through the same marker
//! path as the coordinator ([`coordinator::TxnHost::write_marker`]).
//!
//! Offsets in a transaction (`sendOffsetsToTransaction`): AddOffsetsToTxn adds the group's
//! `__consumer_offsets` partition to the transaction like any partition; TxnOffsetCommit
//! is the group coordinator's ([`crate::group::GroupCoordinator::txn_commit`]): the
//! offsets are written as a transactional batch of the producer and stay pending until the
//! marker written to that partition ends them (committed or dropped), live and on load.
//!
//! Transaction protocol: v1 only. KIP-890's v2 (the epoch bumped by every EndTxn, partitions
//! added implicitly by Produce) is served only when the broker advertises the
//! `transaction.version` feature at level 2 in ApiVersions; Oxbow advertises no
//! `transaction.version`, so Kafka 4.1's clients take the v1 path (AddPartitionsToTxn before
//! producing, EndTxn at the same epoch), and the coordinator writes log values at version
//! 0, as a Kafka coordinator at `transaction.version` 0 does. v2 would need verification of
//! every transactional produce with the coordinator first.
//!
//! Served on a single node and on the replicated cluster alike: `__transaction_state` is
//! replicated like every internal topic (`transaction.state.log.replication.factor`,
//! `transaction.state.log.min.isr`), the coordinator of an id is the leader of its
//! partition and moves with that leadership (the new leader loads the partition and
//! completes the transactions it finds prepared), and [`markers`] sends the markers of
//! partitions led by other brokers as WriteTxnMarkers requests over the inter-broker
//! listener, retried as Kafka's `TransactionMarkerChannelManager` retries them. As that
//! channel drains one queue per broker, the markers of every transaction queued for a broker
//! while its previous request is in flight go together in its next request (one marker per
//! producer id a request, since answers are read by producer id).

pub mod coordinator;
pub mod listing;
pub mod markers;
pub mod records;
pub mod state;

pub use listing::ListFilter;
pub use records::{TxnLogValue, TRANSACTION_STATE_TOPIC};
pub use state::{InitPlan, TxnMetadata, TxnState, TxnTransit};
