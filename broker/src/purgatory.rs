//! The purgatory of delayed operations (Kafka's `DelayedOperationPurgatory`), one per shard.
//!
//! A delayed operation (a fetch waiting for bytes, later a produce waiting for acks) watches one or more
//! keys (e.g. a topic partition) and completes in exactly one way:
//! - **satisfied**: its condition holds when it is watched, or when [`Purgatory::check_and_complete`] runs
//!   for one of its keys (the event: an append, a high-watermark move);
//! - **expired**: its deadline passes ([`Purgatory::advance_clock`], driven by [`run_expiration`] through
//!   one [`TimingWheel`] of 1 ms ticks: it expires no earlier than its deadline, at most a tick late);
//! - **cancelled**: its [`DelayedOperation`] future is dropped first.
//!
//! Invariants:
//! - An operation is in the operation map, in the watcher set of each of its keys and in the wheel, or in
//!   none of them: completing, expiring or cancelling removes it from all three at once. Empty watcher sets
//!   are removed, so once every operation has ended the maps are empty (no leak).
//! - Nothing the caller supplied runs while the purgatory is borrowed: conditions are evaluated, wakers
//!   woken and finished conditions dropped outside the borrow, so a condition may itself use the purgatory.
//! - Costs: watch, complete and cancel are O(keys of the operation); `check_and_complete(key)` is
//!   O(operations watching `key`); expiry is O(expired operations); `next_expiry` is O(1).
//! - Single-threaded (`Rc`/`RefCell`, nothing `Send`): one purgatory per shard, no locks.
//! - Dropping the purgatory completes the operations still waiting as expired (nothing hangs).
use event_listener::Event;
use shard::timing_wheel::{TimerId, TimingWheel};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The wheel's tick: operations expire at most this late.
pub const TICK: Duration = Duration::from_millis(1);
/// Buckets per wheel level: level 0 spans 512 ms, which holds the usual fetch `max_wait_ms` (500 ms).
pub const WHEEL_SIZE: usize = 512;
/// The longest the expiration driver sleeps without looking at the clock (and at its stop condition).
pub const RESCAN_INTERVAL: Duration = Duration::from_millis(100);

/// How a delayed operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Satisfied,
    Expired,
}

/// What the purgatory has done: `watching` is a gauge (operations waiting now), the rest are totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgatoryCounters {
    pub watching: u64,
    pub completed: u64,
    pub expired: u64,
    pub cancelled: u64,
}

/// The condition a delayed operation waits for.
pub type Condition = Box<dyn Fn() -> bool>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct OperationId(u64);

/// Hashes an [`OperationId`] (a sequence number we hand out, so no flooding to fear) with one
/// multiplication (Fibonacci hashing) instead of SipHash: the maps below are keyed by it on every call.
#[derive(Default)]
struct OperationIdHasher(u64);

impl Hasher for OperationIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type OperationIds = HashSet<OperationId, BuildHasherDefault<OperationIdHasher>>;

/// Shared between the purgatory and the operation's future.
#[derive(Default)]
struct OperationState {
    outcome: Cell<Option<Completion>>,
    waker: RefCell<Option<Waker>>,
}

struct Operation<K> {
    keys: Vec<K>,
    /// `None` while `check_and_complete` evaluates it outside the borrow.
    condition: Option<Condition>,
    timer: TimerId,
    state: Rc<OperationState>,
}

/// An operation that left the purgatory: its future is told outside the borrow.
struct Finished {
    state: Rc<OperationState>,
    condition: Option<Condition>,
    completion: Completion,
}

impl Finished {
    fn tell(self) {
        self.state.outcome.set(Some(self.completion));
        let waker = self.state.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
        drop(self.condition);
    }
}

struct Operations<K> {
    wheel: TimingWheel<OperationId>,
    operations: HashMap<OperationId, Operation<K>, BuildHasherDefault<OperationIdHasher>>,
    watchers: HashMap<K, OperationIds>,
    next_id: u64,
    counters: PurgatoryCounters,
}

impl<K: Hash + Eq> Operations<K> {
    /// Takes `id` out of the operation map and its keys' watcher sets (not out of the wheel).
    fn remove(&mut self, id: OperationId) -> Option<Operation<K>> {
        let operation = self.operations.remove(&id)?;
        for key in &operation.keys {
            if let Some(watching) = self.watchers.get_mut(key) {
                watching.remove(&id);
                if watching.is_empty() {
                    self.watchers.remove(key);
                }
            }
        }
        Some(operation)
    }

    /// Removes a satisfied operation from the maps and the wheel.
    fn complete(&mut self, id: OperationId, condition: Condition) -> Option<Finished> {
        let operation = self.remove(id)?;
        self.wheel.cancel(operation.timer);
        self.counters.completed += 1;
        Some(Finished {
            state: operation.state,
            condition: Some(condition),
            completion: Completion::Satisfied,
        })
    }
}

/// How a dropped [`DelayedOperation`] reaches its purgatory without naming the key type.
trait CancelOperation {
    fn cancel(&self, id: OperationId);
}

impl<K: Hash + Eq> CancelOperation for RefCell<Operations<K>> {
    fn cancel(&self, id: OperationId) {
        let removed = {
            let mut operations = self.borrow_mut();
            let removed = operations.remove(id);
            if let Some(operation) = &removed {
                operations.wheel.cancel(operation.timer);
                operations.counters.cancelled += 1;
            }
            removed
        };
        drop(removed);
    }
}

/// A watched operation: resolves to how it ended. Dropping it before then cancels the operation.
#[must_use = "dropping a DelayedOperation cancels it"]
pub struct DelayedOperation {
    id: OperationId,
    state: Rc<OperationState>,
    purgatory: Weak<dyn CancelOperation>,
}

impl DelayedOperation {
    /// How the operation ended, if it has.
    pub fn outcome(&self) -> Option<Completion> {
        self.state.outcome.get()
    }
}

impl Future for DelayedOperation {
    type Output = Completion;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Completion> {
        if let Some(completion) = self.state.outcome.get() {
            return Poll::Ready(completion);
        }
        let mut waker = self.state.waker.borrow_mut();
        match &*waker {
            Some(stored) if stored.will_wake(context.waker()) => {}
            _ => *waker = Some(context.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for DelayedOperation {
    fn drop(&mut self) {
        if self.state.outcome.get().is_none() {
            if let Some(purgatory) = self.purgatory.upgrade() {
                purgatory.cancel(self.id);
            }
        }
    }
}

/// Delayed operations of one shard, keyed by watch keys `K` (e.g. a topic partition); see the module doc.
pub struct Purgatory<K> {
    operations: Rc<RefCell<Operations<K>>>,
    /// When the sleeping driver wakes up (`None`: not sleeping, or already woken).
    driver_wakes_at: Cell<Option<Instant>>,
    /// Rung when a watch brings the next expiry before `driver_wakes_at`.
    expiry_moved: Event,
}

impl<K: Hash + Eq + Clone + 'static> Purgatory<K> {
    /// An empty purgatory whose wheel's clock starts at `start`.
    pub fn new(start: Instant) -> Self {
        Purgatory {
            operations: Rc::new(RefCell::new(Operations {
                wheel: TimingWheel::new(TICK, WHEEL_SIZE, start),
                operations: HashMap::default(),
                watchers: HashMap::new(),
                next_id: 0,
                counters: PurgatoryCounters::default(),
            })),
            driver_wakes_at: Cell::new(None),
            expiry_moved: Event::new(),
        }
    }

    /// Watches an operation on `keys` until `deadline`. `condition` is checked now (already satisfied:
    /// the operation completes at once) and at each [`Purgatory::check_and_complete`] of one of `keys`.
    pub fn watch(&self, keys: Vec<K>, deadline: Instant, condition: Condition) -> DelayedOperation {
        let state = Rc::new(OperationState::default());
        let purgatory: Weak<dyn CancelOperation> = Rc::downgrade(&self.operations) as _;
        if condition() {
            self.operations.borrow_mut().counters.completed += 1;
            state.outcome.set(Some(Completion::Satisfied));
            return DelayedOperation {
                id: OperationId(u64::MAX),
                state,
                purgatory,
            };
        }
        let (id, next_expiry) = {
            let mut guard = self.operations.borrow_mut();
            let operations = &mut *guard;
            let id = OperationId(operations.next_id);
            operations.next_id += 1;
            let timer = operations.wheel.insert(deadline, id);
            for key in &keys {
                match operations.watchers.get_mut(key) {
                    Some(watching) => {
                        watching.insert(id);
                    }
                    None => {
                        operations
                            .watchers
                            .insert(key.clone(), OperationIds::from_iter([id]));
                    }
                }
            }
            let operation = Operation {
                keys,
                condition: Some(condition),
                timer,
                state: state.clone(),
            };
            operations.operations.insert(id, operation);
            (id, operations.wheel.next_expiry())
        };
        if let (Some(wakes_at), Some(expiry)) = (self.driver_wakes_at.get(), next_expiry) {
            if expiry < wakes_at {
                self.driver_wakes_at.set(None);
                self.expiry_moved.notify(1);
            }
        }
        DelayedOperation {
            id,
            state,
            purgatory,
        }
    }

    /// Checks the operations watching `key` and completes those whose condition holds; returns how many.
    pub fn check_and_complete(&self, key: &K) -> usize {
        let mut candidates: Vec<(OperationId, Condition, bool)> = {
            let mut guard = self.operations.borrow_mut();
            let Operations {
                watchers,
                operations,
                ..
            } = &mut *guard;
            let Some(watching) = watchers.get(key) else {
                return 0;
            };
            watching
                .iter()
                .filter_map(|id| {
                    let condition = operations.get_mut(id)?.condition.take()?;
                    Some((*id, condition, false))
                })
                .collect()
        };
        for (_, condition, satisfied) in &mut candidates {
            *satisfied = condition();
        }
        let mut finished = Vec::new();
        let mut orphans = Vec::new();
        {
            let mut operations = self.operations.borrow_mut();
            for (id, condition, satisfied) in candidates {
                if satisfied {
                    match operations.complete(id, condition) {
                        Some(done) => finished.push(done),
                        None => orphans.push(None),
                    }
                } else if let Some(operation) = operations.operations.get_mut(&id) {
                    operation.condition = Some(condition);
                } else {
                    // Ended while its condition ran (the condition used the purgatory).
                    orphans.push(Some(condition));
                }
            }
        }
        let completed = finished.len();
        finished.into_iter().for_each(Finished::tell);
        drop(orphans);
        completed
    }

    /// Moves the clock to `now` and expires the operations whose deadline it reached; returns how many.
    pub fn advance_clock(&self, now: Instant) -> usize {
        let mut finished = Vec::new();
        {
            let mut operations = self.operations.borrow_mut();
            let mut expired = Vec::new();
            operations.wheel.advance(now, &mut expired);
            for id in expired {
                if let Some(operation) = operations.remove(id) {
                    operations.counters.expired += 1;
                    finished.push(Finished {
                        state: operation.state,
                        condition: operation.condition,
                        completion: Completion::Expired,
                    });
                }
            }
        }
        let expired = finished.len();
        finished.into_iter().for_each(Finished::tell);
        expired
    }

    /// When the next expiry is due (a driver sleeps until then); `None` when nothing waits.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.operations.borrow().wheel.next_expiry()
    }

    /// Operations waiting.
    pub fn len(&self) -> usize {
        self.operations.borrow().operations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn counters(&self) -> PurgatoryCounters {
        let operations = self.operations.borrow();
        PurgatoryCounters {
            watching: operations.operations.len() as u64,
            ..operations.counters
        }
    }
}

impl<K> Drop for Purgatory<K> {
    fn drop(&mut self) {
        let waiting: Vec<Finished> = {
            let mut operations = self.operations.borrow_mut();
            operations.watchers.clear();
            operations
                .operations
                .drain()
                .map(|(_, operation)| Finished {
                    state: operation.state,
                    condition: operation.condition,
                    completion: Completion::Expired,
                })
                .collect()
        };
        waiting.into_iter().for_each(Finished::tell);
    }
}

/// The runtime's clock (the manual one in simulations).
fn now() -> Instant {
    shard::task::now()
}

/// The expiration driver of `purgatory` (spawn one per purgatory): sleeps until the next expiry (at most
/// [`RESCAN_INTERVAL`]; woken early when a watch brings a deadline earlier) and expires what is due. Returns
/// once `stop()` holds, which it checks each time it wakes.
pub async fn run_expiration<K: Hash + Eq + Clone + 'static>(
    purgatory: Rc<Purgatory<K>>,
    stop: impl Fn() -> bool,
) {
    run_expiration_every(purgatory, stop, RESCAN_INTERVAL).await
}

async fn run_expiration_every<K: Hash + Eq + Clone + 'static>(
    purgatory: Rc<Purgatory<K>>,
    stop: impl Fn() -> bool,
    rescan: Duration,
) {
    while !stop() {
        let now = now();
        purgatory.advance_clock(now);
        let rescan_at = now + rescan;
        let wakes_at = purgatory
            .next_expiry()
            .map_or(rescan_at, |expiry| expiry.min(rescan_at));
        // No await between here and the sleep: a watch cannot slip in before the listener exists.
        let expiry_moved = purgatory.expiry_moved.listen();
        purgatory.driver_wakes_at.set(Some(wakes_at));
        futures_lite::future::or(shard::task::sleep_until(wakes_at), expiry_moved).await;
        purgatory.driver_wakes_at.set(None);
    }
}

#[cfg(test)]
#[path = "purgatory_tests.rs"]
mod tests;
