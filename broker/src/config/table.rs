//! The table of every setting this broker knows: one [`Setting`] per row, in [`SETTINGS`].
//!
//! Invariant: a setting's TOML key, flag, Kafka names, type, default, validator, scope, whether it could
//! change without a restart and its one-line documentation are written here and nowhere else. Flag and
//! TOML parsing, `BrokerConfig`'s fields, topic-config resolution and validation, DescribeConfigs,
//! `deploy/broker.toml` and the README's configuration table are all derived from (or checked against)
//! this table. A default is written as Kafka reports it (text); it is parsed and validated like any
//! configured value, so a default that its own validator refuses fails the unit tests.

use super::BrokerConfig;
use storage::log::{CleanupPolicy, LogConfig, TimestampType};

mod cluster;
mod read_path;
mod transactions;

/// Most partitions one topic may have (CreateTopics, CreatePartitions, `offsets.topic.num.partitions`).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Most replicas of a partition (a bound on requests; clusters are far smaller).
pub const MAX_REPLICATION_FACTOR: i16 = 64;

/// Where a setting applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A broker setting only.
    Broker,
    /// A topic config only (no broker-level synonym).
    Topic,
    /// A broker setting that is the default of the topic config `topic_name` (Kafka's synonym).
    BrokerAndTopic { topic_name: &'static str },
}

/// Kafka's `config_type` (DescribeConfigs v3+), with its wire code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

impl ConfigType {
    pub fn code(self) -> i8 {
        self as i8
    }
}

/// A setting's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value, written as Kafka reports it.
    Fixed(&'static str),
    /// Computed when the broker starts; the text says how.
    Derived(&'static str),
    /// The value of another setting (named by its id).
    SameAs(&'static str),
}

/// What values a setting accepts beyond its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validator {
    /// Any value of the type.
    Any,
    /// An integer of at least this.
    AtLeast(i64),
    /// An integer in this inclusive range.
    Range(i64, i64),
    /// A positive integer, or -1 for unbounded.
    PositiveOrUnbounded,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these words.
    ListOf(&'static [&'static str]),
    /// A number (`Double`) in 0..=1.
    Ratio,
    /// A gzip level: 1..=9, or -1 for the codec's default.
    GzipLevel,
}

/// How DescribeConfigs writes the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presentation {
    AsIs,
    /// `HOST:PORT` reported as Kafka's listener, `PLAINTEXT://HOST:PORT`.
    Listener,
}

/// Where a configured value goes.
#[derive(Clone, Copy)]
pub enum Target {
    /// A field of [`BrokerConfig`]; the error is a message about the value.
    Broker(fn(&mut BrokerConfig, &Value) -> Result<(), String>),
    /// A field of a [`LogConfig`]: the broker's topic defaults, or one topic's own.
    Log(fn(&mut LogConfig, &Value)),
    /// Accepted, validated and reported; nothing reads it through a target (the row's doc says whether
    /// anything acts on it: retention's minutes and hours synonyms feed `retention.ms`, see `dynamic`).
    Reported,
}

/// One row of the table.
#[derive(Clone, Copy)]
pub struct Setting {
    /// TOML key; `None`: cannot be configured (reported only).
    pub key: Option<&'static str>,
    /// Command-line flag, where the setting has one.
    pub flag: Option<&'static str>,
    /// Kafka's name: the broker-level one, or the topic-level one for [`Scope::Topic`]. `None`: a setting of
    /// this broker only, which DescribeConfigs does not report.
    pub kafka_name: Option<&'static str>,
    pub scope: Scope,
    pub config_type: ConfigType,
    pub default: DefaultValue,
    pub validator: Validator,
    /// Whether AlterConfigs may change it without a restart (a broker setting this broker applies
    /// dynamically; every topic config).
    pub dynamic: bool,
    pub presentation: Presentation,
    pub target: Target,
    /// One line of documentation (README, DescribeConfigs `documentation`).
    pub doc: &'static str,
}

impl Setting {
    /// The name that identifies the row: its TOML key, else its Kafka name.
    pub fn id(&self) -> &'static str {
        self.key.or(self.kafka_name).unwrap_or("")
    }

    /// The topic-level name, for settings that are topic configs.
    pub fn topic_name(&self) -> Option<&'static str> {
        match self.scope {
            Scope::Broker => None,
            Scope::Topic => self.kafka_name,
            Scope::BrokerAndTopic { topic_name } => Some(topic_name),
        }
    }

    /// Whether the setting is a broker setting (possibly also a topic config's default).
    pub fn is_broker(&self) -> bool {
        !matches!(self.scope, Scope::Topic)
    }
}

/// The row whose id is `id`.
pub fn setting(id: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|setting| setting.id() == id)
}

/// The row of the topic config `topic_name`.
pub fn topic_setting(topic_name: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|setting| setting.topic_name() == Some(topic_name))
}

const fn row(key: &'static str, kafka_name: Option<&'static str>, doc: &'static str) -> Setting {
    Setting {
        key: Some(key),
        flag: None,
        kafka_name,
        scope: Scope::Broker,
        config_type: ConfigType::Long,
        default: DefaultValue::Fixed(""),
        validator: Validator::Any,
        dynamic: false,
        presentation: Presentation::AsIs,
        target: Target::Reported,
        doc,
    }
}

/// A topic config with no broker setting of its own that this broker accepts, validates and reports but
/// does not act on (replication, tiered storage and compression levels of a single node that stores
/// batches as produced).
const fn reported_topic_config(
    name: &'static str,
    config_type: ConfigType,
    default: &'static str,
    validator: Validator,
    doc: &'static str,
) -> Setting {
    Setting {
        key: None,
        scope: Scope::Topic,
        config_type,
        default: DefaultValue::Fixed(default),
        validator,
        dynamic: true,
        ..row("", Some(name), doc)
    }
}

const NON_NEGATIVE: Validator = Validator::AtLeast(0);
const POSITIVE: Validator = Validator::AtLeast(1);
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

/// Every setting, in the order the README and DescribeConfigs list them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        flag: Some("--listen"),
        config_type: ConfigType::String,
        default: DefaultValue::Fixed("0.0.0.0:9092"),
        presentation: Presentation::Listener,
        target: Target::Broker(|config, value| {
            config.listen = super::resolve(value.as_text())?;
            Ok(())
        }),
        ..row("listen", Some("listeners"), "where clients connect (HOST:PORT)")
    },
    Setting {
        flag: Some("--advertise"),
        config_type: ConfigType::String,
        default: DefaultValue::Derived("the listen address; the host name on 0.0.0.0"),
        presentation: Presentation::Listener,
        target: Target::Broker(|config, value| {
            (config.advertise_host, config.advertise_port) =
                super::split_host_port(value.as_text())?;
            Ok(())
        }),
        ..row("advertise", Some("advertised.listeners"), "what Metadata tells clients to connect to (HOST:PORT)")
    },
    Setting {
        flag: Some("--data-dir"),
        config_type: ConfigType::String,
        default: DefaultValue::Fixed("./data"),
        target: Target::Broker(|config, value| {
            config.data_dir = value.as_text().into();
            Ok(())
        }),
        ..row("data_dir", Some("log.dirs"), "partitions and cluster metadata")
    },
    Setting {
        flag: Some("--shards"),
        config_type: ConfigType::Int,
        default: DefaultValue::Derived("one per online core"),
        validator: Validator::Range(1, 1024),
        target: Target::Broker(|config, value| {
            config.shards = value.as_int() as usize;
            Ok(())
        }),
        ..row("shards", None, "executors, each pinned to a core")
    },
    cluster::NODE_ID,
    cluster::BROKER_ID,
    cluster::PROCESS_ROLES,
    cluster::CONTROLLER_QUORUM_VOTERS,
    cluster::CONTROLLER_LISTEN,
    cluster::RACK,
    cluster::BROKER_SESSION_TIMEOUT_MS,
    cluster::BROKER_HEARTBEAT_INTERVAL_MS,
    cluster::METADATA_SNAPSHOT_BYTES,
    cluster::REPLICA_LAG_TIME_MAX_MS,
    cluster::AUTO_LEADER_REBALANCE_ENABLE,
    cluster::LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS,
    cluster::LEADER_IMBALANCE_PER_BROKER_PERCENTAGE,
    cluster::FOLLOWER_REPLICATION_THROTTLED_RATE,
    cluster::LEADER_REPLICATION_THROTTLED_RATE,
    cluster::REPLICA_FSYNC_BEFORE_ACK,
    cluster::REPLICA_SELECTOR,
    cluster::RECOVER_UNKNOWN_DATA,
    Setting {
        config_type: ConfigType::Boolean,
        default: DefaultValue::Fixed("true"),
        target: Target::Broker(|config, value| {
            config.auto_create_topics_enable = value.as_bool();
            Ok(())
        }),
        ..row("auto_create_topics_enable", Some("auto.create.topics.enable"), "a Metadata request naming an unknown topic creates it (where the client allows)")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("1"),
        validator: Validator::Range(1, MAX_PARTITIONS_PER_TOPIC as i64),
        target: Target::Broker(|config, value| {
            config.num_partitions = value.as_int() as i32;
            Ok(())
        }),
        ..row("num_partitions", Some("num.partitions"), "partitions of a topic created without a count")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("1"),
        validator: Validator::Range(1, MAX_REPLICATION_FACTOR as i64),
        target: Target::Broker(|config, value| {
            config.default_replication_factor = value.as_int() as i16;
            Ok(())
        }),
        ..row("default_replication_factor", Some("default.replication.factor"), "replicas of a topic created without a replication factor (at most the live brokers)")
    },
    Setting {
        key: None,
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("10"),
        validator: POSITIVE,
        dynamic: true,
        ..row("", Some("background.threads"), "accepted and reported (dynamic); each shard runs its own background work")
    },
    Setting {
        key: None,
        default: DefaultValue::Fixed("60000"),
        validator: NON_NEGATIVE,
        dynamic: true,
        ..row("", Some("sasl.kerberos.min.time.before.relogin"), "accepted and reported (dynamic); SASL comes later")
    },
    Setting {
        default: DefaultValue::Fixed("104857600"),
        validator: NON_NEGATIVE,
        target: Target::Broker(|config, value| {
            config.socket_request_max_bytes = value.as_int() as usize;
            Ok(())
        }),
        ..row("socket_request_max_bytes", Some("socket.request.max.bytes"), "largest request frame; a larger one closes its connection")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "max.message.bytes" },
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("1048588"),
        validator: POSITIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.max_message_bytes = value.as_int() as u32),
        ..row("message_max_bytes", Some("message.max.bytes"), "largest record batch a topic takes")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "message.timestamp.type" },
        config_type: ConfigType::String,
        default: DefaultValue::Fixed("CreateTime"),
        validator: Validator::OneOf(TIMESTAMP_TYPES),
        dynamic: true,
        target: Target::Log(|log, value| {
            log.timestamp_type = match value.as_text() {
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            }
        }),
        ..row("log_message_timestamp_type", Some("log.message.timestamp.type"), "the producer's record timestamps (CreateTime) or the broker's append time (LogAppendTime)")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "segment.bytes" },
        default: DefaultValue::Fixed("1073741824"),
        validator: POSITIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.segment_bytes = value.as_int().max(14) as u64),
        ..row("log_segment_bytes", Some("log.segment.bytes"), "a partition's active segment rolls at this size")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "segment.ms" },
        default: DefaultValue::Fixed("604800000"),
        validator: POSITIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.segment_ms = value.as_int()),
        ..row("log_roll_ms", Some("log.roll.ms"), "a partition's active segment rolls at this age")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "segment.index.bytes" },
        default: DefaultValue::Fixed("10485760"),
        validator: POSITIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.segment_index_bytes = value.as_int().max(8) as u64),
        ..row("log_index_size_max_bytes", Some("log.index.size.max.bytes"), "largest offset index of a segment (a full index rolls the segment)")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "index.interval.bytes" },
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("4096"),
        validator: NON_NEGATIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.index_interval_bytes = value.as_int() as u32),
        ..row("log_index_interval_bytes", Some("log.index.interval.bytes"), "log bytes between two offset index entries")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "flush.messages" },
        default: DefaultValue::Fixed("9223372036854775807"),
        validator: POSITIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.flush_messages = never_at_max(value.as_int())),
        ..row("log_flush_interval_messages", Some("log.flush.interval.messages"), "fsync after this many messages (default: never, leave it to the OS)")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "flush.ms" },
        default: DefaultValue::Fixed("9223372036854775807"),
        validator: NON_NEGATIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.flush_ms = never_at_max(value.as_int())),
        ..row("log_flush_interval_ms", Some("log.flush.interval.ms"), "fsync at least this often (default: never, leave it to the OS)")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "cleanup.policy" },
        config_type: ConfigType::List,
        default: DefaultValue::Fixed("delete"),
        validator: Validator::ListOf(&["delete", "compact"]),
        dynamic: true,
        target: Target::Log(|log, value| log.cleanup_policy = CleanupPolicy::parse(value.as_text())),
        ..row("log_cleanup_policy", Some("log.cleanup.policy"), "delete: retention deletes old segments; compact: the log cleaner keeps the last record per key; or both")
    },
    Setting {
        key: None,
        scope: Scope::Topic,
        config_type: ConfigType::String,
        default: DefaultValue::Fixed("producer"),
        validator: Validator::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        ..row("", Some("compression.type"), "accepted and reported; batches are stored as produced")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "retention.ms" },
        default: DefaultValue::Fixed("604800000"),
        validator: Validator::AtLeast(-1),
        dynamic: true,
        target: Target::Log(|log, value| log.retention_ms = value.as_int()),
        ..row("log_retention_ms", Some("log.retention.ms"), "closed segments whose newest record is older than this are deleted (-1: never)")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Derived("unset: log.retention.hours applies"),
        dynamic: true,
        ..row("log_retention_minutes", Some("log.retention.minutes"), "retention.ms's default in minutes, where log.retention.ms is not given (negative: never)")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("168"),
        dynamic: true,
        ..row("log_retention_hours", Some("log.retention.hours"), "retention.ms's default in hours, where neither log.retention.ms nor log.retention.minutes is given (negative: never)")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "retention.bytes" },
        default: DefaultValue::Fixed("-1"),
        validator: Validator::AtLeast(-1),
        dynamic: true,
        target: Target::Log(|log, value| log.retention_bytes = value.as_int()),
        ..row("log_retention_bytes", Some("log.retention.bytes"), "the oldest closed segments are deleted while a partition is larger (-1: no limit)")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "file.delete.delay.ms" },
        default: DefaultValue::Fixed("60000"),
        validator: NON_NEGATIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.file_delete_delay_ms = value.as_int()),
        ..row("log_segment_delete_delay_ms", Some("log.segment.delete.delay.ms"), "a deleted segment's files are removed this long after it left the log")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "delete.retention.ms" },
        default: DefaultValue::Fixed("86400000"),
        validator: NON_NEGATIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.delete_retention_ms = value.as_int()),
        ..row("log_cleaner_delete_retention_ms", Some("log.cleaner.delete.retention.ms"), "the log cleaner keeps a tombstone this long after cleaning the segment holding it")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "min.cleanable.dirty.ratio" },
        config_type: ConfigType::Double,
        default: DefaultValue::Fixed("0.5"),
        validator: Validator::Ratio,
        dynamic: true,
        target: Target::Log(|log, value| log.min_cleanable_dirty_ratio = value.as_double()),
        ..row("log_cleaner_min_cleanable_ratio", Some("log.cleaner.min.cleanable.ratio"), "the log cleaner takes a compacted log once this share of it is uncleaned")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "min.compaction.lag.ms" },
        default: DefaultValue::Fixed("0"),
        validator: NON_NEGATIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.min_compaction_lag_ms = value.as_int()),
        ..row("log_cleaner_min_compaction_lag_ms", Some("log.cleaner.min.compaction.lag.ms"), "a record stays uncompacted at least this long")
    },
    Setting {
        scope: Scope::BrokerAndTopic { topic_name: "max.compaction.lag.ms" },
        default: DefaultValue::Fixed("9223372036854775807"),
        validator: POSITIVE,
        dynamic: true,
        target: Target::Log(|log, value| log.max_compaction_lag_ms = value.as_int()),
        ..row("log_cleaner_max_compaction_lag_ms", Some("log.cleaner.max.compaction.lag.ms"), "a record is compacted at most this long after it was written, whatever the dirty ratio")
    },
    Setting {
        validator: POSITIVE,
        default: DefaultValue::Fixed("300000"),
        dynamic: true,
        target: Target::Broker(|config, value| {
            config.lifecycle.retention_check_interval_ms = value.as_int() as u64;
            Ok(())
        }),
        ..row("log_retention_check_interval_ms", Some("log.retention.check.interval.ms"), "per shard: how often retention looks for segments to delete")
    },
    Setting {
        validator: POSITIVE,
        default: DefaultValue::Fixed("86400000"),
        dynamic: true,
        target: Target::Log(|log, value| log.producer_id_expiration_ms = value.as_int()),
        ..row("producer_id_expiration_ms", Some("producer.id.expiration.ms"), "a partition forgets a producer id idle this long (no batch or marker) that has no open transaction")
    },
    Setting {
        validator: POSITIVE,
        default: DefaultValue::Fixed("600000"),
        target: Target::Broker(|config, value| {
            config.lifecycle.producer_id_expiration_check_interval_ms = value.as_int() as u64;
            Ok(())
        }),
        ..row("producer_id_expiration_check_interval_ms", Some("producer.id.expiration.check.interval.ms"), "per shard: how often expired producer ids are looked for")
    },
    Setting {
        config_type: ConfigType::Boolean,
        default: DefaultValue::Fixed("true"),
        target: Target::Broker(|config, value| {
            config.lifecycle.cleaner_enable = value.as_bool();
            Ok(())
        }),
        ..row("log_cleaner_enable", Some("log.cleaner.enable"), "run the log cleaner (compacted topics, __consumer_offsets)")
    },
    Setting {
        default: DefaultValue::Fixed("15000"),
        validator: POSITIVE,
        dynamic: true,
        target: Target::Broker(|config, value| {
            config.lifecycle.cleaner_backoff_ms = value.as_int() as u64;
            Ok(())
        }),
        ..row("log_cleaner_backoff_ms", Some("log.cleaner.backoff.ms"), "per shard: how long the idle log cleaner sleeps before it looks again")
    },
    Setting {
        default: DefaultValue::Fixed("134217728"),
        validator: Validator::AtLeast(1 << 20),
        dynamic: true,
        target: Target::Broker(|config, value| {
            config.lifecycle.cleaner_dedupe_buffer_size = value.as_int() as usize;
            Ok(())
        }),
        ..row("log_cleaner_dedupe_buffer_size", Some("log.cleaner.dedupe.buffer.size"), "per shard: memory of the log cleaner's offset map (key hash to last offset)")
    },
    Setting {
        config_type: ConfigType::Double,
        default: DefaultValue::Fixed("1.7976931348623157E308"),
        validator: Validator::AtLeast(0),
        dynamic: true,
        target: Target::Broker(|config, value| {
            config.lifecycle.cleaner_io_max_bytes_per_second = value.as_double();
            Ok(())
        }),
        ..row("log_cleaner_io_max_bytes_per_second", Some("log.cleaner.io.max.bytes.per.second"), "per shard: the log cleaner reads and writes at most this many bytes per second")
    },
    Setting {
        key: None,
        scope: Scope::Topic,
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("1"),
        validator: POSITIVE,
        ..row("", Some("min.insync.replicas"), "an acks=all produce needs this many replicas in sync (NOT_ENOUGH_REPLICAS before the append, NOT_ENOUGH_REPLICAS_AFTER_APPEND after it)")
    },
    cluster::UNCLEAN_LEADER_ELECTION_ENABLE,
    reported_topic_config("leader.replication.throttled.replicas", ConfigType::List, "", Validator::Any, "accepted and reported; the throttle applies on followers (follower.replication.throttled.replicas)"),
    reported_topic_config("follower.replication.throttled.replicas", ConfigType::List, "", Validator::Any, "replicas (`partition:broker`, or `*`) whose follower copies at most follower.replication.throttled.rate"),
    reported_topic_config("compression.gzip.level", ConfigType::Int, "-1", Validator::GzipLevel, "accepted and reported (1..9, -1: the codec's default); batches are stored as produced"),
    reported_topic_config("compression.lz4.level", ConfigType::Int, "9", Validator::Range(1, 17), "accepted and reported; batches are stored as produced"),
    reported_topic_config("compression.zstd.level", ConfigType::Int, "3", Validator::Range(-131_072, 22), "accepted and reported; batches are stored as produced"),
    reported_topic_config("segment.jitter.ms", ConfigType::Long, "0", NON_NEGATIVE, "accepted and reported; segments roll at segment.ms without jitter"),
    reported_topic_config("preallocate", ConfigType::Boolean, "false", Validator::Any, "accepted and reported; segment files grow as written"),
    reported_topic_config("message.timestamp.before.max.ms", ConfigType::Long, "9223372036854775807", NON_NEGATIVE, "accepted and reported; record timestamps in the past are not checked"),
    reported_topic_config("message.timestamp.after.max.ms", ConfigType::Long, "3600000", NON_NEGATIVE, "accepted and reported; record timestamps in the future are not checked"),
    reported_topic_config("message.downconversion.enable", ConfigType::Boolean, "true", Validator::Any, "accepted and reported; a no-op since Kafka 4.0 (no down-conversion)"),
    reported_topic_config("remote.storage.enable", ConfigType::Boolean, "false", Validator::Any, "accepted and reported; there is no tiered storage"),
    reported_topic_config("local.retention.ms", ConfigType::Long, "-2", Validator::AtLeast(-2), "accepted and reported; no tiered storage (-2: retention.ms)"),
    reported_topic_config("local.retention.bytes", ConfigType::Long, "-2", Validator::AtLeast(-2), "accepted and reported; no tiered storage (-2: retention.bytes)"),
    reported_topic_config("remote.log.copy.disable", ConfigType::Boolean, "false", Validator::Any, "accepted and reported; there is no tiered storage"),
    reported_topic_config("remote.log.delete.on.disable", ConfigType::Boolean, "false", Validator::Any, "accepted and reported; there is no tiered storage"),
    Setting {
        default: DefaultValue::Fixed("67108864"),
        validator: NON_NEGATIVE,
        target: Target::Broker(|config, value| {
            config.batch_cache_bytes = value.as_int() as usize;
            Ok(())
        }),
        ..row("batch_cache_bytes", None, "per shard: recent batches served to tailing consumers from memory")
    },
    read_path::READ_AHEAD_BYTES,
    read_path::READ_AHEAD_CHUNK_BYTES,
    read_path::READ_AHEAD_CHUNKS,
    Setting {
        config_type: ConfigType::Boolean,
        default: DefaultValue::Fixed("true"),
        target: Target::Broker(|config, value| {
            config.direct_io = value.as_bool();
            Ok(())
        }),
        ..row("direct_io", None, "O_DIRECT segment writes (falls back to buffered where refused)")
    },
    Setting {
        default: DefaultValue::Fixed("120000"),
        validator: NON_NEGATIVE,
        target: Target::Broker(|config, value| {
            config.startup_timeout = std::time::Duration::from_millis(value.as_int() as u64);
            Ok(())
        }),
        ..row("startup_timeout_ms", None, "every shard must serve within this long of the start, else the broker exits with status 1")
    },
    Setting {
        default: DefaultValue::Fixed("30000"),
        validator: NON_NEGATIVE,
        target: Target::Broker(|config, value| {
            config.shutdown_timeout = std::time::Duration::from_millis(value.as_int() as u64);
            Ok(())
        }),
        ..row("shutdown_timeout_ms", None, "after SIGTERM or SIGINT the process exits within this long (a second signal: at once)")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("50"),
        validator: Validator::Range(1, MAX_PARTITIONS_PER_TOPIC as i64),
        target: Target::Broker(|config, value| {
            config.groups.offsets_topic_partitions = value.as_int() as i32;
            Ok(())
        }),
        ..row("offsets_topic_num_partitions", Some("offsets.topic.num.partitions"), "partitions of __consumer_offsets (fixed once it exists)")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("4096"),
        validator: NON_NEGATIVE,
        target: Target::Broker(|config, value| {
            config.groups.offset_metadata_max_bytes = value.as_int() as usize;
            Ok(())
        }),
        ..row("offset_metadata_max_bytes", Some("offset.metadata.max.bytes"), "longest metadata string an offset commit may carry")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("10080"),
        validator: POSITIVE,
        target: Target::Broker(|config, value| {
            config.groups.offsets_retention_minutes = value.as_int() as u64;
            Ok(())
        }),
        ..row("offsets_retention_minutes", Some("offsets.retention.minutes"), "committed offsets of a group left empty this long expire")
    },
    Setting {
        default: DefaultValue::Fixed("600000"),
        validator: POSITIVE,
        target: Target::Broker(|config, value| {
            config.groups.offsets_retention_check_interval_ms = value.as_int() as u64;
            Ok(())
        }),
        ..row("offsets_retention_check_interval_ms", Some("offsets.retention.check.interval.ms"), "how often the group coordinator looks for expired offsets")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("104857600"),
        validator: POSITIVE,
        target: Target::Broker(|config, value| {
            config.groups.offsets_topic_segment_bytes = value.as_int() as u64;
            Ok(())
        }),
        ..row("offsets_topic_segment_bytes", Some("offsets.topic.segment.bytes"), "segment size of __consumer_offsets (kept small for fast compaction and loading)")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("3000"),
        validator: NON_NEGATIVE,
        target: Target::Broker(|config, value| {
            config.groups.initial_rebalance_delay_ms = value.as_int() as u64;
            Ok(())
        }),
        ..row("group_initial_rebalance_delay_ms", Some("group.initial.rebalance.delay.ms"), "the first rebalance of an empty group waits this long for more members")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("6000"),
        target: Target::Broker(|config, value| {
            config.groups.min_session_timeout_ms = value.as_int() as i32;
            Ok(())
        }),
        ..row("group_min_session_timeout_ms", Some("group.min.session.timeout.ms"), "shortest session timeout a group member may ask for")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Fixed("1800000"),
        target: Target::Broker(|config, value| {
            config.groups.max_session_timeout_ms = value.as_int() as i32;
            Ok(())
        }),
        ..row("group_max_session_timeout_ms", Some("group.max.session.timeout.ms"), "longest session timeout a group member may ask for")
    },
    transactions::STATE_LOG_NUM_PARTITIONS,
    transactions::STATE_LOG_SEGMENT_BYTES,
    transactions::MAX_TIMEOUT_MS,
    transactions::ID_EXPIRATION_MS,
    transactions::ABORT_TIMED_OUT_INTERVAL_MS,
    transactions::REMOVE_EXPIRED_INTERVAL_MS,
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::Derived("2/5 of the descriptors left after the reserve"),
        validator: POSITIVE,
        dynamic: false, // connection limits are fixed at start here
        target: Target::Broker(|config, value| {
            config.max_connections = Some(value.as_int() as usize);
            Ok(())
        }),
        ..row("max_connections", Some("max.connections"), "client connections open at once, broker-wide; one over it is closed right after accept")
    },
    Setting {
        config_type: ConfigType::Int,
        default: DefaultValue::SameAs("max_connections"),
        validator: POSITIVE,
        dynamic: false, // connection limits are fixed at start here
        target: Target::Broker(|config, value| {
            config.max_connections_per_ip = Some(value.as_int() as usize);
            Ok(())
        }),
        ..row("max_connections_per_ip", Some("max.connections.per.ip"), "client connections open at once from one IP address")
    },
    Setting {
        default: DefaultValue::Fixed("600000"),
        validator: NON_NEGATIVE,
        target: Target::Broker(|config, value| {
            config.connections_max_idle_ms = value.as_int() as u64;
            Ok(())
        }),
        ..row("connections_max_idle_ms", Some("connections.max.idle.ms"), "a connection idle this long is closed (0: never)")
    },
    Setting {
        default: DefaultValue::Fixed("104857600"),
        validator: Validator::PositiveOrUnbounded,
        target: Target::Broker(|config, value| {
            config.queued_max_request_bytes = match value.as_int() {
                -1 => usize::MAX,
                bytes => bytes as usize,
            };
            Ok(())
        }),
        ..row("queued_max_request_bytes", Some("queued.max.request.bytes"), "per shard: request bytes held at once (-1: unbounded)")
    },
    Setting {
        default: DefaultValue::Fixed("8388608"),
        validator: NON_NEGATIVE,
        target: Target::Broker(|config, value| {
            config.connection_max_queued_response_bytes = value.as_int() as usize;
            Ok(())
        }),
        ..row("connection_max_queued_response_bytes", None, "per connection: unsent response bytes before it stops taking requests")
    },
];

/// Kafka reports "never" as Long.MAX_VALUE; the log layer's "never" is `u64::MAX`.
fn never_at_max(value: i64) -> u64 {
    if value == i64::MAX {
        u64::MAX
    } else {
        value as u64
    }
}

/// A checked value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl Value {
    /// The integer of an `Int`/`Long` setting (0 for any other, which the parse never hands over).
    pub fn as_int(&self) -> i64 {
        match self {
            Value::Int(number) => *number,
            Value::Bool(_) | Value::Text(_) => 0,
        }
    }

    /// The boolean of a `Boolean` setting (false for any other).
    pub fn as_bool(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    /// The number of a `Double` setting (kept as its checked text; 0 for any other).
    pub fn as_double(&self) -> f64 {
        match self {
            Value::Text(text) => text.parse().unwrap_or(0.0),
            Value::Int(number) => *number as f64,
            Value::Bool(_) => 0.0,
        }
    }

    /// The text of a `String`/`List` setting (empty for any other).
    pub fn as_text(&self) -> &str {
        match self {
            Value::Text(text) => text,
            Value::Bool(_) | Value::Int(_) => "",
        }
    }

    /// As Kafka writes it.
    pub fn render(&self) -> String {
        match self {
            Value::Bool(flag) => flag.to_string(),
            Value::Int(number) => number.to_string(),
            Value::Text(text) => text.clone(),
        }
    }
}
