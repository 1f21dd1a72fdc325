//! One workload against one endpoint.
//!
//! Timeline: topic setup -> consumers assigned at the current high watermarks (tail mode) ->
//! producers connected -> t0 (all producers released together) -> warmup -> measured window ->
//! producers stop and flush -> tail consumers drain (or, in catchup mode, consumers start only now
//! and read everything this run produced).
//!
//! Latency: every message carries its *intended* send time (ns offset from t0) as the delivery
//! opaque, and the same instant as Unix-epoch ns in the first 8 value bytes. In fixed-rate mode the
//! intended time of message i of a producer is t0 + phase + i/rate_per_producer, whether or not
//! the producer is on schedule (coordinated-omission correction); as fast as possible, it is the
//! time of the first send attempt. A collector thread swaps per-thread histograms out every second
//! into the interval logs and (after warmup) into the totals.

use crate::admin;
use crate::cli::{Acks, Compression, ConsumeMode, Keys, Workload};
use crate::hist::{new_hist, Recorder, Summary};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Per-thread counters (own cache lines; the collector sums them).
#[derive(Default)]
pub struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    last_ns: AtomicU64,
    error_kinds: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Relaxed);
        *self.error_kinds.lock().unwrap().entry(what).or_default() += 1;
    }
}

fn sum(stats: &[Arc<Stats>], f: impl Fn(&Stats) -> u64) -> u64 {
    stats.iter().map(|s| f(s)).sum()
}

#[derive(Clone, Copy)]
struct Clock {
    t0: Instant,
    wall0_ns: u64,
}

impl Clock {
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
}

struct ProdCtx {
    rec: Arc<Recorder>,
    stats: Arc<Stats>,
    t0: Instant,
    value_bytes: u64,
}

impl ClientContext for ProdCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("kbench: producer client error: {error}: {reason}");
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
            Err((e, _)) => self.stats.error(format!("delivery: {e}")),
        }
    }
}

struct ConsCtx;
impl ClientContext for ConsCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("kbench: consumer client error: {error}: {reason}");
    }
}
impl rdkafka::consumer::ConsumerContext for ConsCtx {}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Throughput {
    pub msgs: u64,
    pub bytes: u64,
    pub secs: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
}

impl Throughput {
    fn new(msgs: u64, bytes: u64, secs: f64) -> Self {
        let secs = secs.max(1e-9);
        Throughput {
            msgs,
            bytes,
            secs,
            msgs_per_sec: msgs as f64 / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
        }
    }
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Errors {
    pub delivery_or_send_errors: u64,
    pub consume_errors: u64,
    /// Acknowledged messages the consumers never saw (tail/catchup drain timed out).
    pub missing_on_consume: u64,
    pub kinds: BTreeMap<String, u64>,
}

impl Errors {
    pub fn any(&self) -> bool {
        self.delivery_or_send_errors + self.consume_errors + self.missing_on_consume > 0
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct Tick {
    pub t_s: u64,
    pub acked_per_s: u64,
    pub consumed_per_s: u64,
    pub warmup: bool,
}

#[derive(Serialize, Clone, Debug)]
pub struct RunResult {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: usize,
    pub workload: Workload,
    pub start_time: String,
    pub end_time: String,
    pub start_unix_ms: u64,
    pub end_unix_ms: u64,
    /// How produce latency is measured in this run.
    pub latency_basis: String,
    pub messages_sent: u64,
    pub messages_acked: u64,
    pub messages_consumed: u64,
    pub produce: Throughput,
    pub consume: Throughput,
    pub produce_ack_latency: Summary,
    pub e2e_latency: Summary,
    pub errors: Errors,
    pub timeline: Vec<Tick>,
    #[serde(skip)]
    pub produce_hist: Histogram<u64>,
    #[serde(skip)]
    pub e2e_hist: Histogram<u64>,
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 UTC, second precision (no chrono needed).
pub fn rfc3339(t: SystemTime) -> String {
    let s = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (s.div_euclid(86400), s.rem_euclid(86400));
    // civil_from_days (H. Hinnant)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Compact timestamp for names: 20240131-235959.
pub fn stamp(t: SystemTime) -> String {
    rfc3339(t)
        .replace(['-', ':'], "")
        .replace('T', "-")
        .trim_end_matches('Z')
        .to_string()
}

fn producer_config(bootstrap: &str, w: &Workload) -> ClientConfig {
    let mut c = admin::base_config(bootstrap, &[]);
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

fn consumer_config(bootstrap: &str, w: &Workload) -> ClientConfig {
    let mut c = admin::base_config(bootstrap, &[]);
    c.set("group.id", format!("kbench-unused-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
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
        } else if rem > 150_000 {
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_nanos((rem - 100_000).min(CALLBACK_SLICE_NS)));
        } else {
            // Serve callbacks, then yield rather than spin: precise when a core is free, and it
            // gives way to the broker and the consumers when they share the machine.
            p.poll(Duration::ZERO);
            std::thread::yield_now();
        }
    }
}

struct ProducerPlan {
    index: usize,
    limit: Option<u64>,
    interval_ns: Option<f64>,
    phase_ns: f64,
    send_end_ns: Option<u64>,
}

#[allow(clippy::too_many_arguments)]
fn producer_thread(
    producer: BaseProducer<ProdCtx>,
    plan: ProducerPlan,
    w: Workload,
    topic: String,
    clock_slot: Arc<Mutex<Option<Clock>>>,
    start: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
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
    }
    if let Err(e) = producer.flush(Duration::from_secs(60)) {
        stats.error(format!("flush: {e}"));
    }
    let in_flight = producer.in_flight_count() as u64;
    if in_flight > 0 {
        for _ in 0..in_flight {
            stats.error("not acknowledged within 60 s of the end".into());
        }
    }
}

fn consumer_thread(
    consumer: BaseConsumer<ConsCtx>,
    clock_slot: Arc<Mutex<Option<Clock>>>,
    start: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    rec: Arc<Recorder>,
    record_e2e: bool,
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
            }
            Some(Err(e)) => stats.error(format!("consume: {e}")),
            None => {}
        }
    }
}

type LogWriter<'a> = hdrhistogram::serialization::interval_log::IntervalLogWriter<
    'a,
    'a,
    BufWriter<std::fs::File>,
    V2DeflateSerializer,
>;

/// Runs one workload; writes `produce.hlog` / `e2e.hlog` into `out_dir` as it goes.
pub fn run_workload(bootstrap: &str, w: &Workload, out_dir: &Path) -> Result<RunResult, String> {
    w.validate()?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let topic = w
        .topic
        .clone()
        .unwrap_or_else(|| format!("kbench-{}-{}", stamp(SystemTime::now()), std::process::id()));
    let partitions = admin::ensure_topic(
        bootstrap,
        &w.properties,
        &topic,
        w.partitions,
        w.replication_factor,
        w.recreate,
    )?;
    let tail = w.consume_mode == ConsumeMode::Tail;
    let n_cons = w.consumers.min(partitions);
    if w.consumers > partitions {
        eprintln!(
            "kbench: {} consumers for {partitions} partitions; using {n_cons}",
            w.consumers
        );
    }

    // Where this run's messages start, per partition.
    let probe: BaseConsumer = consumer_config(bootstrap, w)
        .create()
        .map_err(|e| e.to_string())?;
    let hw = admin::high_watermarks(&probe, &topic, partitions)?;
    drop(probe);

    let clock_slot: Arc<Mutex<Option<Clock>>> = Arc::new(Mutex::new(None));
    let stop_prod = Arc::new(AtomicBool::new(false));
    let stop_cons = Arc::new(AtomicBool::new(false));
    let prod_stats: Vec<Arc<Stats>> = (0..w.producers).map(|_| Arc::default()).collect();
    let cons_stats: Vec<Arc<Stats>> = (0..n_cons).map(|_| Arc::default()).collect();
    let prod_recs: Vec<Arc<Recorder>> = (0..w.producers).map(|_| Arc::default()).collect();
    let cons_recs: Vec<Arc<Recorder>> = (0..n_cons).map(|_| Arc::default()).collect();

    // Consumers (tail mode: started with the producers; catchup: after production).
    let make_consumers = |start: Arc<Barrier>| -> Result<Vec<std::thread::JoinHandle<()>>, String> {
        let mut hs = Vec::new();
        for c in 0..n_cons {
            let consumer: BaseConsumer<ConsCtx> = consumer_config(bootstrap, w)
                .create_with_context(ConsCtx)
                .map_err(|e| format!("consumer: {e}"))?;
            let mut tpl = TopicPartitionList::new();
            for p in (c..partitions).step_by(n_cons) {
                tpl.add_partition_offset(&topic, p as i32, Offset::Offset(hw[p]))
                    .map_err(|e| e.to_string())?;
            }
            consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
            let (cs, st, sc, rc) = (
                clock_slot.clone(),
                start.clone(),
                stop_cons.clone(),
                cons_recs[c].clone(),
            );
            let stats = cons_stats[c].clone();
            hs.push(
                std::thread::Builder::new()
                    .name(format!("kbench-cons-{c}"))
                    .spawn(move || consumer_thread(consumer, cs, st, sc, stats, rc, tail))
                    .unwrap(),
            );
        }
        Ok(hs)
    };

    let t_create = Instant::now();
    let mut producers = Vec::new();
    for k in 0..w.producers {
        let ctx = ProdCtx {
            rec: prod_recs[k].clone(),
            stats: prod_stats[k].clone(),
            t0: t_create, // all opaques/times are ns offsets from t_create
            value_bytes: w.message_size as u64,
        };
        let p: BaseProducer<ProdCtx> = producer_config(bootstrap, w)
            .create_with_context(ctx)
            .map_err(|e| format!("producer: {e}"))?;
        // Connect and learn the leaders before t0.
        p.client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| format!("metadata: {e}"))?;
        producers.push(p);
    }
    let mut cons_handles = Vec::new();
    let n_start = w.producers + if tail { n_cons } else { 0 } + 1;
    let start = Arc::new(Barrier::new(n_start));
    if tail {
        cons_handles = make_consumers(start.clone())?;
        std::thread::sleep(Duration::from_millis(300));
    }

    let wall_create = SystemTime::now() - t_create.elapsed();
    let clock = Clock {
        t0: t_create,
        wall0_ns: wall_create.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    let begin_ns = clock.now_ns() + 20_000_000; // release in 20 ms
    let warmup_end_ns = begin_ns + w.warmup * 1_000_000_000;
    let send_end_ns = w.duration_secs().map(|d| warmup_end_ns + (d * 1e9) as u64);
    *clock_slot.lock().unwrap() = Some(clock);

    let per_prod_rate = w.rate.map(|r| r / w.producers as f64);
    let mut prod_handles = Vec::new();
    for (k, p) in producers.into_iter().enumerate() {
        let interval_ns = per_prod_rate.map(|r| 1e9 / r);
        let plan = ProducerPlan {
            index: k,
            limit: w
                .messages
                .map(|m| m / w.producers as u64 + u64::from((k as u64) < m % w.producers as u64)),
            interval_ns,
            // Stagger producers within one interval so they do not send in lockstep.
            phase_ns: begin_ns as f64 + interval_ns.unwrap_or(0.0) * k as f64 / w.producers as f64,
            send_end_ns,
        };
        let (wc, tp, cs, st, sp, ps) = (
            w.clone(),
            topic.clone(),
            clock_slot.clone(),
            start.clone(),
            stop_prod.clone(),
            prod_stats[k].clone(),
        );
        prod_handles.push(
            std::thread::Builder::new()
                .name(format!("kbench-prod-{k}"))
                .spawn(move || producer_thread(p, plan, wc, tp, cs, st, sp, ps))
                .unwrap(),
        );
    }

    // Progress bar.
    let pb = if w.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
    };
    let total_secs = w.duration_secs().map(|d| d + w.warmup as f64);
    match (total_secs, w.messages) {
        (Some(s), _) => {
            pb.set_length(s.ceil() as u64);
            pb.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len}s (eta {eta}) {msg}",
                )
                .unwrap(),
            );
        }
        (None, Some(m)) => {
            pb.set_length(m);
            pb.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} msgs (eta {eta}) {msg}",
                )
                .unwrap(),
            );
        }
        _ => {}
    }
    pb.set_prefix(format!("{bootstrap} {topic}"));

    // Interval logs.
    let mk = |name: &str| -> Result<BufWriter<std::fs::File>, String> {
        std::fs::File::create(out_dir.join(name))
            .map(BufWriter::new)
            .map_err(|e| format!("{name}: {e}"))
    };
    let (mut pf, mut ef) = (mk("produce.hlog")?, mk("e2e.hlog")?);
    let (mut ps_ser, mut es_ser) = (V2DeflateSerializer::new(), V2DeflateSerializer::new());
    let begin_wall = UNIX_EPOCH + Duration::from_nanos(clock.wall0_ns + begin_ns);
    let builder = |comment: &str| {
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(comment)
            .with_start_time(begin_wall)
            .with_base_time(begin_wall)
            .with_max_value_divisor(1000.0);
        builder
    };
    let mut pw: LogWriter = builder(
        "kbench produce-acknowledgement latency, microseconds; tag=warmup marks warmup intervals",
    )
    .begin_log_with(&mut pf, &mut ps_ser)
    .map_err(|e| e.to_string())?;
    let mut ew: LogWriter =
        builder("kbench end-to-end latency (intended send -> consumed), microseconds")
            .begin_log_with(&mut ef, &mut es_ser)
            .map_err(|e| e.to_string())?;

    // Release everyone at begin_ns.
    while clock.now_ns() < begin_ns {
        std::thread::sleep(Duration::from_micros(200));
    }
    start.wait();
    let start_time = SystemTime::now();

    // Collector loop (this thread), one tick per second from begin.
    let mut produce_total = new_hist();
    let mut e2e_total = new_hist();
    let mut interval_p = new_hist();
    let mut interval_e = new_hist();
    let mut timeline = Vec::new();
    let mut last_tick_ns = begin_ns;
    let (mut last_acked, mut last_cons) = (0u64, 0u64);
    let mut at_warmup: Option<(u64, u64, u64, u64)> = if w.warmup == 0 {
        Some((0, 0, 0, 0))
    } else {
        None
    };
    let mut tick_no = 0u64;
    let mut prod_done_ns: Option<u64> = None;
    let mut catchup_begin_ns: Option<u64> = None;
    let mut catchup_start: Option<Arc<Barrier>> = None;
    let mut last_progress = (0u64, clock.now_ns());
    let mut missing = 0u64;
    let mut write_err: Option<String> = None;
    loop {
        tick_no += 1;
        let tick_ns = begin_ns + tick_no * 1_000_000_000;
        // Sleep until the tick, checking for the end of production more often.
        loop {
            let now = clock.now_ns();
            if now >= tick_ns {
                break;
            }
            std::thread::sleep(Duration::from_nanos((tick_ns - now).min(50_000_000)));
        }
        let now = clock.now_ns();
        for r in &prod_recs {
            r.drain_into(&mut interval_p);
        }
        for r in &cons_recs {
            r.drain_into(&mut interval_e);
        }
        let warm = last_tick_ns < warmup_end_ns;
        let tag = if warm {
            Some(Tag::new("warmup").unwrap())
        } else {
            None
        };
        let st = Duration::from_nanos(last_tick_ns - begin_ns);
        let dur = Duration::from_nanos(now - last_tick_ns);
        if let Err(e) = pw.write_histogram(&interval_p, st, dur, tag) {
            write_err.get_or_insert(format!("produce.hlog: {e:?}"));
        }
        if let Err(e) = ew.write_histogram(&interval_e, st, dur, tag) {
            write_err.get_or_insert(format!("e2e.hlog: {e:?}"));
        }
        if !warm {
            let _ = produce_total.add(&interval_p);
            let _ = e2e_total.add(&interval_e);
        }
        interval_p.reset();
        interval_e.reset();
        last_tick_ns = now;

        let acked = sum(&prod_stats, |s| s.acked.load(Relaxed));
        let sent = sum(&prod_stats, |s| s.sent.load(Relaxed));
        let cons = sum(&cons_stats, |s| s.acked.load(Relaxed));
        if at_warmup.is_none() && now >= warmup_end_ns {
            at_warmup = Some((
                acked,
                sum(&prod_stats, |s| s.bytes.load(Relaxed)),
                cons,
                sum(&cons_stats, |s| s.bytes.load(Relaxed)),
            ));
        }
        timeline.push(Tick {
            t_s: tick_no,
            acked_per_s: acked - last_acked,
            consumed_per_s: cons - last_cons,
            warmup: warm,
        });
        let errs = sum(&prod_stats, |s| s.errors.load(Relaxed))
            + sum(&cons_stats, |s| s.errors.load(Relaxed));
        pb.set_message(format!(
            "produce {} msg/s, consume {} msg/s{}",
            acked - last_acked,
            cons - last_cons,
            if errs > 0 {
                format!(", ERRORS {errs}")
            } else {
                String::new()
            }
        ));
        if prod_done_ns.is_none() {
            match (total_secs, w.messages) {
                (Some(s), _) => pb.set_position(tick_no.min(s.ceil() as u64)),
                _ => pb.set_position(sent),
            }
        }
        last_acked = acked;
        last_cons = cons;

        if prod_done_ns.is_none() && prod_handles.iter().all(|h| h.is_finished()) {
            for h in prod_handles.drain(..) {
                let _ = h.join();
            }
            prod_done_ns = Some(now);
            pb.set_prefix(if tail {
                "draining".to_string()
            } else {
                "catchup: consuming".to_string()
            });
            if !tail && n_cons > 0 {
                let b = Arc::new(Barrier::new(n_cons + 1));
                cons_handles = make_consumers(b.clone())?;
                b.wait();
                catchup_begin_ns = Some(clock.now_ns());
                catchup_start = Some(b);
            }
            last_progress = (cons, clock.now_ns());
            continue;
        }
        if let Some(_done) = prod_done_ns {
            let total_acked = sum(&prod_stats, |s| s.acked.load(Relaxed));
            if n_cons == 0 || cons >= total_acked {
                break;
            }
            if cons > last_progress.0 {
                last_progress = (cons, now);
            } else if now.saturating_sub(last_progress.1) > 10_000_000_000 {
                missing = total_acked - cons;
                eprintln!("kbench: consumers made no progress for 10 s; {missing} acknowledged messages not consumed");
                break;
            }
        }
    }
    drop(catchup_start);
    stop_cons.store(true, Relaxed);
    stop_prod.store(true, Relaxed);
    for h in cons_handles {
        let _ = h.join();
    }
    // Anything recorded after the last tick goes into the totals too.
    for r in &prod_recs {
        r.drain_into(&mut interval_p);
    }
    for r in &cons_recs {
        r.drain_into(&mut interval_e);
    }
    let now = clock.now_ns();
    let st = Duration::from_nanos(last_tick_ns - begin_ns);
    let dur = Duration::from_nanos(now - last_tick_ns);
    let _ = pw.write_histogram(&interval_p, st, dur, None);
    let _ = ew.write_histogram(&interval_e, st, dur, None);
    let _ = produce_total.add(&interval_p);
    let _ = e2e_total.add(&interval_e);
    drop(pw);
    drop(ew);
    use std::io::Write;
    let _ = pf.flush();
    let _ = ef.flush();
    pb.finish_and_clear();
    if let Some(e) = write_err {
        eprintln!("kbench: writing interval log failed: {e}");
    }
    let end_time = SystemTime::now();

    // Throughput over the measured window.
    let (wa, wb, wc, wcb) = at_warmup.unwrap_or((0, 0, 0, 0));
    let acked = sum(&prod_stats, |s| s.acked.load(Relaxed));
    let pbytes = sum(&prod_stats, |s| s.bytes.load(Relaxed));
    let last_ack = prod_stats
        .iter()
        .map(|s| s.last_ns.load(Relaxed))
        .max()
        .unwrap_or(0);
    let produce = Throughput::new(
        acked - wa,
        pbytes - wb,
        last_ack.saturating_sub(warmup_end_ns) as f64 / 1e9,
    );
    let consumed = sum(&cons_stats, |s| s.acked.load(Relaxed));
    let cbytes = sum(&cons_stats, |s| s.bytes.load(Relaxed));
    let last_cons_ns = cons_stats
        .iter()
        .map(|s| s.last_ns.load(Relaxed))
        .max()
        .unwrap_or(0);
    let consume = match catchup_begin_ns {
        Some(b) => Throughput::new(
            consumed,
            cbytes,
            last_cons_ns.saturating_sub(b) as f64 / 1e9,
        ),
        None if tail && n_cons > 0 => Throughput::new(
            consumed - wc,
            cbytes - wcb,
            last_cons_ns.saturating_sub(warmup_end_ns) as f64 / 1e9,
        ),
        None => Throughput::default(),
    };

    let mut errors = Errors {
        missing_on_consume: missing,
        ..Default::default()
    };
    for s in &prod_stats {
        errors.delivery_or_send_errors += s.errors.load(Relaxed);
        for (k, v) in s.error_kinds.lock().unwrap().iter() {
            *errors.kinds.entry(k.clone()).or_default() += v;
        }
    }
    for s in &cons_stats {
        errors.consume_errors += s.errors.load(Relaxed);
        for (k, v) in s.error_kinds.lock().unwrap().iter() {
            *errors.kinds.entry(k.clone()).or_default() += v;
        }
    }

    Ok(RunResult {
        bootstrap: bootstrap.to_string(),
        topic,
        partitions,
        workload: w.clone(),
        start_time: rfc3339(start_time),
        end_time: rfc3339(end_time),
        start_unix_ms: unix_ms(start_time),
        end_unix_ms: unix_ms(end_time),
        latency_basis: match w.rate {
            Some(r) => format!(
                "fixed rate {r} msg/s: produce latency from each message's intended send time (coordinated-omission corrected)"
            ),
            None => "as fast as possible: produce latency from the actual (first attempted) send time; \
                     not coordinated-omission corrected"
                .to_string(),
        },
        messages_sent: sum(&prod_stats, |s| s.sent.load(Relaxed)),
        messages_acked: acked,
        messages_consumed: consumed,
        produce,
        consume,
        produce_ack_latency: Summary::of(&produce_total),
        e2e_latency: Summary::of(&e2e_total),
        errors,
        timeline,
        produce_hist: produce_total,
        e2e_hist: e2e_total,
    })
}
