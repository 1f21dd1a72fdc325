//! Unit tests of the purgatory: pure (explicit `Instant`s, futures polled by hand), plus one run of the
//! expiration driver on a real shard.
use super::*;
use futures_lite::future::{block_on, poll_once};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Wake;

const MS: Duration = Duration::from_millis(1);

fn never() -> Condition {
    Box::new(|| false)
}

fn flag_condition(flag: &Rc<Cell<bool>>) -> Condition {
    let flag = flag.clone();
    Box::new(move || flag.get())
}

fn poll(operation: &mut DelayedOperation) -> Option<Completion> {
    block_on(poll_once(operation))
}

/// No operation left anywhere: the operation map, the watcher sets and the wheel.
fn assert_empty<K: Hash + Eq + Clone + 'static>(purgatory: &Purgatory<K>) {
    let operations = purgatory.operations.borrow();
    assert!(operations.operations.is_empty());
    assert!(operations.watchers.is_empty());
    assert!(operations.wheel.is_empty());
    assert_eq!(operations.wheel.next_expiry(), None);
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn satisfied_at_watch_time() {
    let start = Instant::now();
    let purgatory: Purgatory<u32> = Purgatory::new(start);
    let mut operation = purgatory.watch(vec![1, 2], start + 100 * MS, Box::new(|| true));
    assert_eq!(poll(&mut operation), Some(Completion::Satisfied));
    assert_eq!(purgatory.len(), 0);
    assert_empty(&purgatory);
    drop(operation);
    let counters = purgatory.counters();
    assert_eq!((counters.completed, counters.cancelled), (1, 0));
}

#[test]
fn satisfied_by_an_event_on_one_of_several_keys() {
    let start = Instant::now();
    let purgatory: Purgatory<u32> = Purgatory::new(start);
    let flag = Rc::new(Cell::new(false));
    let mut operation = purgatory.watch(vec![1, 2, 3], start + 100 * MS, flag_condition(&flag));
    let waker = Arc::new(CountingWaker::default());
    let task_waker = Waker::from(waker.clone());
    let mut context = Context::from_waker(&task_waker);
    assert!(Pin::new(&mut operation).poll(&mut context).is_pending());
    assert_eq!(purgatory.check_and_complete(&2), 0, "condition not met yet");
    flag.set(true);
    assert_eq!(purgatory.check_and_complete(&9), 0, "nobody watches key 9");
    assert_eq!(waker.0.load(Ordering::SeqCst), 0);
    assert_eq!(purgatory.check_and_complete(&3), 1);
    assert_eq!(waker.0.load(Ordering::SeqCst), 1, "the future is woken");
    assert_eq!(
        Pin::new(&mut operation).poll(&mut context),
        Poll::Ready(Completion::Satisfied)
    );
    assert_eq!(purgatory.check_and_complete(&1), 0, "completes once");
    assert_empty(&purgatory);
    assert_eq!(purgatory.advance_clock(start + 200 * MS), 0);
    assert_eq!(purgatory.counters().completed, 1);
}

#[test]
fn expires_at_its_deadline_not_before() {
    let start = Instant::now();
    let purgatory: Purgatory<u32> = Purgatory::new(start);
    let deadline = start + 10 * MS;
    let mut operation = purgatory.watch(vec![1], deadline, never());
    assert_eq!(purgatory.next_expiry(), Some(deadline));
    assert_eq!(
        purgatory.advance_clock(deadline - Duration::from_nanos(1)),
        0
    );
    assert_eq!(poll(&mut operation), None);
    assert_eq!(purgatory.advance_clock(deadline), 1);
    assert_eq!(poll(&mut operation), Some(Completion::Expired));
    assert_empty(&purgatory);
    // A deadline already past expires at the next clock advance.
    let mut late = purgatory.watch(vec![1], start, never());
    assert_eq!(purgatory.advance_clock(deadline), 1);
    assert_eq!(poll(&mut late), Some(Completion::Expired));
    let counters = purgatory.counters();
    assert_eq!((counters.expired, counters.completed), (2, 0));
}

#[test]
fn dropping_the_future_cancels_the_operation() {
    let start = Instant::now();
    let purgatory: Purgatory<u32> = Purgatory::new(start);
    let flag = Rc::new(Cell::new(false));
    let mut kept = purgatory.watch(vec![1, 2], start + 5 * MS, flag_condition(&flag));
    let dropped = purgatory.watch(vec![2, 3], start + 3 * MS, flag_condition(&flag));
    assert_eq!(purgatory.len(), 2);
    drop(dropped);
    assert_eq!(purgatory.len(), 1);
    assert_eq!(purgatory.next_expiry(), Some(start + 5 * MS));
    flag.set(true);
    assert_eq!(
        purgatory.check_and_complete(&3),
        0,
        "the dropped one is gone"
    );
    assert_eq!(purgatory.check_and_complete(&2), 1);
    assert_eq!(poll(&mut kept), Some(Completion::Satisfied));
    drop(kept);
    assert_empty(&purgatory);
    assert_eq!(
        purgatory.counters(),
        PurgatoryCounters {
            watching: 0,
            completed: 1,
            expired: 0,
            cancelled: 1
        }
    );
}

#[test]
fn counters_follow_a_mix_of_endings() {
    let start = Instant::now();
    let purgatory: Purgatory<String> = Purgatory::new(start);
    let flag = Rc::new(Cell::new(false));
    let key = |name: &str| vec![name.to_string()];
    let _at_once = purgatory.watch(key("a"), start + MS, Box::new(|| true));
    let _satisfied = purgatory.watch(key("a"), start + 50 * MS, flag_condition(&flag));
    let _expiring = purgatory.watch(key("b"), start + 10 * MS, flag_condition(&flag));
    let cancelled = purgatory.watch(key("b"), start + 50 * MS, flag_condition(&flag));
    let _waiting = purgatory.watch(key("c"), start + 50 * MS, flag_condition(&flag));
    drop(cancelled);
    assert_eq!(purgatory.advance_clock(start + 20 * MS), 1);
    flag.set(true);
    assert_eq!(purgatory.check_and_complete(&"a".to_string()), 1);
    let counters = purgatory.counters();
    assert_eq!(
        counters,
        PurgatoryCounters {
            watching: 1,
            completed: 2,
            expired: 1,
            cancelled: 1
        }
    );
}

#[test]
fn conditions_may_use_the_purgatory() {
    let start = Instant::now();
    let purgatory: Rc<Purgatory<u32>> = Rc::new(Purgatory::new(start));
    let weak = Rc::downgrade(&purgatory);
    let condition: Condition = Box::new(move || weak.upgrade().is_some_and(|p| p.len() > 5));
    let mut operation = purgatory.watch(vec![1], start + 10 * MS, condition);
    let _others: Vec<_> = (0..5)
        .map(|_| purgatory.watch(vec![2], start + 10 * MS, never()))
        .collect();
    assert_eq!(purgatory.check_and_complete(&1), 1);
    assert_eq!(poll(&mut operation), Some(Completion::Satisfied));
}

#[test]
fn dropping_the_purgatory_expires_what_waits() {
    let start = Instant::now();
    let purgatory: Purgatory<u32> = Purgatory::new(start);
    let mut operation = purgatory.watch(vec![1], start + 10 * MS, never());
    drop(purgatory);
    assert_eq!(poll(&mut operation), Some(Completion::Expired));
}

#[test]
fn a_hundred_thousand_operations_on_a_thousand_keys() {
    const OPERATIONS: u32 = 100_000;
    const KEYS: u32 = 1_000;
    let start = Instant::now();
    let purgatory: Purgatory<u32> = Purgatory::new(start);
    let flags: Vec<Rc<Cell<bool>>> = (0..KEYS).map(|_| Rc::new(Cell::new(false))).collect();
    let mut operations: Vec<DelayedOperation> = (0..OPERATIONS)
        .map(|index| {
            let key = index % KEYS;
            // Deadlines spread over 2 s: beyond level 0 of the wheel, so some cascade.
            let deadline = start + Duration::from_micros(u64::from(index % 2_000) * 1_000 + 500);
            purgatory.watch(vec![key], deadline, flag_condition(&flags[key as usize]))
        })
        .collect();
    assert_eq!(purgatory.len(), OPERATIONS as usize);
    // Events on the even keys complete half.
    let mut completed = 0;
    for key in (0..KEYS).step_by(2) {
        flags[key as usize].set(true);
        completed += purgatory.check_and_complete(&key);
    }
    assert_eq!(completed, OPERATIONS as usize / 2);
    // Drop a thousand of the waiting ones, then the clock expires the rest.
    let cancelled: Vec<_> = operations
        .iter()
        .enumerate()
        .filter(|(_, operation)| operation.outcome().is_none())
        .map(|(index, _)| index)
        .take(1_000)
        .collect();
    for index in cancelled.into_iter().rev() {
        drop(operations.swap_remove(index));
    }
    let mut expired = purgatory.advance_clock(start + 1_000 * MS);
    assert!(expired > 0 && expired < OPERATIONS as usize / 2);
    expired += purgatory.advance_clock(start + 2_001 * MS);
    assert_eq!(expired, OPERATIONS as usize / 2 - 1_000);
    assert_empty(&purgatory);
    let satisfied = operations
        .iter()
        .filter(|operation| operation.outcome() == Some(Completion::Satisfied))
        .count();
    assert_eq!(satisfied, OPERATIONS as usize / 2);
    assert_eq!(
        purgatory.counters(),
        PurgatoryCounters {
            watching: 0,
            completed: 50_000,
            expired: 49_000,
            cancelled: 1_000
        }
    );
}

/// The driver on a real shard: it sleeps for its (here 10 s) rescan interval, is woken by a watch with an
/// earlier deadline, and expires it on time.
#[test]
fn the_driver_is_woken_by_an_earlier_deadline() {
    let shards = shard::start_shards(1, |_| async {
        let purgatory: Rc<Purgatory<u32>> = Rc::new(Purgatory::new(now()));
        let stop = Rc::new(Cell::new(false));
        let driver = {
            let (purgatory, stop) = (purgatory.clone(), stop.clone());
            run_expiration_every(purgatory, move || stop.get(), Duration::from_secs(10))
        };
        let (_, elapsed) = futures_lite::future::zip(driver, async {
            // Let the driver go to sleep first.
            shard::task::sleep(10 * MS).await;
            assert!(purgatory.driver_wakes_at.get().is_some());
            let watched = now();
            let operation = purgatory.watch(vec![1], watched + 20 * MS, never());
            assert_eq!(operation.await, Completion::Expired);
            let elapsed = watched.elapsed();
            stop.set(true);
            // Wake the driver so it sees `stop`.
            drop(purgatory.watch(vec![1], now(), never()));
            elapsed
        })
        .await;
        assert!(elapsed >= 20 * MS, "expired early: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "not woken: {elapsed:?}");
    })
    .expect("start a shard");
    shards.join().expect("the shard's assertions hold");
}
