//! A hierarchical timing wheel (Kafka's `TimingWheel` + `SystemTimer`): items with deadlines, expired in
//! bulk as a caller-supplied clock advances. Pure data structure: no runtime, no clock reads.
//!
//! Layout: time is counted in whole ticks since `start`. Level 0 has `wheel_size` buckets of one tick
//! each; level `l` has `wheel_size` buckets of `wheel_size^l` ticks each and is created only when an item's
//! deadline is beyond the levels below (an "overflow wheel"). Each level has a `current` time, a multiple
//! of its bucket width, no later than the clock. A bucket of level `l` holds items whose deadline tick
//! lies in `[expiration, expiration + wheel_size^l)` and expires at `expiration`: level 0's buckets then
//! hand their items out; a higher level's bucket cascades them down to the levels below (each item moves
//! down at most once per level). Items already due when inserted wait in a "due" list for the next
//! [`TimingWheel::advance`]. A binary heap of bucket expirations (one entry per bucket that has one, at
//! most `wheel_size` per level) says which bucket expires next, as Kafka's `DelayQueue` does.
//!
//! Invariants:
//! - An item's deadline is rounded *up* to a tick boundary: `advance(now)` hands out exactly the items
//!   whose rounded-up deadline is `<= now`. So an item never fires before its deadline, and fires at
//!   the first `advance` whose `now` reaches its deadline plus at most one tick.
//! - Every inserted item is handed out exactly once, by `advance` or by `cancel`.
//! - [`TimerId`]s carry a generation: a stale id (its item fired or was cancelled) never matches a later
//!   item that reuses the slot, so `cancel` of it returns `None`.
//! - `cancel` is O(1): the item leaves the slab at once; the bucket keeps a stale reference, skipped when
//!   the bucket is flushed and compacted away when stale references outnumber live ones.
//! - The heap's top is always a bucket with live items (emptied buckets are popped eagerly from the top),
//!   so [`TimingWheel::next_expiry`] is O(1).
//! - Deadlines past `u64::MAX / 2` ticks after `start` (146 years at 1 ns ticks) fire at that horizon.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Identifies one inserted item; see the module doc for its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u64,
}

/// Where a live item waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Due,
    Bucket { level: usize, slot: usize },
}

/// One slab slot: an item with its rounded-up deadline tick, or free (a link in the free list).
enum SlabSlot<T> {
    Occupied {
        item: T,
        deadline_tick: u64,
        location: Location,
    },
    Vacant {
        next_free: Option<u32>,
    },
}

struct SlabEntry<T> {
    generation: u64,
    slot: SlabSlot<T>,
}

/// References to items (possibly stale) plus how many of them are live.
#[derive(Default)]
struct Bucket {
    expiration: Option<u64>,
    references: Vec<TimerId>,
    live: usize,
}

struct Level {
    /// Ticks per bucket: `wheel_size^level`.
    unit: u64,
    /// Ticks this level spans: `unit * wheel_size` (saturating).
    interval: u64,
    /// A multiple of `unit`, no later than the clock.
    current: u64,
    buckets: Vec<Bucket>,
}

/// A hierarchical timing wheel; see the module doc.
pub struct TimingWheel<T> {
    tick_nanos: u128,
    wheel_size: usize,
    start: Instant,
    /// The largest tick whose instant is representable (deadlines beyond are clamped to it).
    last_tick: u64,
    levels: Vec<Level>,
    /// Bucket expirations: `(expiration tick, level, slot)`, earliest first.
    heap: BinaryHeap<Reverse<(u64, usize, usize)>>,
    due: Bucket,
    slab: Vec<SlabEntry<T>>,
    free_head: Option<u32>,
    len: usize,
}

impl<T> TimingWheel<T> {
    /// A wheel whose clock starts at `start`. Panics if `tick` is zero or `wheel_size` is below 2.
    pub fn new(tick: Duration, wheel_size: usize, start: Instant) -> Self {
        assert!(!tick.is_zero(), "a timing wheel's tick must be positive");
        assert!(wheel_size >= 2, "a timing wheel needs at least 2 buckets");
        let tick_nanos = tick.as_nanos();
        // The latest representable instant after `start`, probed by halving (bounded: at most 64 tries).
        let mut horizon = Duration::from_secs(u64::MAX);
        while start.checked_add(horizon).is_none() {
            horizon /= 2;
        }
        let last_tick = (horizon.as_nanos() / tick_nanos).min(u128::from(u64::MAX / 2)) as u64;
        let mut wheel = TimingWheel {
            tick_nanos,
            wheel_size,
            start,
            last_tick,
            levels: Vec::new(),
            heap: BinaryHeap::new(),
            due: Bucket::default(),
            slab: Vec::new(),
            free_head: None,
            len: 0,
        };
        wheel.add_level();
        wheel
    }

    /// Items waiting (inserted, neither fired nor cancelled).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `item` for `deadline`. A deadline the clock has already reached fires at the next
    /// [`TimingWheel::advance`], whatever its `now`.
    pub fn insert(&mut self, deadline: Instant, item: T) -> TimerId {
        let deadline_tick = self.tick_at_or_after(deadline);
        let id = self.allocate(item, deadline_tick);
        self.place(id, deadline_tick);
        self.len += 1;
        id
    }

    /// Removes the item `id` names, if it is still waiting. O(1) amortised.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.slab.get_mut(id.index as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        let SlabSlot::Occupied { location, .. } = entry.slot else {
            return None;
        };
        let item = self.release(id.index);
        self.len -= 1;
        match location {
            Location::Due => {
                self.due.live -= 1;
                if self.due.live == 0 {
                    self.due.references.clear();
                }
            }
            Location::Bucket { level, slot } => {
                let bucket = &mut self.levels[level].buckets[slot];
                bucket.live -= 1;
                if bucket.live == 0 {
                    bucket.references.clear();
                } else if bucket.references.len() > 2 * bucket.live + 16 {
                    let slab = &self.slab;
                    bucket
                        .references
                        .retain(|reference| Self::is_live(slab, *reference));
                }
                self.pop_empty_buckets();
            }
        }
        Some(item)
    }

    /// Moves the clock to `now` (never backwards) and appends to `expired` every item whose rounded-up
    /// deadline is `<= now`, cascading overflow buckets down on the way. O(expired + buckets passed).
    pub fn advance(&mut self, now: Instant, expired: &mut Vec<T>) {
        let now_tick = self.tick_at_or_before(now).max(self.levels[0].current);
        let due = std::mem::take(&mut self.due);
        for reference in due.references {
            self.fire_if_live(reference, expired);
        }
        while let Some(&Reverse((expiration, level, slot))) = self.heap.peek() {
            if expiration > now_tick {
                break;
            }
            self.heap.pop();
            let bucket = std::mem::take(&mut self.levels[level].buckets[slot]);
            self.set_clock(expiration);
            for reference in bucket.references {
                if !Self::is_live(&self.slab, reference) {
                    continue;
                }
                let deadline_tick = match &self.slab[reference.index as usize].slot {
                    SlabSlot::Occupied { deadline_tick, .. } => *deadline_tick,
                    SlabSlot::Vacant { .. } => unreachable!("a live reference is occupied"),
                };
                if deadline_tick <= now_tick {
                    self.fire_if_live(reference, expired);
                } else {
                    // Not due yet: down to the level whose buckets are fine enough for it.
                    self.place(reference, deadline_tick);
                }
            }
        }
        self.set_clock(now_tick);
        self.pop_empty_buckets();
    }

    /// When the earliest non-empty bucket expires (an overflow bucket's expiry only cascades it down), or
    /// the clock's time if items inserted already due wait. `None` when empty. O(1).
    pub fn next_expiry(&self) -> Option<Instant> {
        if self.due.live > 0 {
            return Some(self.instant_of(self.levels[0].current));
        }
        self.heap
            .peek()
            .map(|Reverse((expiration, _, _))| self.instant_of(*expiration))
    }

    fn is_live(slab: &[SlabEntry<T>], reference: TimerId) -> bool {
        let entry = &slab[reference.index as usize];
        entry.generation == reference.generation && matches!(entry.slot, SlabSlot::Occupied { .. })
    }

    fn fire_if_live(&mut self, reference: TimerId, expired: &mut Vec<T>) {
        if Self::is_live(&self.slab, reference) {
            expired.push(self.release(reference.index));
            self.len -= 1;
        }
    }

    /// Puts the live item `id` in the due list or the bucket its deadline falls in, creating levels as
    /// needed.
    fn place(&mut self, id: TimerId, deadline_tick: u64) {
        let location = if deadline_tick <= self.levels[0].current {
            self.due.references.push(id);
            self.due.live += 1;
            Location::Due
        } else {
            let mut level = 0;
            while deadline_tick
                >= self.levels[level]
                    .current
                    .saturating_add(self.levels[level].interval)
            {
                level += 1;
                if level == self.levels.len() {
                    self.add_level();
                }
            }
            let unit = self.levels[level].unit;
            let slot = ((deadline_tick / unit) % self.wheel_size as u64) as usize;
            let expiration = deadline_tick - deadline_tick % unit;
            let bucket = &mut self.levels[level].buckets[slot];
            match bucket.expiration {
                Some(existing) => {
                    debug_assert_eq!(existing, expiration, "one expiration per bucket")
                }
                None => {
                    bucket.expiration = Some(expiration);
                    self.heap.push(Reverse((expiration, level, slot)));
                }
            }
            bucket.references.push(id);
            bucket.live += 1;
            Location::Bucket { level, slot }
        };
        if let SlabSlot::Occupied { location: at, .. } = &mut self.slab[id.index as usize].slot {
            *at = location;
        }
    }

    fn add_level(&mut self) {
        let unit = match self.levels.last() {
            Some(below) => below.interval,
            None => 1,
        };
        let interval = unit.saturating_mul(self.wheel_size as u64);
        let clock = self.levels.first().map_or(0, |level| level.current);
        self.levels.push(Level {
            unit,
            interval,
            current: clock - clock % unit,
            buckets: (0..self.wheel_size).map(|_| Bucket::default()).collect(),
        });
    }

    fn set_clock(&mut self, tick: u64) {
        for level in &mut self.levels {
            if tick >= level.current.saturating_add(level.unit) {
                level.current = tick - tick % level.unit;
            }
        }
    }

    /// Pops heap entries of buckets whose items were all cancelled, so the top has live items.
    fn pop_empty_buckets(&mut self) {
        while let Some(&Reverse((_, level, slot))) = self.heap.peek() {
            let bucket = &mut self.levels[level].buckets[slot];
            if bucket.live > 0 {
                break;
            }
            *bucket = Bucket::default();
            self.heap.pop();
        }
    }

    fn allocate(&mut self, item: T, deadline_tick: u64) -> TimerId {
        let slot = SlabSlot::Occupied {
            item,
            deadline_tick,
            location: Location::Due,
        };
        match self.free_head {
            Some(index) => {
                let entry = &mut self.slab[index as usize];
                let SlabSlot::Vacant { next_free } = entry.slot else {
                    unreachable!("the free list holds vacant slots")
                };
                self.free_head = next_free;
                entry.slot = slot;
                TimerId {
                    index,
                    generation: entry.generation,
                }
            }
            None => {
                let index = u32::try_from(self.slab.len()).expect("fewer than 2^32 timers");
                self.slab.push(SlabEntry {
                    generation: 0,
                    slot,
                });
                TimerId {
                    index,
                    generation: 0,
                }
            }
        }
    }

    /// Frees an occupied slot (bumping its generation) and returns its item.
    fn release(&mut self, index: u32) -> T {
        let entry = &mut self.slab[index as usize];
        entry.generation += 1;
        let vacant = SlabSlot::Vacant {
            next_free: self.free_head,
        };
        self.free_head = Some(index);
        match std::mem::replace(&mut entry.slot, vacant) {
            SlabSlot::Occupied { item, .. } => item,
            SlabSlot::Vacant { .. } => unreachable!("released slots are occupied"),
        }
    }

    fn tick_at_or_after(&self, instant: Instant) -> u64 {
        let nanos = instant.saturating_duration_since(self.start).as_nanos();
        let ticks = nanos.div_ceil(self.tick_nanos);
        ticks.min(u128::from(self.last_tick)) as u64
    }

    fn tick_at_or_before(&self, instant: Instant) -> u64 {
        let nanos = instant.saturating_duration_since(self.start).as_nanos();
        (nanos / self.tick_nanos).min(u128::from(self.last_tick)) as u64
    }

    fn instant_of(&self, tick: u64) -> Instant {
        let nanos = u128::from(tick) * self.tick_nanos;
        let duration = Duration::new(
            (nanos / 1_000_000_000) as u64,
            (nanos % 1_000_000_000) as u32,
        );
        self.start + duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const MS: Duration = Duration::from_millis(1);

    fn advanced(wheel: &mut TimingWheel<u32>, now: Instant) -> Vec<u32> {
        let mut expired = Vec::new();
        wheel.advance(now, &mut expired);
        expired.sort_unstable();
        expired
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let start = Instant::now();
        let mut wheel = TimingWheel::new(MS, 8, start);
        wheel.insert(start + 5 * MS, 1);
        // Not on a tick boundary: rounded up to 4 ms.
        wheel.insert(start + 3 * MS + Duration::from_micros(300), 2);
        assert_eq!(wheel.len(), 2);
        assert_eq!(wheel.next_expiry(), Some(start + 4 * MS));
        assert!(advanced(&mut wheel, start + 3 * MS + Duration::from_micros(299)).is_empty());
        assert!(advanced(&mut wheel, start + 3 * MS + Duration::from_micros(999)).is_empty());
        assert_eq!(advanced(&mut wheel, start + 4 * MS), vec![2]);
        assert_eq!(wheel.next_expiry(), Some(start + 5 * MS));
        assert!(advanced(&mut wheel, start + 5 * MS - Duration::from_nanos(1)).is_empty());
        assert_eq!(advanced(&mut wheel, start + 5 * MS), vec![1]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiry(), None);
    }

    #[test]
    fn a_due_deadline_fires_at_the_next_advance() {
        let start = Instant::now();
        let mut wheel = TimingWheel::new(MS, 8, start);
        assert!(advanced(&mut wheel, start + 10 * MS).is_empty());
        wheel.insert(start + 2 * MS, 1);
        wheel.insert(start, 2);
        wheel.insert(start + 10 * MS, 3);
        assert_eq!(wheel.next_expiry(), Some(start + 10 * MS));
        // The same `now` again (and even an earlier one: the clock never goes back).
        assert_eq!(advanced(&mut wheel, start + 5 * MS), vec![1, 2, 3]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn cancel_is_exact_and_ids_are_not_reused() {
        let start = Instant::now();
        let mut wheel = TimingWheel::new(MS, 4, start);
        let first = wheel.insert(start + 3 * MS, 1);
        assert_eq!(wheel.cancel(first), Some(1));
        assert_eq!(wheel.cancel(first), None);
        assert_eq!(wheel.next_expiry(), None, "an emptied bucket is no expiry");
        // The slot is reused with a new generation: the stale id does not touch the new item.
        let second = wheel.insert(start + 3 * MS, 2);
        assert_ne!(first, second);
        assert_eq!(wheel.cancel(first), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(advanced(&mut wheel, start + 3 * MS), vec![2]);
        assert_eq!(
            wheel.cancel(second),
            None,
            "fired items cannot be cancelled"
        );
        let due = wheel.insert(start, 3);
        assert_eq!(wheel.cancel(due), Some(3));
        assert!(advanced(&mut wheel, start + 4 * MS).is_empty());
    }

    #[test]
    fn overflow_levels_cascade_down() {
        let start = Instant::now();
        // Level 0 spans 4 ms, level 1 16 ms, level 2 64 ms, level 3 256 ms, level 4 1024 ms.
        let mut wheel = TimingWheel::new(MS, 4, start);
        for deadline_ms in [1u32, 3, 4, 5, 15, 16, 17, 63, 64, 65, 300, 1000] {
            wheel.insert(start + deadline_ms * MS, deadline_ms);
        }
        assert_eq!(wheel.levels.len(), 5);
        let mut fired = Vec::new();
        for now_ms in 0..=1000u32 {
            let now = start + now_ms * MS;
            for item in advanced(&mut wheel, now) {
                assert_eq!(item, now_ms, "fires exactly at its tick-aligned deadline");
                fired.push(item);
            }
            if let Some(expiry) = wheel.next_expiry() {
                assert!(expiry > now);
            }
        }
        assert_eq!(fired.len(), 12);
        assert!(wheel.is_empty());
    }

    #[test]
    fn one_big_jump_fires_everything_due() {
        let start = Instant::now();
        let mut wheel = TimingWheel::new(MS, 4, start);
        for deadline_ms in 0..500u32 {
            wheel.insert(start + deadline_ms * MS, deadline_ms);
        }
        assert_eq!(
            advanced(&mut wheel, start + 249 * MS),
            (0..250).collect::<Vec<_>>()
        );
        assert_eq!(wheel.next_expiry(), Some(start + 250 * MS));
        assert_eq!(advanced(&mut wheel, start + 10_000 * MS).len(), 250);
        assert!(wheel.is_empty());
    }

    #[test]
    fn many_cancels_compact_a_bucket() {
        let start = Instant::now();
        let mut wheel = TimingWheel::new(MS, 4, start);
        // Deadline tick 2 lives in level 0's slot 2.
        let ids: Vec<_> = (0..1000)
            .map(|item| wheel.insert(start + 2 * MS, item))
            .collect();
        for id in &ids[1..] {
            assert!(wheel.cancel(*id).is_some());
        }
        assert!(wheel.levels[0].buckets[2].references.len() <= 2 + 16);
        assert_eq!(advanced(&mut wheel, start + 2 * MS), vec![0]);
    }

    /// Insert with a deadline this many µs after the clock (negative: already due); cancel the id at
    /// this index (modulo) of the ids handed out; advance the clock by this many µs.
    #[derive(Debug, Clone)]
    enum Step {
        Insert(i64),
        Cancel(usize),
        Advance(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (-2_000i64..200_000).prop_map(Step::Insert),
            2 => any::<usize>().prop_map(Step::Cancel),
            3 => prop_oneof![0u64..2_000, 0u64..50_000].prop_map(Step::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Against a model: every item fires exactly once, never early, at most one tick late;
        /// cancelled items never fire; `next_expiry` is never later than the earliest model deadline.
        #[test]
        fn matches_a_model(
            wheel_size in 2usize..9,
            tick_micros in 1u64..1_500,
            steps in proptest::collection::vec(step(), 1..300),
        ) {
            let tick = Duration::from_micros(tick_micros);
            let start = Instant::now();
            let mut wheel = TimingWheel::new(tick, wheel_size, start);
            let mut model: BTreeMap<u32, Instant> = BTreeMap::new();
            let mut ids: Vec<(TimerId, u32)> = Vec::new();
            let mut now = start;
            let mut next_item = 0u32;
            let check_advance = |wheel: &mut TimingWheel<u32>,
                                 model: &mut BTreeMap<u32, Instant>,
                                 now: Instant|
             -> Result<(), TestCaseError> {
                let mut expired = Vec::new();
                wheel.advance(now, &mut expired);
                for item in &expired {
                    let deadline = model.remove(item);
                    prop_assert!(deadline.is_some(), "item {} fired twice or after cancel", item);
                    prop_assert!(deadline.unwrap() <= now, "item {} fired early", item);
                }
                for (item, deadline) in model.iter() {
                    prop_assert!(*deadline + tick > now, "item {} over a tick late", item);
                }
                prop_assert_eq!(wheel.len(), model.len());
                if let Some(earliest) = model.values().min() {
                    let expiry = wheel.next_expiry();
                    prop_assert!(expiry.is_some_and(|expiry| expiry <= *earliest + tick));
                    prop_assert!(expiry.unwrap() > now);
                } else {
                    prop_assert_eq!(wheel.next_expiry(), None);
                }
                Ok(())
            };
            for step in steps {
                match step {
                    Step::Insert(offset) => {
                        let deadline = if offset < 0 {
                            now.checked_sub(Duration::from_micros(offset.unsigned_abs())).unwrap_or(start)
                        } else {
                            now + Duration::from_micros(offset as u64)
                        };
                        let item = next_item;
                        next_item += 1;
                        ids.push((wheel.insert(deadline, item), item));
                        model.insert(item, deadline);
                    }
                    Step::Cancel(index) => {
                        if ids.is_empty() {
                            continue;
                        }
                        let (id, item) = ids[index % ids.len()];
                        let cancelled = wheel.cancel(id);
                        prop_assert_eq!(cancelled, model.remove(&item).map(|_| item));
                    }
                    Step::Advance(micros) => {
                        now += Duration::from_micros(micros);
                        check_advance(&mut wheel, &mut model, now)?;
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
            }
            // Drain: everything left fires once the clock passes the last deadline.
            if let Some(last) = model.values().max().copied() {
                now = now.max(last) + tick;
            }
            check_advance(&mut wheel, &mut model, now)?;
            prop_assert!(model.is_empty());
            prop_assert!(wheel.is_empty());
        }
    }
}
