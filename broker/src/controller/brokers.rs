//! Broker lifecycle decisions: registration, heartbeats (unfencing, controlled shutdown),
//! session expiry and unregistration, as Kafka's `ClusterControlManager` and
//! `BrokerHeartbeatManager` make them.
//!
//! Liveness is soft state of the active controller ([`BrokerHeartbeats`]: last contact and
//! reported metadata offset per broker), driven by the logical time `now_ms`; what it
//! decides (fenced, in controlled shutdown) is committed as records.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::partitions::{self, check_broker_epoch};
use super::{ControllerConfig, ControllerError, Result};
use crate::metadata::{BrokerEndpoint, BrokerRegistration, MetadataImage, MetadataRecord};

/// A BrokerHeartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerHeartbeat {
    /// Node id.
    pub id: i32,
    /// Its broker epoch (from the registration reply).
    pub epoch: i64,
    /// The metadata offset the broker has replayed.
    pub current_metadata_offset: i64,
    /// The broker asks to be (or stay) fenced, e.g. while it is still loading.
    pub want_fence: bool,
    /// The broker is shutting down (SIGTERM) and asks for a controlled shutdown.
    pub want_shut_down: bool,
}

/// The answer to a heartbeat (Kafka's BrokerHeartbeatResponse fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The broker has replayed the metadata log up to its registration.
    pub is_caught_up: bool,
    /// The broker is fenced.
    pub is_fenced: bool,
    /// The broker is in controlled shutdown: its leaderships are being moved away.
    pub in_controlled_shutdown: bool,
    /// The broker may exit now.
    pub should_shut_down: bool,
}

/// What the active controller remembers about one broker between heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerContact {
    /// When the last heartbeat (or registration) arrived, logical ms.
    pub last_contact_ms: i64,
    /// The metadata offset the broker last reported (-1 unknown).
    pub metadata_offset: i64,
    /// The committed offset of its registration, once known (else its epoch is used).
    pub registration_offset: Option<i64>,
    /// The committed offset of the records that began its controlled shutdown.
    pub controlled_shutdown_offset: Option<i64>,
    /// A registration or heartbeat of it reached this controller (false for brokers only
    /// taken over from the image when this controller became active).
    pub heard: bool,
}

/// Last contact per broker (Kafka's `BrokerHeartbeatManager`), a plain struct driven by
/// logical time.
#[derive(Debug, Clone, Default)]
pub struct BrokerHeartbeats {
    brokers: BTreeMap<i32, BrokerContact>,
}

impl BrokerHeartbeats {
    /// Starts tracking every registered broker of `image` not tracked yet as if it had just
    /// been heard from: a newly active controller gives every broker a full session before
    /// fencing it. Forgets brokers that are no longer registered.
    pub fn observe(&mut self, image: &MetadataImage, now_ms: i64) {
        self.brokers.retain(|id, _| image.brokers.contains_key(id));
        for id in image.brokers.keys() {
            self.brokers.entry(*id).or_insert(BrokerContact {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                registration_offset: None,
                controlled_shutdown_offset: None,
                heard: false,
            });
        }
    }

    /// What is known about broker `id`.
    pub fn get(&self, id: i32) -> Option<&BrokerContact> {
        self.brokers.get(&id)
    }

    fn touch(&mut self, id: i32, now_ms: i64, metadata_offset: i64) {
        let entry = self.brokers.entry(id).or_insert(BrokerContact {
            last_contact_ms: now_ms,
            metadata_offset,
            registration_offset: None,
            controlled_shutdown_offset: None,
            heard: true,
        });
        entry.last_contact_ms = entry.last_contact_ms.max(now_ms);
        entry.metadata_offset = metadata_offset;
        entry.heard = true;
    }

    /// Records the committed offset of broker `id`'s registration.
    pub fn registered_at(&mut self, id: i32, offset: i64) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.registration_offset = Some(offset);
        }
    }

    /// Records the committed offset at which broker `id`'s controlled shutdown began.
    pub fn controlled_shutdown_at(&mut self, id: i32, offset: i64) {
        if let Some(b) = self.brokers.get_mut(&id) {
            if b.controlled_shutdown_offset.is_none_or(|o| o < offset) {
                b.controlled_shutdown_offset = Some(offset);
            }
        }
    }

    /// Whether broker `id` holds a valid session: unfenced in `image` and heard from within
    /// the session timeout (Kafka's `hasValidSession`).
    pub fn has_valid_session(
        &self,
        image: &MetadataImage,
        id: i32,
        session_timeout_ms: i64,
        now_ms: i64,
    ) -> bool {
        let unfenced = image.brokers.get(&id).is_some_and(|b| !b.fenced);
        unfenced
            && self
                .brokers
                .get(&id)
                .is_some_and(|b| b.last_contact_ms.saturating_add(session_timeout_ms) >= now_ms)
    }

    /// The lowest metadata offset reported by an unfenced broker (`i64::MAX` if none): a
    /// broker in controlled shutdown may exit once every active broker has replayed the
    /// records that moved its leaderships.
    fn lowest_active_offset(&self, image: &MetadataImage) -> i64 {
        image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| self.brokers.get(&b.id).map(|c| c.metadata_offset))
            .min()
            .unwrap_or(i64::MAX)
    }
}

/// A registration request's content.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    /// `node.id`.
    pub id: i32,
    /// The broker's cluster id.
    pub cluster_id: &'a str,
    /// Random per process start.
    pub incarnation_id: Uuid,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Advertised listeners.
    pub endpoints: Vec<BrokerEndpoint>,
}

/// Fencing records for broker `id`: its leaderships move to other ISR members, it leaves
/// every ISR, and it is marked fenced (Kafka's `handleBrokerFenced`).
pub fn fence(config: &ControllerConfig, image: &MetadataImage, id: i32) -> Vec<MetadataRecord> {
    let Some(registration) = image.brokers.get(&id) else {
        return vec![];
    };
    let mut records = partitions::remove_broker_from_partitions(config, image, id);
    records.push(MetadataRecord::BrokerChange {
        id,
        epoch: registration.epoch,
        fenced: Some(true),
        in_controlled_shutdown: None,
    });
    records
}

/// Decides a registration. A broker whose earlier incarnation still holds a valid session
/// is refused with DUPLICATE_BROKER_REGISTRATION (Kafka's rule: a second process with the
/// same `node.id` must not take over a live one); another cluster id is
/// INCONSISTENT_CLUSTER_ID. The same incarnation registering again (a retried request)
/// amends its endpoints and rack and keeps its epoch and state. A new incarnation replaces
/// the old registration, fenced: if the old one was still unfenced (its session expired but
/// the expiry was not yet committed) it is fenced first, so its leaderships move. The new
/// broker epoch is the offset the registration is expected at (the image's offset + 1): the
/// store may commit it later, so the epoch is a lower bound of the registration's offset
/// that grows with every registration, and [`super::ControllerState::committed`] records the
/// exact offset for the caught-up check. Answers the records and the broker epoch.
pub fn register(
    heartbeats: &mut BrokerHeartbeats,
    config: &ControllerConfig,
    image: &MetadataImage,
    request: Registration<'_>,
    now_ms: i64,
) -> Result<(Vec<MetadataRecord>, i64)> {
    if request.cluster_id != image.cluster_id {
        return Err(ControllerError::new(
            ResponseError::InconsistentClusterId,
            format!(
                "Expected cluster ID {}, but got cluster ID {}",
                image.cluster_id, request.cluster_id
            ),
        ));
    }
    let id = request.id;
    let existing = image.brokers.get(&id);
    let mut records = Vec::new();
    let registration = match existing {
        Some(old) if old.incarnation_id == request.incarnation_id => BrokerRegistration {
            rack: request.rack,
            endpoints: request.endpoints,
            ..old.clone()
        },
        _ => {
            if let Some(old) = existing {
                if heartbeats.has_valid_session(image, id, config.broker_session_timeout_ms, now_ms)
                {
                    return Err(ControllerError::new(
                        ResponseError::DuplicateBrokerRegistration,
                        "Another broker is registered with that broker id.",
                    ));
                }
                if !old.fenced || partitions::has_leaderships(image, id) {
                    records.extend(fence(config, image, id));
                }
            }
            BrokerRegistration {
                id,
                incarnation_id: request.incarnation_id,
                epoch: image.offset + 1,
                rack: request.rack,
                endpoints: request.endpoints,
                fenced: true,
                in_controlled_shutdown: false,
            }
        }
    };
    let epoch = registration.epoch;
    let new_incarnation = existing.is_none_or(|old| old.incarnation_id != request.incarnation_id);
    records.push(MetadataRecord::RegisterBroker(registration));
    if new_incarnation {
        // A new session: the old incarnation's contact and offsets do not count.
        heartbeats.brokers.insert(
            id,
            BrokerContact {
                last_contact_ms: now_ms,
                metadata_offset: -1,
                registration_offset: None,
                controlled_shutdown_offset: None,
                heard: true,
            },
        );
    } else {
        heartbeats.touch(
            id,
            now_ms,
            heartbeats.get(id).map_or(-1, |b| b.metadata_offset),
        );
    }
    Ok((records, epoch))
}

/// The broker states of Kafka's heartbeat state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerControlState {
    Fenced,
    Unfenced,
    ControlledShutdown,
    ShutdownNow,
}

/// Decides a heartbeat (Kafka's `processBrokerHeartbeat` and `calculateNextBrokerState`):
/// STALE_BROKER_EPOCH for an unknown broker or another epoch. A fenced broker that does
/// not want to be fenced and has replayed its registration is unfenced (and leaderless
/// partitions it can lead get it as leader); an unfenced broker asking to shut down enters
/// controlled shutdown (its leaderships move, it leaves the ISRs) and may exit once it leads
/// nothing and every active broker has replayed that change; a broker asking for fencing
/// gets it. Records contact in `heartbeats`.
pub fn heartbeat(
    heartbeats: &mut BrokerHeartbeats,
    config: &ControllerConfig,
    image: &MetadataImage,
    request: &BrokerHeartbeat,
    now_ms: i64,
) -> Result<(Vec<MetadataRecord>, HeartbeatReply)> {
    check_broker_epoch(image, request.id, request.epoch)?;
    let Some(registration) = image.brokers.get(&request.id) else {
        return Err(ControllerError::code(ResponseError::StaleBrokerEpoch));
    };
    let id = request.id;
    heartbeats.touch(id, now_ms, request.current_metadata_offset);
    let contact = heartbeats.get(id).copied();
    let registration_offset = contact
        .and_then(|c| c.registration_offset)
        .unwrap_or(registration.epoch);
    let caught_up = request.current_metadata_offset >= registration_offset;
    let current = if registration.in_controlled_shutdown {
        BrokerControlState::ControlledShutdown
    } else if registration.fenced {
        BrokerControlState::Fenced
    } else {
        BrokerControlState::Unfenced
    };
    use BrokerControlState::*;
    let next = match current {
        Fenced if request.want_shut_down => ShutdownNow,
        Fenced if !request.want_fence && caught_up => Unfenced,
        Fenced => Fenced,
        Unfenced if request.want_fence && request.want_shut_down => ShutdownNow,
        Unfenced if request.want_fence => Fenced,
        Unfenced if request.want_shut_down => {
            if partitions::has_leaderships(image, id) {
                ControlledShutdown
            } else {
                ShutdownNow
            }
        }
        Unfenced => Unfenced,
        ControlledShutdown => {
            let started_at = contact
                .and_then(|c| c.controlled_shutdown_offset)
                .unwrap_or(image.offset);
            if partitions::has_leaderships(image, id) {
                ControlledShutdown
            } else if started_at <= heartbeats.lowest_active_offset(image) {
                ShutdownNow
            } else {
                ControlledShutdown
            }
        }
        ShutdownNow => ShutdownNow,
    };
    let mut records = Vec::new();
    if current != next {
        match next {
            Fenced | ShutdownNow => {
                if !registration.fenced {
                    records = fence(config, image, id);
                }
            }
            Unfenced => {
                records.push(MetadataRecord::BrokerChange {
                    id,
                    epoch: registration.epoch,
                    fenced: Some(false),
                    in_controlled_shutdown: None,
                });
                records.extend(partitions::elect_for_unfenced_broker(config, image, id));
            }
            ControlledShutdown => {
                records.push(MetadataRecord::BrokerChange {
                    id,
                    epoch: registration.epoch,
                    fenced: None,
                    in_controlled_shutdown: Some(true),
                });
                // Leaders are elected as if the broker were already shutting down.
                let mut shutting = image.clone();
                shutting.replay(&records[0]);
                records.extend(partitions::remove_broker_from_partitions(
                    config, &shutting, id,
                ));
            }
        }
    }
    Ok((
        records,
        HeartbeatReply {
            is_caught_up: caught_up,
            is_fenced: matches!(next, Fenced | ShutdownNow),
            in_controlled_shutdown: next == ControlledShutdown,
            should_shut_down: next == ShutdownNow,
        },
    ))
}

/// Records fencing every unfenced broker whose session expired at `now_ms` (Kafka fences one
/// per event; here they are decided together, each on the image the previous fencing left,
/// so leaderships never move to a broker fenced in the same batch).
pub fn fence_expired(
    heartbeats: &mut BrokerHeartbeats,
    config: &ControllerConfig,
    image: &MetadataImage,
    now_ms: i64,
) -> Vec<MetadataRecord> {
    heartbeats.observe(image, now_ms);
    let expired: Vec<i32> = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter(|b| {
            !heartbeats.has_valid_session(image, b.id, config.broker_session_timeout_ms, now_ms)
        })
        .map(|b| b.id)
        .collect();
    fence_all(config, image, expired)
}

/// Fences every broker of `ids` in turn, each decision on the image the previous ones made.
fn fence_all(
    config: &ControllerConfig,
    image: &MetadataImage,
    ids: impl IntoIterator<Item = i32>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    let mut working: Option<MetadataImage> = None;
    for id in ids {
        let current = working.as_ref().unwrap_or(image);
        let fencing = fence(config, current, id);
        let next = working.get_or_insert_with(|| image.clone());
        for r in &fencing {
            next.replay(r);
        }
        records.extend(fencing);
    }
    records
}

/// Unfenced brokers of `image` not heard from for longer than `overdue_ms` (they missed a
/// heartbeat), or not heard from at all since this controller became active, with their
/// advertised endpoints: the ones worth a liveness probe.
pub fn overdue(
    heartbeats: &mut BrokerHeartbeats,
    image: &MetadataImage,
    now_ms: i64,
    overdue_ms: i64,
) -> Vec<(i32, Vec<BrokerEndpoint>)> {
    heartbeats.observe(image, now_ms);
    image
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.endpoints.is_empty())
        .filter(|b| {
            heartbeats
                .get(b.id)
                .is_some_and(|c| !c.heard || c.last_contact_ms.saturating_add(overdue_ms) < now_ms)
        })
        .map(|b| (b.id, b.endpoints.clone()))
        .collect()
}

/// Fences the brokers of `gone` (whose process was found dead) that are still unfenced and
/// still overdue by `overdue_ms` at `now_ms`: one that heartbeated since it was probed
/// keeps its session.
pub fn fence_gone(
    heartbeats: &mut BrokerHeartbeats,
    config: &ControllerConfig,
    image: &MetadataImage,
    gone: &[i32],
    now_ms: i64,
    overdue_ms: i64,
) -> Vec<MetadataRecord> {
    let still_overdue: Vec<i32> = overdue(heartbeats, image, now_ms, overdue_ms)
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| gone.contains(id))
        .collect();
    fence_all(config, image, still_overdue)
}

/// Decides UnregisterBroker: BROKER_ID_NOT_REGISTERED for an unknown id; otherwise the
/// broker leaves every ISR and leadership and its registration is removed.
pub fn unregister(
    heartbeats: &mut BrokerHeartbeats,
    config: &ControllerConfig,
    image: &MetadataImage,
    id: i32,
) -> Result<Vec<MetadataRecord>> {
    if !image.brokers.contains_key(&id) {
        return Err(ControllerError::new(
            ResponseError::BrokerIdNotRegistered,
            format!("Broker ID {id} is not currently registered"),
        ));
    }
    let mut records = partitions::remove_broker_from_partitions(config, image, id);
    records.push(MetadataRecord::UnregisterBroker { id });
    heartbeats.brokers.remove(&id);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_support::*;

    const TIMEOUT: i64 = 9000;

    fn reg(id: i32, incarnation: u128) -> Registration<'static> {
        Registration {
            id,
            cluster_id: "test-cluster",
            incarnation_id: Uuid::from_u128(incarnation),
            rack: None,
            endpoints: vec![],
        }
    }

    fn hb(image: &MetadataImage, id: i32, offset: i64) -> BrokerHeartbeat {
        BrokerHeartbeat {
            id,
            epoch: image.brokers[&id].epoch,
            current_metadata_offset: offset,
            want_fence: false,
            want_shut_down: false,
        }
    }

    /// Probes go to brokers whose heartbeat is overdue, and at once to brokers a newly
    /// active controller has not heard from; a broker found gone that heartbeats before the
    /// decision is not fenced.
    #[test]
    fn overdue_brokers_are_probed_and_only_the_still_silent_gone_ones_are_fenced() {
        let mut image = image_with_brokers(&[1, 2]);
        for b in image.brokers.values_mut() {
            b.endpoints = vec![BrokerEndpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 1,
                security_protocol: "PLAINTEXT".into(),
            }];
        }
        let ids = |v: Vec<(i32, Vec<BrokerEndpoint>)>| {
            v.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        };
        let mut beats = BrokerHeartbeats::default();
        assert_eq!(ids(overdue(&mut beats, &image, 0, 3000)), vec![1, 2]);
        beats.touch(1, 0, 200);
        beats.touch(2, 0, 200);
        assert!(overdue(&mut beats, &image, 3000, 3000).is_empty());
        assert_eq!(ids(overdue(&mut beats, &image, 3001, 3000)), vec![1, 2]);
        // Both were found gone, but broker 2 heartbeated before the decision.
        beats.touch(2, 3001, 200);
        let c = ControllerConfig::default();
        let records = fence_gone(&mut beats, &c, &image, &[1, 2], 3002, 3000);
        for r in &records {
            image.replay(r);
        }
        assert!(image.brokers[&1].fenced);
        assert!(!image.brokers[&2].fenced);
    }

    #[test]
    fn a_new_broker_registers_fenced_and_is_unfenced_once_caught_up() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[]);
        let mut beats = BrokerHeartbeats::default();
        let (records, epoch) = register(&mut beats, &c, &image, reg(1, 10), 0).unwrap();
        assert_eq!(epoch, image.offset + 1);
        commit(&mut image, &records);
        beats.registered_at(1, image.offset);
        assert!(image.brokers[&1].fenced);
        let (records, reply) =
            heartbeat(&mut beats, &c, &image, &hb(&image, 1, epoch - 1), 10).unwrap();
        assert!(records.is_empty());
        assert!(reply.is_fenced && !reply.is_caught_up);
        let (records, reply) =
            heartbeat(&mut beats, &c, &image, &hb(&image, 1, epoch), 20).unwrap();
        assert!(!reply.is_fenced && reply.is_caught_up);
        commit(&mut image, &records);
        assert!(!image.brokers[&1].fenced);
    }

    #[test]
    fn retried_registration_keeps_the_epoch_and_state() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1]);
        let mut beats = BrokerHeartbeats::default();
        let before = image.brokers[&1].clone();
        let (records, epoch) = register(&mut beats, &c, &image, reg(1, 2), 0).unwrap();
        assert_eq!(epoch, before.epoch);
        commit(&mut image, &records);
        assert_eq!(image.brokers[&1], before);
    }

    #[test]
    fn a_new_incarnation_is_refused_while_the_old_session_is_valid() {
        let c = ControllerConfig::default();
        let image = image_with_brokers(&[1]);
        let mut beats = BrokerHeartbeats::default();
        beats.observe(&image, 0);
        let err = register(&mut beats, &c, &image, reg(1, 77), 1000).unwrap_err();
        assert!(err.is(ResponseError::DuplicateBrokerRegistration));
    }

    #[test]
    fn a_new_incarnation_after_expiry_replaces_and_fences_the_old_one_first() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1, 2], 1)]);
        let mut beats = BrokerHeartbeats::default();
        beats.observe(&image, 0);
        let (records, epoch) = register(&mut beats, &c, &image, reg(1, 77), TIMEOUT + 1).unwrap();
        commit(&mut image, &records);
        let b = &image.brokers[&1];
        assert_eq!(
            (b.incarnation_id, b.epoch, b.fenced),
            (Uuid::from_u128(77), epoch, true)
        );
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    }

    #[test]
    fn expired_sessions_fence_brokers_and_move_their_leaderships() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(
            &mut image,
            "t",
            vec![
                partition(&[1, 2, 3], &[1, 2, 3], 1),
                partition(&[2, 1], &[2, 1], 2),
            ],
        );
        let mut beats = BrokerHeartbeats::default();
        beats.observe(&image, 0);
        // Brokers 2 and 3 keep heartbeating; 1 goes silent.
        for now in [3000, 6000, 9000] {
            for id in [2, 3] {
                heartbeat(&mut beats, &c, &image, &hb(&image, id, image.offset), now).unwrap();
            }
            assert!(fence_expired(&mut beats, &c, &image, now).is_empty());
        }
        let records = fence_expired(&mut beats, &c, &image, TIMEOUT + 1);
        commit(&mut image, &records);
        assert!(image.brokers[&1].fenced);
        assert!(!image.brokers[&2].fenced);
        let t = image.topic("t").unwrap();
        assert_eq!(
            (t.partitions[0].leader, t.partitions[0].isr.clone()),
            (2, vec![2, 3])
        );
        assert_eq!(
            (t.partitions[1].leader, t.partitions[1].isr.clone()),
            (2, vec![2])
        );
        assert_eq!(t.partitions[0].leader_epoch, 6);
    }

    #[test]
    fn two_brokers_expiring_together_never_receive_each_others_leaderships() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(&mut image, "t", vec![partition(&[1, 2, 3], &[1, 2, 3], 1)]);
        let mut beats = BrokerHeartbeats::default();
        beats.observe(&image, 0);
        heartbeat(&mut beats, &c, &image, &hb(&image, 3, 0), 5000).unwrap();
        let records = fence_expired(&mut beats, &c, &image, TIMEOUT + 1);
        commit(&mut image, &records);
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (3, vec![3]));
    }

    #[test]
    fn controlled_shutdown_moves_leaderships_then_allows_exit() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1, 2], 1)]);
        let mut beats = BrokerHeartbeats::default();
        beats.observe(&image, 0);
        let mut shut = hb(&image, 1, image.offset);
        shut.want_shut_down = true;
        let (records, reply) = heartbeat(&mut beats, &c, &image, &shut, 10).unwrap();
        assert!(reply.in_controlled_shutdown && !reply.should_shut_down);
        commit(&mut image, &records);
        beats.controlled_shutdown_at(1, image.offset);
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert!(image.brokers[&1].in_controlled_shutdown);
        // Broker 2 has not replayed the change yet: not yet.
        heartbeat(&mut beats, &c, &image, &hb(&image, 2, image.offset - 1), 20).unwrap();
        shut.current_metadata_offset = image.offset;
        let (_, reply) = heartbeat(&mut beats, &c, &image, &shut, 30).unwrap();
        assert!(!reply.should_shut_down);
        heartbeat(&mut beats, &c, &image, &hb(&image, 2, image.offset), 40).unwrap();
        let (records, reply) = heartbeat(&mut beats, &c, &image, &shut, 50).unwrap();
        assert!(reply.should_shut_down && reply.is_fenced);
        commit(&mut image, &records);
        assert!(image.brokers[&1].fenced);
    }

    #[test]
    fn a_broker_leading_nothing_may_shut_down_at_once() {
        let c = ControllerConfig::default();
        let image = image_with_brokers(&[1, 2]);
        let mut beats = BrokerHeartbeats::default();
        let mut shut = hb(&image, 1, image.offset);
        shut.want_shut_down = true;
        let (records, reply) = heartbeat(&mut beats, &c, &image, &shut, 10).unwrap();
        assert!(reply.should_shut_down);
        assert!(matches!(
            records.last(),
            Some(MetadataRecord::BrokerChange {
                fenced: Some(true),
                ..
            })
        ));
    }

    #[test]
    fn heartbeats_from_another_epoch_are_stale() {
        let c = ControllerConfig::default();
        let image = image_with_brokers(&[1]);
        let mut beats = BrokerHeartbeats::default();
        let mut h = hb(&image, 1, 0);
        h.epoch = 3;
        let err = heartbeat(&mut beats, &c, &image, &h, 0).unwrap_err();
        assert!(err.is(ResponseError::StaleBrokerEpoch));
    }

    #[test]
    fn unregistering_removes_the_broker_from_isrs() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1, 2], 1)]);
        let mut beats = BrokerHeartbeats::default();
        let records = unregister(&mut beats, &c, &image, 1).unwrap();
        commit(&mut image, &records);
        assert!(!image.brokers.contains_key(&1));
        assert_eq!(image.topic("t").unwrap().partitions[0].leader, 2);
        assert!(unregister(&mut beats, &c, &image, 9)
            .unwrap_err()
            .is(ResponseError::BrokerIdNotRegistered));
    }
}
