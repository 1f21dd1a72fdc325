//! Human and machine output: summary table, result.json, compare table and compare.json.

use crate::broker_process::BrokerCpu;
use crate::hist::{Summary, PCT_NAMES};
use crate::run::RunResult;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize, Clone, Debug)]
pub struct Machine {
    pub hostname: String,
    pub cores: usize,
    pub cpu_model: String,
    pub memory_kib: u64,
    pub kernel: String,
    pub kbench_version: String,
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn machine() -> Machine {
    let cpuinfo = read_trim("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let memory_kib = read_trim("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let mut hostname = read_trim("/proc/sys/kernel/hostname");
    if hostname.is_empty() {
        hostname = read_trim("/etc/hostname");
    }
    Machine {
        hostname,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        memory_kib,
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        kbench_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

#[derive(Serialize)]
struct ResultFile<'a> {
    kbench: &'static str,
    machine: Machine,
    #[serde(flatten)]
    result: &'a RunResult,
}

pub fn write_result_json(dir: &Path, r: &RunResult) -> Result<(), String> {
    let f = ResultFile {
        kbench: "result/v1",
        machine: machine(),
        result: r,
    };
    let s = serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("result.json"), s + "\n").map_err(|e| format!("result.json: {e}"))
}

fn lat_row(name: &str, s: &Summary) -> String {
    let v = s.values();
    format!(
        "{name:<12} {:>10} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
        s.count, v[0], v[1], v[2], v[3], v[4], v[5]
    )
}

pub fn print_summary(r: &RunResult) {
    let w = &r.workload;
    println!();
    println!(
        "kbench {} topic={} partitions={} size={}B producers={} consumers={} acks={} compression={} rate={} mode={:?}{}",
        r.bootstrap,
        r.topic,
        r.partitions,
        w.message_size,
        w.producers,
        w.consumers,
        w.acks.as_str(),
        w.compression.as_str(),
        w.rate.map(|r| format!("{r}/s")).unwrap_or_else(|| "max".into()),
        w.consume_mode,
        w.label.as_ref().map(|l| format!(" label={l:?}")).unwrap_or_default(),
    );
    println!("latency basis: {}", r.latency_basis);
    println!();
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "latency ms", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    println!("{}", lat_row("produce-ack", &r.produce_ack_latency));
    if r.e2e_latency.count > 0 {
        println!("{}", lat_row("end-to-end", &r.e2e_latency));
    }
    if let Some(t) = &r.transactions {
        println!("{}", lat_row("txn-commit", &t.commit_latency));
        println!("{}", lat_row("txn-total", &t.transaction_latency));
        println!(
            "transactions: {} committed, {} aborted (txn-commit: its records acknowledged + commit_transaction; \
             txn-total: begin_transaction -> commit returned)",
            t.committed, t.aborted
        );
    }
    println!();
    println!(
        "produce  {:>12.0} msg/s {:>9.2} MB/s  ({} msgs acked in {:.2} s measured; {} sent, {} acked in total)",
        r.produce.msgs_per_sec, r.produce.mb_per_sec, r.produce.msgs, r.produce.secs, r.messages_sent, r.messages_acked
    );
    if r.consume.msgs > 0 || w.consumers > 0 {
        println!(
            "consume  {:>12.0} msg/s {:>9.2} MB/s  ({} msgs in {:.2} s measured; {} consumed in total)",
            r.consume.msgs_per_sec, r.consume.mb_per_sec, r.consume.msgs, r.consume.secs, r.messages_consumed
        );
    }
    if let Some(b) = &r.broker {
        print_broker(b);
    }
    if r.errors.any() {
        println!();
        println!("!!!!!!!! ERRORS !!!!!!!!");
        println!(
            "!!! {} delivery/send errors, {} consume errors, {} acknowledged messages never consumed",
            r.errors.delivery_or_send_errors, r.errors.consume_errors, r.errors.missing_on_consume
        );
        for (k, v) in &r.errors.kinds {
            println!("!!!   {v:>8} x {k}");
        }
        println!("!!! the numbers above are NOT a clean run");
    } else {
        println!("errors: none");
    }
}

fn or_dash(value: Option<f64>, digits: usize) -> String {
    value
        .map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The broker's CPU and memory lines of the summary (`--broker-pid`).
fn print_broker(b: &BrokerCpu) {
    println!(
        "broker   pid {} ({}): {:.2} s CPU = {} ms per MB produced+consumed; RSS {} MiB, peak {} MiB",
        b.pid,
        b.comm,
        b.cpu_seconds,
        or_dash(b.cpu_ms_per_mb, 2),
        or_dash(b.rss_kib.map(|k| k as f64 / 1024.0), 0),
        or_dash(b.peak_rss_kib.map(|k| k as f64 / 1024.0), 0),
    );
    if let Some(s) = b.produce_phase_cpu_seconds {
        println!(
            "  produce phase {s:.2} s CPU: {} ms per produced MB, {} µs per Produce request ({} requests), {} µs per message",
            or_dash(b.cpu_ms_per_produced_mb, 2),
            or_dash(b.cpu_us_per_produce_request, 1),
            b.produce_requests.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            or_dash(b.cpu_us_per_produced_message, 2),
        );
    }
    if let Some(s) = b.consume_phase_cpu_seconds {
        println!(
            "  consume phase {s:.2} s CPU: {} ms per consumed MB",
            or_dash(b.cpu_ms_per_consumed_mb, 2),
        );
    }
}

/// One of a broker's CPU or memory figures, for the compare table.
type BrokerFigure = fn(&BrokerCpu) -> Option<f64>;

#[derive(Serialize)]
pub struct CompareRow {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    pub ratio_b_over_a: Option<f64>,
}

pub fn compare_rows(a: &RunResult, b: &RunResult) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    let mut push = |m: String, x: f64, y: f64| {
        rows.push(CompareRow {
            metric: m,
            a: x,
            b: y,
            ratio_b_over_a: if x != 0.0 { Some(y / x) } else { None },
        })
    };
    push(
        "produce msg/s".into(),
        a.produce.msgs_per_sec,
        b.produce.msgs_per_sec,
    );
    push(
        "produce MB/s".into(),
        a.produce.mb_per_sec,
        b.produce.mb_per_sec,
    );
    push(
        "consume msg/s".into(),
        a.consume.msgs_per_sec,
        b.consume.msgs_per_sec,
    );
    push(
        "consume MB/s".into(),
        a.consume.mb_per_sec,
        b.consume.mb_per_sec,
    );
    for (name, sa, sb) in [
        (
            "produce-ack",
            &a.produce_ack_latency,
            &b.produce_ack_latency,
        ),
        ("end-to-end", &a.e2e_latency, &b.e2e_latency),
        (
            "txn-commit",
            &a.transactions.clone().unwrap_or_default().commit_latency,
            &b.transactions.clone().unwrap_or_default().commit_latency,
        ),
    ] {
        if sa.count == 0 && sb.count == 0 {
            continue;
        }
        for (i, p) in PCT_NAMES.iter().enumerate() {
            push(format!("{name} {p} ms"), sa.values()[i], sb.values()[i]);
        }
    }
    if let (Some(x), Some(y)) = (&a.broker, &b.broker) {
        push("broker CPU s".into(), x.cpu_seconds, y.cpu_seconds);
        let figures: [(&str, BrokerFigure); 6] = [
            ("broker CPU ms/MB (all)", |c| c.cpu_ms_per_mb),
            ("broker CPU ms/produced MB", |c| c.cpu_ms_per_produced_mb),
            ("broker CPU ms/consumed MB", |c| c.cpu_ms_per_consumed_mb),
            ("broker CPU µs/Produce req", |c| {
                c.cpu_us_per_produce_request
            }),
            ("broker CPU µs/produced msg", |c| {
                c.cpu_us_per_produced_message
            }),
            ("broker peak RSS MiB", |c| {
                c.peak_rss_kib.map(|k| k as f64 / 1024.0)
            }),
        ];
        for (name, figure) in figures {
            if let (Some(u), Some(v)) = (figure(x), figure(y)) {
                push(name.into(), u, v);
            }
        }
    }
    push(
        "errors".into(),
        (a.errors.delivery_or_send_errors + a.errors.consume_errors + a.errors.missing_on_consume)
            as f64,
        (b.errors.delivery_or_send_errors + b.errors.consume_errors + b.errors.missing_on_consume)
            as f64,
    );
    rows
}

pub fn print_compare(a: &RunResult, b: &RunResult, rows: &[CompareRow]) {
    println!();
    println!("compare  A = {}   B = {}", a.bootstrap, b.bootstrap);
    println!("{:<26} {:>14} {:>14} {:>10}", "metric", "A", "B", "B/A");
    for r in rows {
        let ratio = r
            .ratio_b_over_a
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "-".into());
        let fmt = |v: f64| {
            if r.metric.ends_with("ms") || r.metric.starts_with("broker CPU") {
                format!("{v:.3}")
            } else {
                format!("{v:.1}")
            }
        };
        println!(
            "{:<26} {:>14} {:>14} {:>10}",
            r.metric,
            fmt(r.a),
            fmt(r.b),
            ratio
        );
    }
    println!("(throughput: B/A > 1 means B is faster; latency: B/A < 1 means B is faster)");
    if a.broker.is_some() && b.broker.is_some() {
        println!("(broker CPU per MB or request: B/A < 1 means B spends less)");
    }
    if a.errors.any() || b.errors.any() {
        println!("!!! at least one side had ERRORS; see its result.json");
    }
}

#[derive(Serialize)]
struct CompareFile<'a> {
    kbench: &'static str,
    machine: Machine,
    a: &'a RunResult,
    b: &'a RunResult,
    rows: &'a [CompareRow],
}

pub fn write_compare_json(
    dir: &Path,
    a: &RunResult,
    b: &RunResult,
    rows: &[CompareRow],
) -> Result<(), String> {
    let f = CompareFile {
        kbench: "compare/v1",
        machine: machine(),
        a,
        b,
        rows,
    };
    let s = serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("compare.json"), s + "\n").map_err(|e| format!("compare.json: {e}"))
}
