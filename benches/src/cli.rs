//! Command line: `kbench run`, `kbench compare`, `kbench physical`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "kbench",
    about = "Throughput and tail-latency benchmark for Kafka-compatible brokers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one workload against one endpoint.
    Run {
        /// Bootstrap server(s), HOST:PORT[,HOST:PORT...].
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(flatten)]
        workload: Workload,
        /// Output directory (default ./kbench-results/<timestamp>).
        #[arg(long)]
        output: Option<PathBuf>,
        /// The broker's process id on this machine: report its CPU time (per MB produced and
        /// consumed, per Produce request) and memory from /proc/PID.
        #[arg(long, value_name = "PID")]
        broker_pid: Option<u32>,
    },
    /// Run the same workload against endpoint A then endpoint B and compare (ratios b/a).
    Compare {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        #[command(flatten)]
        workload: Workload,
        /// Output directory (default ./kbench-results/compare-<timestamp>); runs go to a/ and b/.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Process id of broker A on this machine (its CPU and memory, as `run --broker-pid`).
        #[arg(long, value_name = "PID")]
        a_pid: Option<u32>,
        /// Process id of broker B on this machine.
        #[arg(long, value_name = "PID")]
        b_pid: Option<u32>,
    },
    /// Print what kbench knows about this machine.
    Physical,
}

#[derive(ValueEnum, Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Acks {
    #[value(name = "0")]
    Zero,
    #[value(name = "1")]
    One,
    #[value(name = "all")]
    All,
}

impl Acks {
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::Zero => "0",
            Acks::One => "1",
            Acks::All => "all",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Keys {
    None,
    Random,
    Sequential,
}

/// The consumers' `isolation.level` (librdkafka's default is read_committed).
#[derive(ValueEnum, Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    #[value(name = "read_committed")]
    ReadCommitted,
    #[value(name = "read_uncommitted")]
    ReadUncommitted,
}

impl IsolationLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read_committed",
            IsolationLevel::ReadUncommitted => "read_uncommitted",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeMode {
    /// Consumers run during production; end-to-end latency is measured.
    Tail,
    /// Produce first, then time how fast consumers read it all back.
    Catchup,
}

/// The workload, identical for `run` and both sides of `compare`.
#[derive(Args, Debug, Clone, Serialize)]
pub struct Workload {
    /// Topic (default: auto-named kbench-<timestamp>-<pid>; created if missing).
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of the topic when kbench creates it.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor when kbench creates the topic.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Delete the topic first if it exists.
    #[arg(long)]
    pub recreate: bool,
    /// Topic config when kbench creates the topic, KEY=VALUE (repeatable; e.g.
    /// `cleanup.policy=compact`, `segment.bytes=1048576`, `retention.bytes=...`).
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    pub topic_configs: Vec<String>,
    /// Value size in bytes (>= 8: the first 8 bytes carry the intended send time).
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,
    /// Producer threads (one librdkafka producer each).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer threads (partitions are split among them); 0 = produce only.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    #[arg(long, value_enum, default_value = "1")]
    pub acks: Acks,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Compression,
    /// librdkafka linger.ms (default: librdkafka's, 5 ms).
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// librdkafka batch.size in bytes (default: librdkafka's).
    #[arg(long)]
    pub batch_size: Option<u64>,
    #[arg(long, value_enum, default_value = "none")]
    pub keys: Keys,
    /// Number of distinct keys for --keys random|sequential.
    #[arg(long, default_value_t = 1000)]
    pub key_space: u64,
    /// Measured duration in seconds (after warmup). Default 10 unless --messages is given.
    #[arg(long, conflicts_with = "messages")]
    pub duration: Option<f64>,
    /// Total messages to send (over all producers, warmup included).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Fixed target rate in msgs/s over all producers; omitted = as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Warmup seconds (excluded from latency and throughput).
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// tail: consumers read while producers write; catchup: write everything, then read it all back
    /// from where this run began.
    #[arg(long, visible_alias = "mode", value_enum, default_value = "tail")]
    pub consume_mode: ConsumeMode,
    /// Free text recorded in result.json.
    #[arg(long)]
    pub label: Option<String>,
    /// Transactional producers: producer k uses the transactional.id `<PREFIX>-k` (init_transactions
    /// before the start, then begin / produce / commit_transaction every --txn-commit-every records
    /// and/or --txn-commit-ms milliseconds). Needs --acks all.
    #[arg(long, value_name = "PREFIX")]
    pub transactional_id: Option<String>,
    /// With --transactional-id: commit each transaction after this many records (per producer).
    #[arg(long, value_name = "N", requires = "transactional_id")]
    pub txn_commit_every: Option<u64>,
    /// With --transactional-id: commit each transaction once it has been open this many milliseconds.
    #[arg(long, value_name = "T", requires = "transactional_id")]
    pub txn_commit_ms: Option<u64>,
    /// Consumers' isolation.level (default: librdkafka's, read_committed).
    #[arg(long, value_enum)]
    pub isolation_level: Option<IsolationLevel>,
    /// Extra librdkafka property for producers and consumers, KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Workload {
    pub fn validate(&self) -> Result<(), String> {
        if self.message_size < 8 {
            return Err("--message-size must be >= 8 (the first 8 bytes carry a timestamp)".into());
        }
        if self.producers == 0 {
            return Err("--producers must be >= 1".into());
        }
        if self.partitions < 1 {
            return Err("--partitions must be >= 1".into());
        }
        if let Some(r) = self.rate {
            if r.is_nan() || r <= 0.0 {
                return Err("--rate must be > 0".into());
            }
        }
        if let Some(d) = self.duration {
            if d.is_nan() || d <= 0.0 {
                return Err("--duration must be > 0".into());
            }
        }
        if self.key_space == 0 {
            return Err("--key-space must be >= 1".into());
        }
        for p in &self.properties {
            if !p.contains('=') {
                return Err(format!("--property {p}: expected KEY=VALUE"));
            }
        }
        self.validate_transactions()
    }

    fn validate_transactions(&self) -> Result<(), String> {
        let Some(prefix) = &self.transactional_id else {
            if self.txn_commit_every.is_some() || self.txn_commit_ms.is_some() {
                return Err("--txn-commit-every/--txn-commit-ms need --transactional-id".into());
            }
            return Ok(());
        };
        if prefix.is_empty() {
            return Err("--transactional-id must not be empty".into());
        }
        if self.txn_commit_every.is_none() && self.txn_commit_ms.is_none() {
            return Err(
                "--transactional-id needs --txn-commit-every N and/or --txn-commit-ms T".into(),
            );
        }
        if self.txn_commit_every == Some(0) || self.txn_commit_ms == Some(0) {
            return Err("--txn-commit-every and --txn-commit-ms must be >= 1".into());
        }
        if self.acks != Acks::All {
            return Err("--transactional-id needs --acks all (transactions are idempotent)".into());
        }
        Ok(())
    }

    /// The transactional.id of producer `index`, or None when the run is not transactional.
    pub fn transactional_id_of(&self, index: usize) -> Option<String> {
        self.transactional_id
            .as_ref()
            .map(|prefix| format!("{prefix}-{index}"))
    }

    /// Seconds of measured production in duration mode.
    pub fn duration_secs(&self) -> Option<f64> {
        match (self.duration, self.messages) {
            (Some(d), _) => Some(d),
            (None, None) => Some(10.0),
            (None, Some(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Workload, String> {
        let argv = ["kbench", "run"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).map_err(|e| e.to_string())?.cmd {
            Command::Run { workload, .. } => Ok(workload),
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn transactional_flags_parse_and_validate() {
        let w = parse(&[
            "--transactional-id",
            "bench",
            "--txn-commit-every",
            "500",
            "--txn-commit-ms",
            "100",
            "--acks",
            "all",
            "--producers",
            "3",
            "--isolation-level",
            "read_committed",
        ])
        .unwrap();
        assert_eq!(w.transactional_id.as_deref(), Some("bench"));
        assert_eq!(w.txn_commit_every, Some(500));
        assert_eq!(w.txn_commit_ms, Some(100));
        assert_eq!(w.isolation_level, Some(IsolationLevel::ReadCommitted));
        w.validate().unwrap();
        // Each producer thread its own id.
        assert_eq!(w.transactional_id_of(0).as_deref(), Some("bench-0"));
        assert_eq!(w.transactional_id_of(2).as_deref(), Some("bench-2"));
    }

    #[test]
    fn commit_by_time_alone_is_enough() {
        let w = parse(&[
            "--transactional-id",
            "t",
            "--txn-commit-ms",
            "50",
            "--acks",
            "all",
        ])
        .unwrap();
        w.validate().unwrap();
        assert_eq!(w.txn_commit_every, None);
    }

    #[test]
    fn not_transactional_by_default() {
        let w = parse(&[]).unwrap();
        w.validate().unwrap();
        assert_eq!(w.transactional_id, None);
        assert_eq!(w.transactional_id_of(0), None);
        assert_eq!(w.isolation_level, None);
        let w = parse(&["--isolation-level", "read_uncommitted"]).unwrap();
        assert_eq!(
            w.isolation_level.map(IsolationLevel::as_str),
            Some("read_uncommitted")
        );
    }

    #[test]
    fn commit_flags_need_a_transactional_id() {
        let err = parse(&["--txn-commit-every", "10"]).unwrap_err();
        assert!(err.contains("--transactional-id"), "{err}");
        let err = parse(&["--txn-commit-ms", "10"]).unwrap_err();
        assert!(err.contains("--transactional-id"), "{err}");
    }

    #[test]
    fn transactional_id_needs_a_commit_rule_and_acks_all() {
        let w = parse(&["--transactional-id", "t", "--acks", "all"]).unwrap();
        assert!(w.validate().unwrap_err().contains("--txn-commit-every"));
        let w = parse(&["--transactional-id", "t", "--txn-commit-every", "10"]).unwrap();
        assert!(w.validate().unwrap_err().contains("--acks all"));
        let w = parse(&[
            "--transactional-id",
            "t",
            "--txn-commit-every",
            "0",
            "--acks",
            "all",
        ])
        .unwrap();
        assert!(w.validate().unwrap_err().contains(">= 1"));
        let w = parse(&[
            "--transactional-id",
            "",
            "--txn-commit-every",
            "5",
            "--acks",
            "all",
        ])
        .unwrap();
        assert!(w.validate().unwrap_err().contains("empty"));
    }

    #[test]
    fn broker_pids_and_the_mode_alias() {
        let cli =
            Cli::try_parse_from(["kbench", "run", "--broker-pid", "4242", "--mode", "catchup"])
                .unwrap();
        match cli.cmd {
            Command::Run {
                broker_pid,
                workload,
                ..
            } => {
                assert_eq!(broker_pid, Some(4242));
                assert_eq!(workload.consume_mode, ConsumeMode::Catchup);
            }
            other => panic!("expected run, got {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "kbench", "compare", "--a", "x:1", "--b", "y:2", "--a-pid", "1", "--b-pid", "2",
        ])
        .unwrap();
        match cli.cmd {
            Command::Compare { a_pid, b_pid, .. } => assert_eq!((a_pid, b_pid), (Some(1), Some(2))),
            other => panic!("expected compare, got {other:?}"),
        }
        assert!(parse(&["--broker-pid", "-1"]).is_err());
        assert_eq!(parse(&[]).unwrap().consume_mode, ConsumeMode::Tail);
    }

    #[test]
    fn bad_values_are_refused_by_the_parser() {
        assert!(parse(&["--transactional-id", "t", "--txn-commit-every", "-1"]).is_err());
        assert!(parse(&["--isolation-level", "serializable"]).is_err());
    }
}
