//! What a run makes of the broker's CPU samples: the phase ends that producer and consumer threads
//! complete ([`PhaseEnd`]), the samples of one run ([`BrokerMeter`]) and the figures derived from them
//! ([`account`] -> [`BrokerCpu`]); see the parent module's doc for when each sample is taken.

use super::{BrokerProcess, CpuTicks, Memory, ProcError};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};

/// The end of a phase that threads complete together: the CPU sample is taken by the thread whose
/// count reaches the target (producers: one count each after their flush; consumers: one per
/// message). The target may be set after counting began; whichever of `count` and `set_target`
/// sees both the target and a count reaching it takes the sample.
#[derive(Debug)]
pub struct PhaseEnd {
    process: Arc<BrokerProcess>,
    target: AtomicU64,
    counted: AtomicU64,
    mark: OnceLock<CpuTicks>,
}

impl PhaseEnd {
    fn new(process: Arc<BrokerProcess>, target: Option<u64>) -> PhaseEnd {
        PhaseEnd {
            process,
            target: AtomicU64::new(target.unwrap_or(u64::MAX)),
            counted: AtomicU64::new(0),
            mark: OnceLock::new(),
        }
    }

    pub fn count(&self, n: u64) {
        let before = self.counted.fetch_add(n, SeqCst);
        let target = self.target.load(SeqCst);
        if before < target && before + n >= target {
            self.take();
        }
    }

    pub fn set_target(&self, target: u64) {
        self.target.store(target, SeqCst);
        if self.counted.load(SeqCst) >= target {
            self.take();
        }
    }

    fn take(&self) {
        if self.mark.get().is_none() {
            if let Ok(cpu) = self.process.cpu() {
                let _ = self.mark.set(cpu);
            }
        }
    }

    pub fn mark(&self) -> Option<CpuTicks> {
        self.mark.get().copied()
    }

    /// The count has reached the target.
    pub fn reached(&self) -> bool {
        self.counted.load(SeqCst) >= self.target.load(SeqCst)
    }
}

/// What a run produced and consumed, to divide the CPU by.
#[derive(Debug, Clone, Copy, Default)]
pub struct Volumes {
    pub produced_bytes: u64,
    pub produced_messages: u64,
    /// Produce requests the producers sent (None when librdkafka's statistics did not tell).
    pub produce_requests: Option<u64>,
    pub consumed_bytes: u64,
    /// Consumer threads ran in this run.
    pub consumers: bool,
    /// No consumer ran while the producers did (catch-up mode, or no consumers).
    pub produce_phase_alone: bool,
}

/// The CPU samples of one run (see the module doc for when each is taken).
#[derive(Debug, Clone, Copy, Default)]
pub struct Samples {
    pub start: CpuTicks,
    pub produce_end: Option<CpuTicks>,
    pub consume_start: Option<CpuTicks>,
    pub consume_end: Option<CpuTicks>,
    pub end: CpuTicks,
}

/// The broker's cost in one run (result.json `broker`).
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct BrokerCpu {
    pub pid: u32,
    pub comm: String,
    pub clock_ticks_per_second: u64,
    /// user + system CPU seconds from the producers' release to the last phase end.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per MB produced plus MB consumed.
    pub cpu_ms_per_mb: Option<f64>,
    /// Produce phase (only when no consumer ran during it).
    pub produce_phase_cpu_seconds: Option<f64>,
    pub cpu_ms_per_produced_mb: Option<f64>,
    pub produce_requests: Option<u64>,
    pub cpu_us_per_produce_request: Option<f64>,
    pub cpu_us_per_produced_message: Option<f64>,
    /// Catch-up consume phase.
    pub consume_phase_cpu_seconds: Option<f64>,
    pub cpu_ms_per_consumed_mb: Option<f64>,
    /// At the end of the run, kB.
    pub rss_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
}

fn per(numerator: f64, denominator: f64, scale: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator * scale / denominator)
}

fn later(a: CpuTicks, b: CpuTicks) -> CpuTicks {
    if b.total() > a.total() {
        b
    } else {
        a
    }
}

/// The figures of one run from its samples (pure: unit-tested below).
pub fn account(
    process: &BrokerProcess,
    samples: &Samples,
    volumes: &Volumes,
    memory: Option<Memory>,
) -> BrokerCpu {
    let seconds = |from: CpuTicks, to: CpuTicks| process.seconds(to.total() - from.total());
    let run_end = match (volumes.consumers, samples.produce_end, samples.consume_end) {
        (true, Some(p), Some(c)) => later(p, c),
        (true, None, Some(c)) => c,
        (true, _, None) => samples.end,
        (false, p, _) => p.unwrap_or(samples.end),
    };
    let cpu_seconds = seconds(samples.start, run_end);
    let produced_mb = volumes.produced_bytes as f64 / 1e6;
    let consumed_mb = volumes.consumed_bytes as f64 / 1e6;
    let produce = samples
        .produce_end
        .filter(|_| volumes.produce_phase_alone)
        .map(|end| seconds(samples.start, end));
    let consume = match (samples.consume_start, samples.consume_end) {
        (Some(start), Some(end)) => Some(seconds(start, end)),
        _ => None,
    };
    BrokerCpu {
        pid: process.pid,
        comm: process.comm.clone(),
        clock_ticks_per_second: process.ticks_per_second,
        cpu_seconds,
        cpu_ms_per_mb: per(cpu_seconds, produced_mb + consumed_mb, 1e3),
        produce_phase_cpu_seconds: produce,
        cpu_ms_per_produced_mb: produce.and_then(|s| per(s, produced_mb, 1e3)),
        produce_requests: volumes.produce_requests,
        cpu_us_per_produce_request: produce
            .zip(volumes.produce_requests)
            .and_then(|(s, n)| per(s, n as f64, 1e6)),
        cpu_us_per_produced_message: produce
            .and_then(|s| per(s, volumes.produced_messages as f64, 1e6)),
        consume_phase_cpu_seconds: consume,
        cpu_ms_per_consumed_mb: consume.and_then(|s| per(s, consumed_mb, 1e3)),
        rss_kib: memory.map(|m| m.rss_kib),
        peak_rss_kib: memory.map(|m| m.peak_rss_kib),
    }
}

/// The samples of one run in progress: `run_workload` calls `release`, `producers_done`,
/// `consumers_start` and `finish`; producer and consumer threads count into the two phase ends.
pub struct BrokerMeter {
    process: Arc<BrokerProcess>,
    start: Option<CpuTicks>,
    consume_start: Option<CpuTicks>,
    pub produce_end: Arc<PhaseEnd>,
    pub consume_end: Arc<PhaseEnd>,
    /// The consume phase's target is set (the first of `production_over` and `producers_done`).
    consume_target_set: bool,
}

impl BrokerMeter {
    pub fn new(pid: u32, producers: usize) -> Result<BrokerMeter, String> {
        let process = Arc::new(BrokerProcess::open(pid).map_err(|e| format!("--broker-pid: {e}"))?);
        Ok(BrokerMeter {
            start: None,
            consume_start: None,
            produce_end: Arc::new(PhaseEnd::new(process.clone(), Some(producers as u64))),
            consume_end: Arc::new(PhaseEnd::new(process.clone(), None)),
            consume_target_set: false,
            process,
        })
    }

    /// The producers are released now.
    pub fn release(&mut self) {
        self.start = self.process.cpu().ok();
    }

    /// Called every 50 ms while the collector waits for its next tick: once every producer has
    /// flushed (before their threads end), the consume phase learns its target, `acknowledged()`
    /// messages, so tailing consumers that read the last one before the tick are sampled within 50 ms
    /// of it rather than at the tick.
    pub fn production_over(&mut self, acknowledged: impl FnOnce() -> u64) {
        if !self.consume_target_set && self.produce_end.reached() {
            self.producers_done(acknowledged());
        }
    }

    /// The producer threads have ended and `acknowledged` messages are there to consume.
    pub fn producers_done(&mut self, acknowledged: u64) {
        if !self.consume_target_set {
            self.consume_end.set_target(acknowledged);
            self.consume_target_set = true;
        }
    }

    /// Catch-up consumers are about to be created (librdkafka fetches from their assign() on).
    pub fn consumers_start(&mut self) {
        self.consume_start = self.process.cpu().ok();
    }

    /// The run is over (all threads joined). Fails when the process could not be sampled at the
    /// start or now (it exited).
    pub fn finish(self, volumes: &Volumes) -> Result<BrokerCpu, String> {
        let failed = |e: ProcError| format!("broker process {}: {e}", self.process.pid);
        let samples = Samples {
            start: self.start.ok_or_else(|| {
                failed(ProcError::Unreadable {
                    path: self.process.path("stat"),
                    reason: "not readable when the producers were released".into(),
                })
            })?,
            produce_end: self.produce_end.mark(),
            consume_start: self.consume_start,
            consume_end: self.consume_end.mark(),
            end: self.process.cpu().map_err(failed)?,
        };
        let memory = self.process.memory().ok();
        Ok(account(&self.process, &samples, volumes, memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(total: u64) -> CpuTicks {
        CpuTicks {
            user: total,
            system: 0,
        }
    }

    fn fake() -> BrokerProcess {
        BrokerProcess {
            pid: 9,
            comm: "broker".into(),
            ticks_per_second: 100,
        }
    }

    #[test]
    fn catchup_phases() {
        let samples = Samples {
            start: ticks(1000),
            produce_end: Some(ticks(1200)), // 2 s
            consume_start: Some(ticks(1210)),
            consume_end: Some(ticks(1260)), // 0.5 s
            end: ticks(1300),
        };
        let volumes = Volumes {
            produced_bytes: 1_000_000_000,
            produced_messages: 1_000_000,
            produce_requests: Some(20_000),
            consumed_bytes: 1_000_000_000,
            consumers: true,
            produce_phase_alone: true,
        };
        let cpu = account(&fake(), &samples, &volumes, None);
        assert_eq!(cpu.cpu_seconds, 2.6); // start -> consume end
        assert_eq!(cpu.cpu_ms_per_mb, Some(1.3));
        assert_eq!(cpu.produce_phase_cpu_seconds, Some(2.0));
        assert_eq!(cpu.cpu_ms_per_produced_mb, Some(2.0));
        assert_eq!(cpu.cpu_us_per_produce_request, Some(100.0));
        assert_eq!(cpu.cpu_us_per_produced_message, Some(2.0));
        assert_eq!(cpu.consume_phase_cpu_seconds, Some(0.5));
        assert_eq!(cpu.cpu_ms_per_consumed_mb, Some(0.5));
        assert_eq!(cpu.peak_rss_kib, None);
    }

    #[test]
    fn tail_mode_has_only_the_combined_figure() {
        let samples = Samples {
            start: ticks(0),
            produce_end: Some(ticks(300)),
            consume_start: None,
            consume_end: Some(ticks(310)),
            end: ticks(400),
        };
        let volumes = Volumes {
            produced_bytes: 500_000_000,
            produced_messages: 500_000,
            produce_requests: Some(1000),
            consumed_bytes: 500_000_000,
            consumers: true,
            produce_phase_alone: false,
        };
        let cpu = account(&fake(), &samples, &volumes, None);
        assert_eq!(cpu.cpu_seconds, 3.1);
        assert_eq!(cpu.cpu_ms_per_mb, Some(3.1));
        assert_eq!(cpu.produce_phase_cpu_seconds, None);
        assert_eq!(cpu.cpu_us_per_produce_request, None);
        assert_eq!(cpu.consume_phase_cpu_seconds, None);
        assert_eq!(cpu.produce_requests, Some(1000));
        // Consumers that never caught up: the run's end is the last sample.
        let cpu = account(
            &fake(),
            &Samples {
                consume_end: None,
                ..samples
            },
            &volumes,
            None,
        );
        assert_eq!(cpu.cpu_seconds, 4.0);
    }

    #[test]
    fn produce_only_and_empty_runs() {
        let samples = Samples {
            start: ticks(0),
            produce_end: Some(ticks(50)),
            end: ticks(80),
            ..Samples::default()
        };
        let volumes = Volumes {
            produced_bytes: 1_000_000,
            produced_messages: 1000,
            produce_requests: None,
            consumed_bytes: 0,
            consumers: false,
            produce_phase_alone: true,
        };
        let cpu = account(&fake(), &samples, &volumes, None);
        assert_eq!(cpu.cpu_seconds, 0.5);
        assert_eq!(cpu.cpu_ms_per_mb, Some(500.0));
        assert_eq!(cpu.cpu_ms_per_produced_mb, Some(500.0));
        assert_eq!(cpu.cpu_us_per_produce_request, None);
        assert_eq!(cpu.cpu_us_per_produced_message, Some(500.0));
        let empty = account(&fake(), &samples, &Volumes::default(), None);
        assert_eq!(empty.cpu_ms_per_mb, None);
        assert_eq!(empty.cpu_us_per_produced_message, None);
    }

    #[test]
    fn phase_end_samples_once_when_the_count_reaches_the_target() {
        let me = Arc::new(BrokerProcess::open(std::process::id()).unwrap());
        let producers = PhaseEnd::new(me.clone(), Some(3));
        producers.count(1);
        producers.count(1);
        assert_eq!(producers.mark(), None);
        producers.count(1);
        let first = producers.mark().expect("sampled at the third count");
        producers.count(1);
        assert_eq!(producers.mark(), Some(first));

        // Target set late: the count already reached it.
        let consumers = PhaseEnd::new(me.clone(), None);
        consumers.count(5);
        assert_eq!(consumers.mark(), None);
        consumers.set_target(5);
        assert!(consumers.mark().is_some());
        // Target set early: reached by a later count.
        let consumers = PhaseEnd::new(me.clone(), None);
        consumers.set_target(2);
        consumers.count(1);
        assert_eq!(consumers.mark(), None);
        consumers.count(1);
        assert!(consumers.mark().is_some());
        // Nothing to consume.
        let nothing = PhaseEnd::new(me, None);
        nothing.set_target(0);
        assert!(nothing.mark().is_some());
    }

    #[test]
    fn the_consume_target_is_set_once_every_producer_has_flushed() {
        let mut meter = BrokerMeter::new(std::process::id(), 2).unwrap();
        meter.release();
        // Tailing consumers read 3 messages while production goes on.
        meter.consume_end.count(3);
        meter.production_over(|| panic!("asked before the producers flushed"));
        meter.produce_end.count(1);
        meter.production_over(|| panic!("asked before the second producer flushed"));
        meter.produce_end.count(1);
        assert!(meter.produce_end.mark().is_some());
        meter.production_over(|| 4);
        assert_eq!(meter.consume_end.mark(), None, "one message still to read");
        // Later calls do not move the target.
        meter.production_over(|| unreachable!());
        meter.producers_done(100);
        meter.consume_end.count(1);
        assert!(meter.consume_end.mark().is_some());
        let cpu = meter
            .finish(&Volumes {
                produced_bytes: 4000,
                produced_messages: 4,
                consumed_bytes: 4000,
                consumers: true,
                ..Volumes::default()
            })
            .unwrap();
        assert_eq!(cpu.pid, std::process::id());
        assert!(cpu.peak_rss_kib.is_some());
        assert_eq!(cpu.produce_phase_cpu_seconds, None); // tail mode
    }
}
