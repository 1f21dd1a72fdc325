//! Unit tests of dynamic configs: AlterConfigs / IncrementalAlterConfigs on a set of configs, the levels
//! a setting resolves through (retention's three names included), and DescribeConfigs' sources and
//! synonyms with dynamic configs.

use super::alter::{alter, ConfigChange, Operation, ResourceKind};
use super::describe::{
    describe_broker_defaults, describe_broker_with, describe_topic_with, ConfigSource,
    DescribedConfig,
};
use super::dynamic::DynamicConfigs;
use super::*;

fn change(name: &str, operation: Operation, value: Option<&str>) -> ConfigChange {
    ConfigChange {
        name: name.to_string(),
        operation,
        value: value.map(str::to_string),
    }
}

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn config_from(toml_text: &str) -> BrokerConfig {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broker.toml");
    std::fs::write(&path, toml_text).unwrap();
    BrokerConfig::from_cli(Cli {
        config: Some(path),
        shards: Some(1),
        ..Cli::default()
    })
    .unwrap()
}

fn find<'a>(described: &'a [DescribedConfig], name: &str) -> &'a DescribedConfig {
    described
        .iter()
        .find(|config| config.name == name)
        .unwrap_or_else(|| panic!("{name} is not described"))
}

#[test]
fn set_delete_append_and_subtract() {
    let current = configs(&[("retention.ms", "1000"), ("segment.ms", "5000")]);
    let altered = alter(
        &current,
        ResourceKind::Topic,
        false,
        &[
            change("retention.ms", Operation::Set, Some("2000")),
            change("segment.ms", Operation::Delete, None),
            change("no.such.config", Operation::Delete, None),
            change("cleanup.policy", Operation::Append, Some("compact")),
        ],
    )
    .unwrap();
    assert_eq!(
        altered,
        configs(&[
            ("retention.ms", "2000"),
            ("cleanup.policy", "delete,compact")
        ])
    );
    let subtracted = alter(
        &altered,
        ResourceKind::Topic,
        false,
        &[
            change("cleanup.policy", Operation::Subtract, Some("delete")),
            change("cleanup.policy", Operation::Append, Some("compact")),
        ],
    )
    .unwrap();
    assert_eq!(subtracted["cleanup.policy"], "compact");
    // Lists only; unknown names and bad values refused, nothing changed.
    for bad in [
        change("retention.ms", Operation::Append, Some("1")),
        change("no.such.config", Operation::Set, Some("1")),
        change("retention.ms", Operation::Set, Some("soon")),
        change("cleanup.policy", Operation::Set, Some("archive")),
        change("compression.gzip.level", Operation::Set, Some("12")),
    ] {
        assert!(
            alter(
                &current,
                ResourceKind::Topic,
                false,
                std::slice::from_ref(&bad)
            )
            .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn alter_configs_replaces_the_whole_set() {
    let current = configs(&[("retention.ms", "1000"), ("segment.ms", "5000")]);
    let replaced = alter(
        &current,
        ResourceKind::Topic,
        true,
        &[change("max.message.bytes", Operation::Set, Some("2048"))],
    )
    .unwrap();
    assert_eq!(replaced, configs(&[("max.message.bytes", "2048")]));
}

#[test]
fn only_dynamic_broker_settings_may_be_altered() {
    let empty = BTreeMap::new();
    let set = |name: &str, value: &str| {
        alter(
            &empty,
            ResourceKind::Broker,
            false,
            &[change(name, Operation::Set, Some(value))],
        )
    };
    assert!(set("log.retention.ms", "3600000").is_ok());
    assert!(set("log.cleaner.backoff.ms", "1000").is_ok());
    assert!(set("log.retention.hours", "2").is_ok());
    assert!(set("num.partitions", "3").unwrap_err().contains("restart"));
    assert!(set("max.connections", "10").is_err(), "fixed at start here");
    assert!(set("retention.ms", "1").unwrap_err().contains("unknown"));
    assert!(set("log.retention.ms", "-7").is_err());
}

#[test]
fn dynamic_levels_and_retention_synonyms_resolve_in_kafka_order() {
    let config = config_from("");
    let default = configs(&[
        ("log.retention.ms", "7200000"),
        ("log.cleaner.backoff.ms", "1000"),
        ("message.max.bytes", "4096"),
    ]);
    let this_broker = configs(&[("log.retention.ms", "3600000")]);
    let none = BTreeMap::new();
    let levels = |cluster_default, this_broker| DynamicConfigs {
        cluster_default,
        this_broker,
    };
    assert_eq!(config.log_defaults.retention_ms, 604_800_000);
    let defaults = config.effective_log_defaults(levels(&default, &none));
    assert_eq!(defaults.retention_ms, 7_200_000);
    assert_eq!(defaults.max_message_bytes, 4096);
    let lifecycle = config.effective_lifecycle(levels(&default, &none));
    assert_eq!(lifecycle.cleaner_backoff_ms, 1000);
    assert_eq!(
        config
            .effective_log_defaults(levels(&default, &this_broker))
            .retention_ms,
        3_600_000
    );
    // ms > minutes > hours, by name first.
    let hours = configs(&[("log.retention.hours", "2")]);
    assert_eq!(
        config
            .effective_log_defaults(levels(&hours, &none))
            .retention_ms,
        7_200_000
    );
    let static_minutes = config_from("log_retention_minutes = 30\n");
    assert_eq!(static_minutes.log_defaults.retention_ms, 1_800_000);
    assert_eq!(
        static_minutes
            .effective_log_defaults(levels(&hours, &none))
            .retention_ms,
        1_800_000,
        "a static log.retention.minutes beats a dynamic log.retention.hours"
    );
    let static_ms = config_from("log_retention_ms = 1000\nlog_retention_hours = 5\n");
    assert_eq!(static_ms.log_defaults.retention_ms, 1000);
    assert_eq!(
        config_from("log_retention_hours = -1\n")
            .log_defaults
            .retention_ms,
        -1
    );
}

#[test]
fn described_sources_follow_the_dynamic_levels() {
    let config = config_from("log_retention_ms = 86400000\n");
    let default = configs(&[("log.retention.ms", "7200000"), ("log.roll.ms", "1000")]);
    let this_broker = configs(&[("log.retention.ms", "3600000")]);
    let dynamic = DynamicConfigs {
        cluster_default: &default,
        this_broker: &this_broker,
    };
    let topic = describe_topic_with(&config.settings, dynamic, &BTreeMap::new());
    let retention = find(&topic, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicBrokerConfig);
    let sources: Vec<_> = retention
        .synonyms
        .iter()
        .map(|synonym| (synonym.name, synonym.value.as_deref(), synonym.source))
        .collect();
    assert_eq!(
        sources,
        [
            (
                "log.retention.ms",
                Some("3600000"),
                ConfigSource::DynamicBrokerConfig
            ),
            (
                "log.retention.ms",
                Some("7200000"),
                ConfigSource::DynamicDefaultBrokerConfig
            ),
            (
                "log.retention.ms",
                Some("86400000"),
                ConfigSource::StaticBrokerConfig
            ),
            (
                "log.retention.ms",
                Some("604800000"),
                ConfigSource::DefaultConfig
            ),
        ]
    );
    let segment_ms = find(&topic, "segment.ms");
    assert_eq!(segment_ms.value.as_deref(), Some("1000"));
    assert_eq!(segment_ms.source, ConfigSource::DynamicDefaultBrokerConfig);
    // A topic override still wins.
    let overrides = configs(&[("retention.ms", "5")]);
    let overridden = describe_topic_with(&config.settings, dynamic, &overrides);
    assert_eq!(
        find(&overridden, "retention.ms").source,
        ConfigSource::TopicConfig
    );

    let broker = describe_broker_with(&config.settings, dynamic, &|_| None);
    let retention = find(&broker, "log.retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicBrokerConfig);
    assert!(!retention.read_only);
    assert!(find(&broker, "num.partitions").read_only);
    assert_eq!(
        find(&broker, "log.roll.ms").source,
        ConfigSource::DynamicDefaultBrokerConfig
    );
    // Resource "": only the dynamic defaults.
    let defaults = describe_broker_defaults(dynamic);
    let names: Vec<_> = defaults.iter().map(|config| config.name).collect();
    assert_eq!(names, ["log.retention.ms", "log.roll.ms"]);
    assert_eq!(
        find(&defaults, "log.roll.ms").source,
        ConfigSource::DynamicDefaultBrokerConfig
    );

    // log.retention.hours alone: retention.ms reports it in milliseconds, with its source.
    let hours = configs(&[("log.retention.hours", "2")]);
    let described = describe_topic_with(
        &config_from("").settings,
        DynamicConfigs {
            cluster_default: &hours,
            this_broker: &BTreeMap::new(),
        },
        &BTreeMap::new(),
    );
    let retention = find(&described, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("7200000"));
    assert_eq!(retention.source, ConfigSource::DynamicDefaultBrokerConfig);
    assert_eq!(retention.synonyms[0].name, "log.retention.hours");
}

#[test]
fn every_kafka_topic_config_is_accepted() {
    let overrides = configs(&[
        ("delete.retention.ms", "1000"),
        ("local.retention.ms", "-2"),
        ("local.retention.bytes", "1048576"),
        ("remote.storage.enable", "false"),
        ("segment.jitter.ms", "10"),
        ("preallocate", "true"),
        ("unclean.leader.election.enable", "false"),
        ("message.timestamp.before.max.ms", "1000"),
        ("message.timestamp.after.max.ms", "1000"),
        ("message.downconversion.enable", "true"),
        ("compression.gzip.level", "-1"),
        ("compression.lz4.level", "17"),
        ("compression.zstd.level", "-5"),
        ("leader.replication.throttled.replicas", "*"),
        ("remote.log.copy.disable", "false"),
        ("remote.log.delete.on.disable", "false"),
    ]);
    assert!(TopicConfig::resolve(&LogConfig::default(), &overrides).is_ok());
    for (name, bad) in [
        ("local.retention.ms", "-3"),
        ("compression.gzip.level", "0"),
        ("compression.lz4.level", "18"),
        ("message.timestamp.difference.max.ms", "1"),
    ] {
        let overrides = configs(&[(name, bad)]);
        assert!(
            TopicConfig::resolve(&LogConfig::default(), &overrides).is_err(),
            "{name}={bad}"
        );
    }
}

#[test]
fn unclean_leader_election_is_a_dynamic_broker_config_and_a_topic_config() {
    use super::dynamic::check_dynamic_broker_config;
    assert!(check_dynamic_broker_config("unclean.leader.election.enable", "true").is_ok());
    assert!(check_dynamic_broker_config("unclean.leader.election.enable", "maybe").is_err());
    let overrides = configs(&[("unclean.leader.election.enable", "true")]);
    assert!(TopicConfig::resolve(&LogConfig::default(), &overrides).is_ok());
}
