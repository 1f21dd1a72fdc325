//! kbench: throughput and tail-latency benchmark for Kafka-compatible brokers.
//!
//! Layout: this file only parses the command line and wires the library together:
//! `run` -> benches::run::run_workload + report (table, result.json) + plot (latency.svg);
//! `compare` -> the same workload against --a then --b, then a ratio table + compare.json;
//! `physical` -> machine facts. See benches/src/lib.rs for the modules.

use benches::cli::{Cli, Command, Workload};
use benches::plot::percentile_plot;
use benches::report;
use benches::run::{run_workload, stamp, RunResult};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

fn one_run(
    bootstrap: &str,
    w: &Workload,
    dir: &Path,
    broker_pid: Option<u32>,
) -> Result<RunResult, String> {
    let r = run_workload(bootstrap, w, dir, broker_pid)?;
    report::print_summary(&r);
    report::write_result_json(dir, &r)?;
    let title = format!(
        "{} {} {}B x{} {}",
        r.bootstrap,
        w.label.clone().unwrap_or_default(),
        w.message_size,
        w.producers,
        w.rate
            .map(|x| format!("{x} msg/s"))
            .unwrap_or_else(|| "max rate".into())
    );
    percentile_plot(
        &dir.join("latency.svg"),
        &title,
        &[
            ("produce-ack".to_string(), &r.produce_hist),
            ("end-to-end".to_string(), &r.e2e_hist),
        ],
    )?;
    println!("results: {}", dir.display());
    Ok(r)
}

fn default_dir(prefix: &str) -> PathBuf {
    PathBuf::from("kbench-results").join(format!("{prefix}{}", stamp(SystemTime::now())))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Command::Run {
            bootstrap,
            workload,
            output,
            broker_pid,
        } => {
            let dir = output.unwrap_or_else(|| default_dir(""));
            one_run(&bootstrap, &workload, &dir, broker_pid).map(|r| r.errors.any())
        }
        Command::Compare {
            a,
            b,
            workload,
            output,
            a_pid,
            b_pid,
        } => (|| {
            let dir = output.unwrap_or_else(|| default_dir("compare-"));
            // An auto-named topic is fine on both sides; a named one is used on each endpoint.
            println!("== A: {a}");
            let ra = one_run(&a, &workload, &dir.join("a"), a_pid)?;
            println!("== B: {b}");
            let rb = one_run(&b, &workload, &dir.join("b"), b_pid)?;
            let rows = report::compare_rows(&ra, &rb);
            report::print_compare(&ra, &rb, &rows);
            report::write_compare_json(&dir, &ra, &rb, &rows)?;
            percentile_plot(
                &dir.join("latency.svg"),
                &format!("A={a} vs B={b}"),
                &[
                    ("A produce-ack".to_string(), &ra.produce_hist),
                    ("A end-to-end".to_string(), &ra.e2e_hist),
                    ("B produce-ack".to_string(), &rb.produce_hist),
                    ("B end-to-end".to_string(), &rb.e2e_hist),
                ],
            )?;
            println!("compare results: {}", dir.display());
            Ok(ra.errors.any() || rb.errors.any())
        })(),
        Command::Physical => {
            let m = report::machine();
            println!("{}", serde_json::to_string_pretty(&m).unwrap());
            Ok(false)
        }
    };
    match res {
        Ok(false) => ExitCode::SUCCESS,
        // The run completed but saw errors: results are written, exit non-zero so scripts notice.
        Ok(true) => ExitCode::from(3),
        Err(e) => {
            eprintln!("kbench: error: {e}");
            ExitCode::from(1)
        }
    }
}
