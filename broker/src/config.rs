//! Broker configuration: command-line flags, an optional TOML file, and topic-level configs.
//!
//! Precedence: flag > TOML file > built-in default. Every broker setting has a Kafka name (the one
//! DescribeConfigs reports) next to its TOML key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use storage::log::{LogConfig, TimestampType};

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
    /// Start even though the data directory holds partition directories but no usable metadata file:
    /// rebuild the metadata from them (new cluster id, default topic configs).
    #[arg(long)]
    pub recover_unknown_data: bool,
}

/// The TOML file: the same settings as the flags plus the Kafka-level defaults.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    pub node_id: Option<i32>,
    pub auto_create_topics_enable: Option<bool>,
    pub num_partitions: Option<i32>,
    pub socket_request_max_bytes: Option<usize>,
    pub message_max_bytes: Option<u32>,
    pub log_segment_bytes: Option<u64>,
    pub log_roll_ms: Option<i64>,
    pub log_index_size_max_bytes: Option<u64>,
    pub log_index_interval_bytes: Option<u32>,
    pub log_message_timestamp_type: Option<String>,
    pub log_flush_interval_messages: Option<u64>,
    pub log_flush_interval_ms: Option<u64>,
    pub batch_cache_bytes: Option<usize>,
    pub direct_io: Option<bool>,
    pub offsets_topic_num_partitions: Option<i32>,
    pub offset_metadata_max_bytes: Option<usize>,
    pub group_initial_rebalance_delay_ms: Option<u64>,
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub startup_timeout_ms: Option<u64>,
    pub shutdown_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub connections_max_idle_ms: Option<u64>,
    pub queued_max_request_bytes: Option<i64>,
    pub connection_max_queued_response_bytes: Option<usize>,
    pub recover_unknown_data: Option<bool>,
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
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            offsets_topic_partitions: 50,
            offset_metadata_max_bytes: 4096,
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
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
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub socket_request_max_bytes: usize,
    /// Topic defaults (Kafka's `log.*` / `message.max.bytes` broker settings).
    pub log_defaults: LogConfig,
    /// Per-shard budget of the recent-batch cache.
    pub batch_cache_bytes: usize,
    /// O_DIRECT for segment data (falls back to buffered where refused).
    pub direct_io: bool,
    pub groups: GroupConfig,
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
}

impl BrokerConfig {
    pub fn from_cli(cli: Cli) -> Result<BrokerConfig, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        let listen_text = cli
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "0.0.0.0:9092".to_string());
        let listen = resolve(&listen_text).map_err(|message| ConfigError::Invalid {
            key: "listen",
            message,
        })?;
        let (advertise_host, advertise_port) = match cli.advertise.or(file.advertise) {
            Some(text) => split_host_port(&text).map_err(|message| ConfigError::Invalid {
                key: "advertise",
                message,
            })?,
            None if listen.ip().is_unspecified() => (host_name(), listen.port()),
            None => (listen.ip().to_string(), listen.port()),
        };
        let shards = cli
            .shards
            .or(file.shards)
            .unwrap_or_else(|| shard::online_cores().len());
        if shards == 0 || shards > 1024 {
            return Err(ConfigError::Invalid {
                key: "shards",
                message: format!("{shards} is not in 1..=1024"),
            });
        }
        let defaults = LogConfig::default();
        let timestamp_type = match file.log_message_timestamp_type.as_deref() {
            None | Some("CreateTime") => TimestampType::CreateTime,
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "log_message_timestamp_type",
                    message: format!("{other} is neither CreateTime nor LogAppendTime"),
                })
            }
        };
        let log_defaults = LogConfig {
            segment_bytes: file.log_segment_bytes.unwrap_or(defaults.segment_bytes),
            segment_ms: file.log_roll_ms.unwrap_or(defaults.segment_ms),
            segment_index_bytes: file
                .log_index_size_max_bytes
                .unwrap_or(defaults.segment_index_bytes),
            index_interval_bytes: file
                .log_index_interval_bytes
                .unwrap_or(defaults.index_interval_bytes),
            max_message_bytes: file.message_max_bytes.unwrap_or(defaults.max_message_bytes),
            timestamp_type,
            flush_messages: file
                .log_flush_interval_messages
                .unwrap_or(defaults.flush_messages),
            flush_ms: file.log_flush_interval_ms.unwrap_or(defaults.flush_ms),
        };
        let group_defaults = GroupConfig::default();
        let groups = GroupConfig {
            offsets_topic_partitions: file
                .offsets_topic_num_partitions
                .unwrap_or(group_defaults.offsets_topic_partitions),
            offset_metadata_max_bytes: file
                .offset_metadata_max_bytes
                .unwrap_or(group_defaults.offset_metadata_max_bytes),
            initial_rebalance_delay_ms: file
                .group_initial_rebalance_delay_ms
                .unwrap_or(group_defaults.initial_rebalance_delay_ms),
            min_session_timeout_ms: file
                .group_min_session_timeout_ms
                .unwrap_or(group_defaults.min_session_timeout_ms),
            max_session_timeout_ms: file
                .group_max_session_timeout_ms
                .unwrap_or(group_defaults.max_session_timeout_ms),
        };
        if !(1..=crate::control::MAX_PARTITIONS_PER_TOPIC)
            .contains(&groups.offsets_topic_partitions)
        {
            return Err(ConfigError::Invalid {
                key: "offsets_topic_num_partitions",
                message: format!(
                    "{} is not in 1..={}",
                    groups.offsets_topic_partitions,
                    crate::control::MAX_PARTITIONS_PER_TOPIC
                ),
            });
        }
        if groups.min_session_timeout_ms > groups.max_session_timeout_ms {
            return Err(ConfigError::Invalid {
                key: "group_min_session_timeout_ms",
                message: "exceeds group_max_session_timeout_ms".into(),
            });
        }
        Ok(BrokerConfig {
            listen,
            advertise_host,
            advertise_port,
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            shards,
            node_id: cli.node_id.or(file.node_id).unwrap_or(0),
            auto_create_topics_enable: file.auto_create_topics_enable.unwrap_or(true),
            num_partitions: file.num_partitions.unwrap_or(1).max(1),
            socket_request_max_bytes: file
                .socket_request_max_bytes
                .unwrap_or(net::DEFAULT_MAX_REQUEST_BYTES),
            log_defaults,
            batch_cache_bytes: file.batch_cache_bytes.unwrap_or(64 * 1024 * 1024),
            direct_io: file.direct_io.unwrap_or(true),
            groups,
            startup_timeout: std::time::Duration::from_millis(
                file.startup_timeout_ms.unwrap_or(120_000),
            ),
            shutdown_timeout: std::time::Duration::from_millis(
                file.shutdown_timeout_ms.unwrap_or(30_000),
            ),
            max_connections: positive(file.max_connections, "max_connections")?,
            max_connections_per_ip: positive(
                file.max_connections_per_ip,
                "max_connections_per_ip",
            )?,
            connections_max_idle_ms: file
                .connections_max_idle_ms
                .unwrap_or(DEFAULT_CONNECTIONS_MAX_IDLE_MS),
            queued_max_request_bytes: match file.queued_max_request_bytes {
                None => DEFAULT_QUEUED_MAX_REQUEST_BYTES,
                Some(-1) => usize::MAX,
                Some(bytes) if bytes > 0 => bytes as usize,
                Some(bytes) => {
                    return Err(ConfigError::Invalid {
                        key: "queued_max_request_bytes",
                        message: format!("{bytes} is neither positive nor -1 (unbounded)"),
                    })
                }
            },
            connection_max_queued_response_bytes: file
                .connection_max_queued_response_bytes
                .unwrap_or(net::DEFAULT_MAX_QUEUED_RESPONSE_BYTES),
            recover_unknown_data: cli.recover_unknown_data
                || file.recover_unknown_data.unwrap_or(false),
        })
    }

    /// Broker settings as DescribeConfigs reports them: (Kafka name, value, is it the built-in default).
    pub fn describe(&self) -> Vec<(&'static str, String, bool)> {
        let defaults = LogConfig::default();
        let log = &self.log_defaults;
        let groups = &self.groups;
        let group_defaults = GroupConfig::default();
        vec![
            ("node.id", self.node_id.to_string(), false),
            ("broker.id", self.node_id.to_string(), false),
            ("listeners", format!("PLAINTEXT://{}", self.listen), false),
            (
                "advertised.listeners",
                format!(
                    "PLAINTEXT://{}:{}",
                    self.advertise_host, self.advertise_port
                ),
                false,
            ),
            ("log.dirs", self.data_dir.display().to_string(), false),
            (
                "num.partitions",
                self.num_partitions.to_string(),
                self.num_partitions == 1,
            ),
            (
                "auto.create.topics.enable",
                self.auto_create_topics_enable.to_string(),
                self.auto_create_topics_enable,
            ),
            ("default.replication.factor", "1".into(), true),
            (
                "socket.request.max.bytes",
                self.socket_request_max_bytes.to_string(),
                self.socket_request_max_bytes == net::DEFAULT_MAX_REQUEST_BYTES,
            ),
            (
                "message.max.bytes",
                log.max_message_bytes.to_string(),
                log.max_message_bytes == defaults.max_message_bytes,
            ),
            (
                "log.segment.bytes",
                log.segment_bytes.to_string(),
                log.segment_bytes == defaults.segment_bytes,
            ),
            (
                "log.roll.ms",
                log.segment_ms.to_string(),
                log.segment_ms == defaults.segment_ms,
            ),
            (
                "log.index.size.max.bytes",
                log.segment_index_bytes.to_string(),
                log.segment_index_bytes == defaults.segment_index_bytes,
            ),
            (
                "log.index.interval.bytes",
                log.index_interval_bytes.to_string(),
                log.index_interval_bytes == defaults.index_interval_bytes,
            ),
            (
                "log.message.timestamp.type",
                timestamp_type_name(log.timestamp_type).into(),
                log.timestamp_type == defaults.timestamp_type,
            ),
            (
                "log.flush.interval.messages",
                log.flush_messages.to_string(),
                log.flush_messages == defaults.flush_messages,
            ),
            (
                "log.flush.interval.ms",
                log.flush_ms.to_string(),
                log.flush_ms == defaults.flush_ms,
            ),
            (
                "offsets.topic.num.partitions",
                groups.offsets_topic_partitions.to_string(),
                groups.offsets_topic_partitions == group_defaults.offsets_topic_partitions,
            ),
            (
                "offset.metadata.max.bytes",
                groups.offset_metadata_max_bytes.to_string(),
                groups.offset_metadata_max_bytes == group_defaults.offset_metadata_max_bytes,
            ),
            (
                "group.initial.rebalance.delay.ms",
                groups.initial_rebalance_delay_ms.to_string(),
                groups.initial_rebalance_delay_ms == group_defaults.initial_rebalance_delay_ms,
            ),
            (
                "group.min.session.timeout.ms",
                groups.min_session_timeout_ms.to_string(),
                groups.min_session_timeout_ms == group_defaults.min_session_timeout_ms,
            ),
            (
                "group.max.session.timeout.ms",
                groups.max_session_timeout_ms.to_string(),
                groups.max_session_timeout_ms == group_defaults.max_session_timeout_ms,
            ),
            (
                "max.connections",
                self.effective_max_connections().to_string(),
                self.max_connections.is_none(),
            ),
            (
                "max.connections.per.ip",
                self.effective_max_connections_per_ip().to_string(),
                self.max_connections_per_ip.is_none(),
            ),
            (
                "connections.max.idle.ms",
                self.connections_max_idle_ms.to_string(),
                self.connections_max_idle_ms == DEFAULT_CONNECTIONS_MAX_IDLE_MS,
            ),
            (
                "queued.max.request.bytes",
                if self.queued_max_request_bytes == usize::MAX {
                    "-1".to_string()
                } else {
                    self.queued_max_request_bytes.to_string()
                },
                self.queued_max_request_bytes == DEFAULT_QUEUED_MAX_REQUEST_BYTES,
            ),
        ]
    }

    /// `max.connections` as configured, else its share of the file-descriptor budget.
    pub fn effective_max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            crate::descriptor_budget::DescriptorBudget::of(self).connections as usize
        })
    }

    /// `max.connections.per.ip` as configured, else `max.connections`.
    pub fn effective_max_connections_per_ip(&self) -> usize {
        self.max_connections_per_ip
            .unwrap_or_else(|| self.effective_max_connections())
    }
}

fn positive(value: Option<usize>, key: &'static str) -> Result<Option<usize>, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::Invalid {
            key,
            message: "must be positive".into(),
        }),
        other => Ok(other),
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

/// The topic-level configs this broker knows, as Kafka names them.
pub const TOPIC_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "max.message.bytes",
    "message.timestamp.type",
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "index.interval.bytes",
    "flush.messages",
    "flush.ms",
    "retention.ms",
    "retention.bytes",
    "min.insync.replicas",
];

/// A topic's effective configuration: its overrides over the broker's defaults.
pub struct TopicConfig {
    pub log: LogConfig,
}

impl TopicConfig {
    /// Validates `overrides` (CreateTopics / stored metadata) and applies them over the broker defaults.
    pub fn resolve(
        defaults: &LogConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, String> {
        let mut log = defaults.clone();
        for (name, value) in overrides {
            let invalid = |what: &str| format!("invalid value {value:?} for {name}: {what}");
            match name.as_str() {
                "max.message.bytes" => {
                    log.max_message_bytes = parse_positive(value).map_err(|e| invalid(&e))? as u32
                }
                "segment.bytes" => {
                    log.segment_bytes =
                        parse_positive(value).map_err(|e| invalid(&e))?.max(14) as u64
                }
                "segment.ms" => log.segment_ms = parse_positive(value).map_err(|e| invalid(&e))?,
                "segment.index.bytes" => {
                    log.segment_index_bytes =
                        parse_positive(value).map_err(|e| invalid(&e))?.max(8) as u64
                }
                "index.interval.bytes" => {
                    log.index_interval_bytes =
                        parse_non_negative(value).map_err(|e| invalid(&e))? as u32
                }
                "flush.messages" => {
                    log.flush_messages = parse_positive(value).map_err(|e| invalid(&e))? as u64
                }
                "flush.ms" => {
                    log.flush_ms = parse_non_negative(value).map_err(|e| invalid(&e))? as u64
                }
                "message.timestamp.type" => {
                    log.timestamp_type = match value.as_str() {
                        "CreateTime" => TimestampType::CreateTime,
                        "LogAppendTime" => TimestampType::LogAppendTime,
                        _ => return Err(invalid("expected CreateTime or LogAppendTime")),
                    }
                }
                "cleanup.policy" => {
                    if !value
                        .split(',')
                        .all(|policy| matches!(policy.trim(), "delete" | "compact"))
                    {
                        return Err(invalid("expected delete and/or compact"));
                    }
                }
                "compression.type" => {
                    if !matches!(
                        value.as_str(),
                        "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
                    ) {
                        return Err(invalid(
                            "expected producer, uncompressed, gzip, snappy, lz4 or zstd",
                        ));
                    }
                }
                "retention.ms" | "retention.bytes" => {
                    value.parse::<i64>().map_err(|e| invalid(&e.to_string()))?;
                }
                "min.insync.replicas" => {
                    parse_positive(value).map_err(|e| invalid(&e))?;
                }
                _ => return Err(format!("unknown topic config {name}")),
            }
        }
        Ok(TopicConfig { log })
    }

    /// Every topic config with its value and whether it is an override: for DescribeConfigs.
    pub fn describe(
        defaults: &LogConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Vec<(&'static str, String, bool)> {
        TOPIC_CONFIG_NAMES
            .iter()
            .map(|&name| match overrides.get(name) {
                Some(value) => (name, value.clone(), true),
                None => (name, default_topic_value(defaults, name), false),
            })
            .collect()
    }
}

fn default_topic_value(defaults: &LogConfig, name: &str) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "message.timestamp.type" => timestamp_type_name(defaults.timestamp_type).into(),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        "segment.index.bytes" => defaults.segment_index_bytes.to_string(),
        "index.interval.bytes" => defaults.index_interval_bytes.to_string(),
        "flush.messages" => clamp_i64(defaults.flush_messages).to_string(),
        "flush.ms" => clamp_i64(defaults.flush_ms).to_string(),
        "retention.ms" => "604800000".into(),
        "retention.bytes" => "-1".into(),
        "min.insync.replicas" => "1".into(),
        _ => String::new(),
    }
}

/// Kafka reports "never" as Long.MAX_VALUE.
fn clamp_i64(value: u64) -> i64 {
    value.min(i64::MAX as u64) as i64
}

fn parse_positive(value: &str) -> Result<i64, String> {
    match value.parse::<i64>() {
        Ok(number) if number > 0 => Ok(number),
        Ok(_) => Err("must be positive".into()),
        Err(error) => Err(error.to_string()),
    }
}

fn parse_non_negative(value: &str) -> Result<i64, String> {
    match value.parse::<i64>() {
        Ok(number) if number >= 0 => Ok(number),
        Ok(_) => Err("must not be negative".into()),
        Err(error) => Err(error.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_in_deploy_parses() {
        let file: FileConfig = toml::from_str(include_str!("../../deploy/broker.toml"))
            .expect("deploy/broker.toml matches FileConfig");
        assert_eq!(file.offsets_topic_num_partitions, Some(50));
        assert_eq!(file.group_initial_rebalance_delay_ms, Some(3000));
        assert_eq!(file.connections_max_idle_ms, Some(600_000));
        assert_eq!(file.queued_max_request_bytes, Some(100 * 1024 * 1024));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-2").is_ok());
        for bad in ["", ".", "..", "has space", "slash/", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn overrides_apply_and_bad_values_are_refused() {
        let defaults = LogConfig::default();
        let mut overrides = BTreeMap::new();
        overrides.insert("max.message.bytes".to_string(), "2048".to_string());
        overrides.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let config = TopicConfig::resolve(&defaults, &overrides).unwrap();
        assert_eq!(config.log.max_message_bytes, 2048);
        assert_eq!(config.log.timestamp_type, TimestampType::LogAppendTime);
        overrides.insert("segment.bytes".to_string(), "-5".to_string());
        assert!(TopicConfig::resolve(&defaults, &overrides).is_err());
        let mut unknown = BTreeMap::new();
        unknown.insert("no.such.config".to_string(), "1".to_string());
        assert!(TopicConfig::resolve(&defaults, &unknown).is_err());
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli {
            listen: Some("127.0.0.1:19092".into()),
            shards: Some(2),
            ..Cli::default()
        };
        let config = BrokerConfig::from_cli(cli).unwrap();
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.advertise_host, "127.0.0.1");
        assert_eq!(config.shards, 2);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
    }
}
