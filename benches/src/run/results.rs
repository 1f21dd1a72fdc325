//! What a run reports: throughput, errors, the per-second timeline and the whole `RunResult`
//! (serialized as result.json), and the timestamps used to name and date runs.
//!
//! Invariant: every field of `RunResult` except the two histograms (kept for the plot and the
//! comparison) is in result.json; times are UTC.

use crate::broker_process::BrokerCpu;
use crate::cli::Workload;
use crate::hist::Summary;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Serialize, Clone, Debug, Default)]
pub struct Throughput {
    pub msgs: u64,
    pub bytes: u64,
    pub secs: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
}

impl Throughput {
    pub(super) fn new(msgs: u64, bytes: u64, secs: f64) -> Self {
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

/// Transactional mode (`--transactional-id`): how the producers' transactions ended (whole run), and
/// their latencies (commit: its records acknowledged, then commit_transaction; begin_transaction ->
/// committed; measured window).
#[derive(Serialize, Clone, Debug, Default)]
pub struct Transactions {
    pub committed: u64,
    pub aborted: u64,
    pub commit_latency: Summary,
    pub transaction_latency: Summary,
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
    /// Present in transactional mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Transactions>,
    pub errors: Errors,
    /// The broker process's CPU and memory (`--broker-pid`; see `broker_process`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerCpu>,
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
