use super::*;
use crate::mesh::MeshBuilder;
use crate::runtime::ShardId;
use crate::task;
use std::cell::RefCell;
use std::rc::Rc;

const MS: Duration = Duration::from_millis(1);

/// (label, elapsed ms when it happened), in the order things happened.
type Trace = Rc<RefCell<Vec<(&'static str, u128)>>>;

fn record(trace: &Trace, label: &'static str, simulation_start: Instant) {
    let elapsed = task::now().duration_since(simulation_start).as_millis();
    trace.borrow_mut().push((label, elapsed));
}

#[test]
fn spawned_tasks_run_in_spawn_order_once_the_simulation_runs() {
    let mut simulation = Simulation::new();
    let trace: Trace = Rc::default();
    let start = simulation.now();
    for label in ["first", "second", "third"] {
        let trace = trace.clone();
        task::spawn(async move { record(&trace, label, start) });
    }
    assert!(
        trace.borrow().is_empty(),
        "nothing runs before the simulation does"
    );
    assert_eq!(simulation.task_count(), 3);
    assert_eq!(simulation.run_until_stalled(), 3);
    assert_eq!(*trace.borrow(), [("first", 0), ("second", 0), ("third", 0)]);
    assert_eq!(simulation.task_count(), 0);
}

#[test]
fn sleeps_fire_in_deadline_order_at_their_deadlines() {
    let mut simulation = Simulation::new();
    let trace: Trace = Rc::default();
    let start = simulation.now();
    for (label, delay) in [
        ("thirty", 30),
        ("ten", 10),
        ("twenty", 20),
        ("ten-again", 10),
    ] {
        let trace = trace.clone();
        task::spawn(async move {
            task::sleep(delay * MS).await;
            record(&trace, label, start);
        });
    }
    simulation.run_until_stalled();
    assert_eq!(simulation.pending_timer_count(), 4);
    assert_eq!(simulation.next_timer(), Some(start + 10 * MS));
    simulation.advance(100 * MS);
    assert_eq!(
        *trace.borrow(),
        [
            ("ten", 10),
            ("ten-again", 10),
            ("twenty", 20),
            ("thirty", 30)
        ]
    );
    assert_eq!(simulation.elapsed(), 100 * MS);
    assert_eq!(simulation.pending_timer_count(), 0);
}

#[test]
fn nothing_fires_before_its_deadline() {
    let mut simulation = Simulation::new();
    let handle = simulation.spawn(async { task::sleep(10 * MS).await });
    simulation.advance(9 * MS);
    assert!(!handle.is_finished());
    simulation.advance(Duration::from_micros(999));
    assert!(!handle.is_finished());
    simulation.advance(Duration::from_micros(1));
    assert!(handle.is_finished());
    assert_eq!(simulation.elapsed(), 10 * MS);
}

#[test]
fn timers_set_during_an_advance_fire_within_it_at_their_own_deadlines() {
    let mut simulation = Simulation::new();
    let trace: Trace = Rc::default();
    let start = simulation.now();
    let inner = trace.clone();
    task::spawn(async move {
        task::sleep(100 * MS).await;
        record(&inner, "first", start);
        task::sleep(100 * MS).await;
        record(&inner, "second", start);
        task::sleep_until(start + 150 * MS).await; // passed: returns at once
        record(&inner, "passed deadline", start);
        task::sleep(100 * MS).await;
        record(&inner, "third", start);
    });
    simulation.advance(250 * MS);
    assert_eq!(
        *trace.borrow(),
        [("first", 100), ("second", 200), ("passed deadline", 200)]
    );
    simulation.advance(50 * MS);
    assert_eq!(trace.borrow().last(), Some(&("third", 300)));
}

#[test]
fn a_timeout_that_loses_returns_none_at_its_deadline_and_drops_the_future() {
    let mut simulation = Simulation::new();
    let dropped = Rc::new(Cell::new(false));
    let guard = DropFlag(dropped.clone());
    let handle = simulation.spawn(async move {
        task::timeout(50 * MS, async move {
            let _guard = guard;
            task::sleep(100 * MS).await;
        })
        .await
    });
    simulation.advance(49 * MS);
    assert!(!handle.is_finished());
    simulation.advance(MS);
    assert_eq!(handle.take_output(), Some(None));
    assert!(dropped.get());
    assert_eq!(
        simulation.pending_timer_count(),
        0,
        "the lost future's sleep is unregistered"
    );
}

#[test]
fn a_timeout_that_wins_returns_the_output_and_unregisters_its_timer() {
    let mut simulation = Simulation::new();
    let start = simulation.now();
    let handle = simulation.spawn(async move {
        let output = task::timeout(100 * MS, async {
            task::sleep(30 * MS).await;
            7
        })
        .await;
        (output, task::now() - start)
    });
    simulation.advance(30 * MS);
    assert_eq!(handle.take_output(), Some((Some(7), 30 * MS)));
    assert_eq!(simulation.pending_timer_count(), 0);
}

#[test]
fn a_timeout_on_a_future_that_never_completes() {
    let mut simulation = Simulation::new();
    let output =
        simulation.block_on_advancing(task::timeout(500 * MS, std::future::pending::<()>()));
    assert_eq!(output, None);
    assert_eq!(simulation.elapsed(), 500 * MS);
}

#[test]
fn block_on_advancing_runs_a_long_poll_in_no_real_time() {
    let real_start = Instant::now();
    let mut simulation = Simulation::new();
    let start = simulation.now();
    let waited = simulation.block_on_advancing(async {
        task::sleep(500 * MS).await;
        task::now() - start
    });
    assert_eq!(waited, 500 * MS);
    assert!(real_start.elapsed() < Duration::from_secs(1));
}

#[test]
fn block_on_borrows_and_awaits_spawned_tasks() {
    let mut simulation = Simulation::new();
    let local = [1, 2, 3];
    let handle = simulation.spawn(async { 40 });
    let sum = simulation.block_on(async { handle.await + local.iter().sum::<i32>() - 4 });
    assert_eq!(sum, 42);
}

#[test]
#[should_panic(expected = "simulation stalled")]
fn block_on_reports_a_future_waiting_on_a_clock_nobody_moves() {
    let mut simulation = Simulation::new();
    simulation.set_stall_limit(MS);
    simulation.block_on(task::sleep(10 * MS));
}

#[test]
fn now_and_wall_clock_inside_and_outside_a_simulation() {
    let before = task::wall_clock_ms();
    let mut simulation = Simulation::with_wall_clock_ms(1_000);
    assert_eq!(task::now(), simulation.now());
    assert_eq!(task::wall_clock_ms(), 1_000);
    simulation.advance(Duration::from_millis(1_500));
    assert_eq!(task::now(), simulation.now());
    assert_eq!(task::wall_clock_ms(), 2_500);
    assert_eq!(simulation.wall_clock_ms(), 2_500);
    // Another thread still sees the real clocks.
    let simulated_now = simulation.now();
    let (other_now, other_wall) = std::thread::spawn(|| (task::now(), task::wall_clock_ms()))
        .join()
        .unwrap();
    assert!(
        other_now < simulated_now,
        "the real clock has not moved 1.5 s"
    );
    assert!(other_wall >= before);
    assert!(is_active());
    drop(simulation);
    assert!(!is_active());
    assert!(task::wall_clock_ms() >= before);
    assert!(task::now() >= other_now);
}

#[test]
fn a_nested_simulation_hides_the_outer_one_until_dropped() {
    let outer = Simulation::with_wall_clock_ms(10);
    {
        let inner = Simulation::with_wall_clock_ms(20);
        assert_eq!(task::wall_clock_ms(), 20);
        assert_eq!(task::now(), inner.now());
    }
    assert_eq!(task::wall_clock_ms(), 10);
    assert_eq!(task::now(), outer.now());
}

#[test]
fn dropping_the_simulation_drops_unfinished_tasks_with_it_still_installed() {
    let mut simulation = Simulation::new();
    let finished = Rc::new(Cell::new(false));
    let guard = DropFlag(finished.clone());
    task::spawn(async move {
        let _guard = guard;
    });
    let dropped = Rc::new(Cell::new(false));
    let seen_wall_clock = Rc::new(Cell::new(0));
    let guard = DropFlag(dropped.clone());
    let seen = seen_wall_clock.clone();
    task::spawn(async move {
        let _guard = guard;
        let _report = OnDrop(move || seen.set(task::wall_clock_ms()));
        task::sleep(Duration::from_secs(3600)).await;
    });
    simulation.advance(MS);
    assert!(finished.get(), "the first task ran to completion");
    let never_polled = Rc::new(Cell::new(false));
    let guard = DropFlag(never_polled.clone());
    task::spawn(async move {
        let _guard = guard;
    });
    assert_eq!(simulation.task_count(), 2);
    drop(simulation);
    assert!(dropped.get());
    assert!(never_polled.get());
    assert_eq!(seen_wall_clock.get(), DEFAULT_WALL_CLOCK_START_MS + 1);
}

#[test]
fn a_run_is_deterministic() {
    fn run_once() -> Vec<(&'static str, u128)> {
        let mut simulation = Simulation::new();
        let trace: Trace = Rc::default();
        let start = simulation.now();
        for (label, delay) in [("a", 5), ("b", 3), ("c", 5), ("d", 0)] {
            let trace = trace.clone();
            task::spawn(async move {
                for _ in 0..3 {
                    task::sleep(delay * MS).await;
                    record(&trace, label, start);
                    let trace = trace.clone();
                    task::spawn(async move { record(&trace, "child", start) });
                }
            });
        }
        simulation.advance(20 * MS);
        let result = trace.borrow().clone();
        result
    }
    let first = run_once();
    assert_eq!(first.len(), 24);
    assert_eq!(first, run_once());
}

#[test]
fn reply_channel_inside_a_simulation_and_from_another_thread() {
    let mut simulation = Simulation::new();
    let (sender, receiver) = crate::reply_channel::<u32>();
    task::spawn(async move {
        task::sleep(5 * MS).await;
        sender.send(5).unwrap();
    });
    assert_eq!(simulation.block_on_advancing(receiver), Ok(5));

    let (sender, receiver) = crate::reply_channel::<u32>();
    let answerer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        sender.send(6).unwrap();
    });
    assert_eq!(simulation.block_on(receiver), Ok(6));
    answerer.join().unwrap();

    let (sender, receiver) = crate::reply_channel::<u32>();
    drop(sender);
    assert_eq!(simulation.block_on(receiver), Err(crate::Canceled));
}

#[test]
fn a_one_shard_mesh_joins_and_drops_inside_a_simulation() {
    let mut simulation = Simulation::new();
    let (mesh, receivers) = MeshBuilder::<u32>::new(1).unwrap().join(ShardId(0));
    assert!(receivers.is_empty());
    assert_eq!(mesh.shard_count(), 1);
    simulation.run_until_stalled();
    assert_eq!(
        simulation.task_count(),
        0,
        "no doorbell task in a simulation"
    );
    assert!(crate::doorbell::current().is_none());
    let refused = simulation.block_on(mesh.send(ShardId(0), 1));
    assert!(matches!(refused, Err(crate::SendError::ToSelf(1))));
    mesh.shut_down();
    drop(mesh);
}

#[test]
fn two_shards_of_a_mesh_talk_within_one_simulation() {
    let mut simulation = Simulation::new();
    let builder = MeshBuilder::<(u32, crate::ReplySender<u32>)>::with_depth(2, 1).unwrap();
    let (mesh_zero, _) = builder.clone().join(ShardId(0));
    let (_mesh_one, mut receivers) = builder.join(ShardId(1));
    let (_, from_zero) = receivers.pop().unwrap();
    task::spawn(async move {
        while let Some((value, reply)) = from_zero.recv().await {
            task::sleep(MS).await;
            let _ = reply.send(value * 2);
        }
    });
    let answers = simulation.block_on_advancing(async {
        let mut answers = Vec::new();
        for value in 1..=3 {
            let (reply, answer) = crate::reply_channel();
            mesh_zero
                .send(ShardId(1), (value, reply))
                .await
                .map_err(|_| "send failed")
                .unwrap();
            answers.push(answer.await.unwrap());
        }
        answers
    });
    assert_eq!(answers, [2, 4, 6]);
    assert_eq!(simulation.elapsed(), 3 * MS);
}

/// Measures the seam's cost on the production path (no simulation installed). Run with
/// `cargo test --release -p shard -- --ignored --nocapture seam_cost`.
#[test]
#[ignore]
fn seam_cost() {
    const CALLS: u32 = 20_000_000;
    for _ in 0..2 {
        let started = Instant::now();
        let mut last = Instant::now();
        for _ in 0..CALLS {
            last = std::hint::black_box(Instant::now());
        }
        let direct = started.elapsed();
        let started = Instant::now();
        for _ in 0..CALLS {
            last = std::hint::black_box(task::now());
        }
        let seam = started.elapsed();
        let started = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(is_active());
        }
        let check = started.elapsed();
        let started = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(std::time::SystemTime::now());
        }
        let system_time = started.elapsed();
        let started = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(task::wall_clock_ms());
        }
        let wall = started.elapsed();
        let per_call = |total: Duration| total.as_secs_f64() * 1e9 / f64::from(CALLS);
        println!(
            "Instant::now {:.2} ns, task::now {:.2} ns, thread-local check alone {:.2} ns, \
             SystemTime::now {:.2} ns, task::wall_clock_ms {:.2} ns ({last:?})",
            per_call(direct),
            per_call(seam),
            per_call(check),
            per_call(system_time),
            per_call(wall)
        );
    }
}

struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
