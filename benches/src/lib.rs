//! kbench: a benchmark harness for any Kafka-compatible endpoint (this broker, Apache Kafka,
//! Redpanda), built on librdkafka (`rdkafka`, bundled, thread-based `BaseProducer`/`BaseConsumer`).
//!
//! Layout:
//! - `cli`     -- clap options (`kbench run | compare | physical`) and the workload config.
//! - `hist`    -- per-thread latency recorders (HdrHistogram, µs, 3 digits, up to 60 s), percentiles.
//! - `admin`   -- topic creation / deletion / partition discovery via the AdminClient.
//! - `broker_process` -- the broker's CPU time and memory from /proc (`--broker-pid`), per phase.
//! - `run`     -- one workload: producer threads (fixed-rate with coordinated-omission correction,
//!   or as fast as possible), consumer threads (tail / catchup), the 1 s collector.
//! - `report`  -- summary table, result.json, compare table/json, HdrHistogram interval logs.
//! - `plot`    -- latency-percentile SVG (x: 1/(1-p) log scale).
//!
//! Criterion micro-benchmarks of the broker's hot paths live in `benches/benches/`.

pub mod admin;
pub mod broker_process;
pub mod cli;
pub mod hist;
pub mod plot;
pub mod report;
pub mod run;
