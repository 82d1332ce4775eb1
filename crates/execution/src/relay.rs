//! The anchoring relay's decisions, without I/O: when a service-chain validator should submit
//! its chain's newest certified checkpoint to the root chain, which epoch names it, which
//! checkpoint and extension proof to send, and the transaction that carries them.
//!
//! `netchaind` runs this on a timer against the root's API (`netchain-cli`'s relay); the
//! simulator runs the same code against simulated root and service-chain validators, with relays
//! that crash and restart. Validators take turns by anchor slot; anyone relays once the anchor
//! has been due for three intervals (the turn-holder may be down). A duplicate is refused by the
//! root as stale, so a second relay costs a little work and changes nothing.

use crate::registry::ChainRecord;
use crate::Executor;
use netchain_crypto::{sign_transaction, Keypair};
use netchain_storage::{ChainStore, KvBackend, StorageError};
use netchain_types::registry::{history_key, Anchor, RegistryOp};
use netchain_types::{CertifiedCheckpoint, Payload, SignedTransaction, Transaction, Validator};

/// How far below the executed height the relay looks for a stored certificate.
const CHECKPOINT_LOOKBACK: u64 = 256;

/// What the relay should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No root epoch lists this chain's committee: nothing this committee certifies can anchor.
    NoEpoch,
    /// The newest certified checkpoint is not far enough above the last anchor.
    NotDue,
    /// Due, but another validator's turn (and not overdue yet).
    NotMyTurn,
    /// This relay submitted the anchor after the same anchored height a moment ago; it waits
    /// for the root to take it before sending again.
    InFlight,
    /// Submit the checkpoint at `height`, certified by `epoch`, extending the anchor at `anchored`.
    Relay {
        /// Epoch whose validator set is this committee.
        epoch: u64,
        /// The root's last anchored height (0: none yet, extend genesis).
        anchored: u64,
        /// Height of the checkpoint to submit.
        height: u64,
    },
}

/// When anchors are due: every so many blocks, or once the chain has been past its last anchor
/// for so long (so a quiet chain's last blocks are anchored too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Anchor when the newest certified checkpoint is this many blocks past the last anchor.
    pub every_blocks: u64,
    /// Anchor when a newer certified checkpoint has waited this long.
    pub every_ms: u64,
    /// How often the relay looks (three of these make an anchor overdue for everyone).
    pub interval_ms: u64,
}

/// One validator's relay: its place in the committee and when the next anchor became due.
/// The state is memory only; a restarted relay starts afresh (and waits its turn again).
#[derive(Clone, Debug)]
pub struct Relay {
    schedule: Schedule,
    me: u64,
    committee_size: u64,
    /// (anchored height, local time) at which a newer certified checkpoint was first seen.
    behind_since: Option<(u64, u64)>,
    /// (anchored height, local time) at which the next anchor was first seen due.
    due_since: Option<(u64, u64)>,
    /// (anchored height, local time) of this relay's last submission.
    sent: Option<(u64, u64)>,
}

impl Relay {
    /// A relay for validator `me` of a committee of `committee_size`.
    pub fn new(schedule: Schedule, me: u64, committee_size: u64) -> Self {
        Self {
            schedule: Schedule {
                every_blocks: schedule.every_blocks.max(1),
                every_ms: schedule.every_ms,
                interval_ms: schedule.interval_ms.max(1),
            },
            me,
            committee_size: committee_size.max(1),
            behind_since: None,
            due_since: None,
            sent: None,
        }
    }

    /// Records that the anchor after `anchored` was submitted at `now_ms`: this relay sends it
    /// again only if the root has not taken it within `every_ms` (or three intervals, if longer).
    pub fn submitted(&mut self, anchored: u64, now_ms: u64) {
        self.sent = Some((anchored, now_ms));
    }

    /// Decides at local time `now_ms`, given the root's record of this chain, this chain's
    /// committee and the height of the newest checkpoint certified here and executed here.
    pub fn decide(
        &mut self,
        now_ms: u64,
        record: &ChainRecord,
        committee: &[Validator],
        certified: Option<u64>,
    ) -> Decision {
        let anchored = record.last_anchor.as_ref().map_or(0, |a| a.height);
        // The engine keeps its genesis committee; a root epoch with other keys cannot be
        // certified by it.
        let Some(epoch) = record
            .epochs
            .iter()
            .rev()
            .find(|e| e.validators == committee)
            .map(|e| e.epoch)
        else {
            return Decision::NoEpoch;
        };
        let height = match certified {
            Some(h) if h > anchored => h,
            _ => {
                self.behind_since = None;
                self.due_since = None;
                return Decision::NotDue;
            }
        };
        let behind = match self.behind_since {
            Some((a, t)) if a == anchored => t,
            _ => {
                self.behind_since = Some((anchored, now_ms));
                now_ms
            }
        };
        let due = height >= anchored.saturating_add(self.schedule.every_blocks)
            || now_ms.saturating_sub(behind) >= self.schedule.every_ms;
        if !due {
            self.due_since = None;
            return Decision::NotDue;
        }
        let since = match self.due_since {
            Some((a, t)) if a == anchored => t,
            _ => {
                self.due_since = Some((anchored, now_ms));
                now_ms
            }
        };
        if let Some((a, t)) = self.sent {
            let resend = self
                .schedule
                .every_ms
                .max(self.schedule.interval_ms.saturating_mul(3));
            if a == anchored && now_ms.saturating_sub(t) < resend {
                return Decision::InFlight;
            }
        }
        // The turn of an anchor slot goes round the committee. If the turn-holder has not
        // anchored within three intervals, the next validator in line relays, one more each
        // interval after that: a crashed turn-holder costs a few intervals, and the root gets
        // one fallback anchor at a time rather than one from everyone.
        let slot = anchored / self.schedule.every_blocks + 1;
        let position =
            (self.me + self.committee_size - slot % self.committee_size) % self.committee_size;
        let wait = if position == 0 {
            0
        } else {
            self.schedule.interval_ms.saturating_mul(2 + position)
        };
        if now_ms.saturating_sub(since) >= wait {
            Decision::Relay {
                epoch,
                anchored,
                height,
            }
        } else {
            Decision::NotMyTurn
        }
    }
}

/// The newest checkpoint certified by a quorum whose block this node has executed (height at
/// most `executed`), looking back a bounded distance.
pub fn newest_executed_checkpoint<B: KvBackend>(
    store: &ChainStore<B>,
    executed: u64,
) -> Result<Option<CertifiedCheckpoint>, StorageError> {
    if let Some(latest) = store.latest_checkpoint()? {
        if latest.checkpoint.height <= executed {
            return Ok(Some(latest));
        }
    }
    for h in (executed.saturating_sub(CHECKPOINT_LOOKBACK)..=executed).rev() {
        if let Some(cert) = store.checkpoint_at(h)? {
            return Ok(Some(cert));
        }
    }
    Ok(None)
}

/// The proof, against the state root at `height`, that the block history holds the block at
/// `anchored` (the extension proof of an anchor). `None` when this node has no such entry.
pub fn extension_proof<B: KvBackend>(
    executor: &Executor<B>,
    anchored: u64,
    height: u64,
) -> Result<Option<Vec<u8>>, StorageError> {
    match executor
        .state()
        .get_with_proof(&history_key(anchored), height)?
    {
        (Some(_), proof) => Ok(Some(proof.0)),
        (None, _) => Ok(None),
    }
}

/// The root-chain transaction carrying an anchor, signed by the relay's key.
pub fn anchor_transaction(
    keypair: &Keypair,
    root_chain_id: &str,
    nonce: u64,
    epoch: u64,
    checkpoint: CertifiedCheckpoint,
    extension_proof: Vec<u8>,
) -> SignedTransaction {
    sign_transaction(
        keypair,
        Transaction {
            chain_id: root_chain_id.to_string(),
            sender: keypair.public(),
            nonce,
            payload: Payload::Registry(RegistryOp::Anchor(Anchor {
                epoch,
                checkpoint,
                extension_proof,
            })),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AnchorRecord, Epoch};
    use netchain_types::registry::ServiceChain;
    use netchain_types::Digest;

    fn committee(seed: u8) -> Vec<Validator> {
        (0..4u8)
            .map(|i| Validator {
                public_key: Keypair::from_secret([seed + i; 32]).public(),
                p2p_address: String::new(),
                api_address: String::new(),
            })
            .collect()
    }

    fn record(anchored: Option<u64>, epochs: Vec<Vec<Validator>>) -> ChainRecord {
        ChainRecord {
            chain: ServiceChain {
                chain_id: "svc".into(),
                purpose: String::new(),
                genesis_block_id: Digest::default(),
                validators: epochs[0].clone(),
            },
            epochs: epochs
                .into_iter()
                .enumerate()
                .map(|(i, validators)| Epoch {
                    epoch: i as u64,
                    validators,
                    since_root_height: 0,
                })
                .collect(),
            last_anchor: anchored.map(|height| AnchorRecord {
                height,
                block_id: Digest::default(),
                state_root: Digest::default(),
                epoch: 0,
                root_height: 1,
            }),
            anchors: 0,
            flagged: false,
            registered_height: 1,
        }
    }

    const SCHEDULE: Schedule = Schedule {
        every_blocks: 5,
        every_ms: 10_000,
        interval_ms: 100,
    };

    #[test]
    fn turns_overdue_and_epochs() {
        let c = committee(1);
        let rec = record(Some(10), vec![c.clone()]);
        // every 5 blocks, interval 100 ms: slot of the anchor after 10 is 3, validator 3's turn.
        let mut turn_holder = Relay::new(SCHEDULE, 3, 4);
        let mut other = Relay::new(SCHEDULE, 1, 4);
        assert_eq!(turn_holder.decide(0, &rec, &c, Some(14)), Decision::NotDue);
        assert_eq!(other.decide(0, &rec, &c, None), Decision::NotDue);
        let relay = Decision::Relay {
            epoch: 0,
            anchored: 10,
            height: 15,
        };
        assert_eq!(turn_holder.decide(1_000, &rec, &c, Some(15)), relay);
        turn_holder.submitted(10, 1_000);
        assert_eq!(
            turn_holder.decide(1_500, &rec, &c, Some(16)),
            Decision::InFlight
        );
        // Validator 0 is next in line after 3 (three intervals), then 1 (four intervals).
        let mut next = Relay::new(SCHEDULE, 0, 4);
        assert_eq!(next.decide(1_000, &rec, &c, Some(15)), Decision::NotMyTurn);
        assert_eq!(next.decide(1_299, &rec, &c, Some(15)), Decision::NotMyTurn);
        assert_eq!(next.decide(1_300, &rec, &c, Some(15)), relay);
        assert_eq!(other.decide(1_000, &rec, &c, Some(15)), Decision::NotMyTurn);
        assert_eq!(other.decide(1_399, &rec, &c, Some(15)), Decision::NotMyTurn);
        assert_eq!(other.decide(1_400, &rec, &c, Some(15)), relay);
        // Still not taken after every_ms: the turn-holder sends again.
        assert_eq!(
            turn_holder.decide(11_000, &rec, &c, Some(16)),
            Decision::Relay {
                epoch: 0,
                anchored: 10,
                height: 16
            }
        );
        // A new anchor restarts the wait.
        let rec2 = record(Some(15), vec![c.clone()]);
        assert_eq!(other.decide(1_400, &rec2, &c, Some(16)), Decision::NotDue);
        // A restarted relay (fresh state) waits its turn again.
        let mut restarted = Relay::new(SCHEDULE, 1, 4);
        assert_eq!(
            restarted.decide(5_000, &rec, &c, Some(15)),
            Decision::NotMyTurn
        );
        // The epoch named is the one listing this committee; none listing it: no relay.
        let rec3 = record(Some(10), vec![committee(9), c.clone()]);
        let mut turn_holder = Relay::new(SCHEDULE, 3, 4);
        assert_eq!(
            turn_holder.decide(6_000, &rec3, &c, Some(15)),
            Decision::Relay {
                epoch: 1,
                anchored: 10,
                height: 15
            }
        );
        let rec4 = record(None, vec![committee(9)]);
        assert_eq!(
            turn_holder.decide(6_000, &rec4, &c, Some(15)),
            Decision::NoEpoch
        );
        // First anchor: extends genesis (anchored 0).
        let rec5 = record(None, vec![c.clone()]);
        let mut first = Relay::new(SCHEDULE, 1, 4);
        assert_eq!(
            first.decide(0, &rec5, &c, Some(7)),
            Decision::Relay {
                epoch: 0,
                anchored: 0,
                height: 7
            }
        );
    }

    #[test]
    fn a_quiet_chain_is_anchored_after_every_ms() {
        let c = committee(1);
        let rec = record(Some(10), vec![c.clone()]);
        let mut relay = Relay::new(SCHEDULE, 3, 4);
        // Nothing newer than the anchor: never due.
        assert_eq!(relay.decide(0, &rec, &c, Some(10)), Decision::NotDue);
        assert_eq!(relay.decide(50_000, &rec, &c, Some(10)), Decision::NotDue);
        // Two blocks newer (less than every_blocks): due once they have waited every_ms.
        assert_eq!(relay.decide(60_000, &rec, &c, Some(12)), Decision::NotDue);
        assert_eq!(relay.decide(69_999, &rec, &c, Some(12)), Decision::NotDue);
        assert_eq!(
            relay.decide(70_000, &rec, &c, Some(12)),
            Decision::Relay {
                epoch: 0,
                anchored: 10,
                height: 12
            }
        );
        // The wait restarts with each new anchor.
        let rec2 = record(Some(12), vec![c.clone()]);
        assert_eq!(relay.decide(70_100, &rec2, &c, Some(13)), Decision::NotDue);
    }
}
