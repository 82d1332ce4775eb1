//! The consensus core: a 2-chain HotStuff (Jolteon) state machine without I/O.
//!
//! Design note: [`Core::handle`] takes the current time and one event (a message from a peer or
//! a timer tick) and returns the actions to perform, in order. Time, the network, storage and the
//! mempool are all outside: the node drives the core with tokio, the simulator with a seeded
//! scheduler. The safety rules ([`SafetyData`]) are returned as a `PersistSafety` action ahead of
//! any vote or timeout that depends on them, and the driver must make that write durable before
//! it sends the next action, so a validator that restarts can never sign twice in one round.
//!
//! Protocol summary (Jolteon / DiemBFT v4): the leader of round r proposes a block extending its
//! highest QC (with the TC of round r-1 when r-1 timed out); validators vote once per round and
//! send the vote to the leader of r+1, who forms a QC and proposes. A block is committed when it
//! and its child, in consecutive rounds, are both certified (2-chain rule). A round that makes no
//! progress times out; 2f+1 timeouts form a TC that moves everyone to the next round.

mod checkpoint;
mod core;
mod error;
mod safety;
mod verify;

pub use checkpoint::CheckpointAggregator;
pub use core::{Action, Core, CoreConfig, Event, PayloadSource, Step};
pub use error::ConsensusError;
pub use safety::SafetyData;
pub use verify::{verify_checkpoint_cert, verify_proofs, verify_qc, verify_tc};
