//! Criterion benchmarks of the purgatory of delayed operations (`broker::purgatory`): 100k operations on
//! 1k keys (100 per key), deadlines spread over 2 s (past level 0 of the 512 ms wheel, so some cascade).
//!
//! Layout: one group, `purgatory`, throughput in operations (ns per operation = 1e9 / throughput) --
//! - `lifecycle`: watch all, complete half by events (one `check_and_complete` per even key), expire the
//!   rest with one clock advance, drop the futures;
//! - `watch`, `complete_half_by_events`, `expire_all`, `cancel_all`: one phase alone (the others are the
//!   untimed set-up or tear-down).
use broker::purgatory::{DelayedOperation, Purgatory};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const OPERATIONS: u32 = 100_000;
const KEYS: u32 = 1_000;

/// A purgatory, its operations' futures and one "data arrived" flag per key.
struct Watched {
    start: Instant,
    flags: Vec<Rc<Cell<bool>>>,
    operations: Vec<DelayedOperation>,
    purgatory: Purgatory<u32>,
}

fn watch_all() -> Watched {
    let start = Instant::now();
    let purgatory = Purgatory::new(start);
    let flags: Vec<Rc<Cell<bool>>> = (0..KEYS).map(|_| Rc::new(Cell::new(false))).collect();
    let operations = (0..OPERATIONS)
        .map(|index| {
            let key = index % KEYS;
            let flag = flags[key as usize].clone();
            let deadline = start + Duration::from_micros(u64::from(index % 2_000) * 1_000 + 500);
            purgatory.watch(vec![key], deadline, Box::new(move || flag.get()))
        })
        .collect();
    Watched {
        start,
        flags,
        operations,
        purgatory,
    }
}

fn complete_half(watched: &Watched) -> usize {
    let mut completed = 0;
    for key in (0..KEYS).step_by(2) {
        watched.flags[key as usize].set(true);
        completed += watched.purgatory.check_and_complete(&key);
    }
    assert_eq!(completed, OPERATIONS as usize / 2);
    completed
}

fn expire_all(watched: &Watched) -> usize {
    watched
        .purgatory
        .advance_clock(watched.start + Duration::from_secs(3))
}

fn bench_purgatory(c: &mut Criterion) {
    let mut group = c.benchmark_group("purgatory");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Elements(u64::from(OPERATIONS)));
    group.bench_function("lifecycle", |bench| {
        bench.iter(|| {
            let watched = watch_all();
            let completed = complete_half(&watched);
            assert_eq!(completed + expire_all(&watched), OPERATIONS as usize);
            drop(watched.operations);
        })
    });
    group.bench_function("watch", |bench| {
        bench.iter_batched(|| (), |()| watch_all(), BatchSize::PerIteration)
    });
    group.bench_function("complete_half_by_events", |bench| {
        bench.iter_batched(
            watch_all,
            |watched| {
                complete_half(&watched);
                watched
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("expire_all", |bench| {
        bench.iter_batched(
            watch_all,
            |watched| {
                assert_eq!(expire_all(&watched), OPERATIONS as usize);
                watched
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cancel_all", |bench| {
        bench.iter_batched(
            watch_all,
            |mut watched| {
                watched.operations.clear();
                assert!(watched.purgatory.is_empty());
                watched
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_purgatory);
criterion_main!(benches);
