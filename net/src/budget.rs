//! What connections share on one shard: the budget of request bytes (Kafka's `queued.max.request.bytes`),
//! and what one connection shares with its idle watchdog ([`ConnectionActivity`]).
//!
//! A shard is one thread, so these are `Cell`s, not atomics.

use std::cell::{Cell, RefCell};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

/// The bytes of requests one shard holds at once: each frame reserves its announced size once its length
/// prefix has arrived and before its body is read; the reservation is returned when the request's response
/// is complete (or its connection closes).
///
/// A connection that cannot reserve waits: it stops reading (TCP pushes back on the client) until a
/// release wakes it. A frame larger than the whole budget is admitted when nothing else is reserved, so
/// every frame up to `socket.request.max.bytes` is eventually served (no deadlock; at worst one at a time).
///
/// Frames up to [`ALWAYS_ADMITTED_FRAME_BYTES`] are counted but never wait: a client that announces a
/// huge frame and sends it slowly (holding most of the budget until `connections.max.idle.ms` closes it)
/// must not stall every other client's metadata, fetch and ordinary produce requests. Their memory is
/// bounded per connection by the in-flight limit instead.
pub struct RequestBudget {
    capacity: usize,
    always_admitted: usize,
    in_use: Cell<usize>,
    /// Tasks waiting for a release; drained (all woken) by each release.
    waiters: RefCell<Vec<Waker>>,
    /// Counts the drains, so a waiting connection registers once per drain, not once per poll.
    generation: Cell<u64>,
}

/// Where a connection stands with the [`RequestBudget`]: the generation it registered its waker in.
#[derive(Default)]
pub struct BudgetWait {
    registered_in: Option<u64>,
}

/// Frames up to this size are never held back by the budget (see [`RequestBudget`]): 1 MiB.
pub const ALWAYS_ADMITTED_FRAME_BYTES: usize = 1024 * 1024;

impl RequestBudget {
    pub fn new(capacity: usize) -> RequestBudget {
        RequestBudget::with_always_admitted(capacity, ALWAYS_ADMITTED_FRAME_BYTES)
    }

    /// A budget whose frames up to `always_admitted` bytes never wait.
    pub fn with_always_admitted(capacity: usize, always_admitted: usize) -> RequestBudget {
        RequestBudget {
            capacity,
            always_admitted,
            in_use: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            generation: Cell::new(0),
        }
    }

    /// An effectively unbounded budget (Kafka's default of `queued.max.request.bytes = -1`).
    pub fn unbounded() -> RequestBudget {
        RequestBudget::new(usize::MAX)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn in_use(&self) -> usize {
        self.in_use.get()
    }

    /// Reserves `bytes`, or registers `cx`'s waker (once per drain) and returns false.
    pub fn try_reserve(&self, bytes: usize, wait: &mut BudgetWait, cx: &mut Context<'_>) -> bool {
        let in_use = self.in_use.get();
        if in_use == 0
            || bytes <= self.always_admitted
            || in_use.saturating_add(bytes) <= self.capacity
        {
            self.in_use.set(in_use + bytes);
            wait.registered_in = None;
            return true;
        }
        let generation = self.generation.get();
        if wait.registered_in != Some(generation) {
            self.waiters.borrow_mut().push(cx.waker().clone());
            wait.registered_in = Some(generation);
        }
        false
    }

    /// Returns `bytes` reserved earlier and wakes every waiting connection (each retries its own size).
    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        debug_assert!(bytes <= self.in_use.get());
        self.in_use.set(self.in_use.get().saturating_sub(bytes));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        if !waiters.is_empty() {
            self.generation.set(self.generation.get() + 1);
            for waker in waiters {
                waker.wake();
            }
        }
    }
}

/// What a connection's idle watchdog reads: when the connection last made progress, and whether a request
/// is being handled.
///
/// Progress is a *complete* request taken from the socket, a response completed, or response bytes
/// written. Bytes of an incomplete frame are not progress, so a client trickling one byte a minute is
/// idle (Kafka's `connections.max.idle.ms` closes it).
pub struct ConnectionActivity {
    last_progress: Cell<Instant>,
    busy: Cell<bool>,
}

impl Default for ConnectionActivity {
    fn default() -> Self {
        ConnectionActivity {
            last_progress: Cell::new(Instant::now()),
            busy: Cell::new(false),
        }
    }
}

impl ConnectionActivity {
    pub(crate) fn progressed(&self, now: Instant) {
        self.last_progress.set(now);
    }

    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.set(busy);
    }

    /// How long the connection has been idle at `now`; zero while a request is being handled (a long
    /// poll in flight is not idleness).
    pub fn idle_for(&self, now: Instant) -> Duration {
        if self.busy.get() {
            Duration::ZERO
        } else {
            now.saturating_duration_since(self.last_progress.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn reservations_wait_for_releases_and_oversized_frames_run_alone() {
        let budget = RequestBudget::with_always_admitted(100, 0);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let (mut first, mut second) = (BudgetWait::default(), BudgetWait::default());
        assert!(budget.try_reserve(60, &mut first, &mut cx));
        assert!(!budget.try_reserve(50, &mut second, &mut cx));
        // Polled again while waiting: registered once.
        assert!(!budget.try_reserve(50, &mut second, &mut cx));
        assert_eq!(budget.waiters.borrow().len(), 1);
        budget.release(60);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(budget.try_reserve(50, &mut second, &mut cx));
        budget.release(50);
        // Larger than the whole budget: admitted only when nothing else is reserved.
        assert!(budget.try_reserve(500, &mut first, &mut cx));
        assert!(!budget.try_reserve(1, &mut second, &mut cx));
        budget.release(500);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn small_frames_never_wait_behind_a_large_one() {
        let budget = RequestBudget::with_always_admitted(100, 10);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (mut large, mut small) = (BudgetWait::default(), BudgetWait::default());
        assert!(budget.try_reserve(100, &mut large, &mut cx));
        assert!(budget.try_reserve(10, &mut small, &mut cx));
        assert!(!budget.try_reserve(11, &mut small, &mut cx));
        assert_eq!(budget.in_use(), 110);
    }

    #[test]
    fn busy_connections_are_never_idle() {
        let activity = ConnectionActivity::default();
        let start = Instant::now();
        activity.progressed(start);
        let later = start + Duration::from_secs(5);
        assert_eq!(activity.idle_for(later), Duration::from_secs(5));
        activity.set_busy(true);
        assert_eq!(activity.idle_for(later), Duration::ZERO);
    }
}
