//! The event queue: every future event of a run, ordered by time and then by a sequence number,
//! so two events at the same millisecond always run in the order they were scheduled.

use netchain_types::{ConsensusMessage, ValidatorIndex};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A scheduled event.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // messages dominate the queue; boxing them buys nothing
pub enum Ev {
    /// A message arrives at instance `to`.
    Deliver {
        /// Receiving instance.
        to: usize,
        /// Sending validator index.
        from: ValidatorIndex,
        /// The message.
        msg: ConsensusMessage,
    },
    /// An instance's timer tick.
    Tick(usize),
    /// An instance executes its queued committed blocks.
    Exec(usize),
    /// A crashed instance restarts.
    Restart(usize),
    /// A Byzantine instance injects messages of its own.
    Inject(usize),
    /// Partitions and Twins' sides change; crashes may happen.
    Epoch,
    /// A client signs and submits a new transaction.
    Submit,
    /// Clients resubmit what is not acknowledged yet.
    Retry,
    /// End of the fault phase: the network heals.
    Heal,
    /// Network ID runs: the revoked validator's organization revokes it.
    Revoke,
}

struct Entry {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    // Reversed: the heap pops the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The bounded priority queue of a run.
pub struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
    messages: usize,
    messages_max: usize,
}

impl Queue {
    /// An empty queue holding at most `messages_max` messages in flight.
    pub fn new(messages_max: usize) -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
            messages: 0,
            messages_max,
        }
    }

    /// Schedules `ev` at `at`; false (and dropped) when it is a message and the network is full.
    pub fn push(&mut self, at: u64, ev: Ev) -> bool {
        if matches!(ev, Ev::Deliver { .. }) {
            if self.messages >= self.messages_max {
                return false;
            }
            self.messages += 1;
        }
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            ev,
        });
        true
    }

    /// The next event and its time.
    pub fn pop(&mut self) -> Option<(u64, Ev)> {
        let e = self.heap.pop()?;
        if matches!(e.ev, Ev::Deliver { .. }) {
            self.messages -= 1;
        }
        Some((e.at, e.ev))
    }

    /// Time of the next event, if any.
    pub fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.at)
    }

    /// Messages in flight.
    pub fn messages(&self) -> usize {
        self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_schedule_order_and_bounds_messages() {
        let mut q = Queue::new(1);
        q.push(5, Ev::Tick(1));
        q.push(3, Ev::Tick(2));
        q.push(5, Ev::Tick(3));
        let msg = ConsensusMessage::Transactions { txs: vec![] };
        assert!(q.push(
            9,
            Ev::Deliver {
                to: 0,
                from: 0,
                msg: msg.clone()
            }
        ));
        assert!(!q.push(
            9,
            Ev::Deliver {
                to: 0,
                from: 0,
                msg
            }
        ));
        let order: Vec<_> = std::iter::from_fn(|| q.pop())
            .map(|(t, e)| match e {
                Ev::Tick(i) => (t, i),
                _ => (t, 99),
            })
            .collect();
        assert_eq!(order, vec![(3, 2), (5, 1), (5, 3), (9, 99)]);
        assert_eq!(q.messages(), 0);
    }
}
