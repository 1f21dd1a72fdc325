//! Settings as DescribeConfigs (and CreateTopics v5+) report them, the way Kafka answers.
//!
//! A broker entry's source is that of the level its value comes from: DYNAMIC_BROKER_CONFIG (this
//! broker's dynamic config), DYNAMIC_DEFAULT_BROKER_CONFIG (the dynamic default of every broker),
//! STATIC_BROKER_CONFIG (a flag or the TOML file), else DEFAULT_CONFIG. A topic entry's source is
//! TOPIC_CONFIG for the topic's override, else that of its broker synonym. Synonyms are listed in
//! precedence order, the one in effect first, as Kafka does: the topic override, then the broker
//! levels from this broker's dynamic config down to the default. Retention's broker names are listed
//! name by name (`log.retention.ms` at every level, then `.minutes`, then `.hours`), the order in which
//! they take effect (see `dynamic`). Broker entries are read-only unless AlterConfigs may change the
//! setting; topic entries never are.

use super::dynamic::{given_values, DynamicConfigs, Given, Level};
use super::settings::Settings;
use super::table::{ConfigType, DefaultValue, Presentation, Setting, SETTINGS};
use super::value::{parse_text, Value};
use std::collections::BTreeMap;

/// Kafka's `config_source` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// A topic's own config (Kafka's TOPIC_CONFIG, which clients call DYNAMIC_TOPIC_CONFIG).
    TopicConfig = 1,
    /// This broker's dynamic config (AlterConfigs on resource "<node id>").
    DynamicBrokerConfig = 2,
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
    /// The dynamic default of every broker (AlterConfigs on resource "").
    DynamicDefaultBrokerConfig = 3,
}

impl ConfigSource {
    pub fn code(self) -> i8 {
        self as i8
    }

    fn of(level: Level) -> ConfigSource {
        match level {
            Level::ThisBroker => ConfigSource::DynamicBrokerConfig,
            Level::ClusterDefault => ConfigSource::DynamicDefaultBrokerConfig,
            Level::Static => ConfigSource::StaticBrokerConfig,
        }
    }
}

/// One synonym of a described config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synonym {
    pub name: &'static str,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// One described config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: &'static str,
    /// `None` where no value is known (Kafka's null).
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub is_sensitive: bool,
    pub config_type: ConfigType,
    /// The setting's one line of documentation.
    pub documentation: &'static str,
    /// In precedence order; the first is the one in effect.
    pub synonyms: Vec<Synonym>,
}

/// The broker's settings that have a Kafka name, without dynamic configs. `runtime_value` gives the
/// value of a setting whose default is derived at run time (`max_connections`: from the descriptor
/// budget), by setting id.
pub fn describe_broker(
    settings: &Settings,
    runtime_value: &dyn Fn(&str) -> Option<String>,
) -> Vec<DescribedConfig> {
    describe_broker_with(settings, DynamicConfigs::none(), runtime_value)
}

/// The broker's settings that have a Kafka name, with the dynamic broker configs in force.
pub fn describe_broker_with(
    settings: &Settings,
    dynamic: DynamicConfigs,
    runtime_value: &dyn Fn(&str) -> Option<String>,
) -> Vec<DescribedConfig> {
    SETTINGS
        .iter()
        .filter(|row| row.is_broker())
        .filter_map(|row| {
            let name = row.kafka_name?;
            let given = given_values(settings, dynamic, row);
            let mut synonyms = broker_synonyms(row, &given);
            let (value, source) = match given.first() {
                Some(first) => (
                    Some(present(row, &first.in_primary_unit())),
                    ConfigSource::of(first.level),
                ),
                None => (
                    broker_value(settings, row, runtime_value),
                    source_of(settings.is_explicit(row.id())),
                ),
            };
            // A value derived at run time has no default synonym; the value itself stands for it.
            if synonyms.is_empty() && settings.is_explicit(row.id()) {
                synonyms.push(Synonym {
                    name,
                    value: value.clone(),
                    source,
                });
            }
            Some(DescribedConfig {
                name,
                value,
                source,
                read_only: !row.dynamic,
                is_sensitive: false,
                config_type: row.config_type,
                documentation: row.doc,
                synonyms,
            })
        })
        .collect()
}

/// The dynamic default configs of every broker (DescribeConfigs on broker resource "", as Kafka answers
/// it: only those set, each with source DYNAMIC_DEFAULT_BROKER_CONFIG).
pub fn describe_broker_defaults(dynamic: DynamicConfigs) -> Vec<DescribedConfig> {
    dynamic
        .cluster_default
        .iter()
        .filter_map(|(name, value)| {
            let row = SETTINGS
                .iter()
                .find(|row| row.is_broker() && row.kafka_name == Some(name.as_str()))?;
            let name = row.kafka_name?;
            let synonym = Synonym {
                name,
                value: Some(value.clone()),
                source: ConfigSource::DynamicDefaultBrokerConfig,
            };
            Some(DescribedConfig {
                name,
                value: Some(value.clone()),
                source: ConfigSource::DynamicDefaultBrokerConfig,
                read_only: !row.dynamic,
                is_sensitive: false,
                config_type: row.config_type,
                documentation: row.doc,
                synonyms: vec![synonym],
            })
        })
        .collect()
}

/// Every topic config of a topic with `overrides`, over the broker's `settings` (no dynamic configs).
pub fn describe_topic(
    settings: &Settings,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    describe_topic_with(settings, DynamicConfigs::none(), overrides)
}

/// Every topic config of a topic with `overrides`, over the broker's `settings` and dynamic configs.
pub fn describe_topic_with(
    settings: &Settings,
    dynamic: DynamicConfigs,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    SETTINGS
        .iter()
        .filter_map(|row| {
            let name = row.topic_name()?;
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(name) {
                synonyms.push(Synonym {
                    name,
                    value: Some(value.clone()),
                    source: ConfigSource::TopicConfig,
                });
            }
            let given = if row.is_broker() {
                given_values(settings, dynamic, row)
            } else {
                Vec::new()
            };
            let broker_synonyms = if row.is_broker() {
                broker_synonyms(row, &given)
            } else {
                // A topic-only config's default carries the topic name.
                fixed_default(row)
                    .map(|default| Synonym {
                        name,
                        value: Some(default),
                        source: ConfigSource::DefaultConfig,
                    })
                    .into_iter()
                    .collect()
            };
            synonyms.extend(broker_synonyms);
            let first = synonyms.first()?.clone();
            // The value in effect, in the topic config's unit (retention's hours/minutes in ms).
            let value = match (first.source, given.first()) {
                (ConfigSource::TopicConfig | ConfigSource::DefaultConfig, _) | (_, None) => {
                    first.value
                }
                (_, Some(given)) => Some(present(row, &given.in_primary_unit())),
            };
            Some(DescribedConfig {
                name,
                value,
                source: first.source,
                read_only: false,
                is_sensitive: false,
                config_type: row.config_type,
                documentation: row.doc,
                synonyms,
            })
        })
        .collect()
}

/// A broker setting's synonyms: the given values (in effect order), then its default.
fn broker_synonyms(row: &'static Setting, given: &[Given]) -> Vec<Synonym> {
    let mut synonyms: Vec<Synonym> = given
        .iter()
        .filter_map(|given| {
            Some(Synonym {
                name: given.setting.kafka_name?,
                value: Some(present(given.setting, &given.value)),
                source: ConfigSource::of(given.level),
            })
        })
        .collect();
    // The chain's first setting's default stands for the chain (log.retention.ms's 7 days is
    // log.retention.hours' 168).
    if let (Some(name), Some(default)) = (row.kafka_name, fixed_default(row)) {
        synonyms.push(Synonym {
            name,
            value: Some(default),
            source: ConfigSource::DefaultConfig,
        });
    }
    synonyms
}

fn source_of(explicit: bool) -> ConfigSource {
    if explicit {
        ConfigSource::StaticBrokerConfig
    } else {
        ConfigSource::DefaultConfig
    }
}

/// The table's default as Kafka writes it.
fn fixed_default(row: &Setting) -> Option<String> {
    match row.default {
        DefaultValue::Fixed(text) => parse_text(row, text).ok().map(|value| present(row, &value)),
        DefaultValue::Derived(_) | DefaultValue::SameAs(_) => None,
    }
}

/// The value in effect for a broker setting.
fn broker_value(
    settings: &Settings,
    row: &Setting,
    runtime_value: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if let Some(entry) = settings.get(row.id()) {
        return Some(present(row, &entry.value));
    }
    match row.default {
        DefaultValue::SameAs(other) => SETTINGS
            .iter()
            .find(|candidate| candidate.id() == other)
            .and_then(|other_row| broker_value(settings, other_row, runtime_value)),
        DefaultValue::Fixed(_) | DefaultValue::Derived(_) => runtime_value(row.id()),
    }
}

fn present(row: &Setting, value: &Value) -> String {
    match row.presentation {
        Presentation::AsIs => value.render(),
        Presentation::Listener => format!("PLAINTEXT://{}", value.render()),
    }
}
