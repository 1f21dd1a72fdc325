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
//!
//! Files: this one runs the workload (setup, release, collector, drain, result); `run/clients.rs` holds
//! the librdkafka contexts, client configurations and the producer/consumer threads; `run/results.rs`
//! the result types (result.json) and timestamps. With `--broker-pid`, `crate::broker_process` samples
//! the broker's CPU at the release, at the end of production (taken by the last producer to flush), just
//! before catch-up consumers are created, when the consumers have read every acknowledged message (taken by
//! the consumer that reads the last one) and at the end.

mod clients;
mod results;
mod txn;

pub use clients::Stats;
use clients::{
    consumer_config, consumer_thread, producer_config, producer_thread, sum, Clock, ConsCtx,
    ProdCtx, ProducerPlan,
};
pub use results::{rfc3339, stamp, unix_ms, Errors, RunResult, Throughput, Tick, Transactions};

use crate::admin;
use crate::broker_process::{BrokerMeter, Volumes};
use crate::cli::{ConsumeMode, Workload};
use crate::hist::{new_hist, Recorder, Summary};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::io::BufWriter;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type LogWriter<'a> = hdrhistogram::serialization::interval_log::IntervalLogWriter<
    'a,
    'a,
    BufWriter<std::fs::File>,
    V2DeflateSerializer,
>;

/// Runs one workload; writes `produce.hlog` / `e2e.hlog` into `out_dir` as it goes. With
/// `broker_pid`, samples that process's CPU time at the phase boundaries (`broker_process`).
pub fn run_workload(
    bootstrap: &str,
    w: &Workload,
    out_dir: &Path,
    broker_pid: Option<u32>,
) -> Result<RunResult, String> {
    w.validate()?;
    let mut meter = broker_pid
        .map(|pid| BrokerMeter::new(pid, w.producers))
        .transpose()?;
    let produce_end = meter.as_ref().map(|m| m.produce_end.clone());
    let consume_end = meter.as_ref().map(|m| m.consume_end.clone());
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
        &w.topic_configs,
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
            let end = consume_end.clone();
            hs.push(
                std::thread::Builder::new()
                    .name(format!("kbench-cons-{c}"))
                    .spawn(move || consumer_thread(consumer, cs, st, sc, stats, rc, tail, end))
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
        let p: BaseProducer<ProdCtx> = producer_config(bootstrap, w, k, meter.is_some())
            .create_with_context(ctx)
            .map_err(|e| format!("producer: {e}"))?;
        // Connect and learn the leaders before t0.
        p.client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| format!("metadata: {e}"))?;
        if let Some(id) = w.transactional_id_of(k) {
            p.init_transactions(Duration::from_secs(30))
                .map_err(|e| format!("init_transactions ({id}): {e}"))?;
        }
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
            produce_end: produce_end.clone(),
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
    if let Some(m) = meter.as_mut() {
        m.release();
    }
    let start_time = SystemTime::now();

    // Collector loop (this thread), one tick per second from begin.
    let mut produce_total = new_hist();
    let mut e2e_total = new_hist();
    let mut interval_p = new_hist();
    let mut interval_e = new_hist();
    // Transactional mode: commit_transaction calls, and whole transactions (begin -> committed).
    let mut txn_commit_total = new_hist();
    let mut txn_open_total = new_hist();
    let mut interval_txn_commit = new_hist();
    let mut interval_txn_open = new_hist();
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
            if let Some(m) = meter.as_mut() {
                m.production_over(|| sum(&prod_stats, |s| s.acked.load(Relaxed)));
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
        for s in &prod_stats {
            s.txn_commit.drain_into(&mut interval_txn_commit);
            s.txn_open.drain_into(&mut interval_txn_open);
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
            let _ = txn_commit_total.add(&interval_txn_commit);
            let _ = txn_open_total.add(&interval_txn_open);
        }
        interval_p.reset();
        interval_e.reset();
        interval_txn_commit.reset();
        interval_txn_open.reset();
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
            if let Some(m) = meter.as_mut() {
                m.producers_done(sum(&prod_stats, |s| s.acked.load(Relaxed)));
            }
            pb.set_prefix(if tail {
                "draining".to_string()
            } else {
                "catchup: consuming".to_string()
            });
            if !tail && n_cons > 0 {
                // Before the consumers exist: librdkafka fetches from the assign() on.
                if let Some(m) = meter.as_mut() {
                    m.consumers_start();
                }
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
    for s in &prod_stats {
        s.txn_commit.drain_into(&mut txn_commit_total);
        s.txn_open.drain_into(&mut txn_open_total);
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

    let broker = meter.and_then(|m| {
        let all_final = prod_stats
            .iter()
            .all(|s| s.produce_requests_final.load(Relaxed));
        let volumes = Volumes {
            produced_bytes: pbytes,
            produced_messages: acked,
            produce_requests: all_final
                .then(|| sum(&prod_stats, |s| s.produce_requests.load(Relaxed))),
            consumed_bytes: cbytes,
            consumers: n_cons > 0,
            produce_phase_alone: !tail || n_cons == 0,
        };
        m.finish(&volumes)
            .inspect_err(|e| eprintln!("kbench: no broker CPU figures: {e}"))
            .ok()
    });

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
        transactions: w.transactional_id.as_ref().map(|_| Transactions {
            committed: sum(&prod_stats, |s| s.txn_committed.load(Relaxed)),
            aborted: sum(&prod_stats, |s| s.txn_aborted.load(Relaxed)),
            commit_latency: Summary::of(&txn_commit_total),
            transaction_latency: Summary::of(&txn_open_total),
        }),
        errors,
        broker,
        timeline,
        produce_hist: produce_total,
        e2e_hist: e2e_total,
    })
}
