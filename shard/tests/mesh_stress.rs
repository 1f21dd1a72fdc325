//! Liveness of cross-shard messaging under stress: many starts, and many messages through tiny channels
//! (depth 2, so senders block on full channels all the time) on 2–16 shards, with CPU hogs competing for
//! the cores. Every message must arrive, in order per pair, and every reply must reach its asker; a lost
//! wake-up shows up as a shard that never finishes, which the watchdog turns into a failure (the test never
//! hangs).
//!
//! Bounded for CI. `MESH_STRESS_STARTS` (default 300) and `MESH_STRESS_MESSAGES` (per shard count, default
//! 40 000) make the long runs recorded in ROBUSTNESS.md.

use shard::{reply_channel, MeshBuilder, ReplySender, ShardId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

enum Message {
    /// Wants an answer: the receiver replies with `sequence + 1`.
    Ping {
        from: usize,
        sequence: u64,
        reply: ReplySender<u64>,
    },
    /// Fire and forget.
    Note { from: usize, sequence: u64 },
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Threads that keep both cores busy while the shards run.
struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hogs {
    fn start(count: usize) -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..count)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut spin = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        spin = std::hint::black_box(spin.wrapping_add(1));
                    }
                })
            })
            .collect();
        Hogs { stop, threads }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Runs `shards` shards that each send `messages` messages to every peer (alternating pings that wait
/// for their reply and notes), checking order and counts. Fails if they have not all finished by
/// `deadline`.
fn exchange(shards: usize, depth: usize, messages: u64, deadline: Duration) {
    let mesh = MeshBuilder::<Message>::with_depth(shards, depth).expect("mesh");
    let received = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let body = {
        let (received, answered) = (received.clone(), answered.clone());
        move |id: ShardId| {
            let mesh = mesh.clone();
            let (received, answered) = (received.clone(), answered.clone());
            async move {
                let (mesh, receivers) = mesh.join(id);
                let mut listeners = Vec::new();
                for (peer, receiver) in receivers {
                    let received = received.clone();
                    listeners.push(glommio::spawn_local(async move {
                        let mut expected = 0u64;
                        while let Some(message) = receiver.recv().await {
                            let (from, sequence) = match message {
                                Message::Ping {
                                    from,
                                    sequence,
                                    reply,
                                } => {
                                    let _ = reply.send(sequence + 1);
                                    (from, sequence)
                                }
                                Message::Note { from, sequence } => (from, sequence),
                            };
                            assert_eq!(from, peer.0);
                            assert_eq!(sequence, expected, "order from {peer}");
                            expected += 1;
                            received.fetch_add(1, Ordering::Relaxed);
                            if expected == messages {
                                break;
                            }
                        }
                        expected
                    }));
                }
                let mesh = std::rc::Rc::new(mesh);
                let mut senders = Vec::new();
                for peer in (0..shards).filter(|&peer| peer != id.0) {
                    let (mesh, answered) = (mesh.clone(), answered.clone());
                    senders.push(glommio::spawn_local(async move {
                        for sequence in 0..messages {
                            if sequence % 2 == 0 {
                                let (reply, answer) = reply_channel();
                                let ping = Message::Ping {
                                    from: id.0,
                                    sequence,
                                    reply,
                                };
                                assert!(mesh.send(ShardId(peer), ping).await.is_ok());
                                assert_eq!(answer.await.expect("answered"), sequence + 1);
                                answered.fetch_add(1, Ordering::Relaxed);
                            } else {
                                let note = Message::Note {
                                    from: id.0,
                                    sequence,
                                };
                                assert!(mesh.send(ShardId(peer), note).await.is_ok());
                            }
                        }
                    }));
                }
                for sender in senders {
                    sender.await;
                }
                for listener in listeners {
                    assert_eq!(listener.await, messages);
                }
            }
        }
    };
    let running = shard::start_shards(shards, body).expect("start");
    let started = Instant::now();
    while running.finished() < running.count() {
        assert!(
            started.elapsed() < deadline,
            "{shards} shards: only {} of {} finished within {deadline:?} ({} of {} messages received): \
             a lost wake-up",
            running.finished(),
            running.count(),
            received.load(Ordering::Relaxed),
            shards as u64 * (shards as u64 - 1) * messages
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    running.join().expect("no shard panicked");
    let pairs = shards as u64 * (shards as u64 - 1);
    assert_eq!(received.load(Ordering::Relaxed), pairs * messages);
    assert_eq!(
        answered.load(Ordering::Relaxed),
        pairs * messages.div_ceil(2)
    );
}

#[test]
fn many_messages_through_tiny_channels_with_cpu_hogs() {
    shard::raise_memlock_limit().expect("memlock");
    let total = env_number("MESH_STRESS_MESSAGES", 40_000);
    let _hogs = Hogs::start(2);
    for shards in [2, 4, 8, 16] {
        // About the same total per configuration: fewer per pair as the pairs multiply.
        let pairs = shards as u64 * (shards as u64 - 1);
        let messages = (total / pairs).max(20);
        let started = Instant::now();
        exchange(shards, 2, messages, Duration::from_secs(120));
        println!(
            "{shards} shards: {} messages in {:?}",
            shards as u64 * (shards as u64 - 1) * messages,
            started.elapsed()
        );
    }
}

#[test]
fn many_starts_with_cpu_hogs() {
    shard::raise_memlock_limit().expect("memlock");
    let starts = env_number("MESH_STRESS_STARTS", 300);
    let _hogs = Hogs::start(2);
    let started = Instant::now();
    for start in 0..starts {
        let shards = 2 + (start % 3) as usize;
        exchange(shards, 1, 4, Duration::from_secs(30));
    }
    println!("{starts} starts in {:?}", started.elapsed());
}

#[test]
fn a_shard_that_shuts_down_cancels_what_it_did_not_answer() {
    shard::raise_memlock_limit().expect("memlock");
    let mesh = MeshBuilder::<Message>::with_depth(2, 4).expect("mesh");
    let outcome = Arc::new(AtomicU64::new(0));
    let body = {
        let outcome = outcome.clone();
        move |id: ShardId| {
            let (mesh, outcome) = (mesh.clone(), outcome.clone());
            async move {
                let (mesh, _receivers) = mesh.join(id);
                if id.0 == 1 {
                    // Never reads its messages; shuts down after a moment.
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    mesh.shut_down();
                    return;
                }
                let (reply, answer) = reply_channel::<u64>();
                let ping = Message::Ping {
                    from: 0,
                    sequence: 0,
                    reply,
                };
                assert!(mesh.send(ShardId(1), ping).await.is_ok());
                assert!(answer.await.is_err(), "dropped unanswered");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                let note = Message::Note {
                    from: 0,
                    sequence: 1,
                };
                assert!(matches!(
                    mesh.send(ShardId(1), note).await,
                    Err(shard::SendError::Closed(_))
                ));
                assert!(matches!(
                    mesh.send(
                        ShardId(7),
                        Message::Note {
                            from: 0,
                            sequence: 2
                        }
                    )
                    .await,
                    Err(shard::SendError::NoSuchShard(..))
                ));
                outcome.store(1, Ordering::SeqCst);
            }
        }
    };
    let running = shard::start_shards(2, body).expect("start");
    let started = Instant::now();
    while running.finished() < running.count() {
        assert!(started.elapsed() < Duration::from_secs(20), "hung");
        std::thread::sleep(Duration::from_millis(5));
    }
    running.join().expect("no panic");
    assert_eq!(outcome.load(Ordering::SeqCst), 1);
}
