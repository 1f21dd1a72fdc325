//! Unit tests of the configuration: the table's own consistency, flag/TOML parsing, topic configs,
//! DescribeConfigs' sources and synonyms, and `deploy/broker.toml` and the README against the table.

use super::describe::{describe_broker, describe_topic, ConfigSource, DescribedConfig};
use super::table::{DefaultValue, Scope, Setting, SETTINGS};
use super::value::parse_text;
use super::*;
use std::collections::BTreeSet;
use std::path::Path;

const DEPLOY_FILE: &str = include_str!("../../../deploy/broker.toml");
const README: &str = include_str!("../../../README.md");

/// Settings `deploy/broker.toml` sets to a value of its own (the systemd unit's data directory);
/// every other active line carries the setting's default.
const DEPLOYMENT_CHOICES: &[&str] = &["data_dir"];

fn settings_from(toml_text: &str) -> Settings {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let mut settings = Settings::defaults();
    settings.apply_file(Path::new("test.toml"), &table).unwrap();
    settings
}

fn config_from(toml_text: &str) -> Result<BrokerConfig, ConfigError> {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broker.toml");
    std::fs::write(&path, toml_text).unwrap();
    BrokerConfig::from_cli(Cli {
        config: Some(path),
        shards: Some(1),
        ..Cli::default()
    })
}

fn find<'a>(described: &'a [DescribedConfig], name: &str) -> &'a DescribedConfig {
    described
        .iter()
        .find(|config| config.name == name)
        .unwrap_or_else(|| panic!("{name} is not described"))
}

#[test]
fn the_example_config_in_deploy_parses() {
    let settings = settings_from(DEPLOY_FILE);
    let int = |id: &str| settings.get(id).map(|entry| entry.value.as_int());
    assert_eq!(int("offsets_topic_num_partitions"), Some(50));
    assert_eq!(int("group_initial_rebalance_delay_ms"), Some(3000));
    assert_eq!(int("connections_max_idle_ms"), Some(600_000));
    assert_eq!(int("queued_max_request_bytes"), Some(100 * 1024 * 1024));
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

#[test]
fn the_table_is_consistent() {
    let mut ids = BTreeSet::new();
    let mut kafka_names = BTreeSet::new();
    let mut topic_names = BTreeSet::new();
    for row in SETTINGS {
        assert!(!row.id().is_empty(), "a row has neither key nor Kafka name");
        assert!(ids.insert(row.id()), "{} twice", row.id());
        if let Some(name) = row.kafka_name {
            assert!(kafka_names.insert(name), "{name} twice");
        }
        if let Some(name) = row.topic_name() {
            assert!(topic_names.insert(name), "{name} twice");
        }
        assert!(!row.doc.is_empty(), "{} has no documentation", row.id());
        assert!(row.flag.is_none() || row.key.is_some(), "{}", row.id());
        match row.default {
            DefaultValue::Fixed(text) => {
                if let Err(message) = parse_text(row, text) {
                    panic!("default {text:?} of {}: {message}", row.id());
                }
            }
            DefaultValue::SameAs(other) => assert!(table::setting(other).is_some()),
            DefaultValue::Derived(_) => {}
        }
        if let Scope::Topic = row.scope {
            assert!(
                row.key.is_none() && row.kafka_name.is_some(),
                "{}",
                row.id()
            );
        }
    }
}

#[test]
fn every_flag_is_a_table_setting() {
    use clap::CommandFactory;
    let command = Cli::command();
    let flags: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|argument| argument.get_long())
        .filter(|long| *long != "config" && *long != "help" && *long != "version")
        .map(|long| format!("--{long}"))
        .collect();
    let table_flags: BTreeSet<String> = SETTINGS
        .iter()
        .filter_map(|row| row.flag.map(str::to_string))
        .collect();
    assert_eq!(flags, table_flags);
}

#[test]
fn built_in_defaults_are_the_table_defaults() {
    let config = config_from("").unwrap();
    let log = &config.log_defaults;
    let defaults = LogConfig::default();
    assert_eq!(log.segment_bytes, defaults.segment_bytes);
    assert_eq!(log.segment_ms, defaults.segment_ms);
    assert_eq!(log.segment_index_bytes, defaults.segment_index_bytes);
    assert_eq!(log.index_interval_bytes, defaults.index_interval_bytes);
    assert_eq!(log.max_message_bytes, defaults.max_message_bytes);
    assert_eq!(log.timestamp_type, defaults.timestamp_type);
    assert_eq!(log.flush_messages, defaults.flush_messages);
    assert_eq!(log.flush_ms, defaults.flush_ms);
    let groups = GroupConfig::default();
    assert_eq!(
        config.groups.offsets_topic_partitions,
        groups.offsets_topic_partitions
    );
    assert_eq!(
        config.groups.offset_metadata_max_bytes,
        groups.offset_metadata_max_bytes
    );
    assert_eq!(
        config.groups.initial_rebalance_delay_ms,
        groups.initial_rebalance_delay_ms
    );
    assert_eq!(
        config.groups.min_session_timeout_ms,
        groups.min_session_timeout_ms
    );
    assert_eq!(
        config.groups.max_session_timeout_ms,
        groups.max_session_timeout_ms
    );
    assert_eq!(
        config.socket_request_max_bytes,
        net::DEFAULT_MAX_REQUEST_BYTES
    );
    assert_eq!(
        config.connection_max_queued_response_bytes,
        net::DEFAULT_MAX_QUEUED_RESPONSE_BYTES
    );
    assert_eq!(
        config.connections_max_idle_ms,
        DEFAULT_CONNECTIONS_MAX_IDLE_MS
    );
    assert_eq!(
        config.queued_max_request_bytes,
        DEFAULT_QUEUED_MAX_REQUEST_BYTES
    );
    assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 9092)));
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.node_id, 0);
    assert!(config.auto_create_topics_enable);
    assert_eq!(config.num_partitions, 1);
    assert_eq!(config.batch_cache_bytes, 64 * 1024 * 1024);
    assert!(config.direct_io);
    assert_eq!(config.startup_timeout, std::time::Duration::from_secs(120));
    assert_eq!(config.shutdown_timeout, std::time::Duration::from_secs(30));
    assert_eq!(config.max_connections, None);
    assert_eq!(config.max_connections_per_ip, None);
    assert!(!config.recover_unknown_data);
}

#[test]
fn the_file_fills_the_struct_and_bad_files_are_refused() {
    let config = config_from(
        "log_segment_bytes = 65536\nlog_message_timestamp_type = \"LogAppendTime\"\n\
         queued_max_request_bytes = -1\nmax_connections = 6\nlog_flush_interval_ms = 1000\n",
    )
    .unwrap();
    assert_eq!(config.log_defaults.segment_bytes, 65536);
    assert_eq!(
        config.log_defaults.timestamp_type,
        TimestampType::LogAppendTime
    );
    assert_eq!(config.queued_max_request_bytes, usize::MAX);
    assert_eq!(config.max_connections, Some(6));
    assert_eq!(config.log_defaults.flush_ms, 1000);
    for (text, key, message) in [
        ("no_such_key = 1", None, ""),
        ("shards = 0", Some("shards"), "0 is not in 1..=1024"),
        (
            "offsets_topic_num_partitions = 10001",
            Some("offsets_topic_num_partitions"),
            "10001 is not in 1..=10000",
        ),
        (
            "max_connections = 0",
            Some("max_connections"),
            "must be positive",
        ),
        (
            "queued_max_request_bytes = 0",
            Some("queued_max_request_bytes"),
            "0 is neither positive nor -1 (unbounded)",
        ),
        (
            "log_message_timestamp_type = \"Now\"",
            Some("log_message_timestamp_type"),
            "expected CreateTime or LogAppendTime",
        ),
        ("direct_io = 1", Some("direct_io"), "expected true or false"),
        (
            "group_min_session_timeout_ms = 10\ngroup_max_session_timeout_ms = 5",
            Some("group_min_session_timeout_ms"),
            "exceeds group_max_session_timeout_ms",
        ),
    ] {
        match (config_from(text), key) {
            (Err(ConfigError::Unknown { key, .. }), None) => assert_eq!(key, "no_such_key"),
            (Err(ConfigError::Invalid { key, message: got }), Some(expected)) => {
                assert_eq!((key, got.as_str()), (expected, message), "{text}")
            }
            (other, _) => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn topic_config_errors_keep_their_messages() {
    let defaults = LogConfig::default();
    for (name, value, message) in [
        ("segment.bytes", "-5", "must be positive"),
        ("index.interval.bytes", "-1", "must not be negative"),
        ("segment.ms", "soon", "invalid digit found in string"),
        (
            "message.timestamp.type",
            "Now",
            "expected CreateTime or LogAppendTime",
        ),
        (
            "cleanup.policy",
            "delete,shred",
            "expected delete and/or compact",
        ),
        (
            "compression.type",
            "brotli",
            "expected producer, uncompressed, gzip, snappy, lz4 or zstd",
        ),
        ("min.insync.replicas", "0", "must be positive"),
    ] {
        let overrides = BTreeMap::from([(name.to_string(), value.to_string())]);
        let error = TopicConfig::resolve(&defaults, &overrides)
            .err()
            .unwrap_or_else(|| panic!("{name}={value} accepted"));
        assert_eq!(
            error,
            format!("invalid value {value:?} for {name}: {message}")
        );
    }
    let unknown = BTreeMap::from([("no.such.config".to_string(), "1".to_string())]);
    assert_eq!(
        TopicConfig::resolve(&defaults, &unknown).err().as_deref(),
        Some("unknown topic config no.such.config")
    );
    let accepted = BTreeMap::from([
        ("segment.bytes".to_string(), "5".to_string()),
        ("segment.index.bytes".to_string(), "1".to_string()),
        ("cleanup.policy".to_string(), "compact, delete".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
    ]);
    let config = TopicConfig::resolve(&defaults, &accepted).unwrap();
    assert_eq!(config.log.segment_bytes, 14);
    assert_eq!(config.log.segment_index_bytes, 8);
}

#[test]
fn broker_configs_report_their_source_and_synonyms() {
    let settings = settings_from("num_partitions = 3\nmax_connections_per_ip = 9\n");
    let runtime = |id: &str| (id == "max_connections").then(|| "4000".to_string());
    let described = describe_broker(&settings, &runtime);
    let partitions = find(&described, "num.partitions");
    assert_eq!(partitions.value.as_deref(), Some("3"));
    assert_eq!(partitions.source, ConfigSource::StaticBrokerConfig);
    let synonyms: Vec<_> = partitions
        .synonyms
        .iter()
        .map(|synonym| (synonym.name, synonym.value.as_deref(), synonym.source))
        .collect();
    assert_eq!(
        synonyms,
        [
            (
                "num.partitions",
                Some("3"),
                ConfigSource::StaticBrokerConfig
            ),
            ("num.partitions", Some("1"), ConfigSource::DefaultConfig),
        ]
    );
    let segment = find(&described, "log.segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert_eq!(segment.source, ConfigSource::DefaultConfig);
    assert_eq!(segment.synonyms.len(), 1);
    assert!(!segment.read_only, "log.segment.bytes is dynamic in Kafka");
    assert!(find(&described, "node.id").read_only);
    let connections = find(&described, "max.connections");
    assert_eq!(connections.value.as_deref(), Some("4000"));
    assert_eq!(connections.source, ConfigSource::DefaultConfig);
    assert!(connections.synonyms.is_empty());
    let per_ip = find(&described, "max.connections.per.ip");
    assert_eq!(per_ip.value.as_deref(), Some("9"));
    assert_eq!(per_ip.source, ConfigSource::StaticBrokerConfig);
    assert_eq!(
        find(&described, "broker.id").value,
        find(&described, "node.id").value
    );
    assert_eq!(
        find(&described, "log.flush.interval.ms").value.as_deref(),
        Some("9223372036854775807")
    );
    assert!(described.iter().all(|config| config.name != "shards"));
    assert!(described
        .iter()
        .all(|config| config.source != ConfigSource::TopicConfig));
}

#[test]
fn topic_configs_report_override_broker_and_default_sources() {
    let settings = settings_from("log_segment_bytes = 65536\n");
    let overrides = BTreeMap::from([("max.message.bytes".to_string(), "2000000".to_string())]);
    let described = describe_topic(&settings, &overrides);
    let names: BTreeSet<_> = described.iter().map(|config| config.name).collect();
    let expected: BTreeSet<_> = SETTINGS.iter().filter_map(Setting::topic_name).collect();
    assert_eq!(names, expected);

    let overridden = find(&described, "max.message.bytes");
    assert_eq!(overridden.value.as_deref(), Some("2000000"));
    assert_eq!(overridden.source, ConfigSource::TopicConfig);
    let synonyms: Vec<_> = overridden
        .synonyms
        .iter()
        .map(|synonym| (synonym.name, synonym.value.as_deref(), synonym.source))
        .collect();
    assert_eq!(
        synonyms,
        [
            (
                "max.message.bytes",
                Some("2000000"),
                ConfigSource::TopicConfig
            ),
            (
                "message.max.bytes",
                Some("1048588"),
                ConfigSource::DefaultConfig
            ),
        ]
    );

    let from_broker = find(&described, "segment.bytes");
    assert_eq!(from_broker.value.as_deref(), Some("65536"));
    assert_eq!(from_broker.source, ConfigSource::StaticBrokerConfig);
    assert_eq!(from_broker.synonyms[0].name, "log.segment.bytes");
    assert_eq!(from_broker.synonyms.len(), 2);

    let default = find(&described, "retention.ms");
    assert_eq!(default.value.as_deref(), Some("604800000"));
    assert_eq!(default.source, ConfigSource::DefaultConfig);
    assert_eq!(default.synonyms.len(), 1);
    assert_eq!(
        find(&described, "flush.messages").value.as_deref(),
        Some("9223372036854775807")
    );
    assert!(described.iter().all(|config| !config.read_only));
}

/// The README row of a setting: TOML key | flag | Kafka name | default | meaning.
fn readme_row(row: &Setting) -> String {
    let code = |text: &str| format!("`{text}`");
    let kafka = match (row.scope, row.kafka_name) {
        (Scope::Topic, Some(name)) => format!("topic {}", code(name)),
        (Scope::BrokerAndTopic { topic_name }, Some(name)) => {
            format!("{}, topic {}", code(name), code(topic_name))
        }
        (_, Some(name)) => code(name),
        (_, None) => String::new(),
    };
    let default = match row.default {
        DefaultValue::Fixed(text) => code(text),
        DefaultValue::Derived(text) => text.to_string(),
        DefaultValue::SameAs(other) => format!("as {}", code(other)),
    };
    format!(
        "| {} | {} | {kafka} | {default} | {} |",
        row.key.map(code).unwrap_or_default(),
        row.flag.map(code).unwrap_or_default(),
        row.doc
    )
}

#[test]
fn the_readme_table_matches_the_table() {
    let mut expected = vec![
        "| TOML key | flag | Kafka name | default | meaning |".to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    expected.extend(SETTINGS.iter().map(readme_row));
    let begin = "<!-- settings table: begin (generated from broker/src/config/table.rs) -->";
    let end = "<!-- settings table: end -->";
    let found: Option<Vec<&str>> = README.split_once(begin).and_then(|(_, rest)| {
        rest.split_once(end)
            .map(|(block, _)| block.lines().filter(|line| !line.is_empty()).collect())
    });
    if found.as_deref()
        != Some(
            expected
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
        )
    {
        panic!(
            "README's settings table is out of date; replace it with:\n{begin}\n{}\n{end}",
            expected.join("\n")
        );
    }
}

/// Rule: every broker setting with a TOML key is in `deploy/broker.toml` exactly once, either active
/// with its default value (settings in [`DEPLOYMENT_CHOICES`] excepted) or commented out
/// (`# key = example`); settings whose default is derived at start must be commented out. Every
/// active key is a setting, with a valid value.
#[test]
fn the_deploy_file_lists_every_broker_setting() {
    let table: toml::Table = toml::from_str(DEPLOY_FILE).unwrap();
    let mut settings = Settings::defaults();
    settings
        .apply_file(Path::new("deploy/broker.toml"), &table)
        .expect("every key of deploy/broker.toml is a valid setting");
    let commented: Vec<&str> = DEPLOY_FILE
        .lines()
        .filter_map(|line| line.trim().strip_prefix('#'))
        .filter_map(|rest| rest.trim().split_once(" = ").map(|(key, _)| key))
        .filter(|key| SETTINGS.iter().any(|row| row.key == Some(key)))
        .collect();
    for row in SETTINGS {
        let Some(key) = row.key else { continue };
        let active = table.get(key);
        let times_commented = commented.iter().filter(|other| **other == key).count();
        match (active, times_commented) {
            (Some(_), 0) | (None, 1) => {}
            _ => panic!("{key} must be in deploy/broker.toml once, active or commented out"),
        }
        let Some(item) = active else { continue };
        if DEPLOYMENT_CHOICES.contains(&key) {
            continue;
        }
        match row.default {
            DefaultValue::Fixed(text) => assert_eq!(
                value::parse_toml(row, item),
                parse_text(row, text),
                "deploy/broker.toml sets {key} to other than its default {text}"
            ),
            DefaultValue::Derived(_) | DefaultValue::SameAs(_) => {
                panic!("{key}'s default is derived: comment it out in deploy/broker.toml")
            }
        }
    }
}
