//! Broker configuration: command-line flags, an optional TOML file, and topic-level configs.
//!
//! Every setting is one row of [`table::SETTINGS`] (TOML key, flag, Kafka names, type, default,
//! validator, scope, documentation). Precedence: flag > TOML file > the table's default
//! ([`settings`]); [`BrokerConfig::from_cli`] fills the struct the rest of the broker reads from the
//! rows' targets; [`TopicConfig::resolve`] applies and validates topic configs through the same rows;
//! [`describe`] reports them as DescribeConfigs does. This module imports no other module of the
//! broker (only external crates): the modules that need configuration import it.

pub mod alter;
#[cfg(test)]
mod cluster_tests;
pub mod describe;
pub mod dynamic;
#[cfg(test)]
mod dynamic_tests;
pub mod quorum;
pub mod settings;
pub mod table;
#[cfg(test)]
mod tests;
pub mod value;

pub use quorum::{ProcessRoles, QuorumVoter};
pub use settings::Settings;
pub use table::{MAX_PARTITIONS_PER_TOPIC, MAX_REPLICATION_FACTOR};

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use storage::log::{LogConfig, TimestampType};
use table::{Target, SETTINGS};
use value::Value;

#[derive(clap::Parser, Debug, Default)]
#[command(
    name = "broker",
    about = "A Kafka-compatible, thread-per-core message broker",
    version
)]
pub struct Cli {
    /// TOML configuration file (flags override its values).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on for Kafka clients [default: 0.0.0.0:9092].
    #[arg(long)]
    pub listen: Option<String>,
    /// Address clients are told to connect to [default: the listen address, or this host's name when
    /// listening on 0.0.0.0].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (one pinned executor each) [default: one per online core].
    #[arg(long)]
    pub shards: Option<usize>,
    /// This broker's node id [default: 0].
    #[arg(long)]
    pub node_id: Option<i32>,
    /// What this node runs: broker, controller, or both (comma-separated) [default: broker,controller].
    #[arg(long)]
    pub process_roles: Option<String>,
    /// The metadata quorum's voters, ID@HOST:PORT,ID@HOST:PORT,... [default: this node alone].
    #[arg(long)]
    pub controller_quorum_voters: Option<String>,
    /// Where this node listens for the metadata quorum (HOST:PORT) [default: this node's entry in
    /// --controller-quorum-voters; none for a cluster of one].
    #[arg(long)]
    pub controller_listen: Option<String>,
    /// This broker's rack (failure domain) [default: none].
    #[arg(long)]
    pub rack: Option<String>,
    /// Start even though the data directory holds partition directories but no usable metadata file:
    /// rebuild the metadata from them (new cluster id, default topic configs).
    #[arg(long)]
    pub recover_unknown_data: bool,
}

/// Default `connections.max.idle.ms` (Kafka's): 10 minutes.
pub const DEFAULT_CONNECTIONS_MAX_IDLE_MS: u64 = 600_000;
/// Default `queued.max.request.bytes`, per shard (Kafka's default, -1, is unbounded): 100 MiB.
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// Group coordinator settings (Kafka's `group.*` / `offsets.*` broker settings).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` (used when it is created).
    pub offsets_topic_partitions: i32,
    /// `offset.metadata.max.bytes`: longest metadata string a commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits for
    /// more members.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `offsets.retention.minutes`: committed offsets of a group empty this long expire.
    pub offsets_retention_minutes: u64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: u64,
    /// `offsets.topic.segment.bytes`: `segment.bytes` of `__consumer_offsets` when it is created.
    pub offsets_topic_segment_bytes: u64,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            offsets_topic_partitions: 50,
            offset_metadata_max_bytes: 4096,
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
        }
    }
}

/// Transaction coordinator settings (Kafka's `transaction.*` / `transactional.id.*` broker settings).
#[derive(Clone, Debug)]
pub struct TransactionConfig {
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` (used when it is
    /// created).
    pub state_log_partitions: i32,
    /// `transaction.state.log.segment.bytes`: `segment.bytes` of `__transaction_state` when it is created.
    pub state_log_segment_bytes: u64,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: a transactional id without a transaction this long is removed.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out transactions
    /// are looked for (and aborted).
    pub abort_timed_out_interval_ms: u64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`: how often expired transactional ids
    /// are looked for (and removed).
    pub remove_expired_interval_ms: u64,
}

impl Default for TransactionConfig {
    fn default() -> TransactionConfig {
        TransactionConfig {
            state_log_partitions: 50,
            state_log_segment_bytes: 100 * 1024 * 1024,
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
        }
    }
}

/// What runs a shard's logs through their lifecycle: retention's background pass and the log cleaner
/// (Kafka's `log.retention.check.interval.ms` and `log.cleaner.*` broker settings).
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// How often a shard's retention pass looks for segments to delete.
    pub retention_check_interval_ms: u64,
    /// How often a shard's retention task looks for expired producer ids
    /// (`producer.id.expiration.check.interval.ms`).
    pub producer_id_expiration_check_interval_ms: u64,
    /// Whether the log cleaner runs at all.
    pub cleaner_enable: bool,
    /// How long an idle log cleaner sleeps before it looks again.
    pub cleaner_backoff_ms: u64,
    /// Memory of a shard's cleaner offset map, in bytes.
    pub cleaner_dedupe_buffer_size: usize,
    /// Bytes per second a shard's cleaner may read and write (f64::MAX: unthrottled).
    pub cleaner_io_max_bytes_per_second: f64,
}

impl Default for LifecycleConfig {
    fn default() -> LifecycleConfig {
        LifecycleConfig {
            retention_check_interval_ms: 300_000,
            producer_id_expiration_check_interval_ms: 600_000,
            cleaner_enable: true,
            cleaner_backoff_ms: 15_000,
            cleaner_dedupe_buffer_size: 128 << 20,
            cleaner_io_max_bytes_per_second: f64::MAX,
        }
    }
}

/// Kafka's `auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds` and
/// `leader.imbalance.per.broker.percentage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderBalanceConfig {
    pub enabled: bool,
    pub check_interval: std::time::Duration,
    /// A broker's preferred partitions led elsewhere beyond this percentage are moved back.
    pub imbalance_percentage: u32,
}

impl Default for LeaderBalanceConfig {
    fn default() -> LeaderBalanceConfig {
        LeaderBalanceConfig {
            enabled: true,
            check_interval: std::time::Duration::from_secs(300),
            imbalance_percentage: 10,
        }
    }
}

/// `replica.selector.class` (KIP-392): how a partition's leader picks the replica a consumer should
/// fetch from (`preferred_read_replica` in its Fetch answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaSelector {
    /// Always the leader (Kafka's default, no selector): consumers are never sent elsewhere.
    Leader,
    /// Kafka's `RackAwareReplicaSelector`: a consumer naming a rack (`client.rack`) that the leader is
    /// not in is sent to an in-sync replica in its rack, when there is one.
    RackAware,
}

impl ReplicaSelector {
    /// Kafka's class name of the rack-aware selector, accepted as an alias of `rack-aware`.
    pub const RACK_AWARE_CLASS: &'static str =
        "org.apache.kafka.common.replica.RackAwareReplicaSelector";

    /// The selector a (validated) setting names.
    pub fn parse(text: &str) -> ReplicaSelector {
        match text {
            "rack-aware" | Self::RACK_AWARE_CLASS => ReplicaSelector::RackAware,
            _ => ReplicaSelector::Leader,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    pub advertise_host: String,
    pub advertise_port: u16,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub node_id: i32,
    /// `process.roles`: whether this node is a broker, a controller (a voter of the metadata quorum), or
    /// both.
    pub process_roles: ProcessRoles,
    /// `controller.quorum.voters`: the metadata quorum's voters; empty: this node alone (a cluster of
    /// one). See [`BrokerConfig::voter_ids`].
    pub quorum_voters: Vec<QuorumVoter>,
    /// Where this node listens for the metadata quorum: as configured, else this node's entry in
    /// `quorum_voters`; `None` for a cluster of one (no controller port) or a broker-only node.
    pub controller_listen: Option<SocketAddr>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    pub broker_session_timeout: std::time::Duration,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the controller.
    pub broker_heartbeat_interval: std::time::Duration,
    /// `metadata.log.max.record.bytes.between.snapshots`: bytes of metadata-log entries written
    /// before the log is compacted into a snapshot.
    pub metadata_snapshot_bytes: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max: std::time::Duration,
    /// Automatic leader rebalancing by the active controller (`quorum::leader_balance`).
    pub leader_balance: LeaderBalanceConfig,
    /// `follower.replication.throttled.rate` (dynamic): bytes per second this broker's followers copy
    /// for throttled replicas (`replication_quota`); `i64::MAX`: no limit.
    pub follower_replication_throttled_rate: u64,
    /// `replica.fsync.before.ack`: acks=all waits for an fsync on the leader (before it waits for
    /// the ISR) and on each follower (after each fetch's appends, before its next fetch).
    pub replica_fsync_before_ack: bool,
    /// `replica.selector.class`: which replica a consumer (Fetch v11+) is told to read from.
    pub replica_selector: ReplicaSelector,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    /// `default.replication.factor`: replicas of a topic created without a replication factor.
    pub default_replication_factor: i16,
    pub socket_request_max_bytes: usize,
    /// Topic defaults (Kafka's `log.*` / `message.max.bytes` broker settings).
    pub log_defaults: LogConfig,
    /// Per-shard budget of the recent-batch cache.
    pub batch_cache_bytes: usize,
    /// Read-ahead for sequential readers of segment files (per-shard budget, chunk size, depth).
    pub read_ahead: storage::ReadAheadConfig,
    /// O_DIRECT for segment data (falls back to buffered where refused).
    pub direct_io: bool,
    pub groups: GroupConfig,
    /// The transaction coordinator.
    pub transactions: TransactionConfig,
    /// Retention and the log cleaner.
    pub lifecycle: LifecycleConfig,
    /// Every shard must be serving within this long of the start, or the broker exits with an error.
    pub startup_timeout: std::time::Duration,
    /// After SIGTERM / SIGINT, the process exits within this long even if a shard has not finished
    /// (a second signal exits at once).
    pub shutdown_timeout: std::time::Duration,
    /// `max.connections`: client connections open at once, broker-wide. `None`: derived from the
    /// file-descriptor limit (see `descriptor_budget`).
    pub max_connections: Option<usize>,
    /// `max.connections.per.ip`. `None`: the same as `max.connections`.
    pub max_connections_per_ip: Option<usize>,
    /// `connections.max.idle.ms`: a connection with no complete request, no response being prepared and
    /// nothing written for this long is closed (0: never).
    pub connections_max_idle_ms: u64,
    /// `queued.max.request.bytes`, per shard: request bytes held at once (usize::MAX: unbounded).
    pub queued_max_request_bytes: usize,
    /// Completed-response bytes a connection may have waiting to be sent before it stops taking requests.
    pub connection_max_queued_response_bytes: usize,
    /// Rebuild missing cluster metadata from the partition directories instead of refusing to start.
    pub recover_unknown_data: bool,
    /// Every setting's value and whether it was given (DescribeConfigs' sources and synonyms).
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("invalid config file {path}: unknown setting `{key}`")]
    Unknown { path: PathBuf, key: String },
}

impl BrokerConfig {
    pub fn from_cli(cli: Cli) -> Result<BrokerConfig, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let table =
                    toml::from_str::<toml::Table>(&text).map_err(|source| ConfigError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                Some((path.clone(), table))
            }
            None => None,
        };
        let mut settings = Settings::resolve(
            &cli,
            file.as_ref().map(|(path, table)| (path.as_path(), table)),
        )?;
        let mut config = BrokerConfig::unconfigured();
        for row in SETTINGS {
            let Some(entry) = settings.get(row.id()) else {
                continue;
            };
            match row.target {
                Target::Broker(apply) => {
                    apply(&mut config, &entry.value).map_err(|message| ConfigError::Invalid {
                        key: row.id(),
                        message,
                    })?
                }
                Target::Log(apply) => apply(&mut config.log_defaults, &entry.value),
                Target::Reported => {}
            }
        }
        // retention.ms's default from its three broker names (ms > minutes > hours).
        if let Some(retention) = dynamic::retention_ms(&settings, dynamic::DynamicConfigs::none()) {
            config.log_defaults.retention_ms = retention;
        }
        // Defaults derived at start.
        if settings.get("shards").is_none() {
            let shards = shard::online_cores().len();
            settings
                .derive_checked(
                    "shards",
                    Value::Int(i64::try_from(shards).unwrap_or(i64::MAX)),
                )
                .map_err(|message| ConfigError::Invalid {
                    key: "shards",
                    message,
                })?;
            config.shards = shards;
        }
        if settings.get("advertise").is_none() {
            (config.advertise_host, config.advertise_port) = if config.listen.ip().is_unspecified()
            {
                (host_name(), config.listen.port())
            } else {
                (config.listen.ip().to_string(), config.listen.port())
            };
            settings.derive(
                "advertise",
                Value::Text(format!(
                    "{}:{}",
                    config.advertise_host, config.advertise_port
                )),
            );
        }
        // DescribeConfigs reports the address the broker listens on, as resolved.
        settings.derive("listen", Value::Text(config.listen.to_string()));
        if config.groups.min_session_timeout_ms > config.groups.max_session_timeout_ms {
            return Err(ConfigError::Invalid {
                key: "group_min_session_timeout_ms",
                message: "exceeds group_max_session_timeout_ms".into(),
            });
        }
        quorum::resolve_cluster(&mut config, &mut settings)?;
        config.settings = settings;
        Ok(config)
    }

    /// The struct before the table's values are applied (each field is overwritten by its setting's
    /// default or configured value, except those derived at start).
    fn unconfigured() -> BrokerConfig {
        BrokerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertise_host: String::new(),
            advertise_port: 9092,
            data_dir: PathBuf::new(),
            shards: 1,
            node_id: 0,
            process_roles: ProcessRoles::COMBINED,
            quorum_voters: Vec::new(),
            controller_listen: None,
            rack: None,
            broker_session_timeout: std::time::Duration::ZERO,
            broker_heartbeat_interval: std::time::Duration::ZERO,
            metadata_snapshot_bytes: 20 << 20,
            replica_lag_time_max: std::time::Duration::from_secs(30),
            leader_balance: LeaderBalanceConfig::default(),
            follower_replication_throttled_rate: i64::MAX as u64,
            replica_fsync_before_ack: false,
            replica_selector: ReplicaSelector::Leader,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            socket_request_max_bytes: net::DEFAULT_MAX_REQUEST_BYTES,
            log_defaults: LogConfig::default(),
            batch_cache_bytes: 0,
            read_ahead: storage::ReadAheadConfig::default(),
            direct_io: true,
            groups: GroupConfig::default(),
            transactions: TransactionConfig::default(),
            lifecycle: LifecycleConfig::default(),
            startup_timeout: std::time::Duration::ZERO,
            shutdown_timeout: std::time::Duration::ZERO,
            max_connections: None,
            max_connections_per_ip: None,
            connections_max_idle_ms: DEFAULT_CONNECTIONS_MAX_IDLE_MS,
            queued_max_request_bytes: DEFAULT_QUEUED_MAX_REQUEST_BYTES,
            connection_max_queued_response_bytes: net::DEFAULT_MAX_QUEUED_RESPONSE_BYTES,
            recover_unknown_data: false,
            settings: Settings::default(),
        }
    }
}

fn resolve(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|error| format!("{text}: {error}"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to nothing"))
}

fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text} is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .map_err(|error| format!("{text}: port {error}"))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most buffer.len() bytes.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "localhost".into();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

pub fn timestamp_type_name(timestamp_type: TimestampType) -> &'static str {
    match timestamp_type {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

/// A topic's effective configuration: its overrides over the broker's defaults.
pub struct TopicConfig {
    pub log: LogConfig,
}

impl TopicConfig {
    /// Validates `overrides` (CreateTopics / stored metadata) against the table's topic configs and
    /// applies them over the broker defaults.
    pub fn resolve(
        defaults: &LogConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, String> {
        let mut log = defaults.clone();
        for (name, text) in overrides {
            let row =
                table::topic_setting(name).ok_or_else(|| format!("unknown topic config {name}"))?;
            let value = value::parse_text(row, text)
                .map_err(|what| format!("invalid value {text:?} for {name}: {what}"))?;
            if let Target::Log(apply) = row.target {
                apply(&mut log, &value);
            }
        }
        Ok(TopicConfig { log })
    }
}

/// Kafka's topic-name rule: 1..=249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("topic name {name:?} is illegal"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long, the maximum is 249",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name {name:?} contains {bad:?}; legal characters are ASCII alphanumerics, '.', '_' and '-'"));
    }
    Ok(())
}
