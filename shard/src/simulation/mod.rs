//! A single-threaded executor with a manual clock, for tests: the broker's handlers, partitions and group
//! coordinators run in-process in `cargo test`, without glommio, deterministically.
//!
//! # The seam
//! While a [`Simulation`] exists on a thread it is that thread's runtime: `crate::task::{spawn, sleep,
//! sleep_until, timeout, now, wall_clock_ms}` go to it instead of glommio and the system clocks (a
//! thread-local, installed by [`Simulation::new`] and removed when the simulation is dropped; other threads
//! are unaffected, and a simulation made while another exists on the thread hides it until dropped).
//!
//! # Invariants
//! - Time is virtual: [`Simulation::now`] starts at the `Instant` captured at creation and moves only when
//!   the test calls [`Simulation::advance`] (or [`Simulation::block_on_advancing`], which jumps to the next
//!   timer when nothing else can run). A 500 ms long poll takes no real time.
//! - A timer never fires early: a sleep completes only once the clock has reached its deadline. `advance`
//!   visits due deadlines in order (ties in the order the timers were registered), sets the clock to each
//!   one exactly, wakes that timer and runs every runnable task until none is left, before the next one.
//! - Scheduling is FIFO in wake order, so a run is a pure function of the test's inputs. Wakers are `Send`:
//!   a wake from another thread (a reply sent there) queues the task like a local one, and `block_on`
//!   waits a bounded real time for such wakes before it reports a stall.
//! - The driving methods take `&mut self`, so a task cannot re-enter the executor.
//!
//! Dropping the simulation drops its unfinished tasks (with the simulation still installed, so their
//! destructors may use the seam), then uninstalls it.

#[cfg(test)]
mod tests;
mod timer;

pub(crate) use timer::Sleep;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// The wall clock a simulation starts at unless told otherwise: 2023-11-14T22:13:20Z, in ms since the epoch.
pub const DEFAULT_WALL_CLOCK_START_MS: i64 = 1_700_000_000_000;

/// How long `block_on` waits, in real time, for a wake from another thread before it reports a stall.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(10);

/// Identifies a task of one simulation; 0 is the future given to `block_on`.
type TaskId = u64;
const BLOCK_ON_TASK: TaskId = 0;

type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    /// The simulation running on this thread, if any (see the module doc).
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
    /// Whether `CURRENT` holds one: the production path's only check. A `const` `Cell<bool>` needs no
    /// lazy initialisation or destructor registration, so the check is one thread-local load.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Whether a simulation is installed on this thread.
#[inline]
pub fn is_active() -> bool {
    ACTIVE.with(Cell::get)
}

/// The simulation installed on this thread.
#[inline]
pub(crate) fn current() -> Option<Rc<Core>> {
    if !is_active() {
        return None;
    }
    CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten()
}

/// `Some(read(simulation))` when a simulation is installed on this thread (no reference-count traffic).
#[inline]
pub(crate) fn with_current<T>(read: impl FnOnce(&Core) -> T) -> Option<T> {
    if !is_active() {
        return None;
    }
    CURRENT
        .try_with(|current| current.borrow().as_deref().map(read))
        .ok()
        .flatten()
}

/// Makes `simulation` this thread's (or none); returns the one it replaces.
fn install(simulation: Option<Rc<Core>>) -> Option<Rc<Core>> {
    let _ = ACTIVE.try_with(|active| active.set(simulation.is_some()));
    CURRENT
        .try_with(|current| std::mem::replace(&mut *current.borrow_mut(), simulation))
        .ok()
        .flatten()
}

/// Task ids woken and not yet polled, shared with every waker (which may run on any thread).
#[derive(Default)]
struct ReadyQueue {
    queue: Mutex<VecDeque<TaskId>>,
    woken: Condvar,
}

impl ReadyQueue {
    fn push(&self, id: TaskId) {
        self.queue.lock().expect("ready queue lock").push_back(id);
        self.woken.notify_one();
    }

    fn pop(&self) -> Option<TaskId> {
        self.queue.lock().expect("ready queue lock").pop_front()
    }

    /// Waits up to `limit` for a wake; whether one is queued.
    fn wait(&self, limit: Duration) -> bool {
        let queue = self.queue.lock().expect("ready queue lock");
        let (queue, _) = self
            .woken
            .wait_timeout_while(queue, limit, |queue| queue.is_empty())
            .expect("ready queue lock");
        !queue.is_empty()
    }
}

struct TaskWaker {
    id: TaskId,
    /// Set while the task sits in the ready queue, so it is queued once however often it is woken.
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.id);
        }
    }
}

struct TaskSlot {
    future: LocalTask,
    waker: Arc<TaskWaker>,
}

/// The state of one simulation, shared (on its thread) by the [`Simulation`] and the seam.
pub(crate) struct Core {
    start: Instant,
    wall_clock_start_ms: i64,
    elapsed: Cell<Duration>,
    tasks: RefCell<BTreeMap<TaskId, TaskSlot>>,
    next_task: Cell<TaskId>,
    ready: Arc<ReadyQueue>,
    timers: timer::Timers,
}

impl Core {
    pub(crate) fn now(&self) -> Instant {
        self.start + self.elapsed.get()
    }

    pub(crate) fn wall_clock_ms(&self) -> i64 {
        let elapsed_ms = i64::try_from(self.elapsed.get().as_millis()).unwrap_or(i64::MAX);
        self.wall_clock_start_ms.saturating_add(elapsed_ms)
    }

    pub(crate) fn timers(&self) -> &timer::Timers {
        &self.timers
    }

    fn new_waker(&self, id: TaskId) -> Arc<TaskWaker> {
        Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        })
    }

    /// Queues `future` as a new task; it first runs when the simulation next runs tasks.
    pub(crate) fn spawn(&self, future: LocalTask) {
        let id = self.next_task.get();
        self.next_task.set(id + 1);
        let waker = self.new_waker(id);
        self.tasks.borrow_mut().insert(
            id,
            TaskSlot {
                future,
                waker: waker.clone(),
            },
        );
        waker.wake_by_ref();
    }

    /// Polls task `id` once (it is out of the task table meanwhile, so it may spawn); drops it when done.
    fn poll_task(&self, id: TaskId) {
        let Some(mut slot) = self.tasks.borrow_mut().remove(&id) else {
            return; // finished already; a stale wake
        };
        slot.waker.queued.store(false, Ordering::Release);
        let waker = Waker::from(slot.waker.clone());
        if slot
            .future
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
        {
            self.tasks.borrow_mut().insert(id, slot);
        }
    }
}

/// A single-threaded executor with a manual clock; see the module doc. Not `Send`: it lives on the thread
/// that made it.
pub struct Simulation {
    core: Rc<Core>,
    /// The simulation this one hides on this thread, restored on drop.
    previous: Option<Rc<Core>>,
    stall_limit: Duration,
}

impl Default for Simulation {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulation {
    /// A simulation whose clock starts now and whose wall clock starts at [`DEFAULT_WALL_CLOCK_START_MS`];
    /// installed on this thread until dropped.
    pub fn new() -> Simulation {
        Self::with_wall_clock_ms(DEFAULT_WALL_CLOCK_START_MS)
    }

    /// Like [`Simulation::new`], with `crate::task::wall_clock_ms()` starting at `wall_clock_start_ms`.
    pub fn with_wall_clock_ms(wall_clock_start_ms: i64) -> Simulation {
        let core = Rc::new(Core {
            start: Instant::now(),
            wall_clock_start_ms,
            elapsed: Cell::new(Duration::ZERO),
            tasks: RefCell::new(BTreeMap::new()),
            next_task: Cell::new(BLOCK_ON_TASK + 1),
            ready: Arc::new(ReadyQueue::default()),
            timers: timer::Timers::default(),
        });
        let previous = install(Some(core.clone()));
        Simulation {
            core,
            previous,
            stall_limit: DEFAULT_STALL_LIMIT,
        }
    }

    /// How long [`Simulation::block_on`] waits in real time for a wake from another thread before it
    /// panics as stalled.
    pub fn set_stall_limit(&mut self, limit: Duration) {
        self.stall_limit = limit;
    }

    /// The virtual monotonic clock.
    pub fn now(&self) -> Instant {
        self.core.now()
    }

    /// How far the clock has moved since the simulation began.
    pub fn elapsed(&self) -> Duration {
        self.core.elapsed.get()
    }

    /// The virtual wall clock, in ms since the Unix epoch.
    pub fn wall_clock_ms(&self) -> i64 {
        self.core.wall_clock_ms()
    }

    /// Tasks spawned and not finished.
    pub fn task_count(&self) -> usize {
        self.core.tasks.borrow().len()
    }

    /// Sleeps (and timeouts) waiting for the clock.
    pub fn pending_timer_count(&self) -> usize {
        self.core.timers.len()
    }

    /// The earliest deadline a sleep waits for.
    pub fn next_timer(&self) -> Option<Instant> {
        self.core.timers.next_deadline()
    }

    /// Spawns `future` (it first runs when the simulation next runs tasks); the handle gives its output.
    pub fn spawn<T: 'static, F: Future<Output = T> + 'static>(&self, future: F) -> TaskHandle<T> {
        let shared = Rc::new(HandleState {
            output: RefCell::new(None),
            finished: Cell::new(false),
            waiter: RefCell::new(None),
        });
        let state = shared.clone();
        self.core.spawn(Box::pin(async move {
            let output = future.await;
            *state.output.borrow_mut() = Some(output);
            state.finished.set(true);
            if let Some(waker) = state.waiter.borrow_mut().take() {
                waker.wake();
            }
        }));
        TaskHandle { state: shared }
    }

    /// Runs woken tasks until none is runnable; the clock does not move. Returns how many polls it made.
    pub fn run_until_stalled(&mut self) -> usize {
        let mut polls = 0;
        while let Some(id) = self.core.ready.pop() {
            if id != BLOCK_ON_TASK {
                self.core.poll_task(id);
                polls += 1;
            }
        }
        polls
    }

    /// Moves the clock forward by `duration`: each sleep due by then fires at its own deadline, in deadline
    /// order (the clock set to it exactly, then every runnable task run until stalled), and the clock ends
    /// at `now + duration` with the tasks run until stalled once more.
    pub fn advance(&mut self, duration: Duration) {
        let target = self.now() + duration;
        self.run_until_stalled();
        while self.fire_next_timer(Some(target)) {
            self.run_until_stalled();
        }
        self.core.elapsed.set(target - self.core.start);
        self.run_until_stalled();
    }

    /// Moves the clock to `deadline` (see [`Simulation::advance`]); nothing happens if it has passed.
    pub fn advance_to(&mut self, deadline: Instant) {
        self.advance(deadline.saturating_duration_since(self.now()));
    }

    /// Sets the clock to the earliest pending deadline (if any, and not past `limit`) and wakes that timer.
    fn fire_next_timer(&mut self, limit: Option<Instant>) -> bool {
        let Some((deadline, waker)) = self.core.timers.pop_due(limit) else {
            return false;
        };
        if deadline > self.now() {
            self.core.elapsed.set(deadline - self.core.start);
        }
        waker.wake();
        true
    }

    /// Runs `future` (which may borrow from the test) with the spawned tasks until it completes. The clock
    /// does not move: a future that waits on a timer the test does not advance panics as stalled (after
    /// waiting [`DEFAULT_STALL_LIMIT`] for a wake from another thread).
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        self.drive(future, false)
    }

    /// Like [`Simulation::block_on`], but whenever nothing can run, the clock jumps to the next timer's
    /// deadline and fires it. Time still only moves when every task waits on it, so the result is the
    /// same as advancing step by step.
    pub fn block_on_advancing<F: Future>(&mut self, future: F) -> F::Output {
        self.drive(future, true)
    }

    fn drive<F: Future>(&mut self, future: F, advancing: bool) -> F::Output {
        let mut future = pin!(future);
        let waker_state = self.core.new_waker(BLOCK_ON_TASK);
        let waker = Waker::from(waker_state.clone());
        waker_state.wake_by_ref();
        loop {
            while let Some(id) = self.core.ready.pop() {
                if id != BLOCK_ON_TASK {
                    self.core.poll_task(id);
                    continue;
                }
                waker_state.queued.store(false, Ordering::Release);
                if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker))
                {
                    return output;
                }
            }
            if advancing && self.fire_next_timer(None) {
                continue;
            }
            if !self.core.ready.wait(self.stall_limit) {
                panic!(
                    "simulation stalled at +{:?}: the future waits on nothing that can wake it \
                     ({} tasks, {} timers, next at {:?}); advance the clock or use block_on_advancing",
                    self.elapsed(),
                    self.task_count(),
                    self.pending_timer_count(),
                    self.next_timer().map(|deadline| deadline - self.core.start),
                );
            }
        }
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        // Tasks dropped here may spawn or touch timers: take them out first, until none is left.
        loop {
            let tasks = std::mem::take(&mut *self.core.tasks.borrow_mut());
            if tasks.is_empty() {
                break;
            }
            drop(tasks);
        }
        self.core.timers.clear();
        let installed = CURRENT
            .try_with(|current| {
                let current = current.borrow();
                current
                    .as_ref()
                    .is_some_and(|core| Rc::ptr_eq(core, &self.core))
            })
            .unwrap_or(false);
        // Dropped out of order (an outer simulation before an inner one): leave the inner one installed.
        if installed {
            install(self.previous.take());
        }
    }
}

struct HandleState<T> {
    output: RefCell<Option<T>>,
    finished: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

/// The output of a task spawned with [`Simulation::spawn`]; dropping it leaves the task running. Await it
/// (inside the simulation) or ask it after running the simulation.
pub struct TaskHandle<T> {
    state: Rc<HandleState<T>>,
}

impl<T> TaskHandle<T> {
    pub fn is_finished(&self) -> bool {
        self.state.finished.get()
    }

    /// The task's output, once (`None` before it finishes, or when taken already).
    pub fn take_output(&self) -> Option<T> {
        self.state.output.borrow_mut().take()
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.take_output() {
            Some(output) => Poll::Ready(output),
            None if self.is_finished() => panic!("the task's output was taken already"),
            None => {
                *self.state.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
