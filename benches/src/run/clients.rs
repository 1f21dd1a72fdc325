//! The librdkafka side of a run: per-thread counters, the producer and consumer contexts and
//! configurations, and the producer and consumer threads.
//!
//! Invariant: a producer stamps each message with its intended send time (ns from t0) as the delivery
//! opaque and as Unix-epoch ns in the first 8 value bytes; in fixed-rate mode that time follows the
//! schedule whether or not the producer is on it (coordinated-omission correction). Each thread only
//! adds to its own [`Stats`]; the collector in `run_workload` sums them.

use super::txn::{Next, TransactionLoop};
use crate::admin;
use crate::broker_process::PhaseEnd;
use crate::cli::{Acks, Compression, Keys, Workload};
use crate::hist::Recorder;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Per-thread counters (own cache lines; the collector sums them).
#[derive(Default)]
pub struct Stats {
    pub(super) sent: AtomicU64,
    pub(super) acked: AtomicU64,
    /// Producers: delivery reports with an error.
    pub(super) delivery_failed: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) last_ns: AtomicU64,
    pub(super) error_kinds: Mutex<BTreeMap<String, u64>>,
    /// Transactional mode: commit durations (its records acknowledged, then commit_transaction).
    pub(super) txn_commit: Recorder,
    /// Transactional mode: begin_transaction -> commit_transaction returned.
    pub(super) txn_open: Recorder,
    pub(super) txn_committed: AtomicU64,
    pub(super) txn_aborted: AtomicU64,
    /// Produce requests sent so far, summed over the brokers (librdkafka statistics `req.Produce`;
    /// only with `--broker-pid`, which turns the statistics on).
    pub(super) produce_requests: AtomicU64,
    /// Statistics callbacks served so far.
    pub(super) statistics_seen: AtomicU64,
    /// `produce_requests` is from a statistics report taken after the producer's flush.
    pub(super) produce_requests_final: AtomicBool,
}

impl Stats {
    pub(super) fn error(&self, what: String) {
        self.errors.fetch_add(1, Relaxed);
        *self.error_kinds.lock().unwrap().entry(what).or_default() += 1;
    }
}

pub(super) fn sum(stats: &[Arc<Stats>], f: impl Fn(&Stats) -> u64) -> u64 {
    stats.iter().map(|s| f(s)).sum()
}

#[derive(Clone, Copy)]
pub(super) struct Clock {
    pub(super) t0: Instant,
    pub(super) wall0_ns: u64,
}

impl Clock {
    pub(super) fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
}

pub(super) struct ProdCtx {
    pub(super) rec: Arc<Recorder>,
    pub(super) stats: Arc<Stats>,
    pub(super) t0: Instant,
    pub(super) value_bytes: u64,
}

impl ClientContext for ProdCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("kbench: producer client error: {error}: {reason}");
    }

    fn stats(&self, statistics: Statistics) {
        let requests: i64 = statistics
            .brokers
            .values()
            .filter_map(|broker| broker.req.get("Produce"))
            .sum();
        self.stats
            .produce_requests
            .store(requests.max(0) as u64, Relaxed);
        self.stats.statistics_seen.fetch_add(1, Relaxed);
    }
}

impl ProducerContext for ProdCtx {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, intended_ns: usize) {
        let now = self.t0.elapsed().as_nanos() as u64;
        match r {
            Ok(_) => {
                self.rec
                    .record_us(now.saturating_sub(intended_ns as u64) / 1000);
                self.stats.acked.fetch_add(1, Relaxed);
                self.stats.bytes.fetch_add(self.value_bytes, Relaxed);
                self.stats.last_ns.fetch_max(now, Relaxed);
            }
            Err((e, _)) => {
                self.stats.delivery_failed.fetch_add(1, Relaxed);
                self.stats.error(format!("delivery: {e}"));
            }
        }
    }
}

pub(super) struct ConsCtx;
impl ClientContext for ConsCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("kbench: consumer client error: {error}: {reason}");
    }
}
impl rdkafka::consumer::ConsumerContext for ConsCtx {}

/// How often producers report librdkafka statistics when kbench counts Produce requests.
pub(super) const STATISTICS_INTERVAL: Duration = Duration::from_millis(100);

/// The configuration of producer `index` (its own transactional.id in transactional mode); with
/// `statistics`, librdkafka reports its counters every [`STATISTICS_INTERVAL`].
pub(super) fn producer_config(
    bootstrap: &str,
    w: &Workload,
    index: usize,
    statistics: bool,
) -> ClientConfig {
    let mut c = admin::base_config(bootstrap, &[]);
    if statistics {
        c.set(
            "statistics.interval.ms",
            STATISTICS_INTERVAL.as_millis().to_string(),
        );
    }
    c.set(
        "acks",
        match w.acks {
            Acks::Zero => "0",
            Acks::One => "1",
            Acks::All => "all",
        },
    )
    .set(
        "compression.type",
        match w.compression {
            Compression::None => "none",
            c => c.as_str(),
        },
    )
    .set("enable.idempotence", "false")
    .set("message.timeout.ms", "60000");
    if let Some(id) = w.transactional_id_of(index) {
        c.set("transactional.id", id)
            .set("enable.idempotence", "true");
    }
    if let Some(l) = w.linger_ms {
        c.set("linger.ms", l.to_string());
    }
    if let Some(b) = w.batch_size {
        c.set("batch.size", b.to_string());
    }
    for kv in &w.properties {
        if let Some((k, v)) = kv.split_once('=') {
            c.set(k.trim(), v.trim());
        }
    }
    c
}

pub(super) fn consumer_config(bootstrap: &str, w: &Workload) -> ClientConfig {
    let mut c = admin::base_config(bootstrap, &[]);
    c.set("group.id", format!("kbench-unused-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    if let Some(level) = w.isolation_level {
        c.set("isolation.level", level.as_str());
    }
    for kv in &w.properties {
        if let Some((k, v)) = kv.split_once('=') {
            c.set(k.trim(), v.trim());
        }
    }
    c
}

/// Longest this producer sleeps without serving delivery callbacks: a bound on how much later than its
/// arrival an acknowledgement can be recorded (librdkafka's poll timeout has millisecond granularity, so
/// sub-millisecond waits sleep in slices of this length).
const CALLBACK_SLICE_NS: u64 = 50_000;

/// Waits until `target_ns` (from t0), serving delivery callbacks meanwhile.
///
/// Short waits sleep rather than spin: a spinning (or `sched_yield`ing) producer kept the client's core
/// 100 % busy at 20k msg/s, and librdkafka's own threads, which send the requests and receive the
/// acknowledgements, queued behind it, which inflated the measured latencies. [`precise_sleeps`] makes
/// these sleeps end within microseconds of their deadline.
fn wait_until(p: &BaseProducer<ProdCtx>, clock: &Clock, target_ns: u64) {
    loop {
        let now = clock.now_ns();
        if now >= target_ns {
            return;
        }
        let rem = target_ns - now;
        if rem > 2_000_000 {
            // Returns as soon as a callback was served, so acknowledgements are recorded on arrival.
            p.poll(Duration::from_nanos(rem - 1_000_000));
        } else {
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_nanos(rem.min(CALLBACK_SLICE_NS)));
        }
    }
}

/// Lowers this thread's timer slack from Linux's default 50 µs to 1 µs, so that the producer's short
/// pacing sleeps wake on time (a 20k msg/s producer sleeps about 50 µs between messages).
pub(super) fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

pub(super) struct ProducerPlan {
    pub(super) index: usize,
    pub(super) limit: Option<u64>,
    pub(super) interval_ns: Option<f64>,
    pub(super) phase_ns: f64,
    pub(super) send_end_ns: Option<u64>,
    /// With `--broker-pid`: counted once this producer has flushed; statistics are on.
    pub(super) produce_end: Option<Arc<PhaseEnd>>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn producer_thread(
    producer: BaseProducer<ProdCtx>,
    plan: ProducerPlan,
    w: Workload,
    topic: String,
    clock_slot: Arc<Mutex<Option<Clock>>>,
    start: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
    precise_sleeps();
    start.wait();
    let clock = clock_slot
        .lock()
        .unwrap()
        .expect("clock set before release");
    // Value: random letters (compressible like kafka-producer-perf-test payloads); bytes 0..8 = time.
    let mut rng = 0x9E3779B97F4A7C15u64 ^ (plan.index as u64 + 1).wrapping_mul(0xD1B54A32D1B54A69);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut value: Vec<u8> = (0..w.message_size)
        .map(|_| b'A' + (next() % 26) as u8)
        .collect();
    let mut key = [0u8; 8];
    let mut i: u64 = 0;
    let mut transaction = TransactionLoop::of(&w);
    loop {
        if plan.limit.is_some_and(|n| i >= n) || stop.load(Relaxed) {
            break;
        }
        let intended = match plan.interval_ns {
            Some(iv) => {
                let t = (plan.phase_ns + i as f64 * iv) as u64;
                if plan.send_end_ns.is_some_and(|e| t >= e) {
                    break;
                }
                wait_until(&producer, &clock, t);
                t
            }
            None => {
                let now = clock.now_ns();
                if plan.send_end_ns.is_some_and(|e| now >= e) {
                    break;
                }
                now
            }
        };
        value[..8].copy_from_slice(&(clock.wall0_ns + intended).to_be_bytes());
        let with_key = match w.keys {
            Keys::None => false,
            Keys::Random => {
                key = (next() % w.key_space).to_be_bytes();
                true
            }
            Keys::Sequential => {
                key = ((i * w.producers as u64 + plan.index as u64) % w.key_space).to_be_bytes();
                true
            }
        };
        if let Some(txn) = transaction.as_mut() {
            if txn.before_send(&producer, &stats) == Next::Stop {
                break;
            }
        }
        let mut rec = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, intended as usize)
            .payload(&value[..]);
        if with_key {
            rec = rec.key(&key[..]);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => {
                    stats.sent.fetch_add(1, Relaxed);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    producer.poll(Duration::from_millis(1));
                    rec = r;
                }
                Err((e, _)) => {
                    stats.error(format!("send: {e}"));
                    break;
                }
            }
        }
        producer.poll(Duration::ZERO);
        i += 1;
        if let Some(txn) = transaction.as_mut() {
            if txn.after_send(&producer, &stats) == Next::Stop {
                break;
            }
        }
    }
    if let Some(txn) = transaction.as_mut() {
        txn.finish(&producer, &stats);
    }
    if let Err(e) = producer.flush(Duration::from_secs(60)) {
        stats.error(format!("flush: {e}"));
    }
    // Sent and neither acknowledged nor failed. (Not `in_flight_count`: librdkafka's out queue also
    // holds callbacks waiting to be served, such as a statistics report.)
    let in_flight = stats
        .sent
        .load(Relaxed)
        .saturating_sub(stats.acked.load(Relaxed) + stats.delivery_failed.load(Relaxed));
    if in_flight > 0 {
        for _ in 0..in_flight {
            stats.error("not acknowledged within 60 s of the end".into());
        }
    }
    if let Some(end) = &plan.produce_end {
        end.count(1);
        final_statistics(&producer, &stats);
    }
}

/// Waits for a statistics report generated after the flush (the second one served from now: the
/// first may have been queued before), so `produce_requests` counts every Produce request.
fn final_statistics(producer: &BaseProducer<ProdCtx>, stats: &Stats) {
    let seen = stats.statistics_seen.load(Relaxed);
    let deadline = Instant::now() + STATISTICS_INTERVAL * 5;
    while Instant::now() < deadline {
        if stats.statistics_seen.load(Relaxed) >= seen + 2 {
            stats.produce_requests_final.store(true, Relaxed);
            return;
        }
        producer.poll(Duration::from_millis(10));
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn consumer_thread(
    consumer: BaseConsumer<ConsCtx>,
    clock_slot: Arc<Mutex<Option<Clock>>>,
    start: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    rec: Arc<Recorder>,
    record_e2e: bool,
    consume_end: Option<Arc<PhaseEnd>>,
) {
    // Tail mode: warm the fetch connections before the start (nothing of this run exists yet).
    if record_e2e {
        let _ = consumer.poll(Duration::from_millis(200));
    }
    start.wait();
    let clock = clock_slot.lock().unwrap().expect("clock set");
    while !stop.load(Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let now = clock.now_ns();
                if let Some(v) = m.payload() {
                    if record_e2e && v.len() >= 8 {
                        let sent = u64::from_be_bytes(v[..8].try_into().unwrap());
                        let now_wall = clock.wall0_ns + now;
                        rec.record_us(now_wall.saturating_sub(sent) / 1000);
                    }
                    stats.bytes.fetch_add(v.len() as u64, Relaxed);
                }
                stats.acked.fetch_add(1, Relaxed);
                stats.last_ns.fetch_max(now, Relaxed);
                if let Some(end) = &consume_end {
                    end.count(1);
                }
            }
            Some(Err(e)) => stats.error(format!("consume: {e}")),
            None => {}
        }
    }
}
