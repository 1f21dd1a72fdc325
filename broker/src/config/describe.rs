//! Settings as DescribeConfigs (and CreateTopics v5+) report them, the way Kafka answers.
//!
//! A broker entry's source is STATIC_BROKER_CONFIG when a flag or the TOML file gave it, else
//! DEFAULT_CONFIG. A topic entry's source is TOPIC_CONFIG for the topic's override; else that of its
//! broker synonym (STATIC_BROKER_CONFIG when the broker setting was given), else DEFAULT_CONFIG.
//! Synonyms are listed in precedence order, as Kafka does: the topic override, the given broker
//! setting, the default. Broker entries are read-only unless the setting is one Kafka can change
//! without a restart; topic entries never are.

use super::settings::Settings;
use super::table::{ConfigType, DefaultValue, Presentation, Setting, SETTINGS};
use super::value::{parse_text, Value};
use std::collections::BTreeMap;

/// Kafka's `config_source` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// A topic's own config (Kafka's TOPIC_CONFIG, which clients call DYNAMIC_TOPIC_CONFIG).
    TopicConfig = 1,
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
}

impl ConfigSource {
    pub fn code(self) -> i8 {
        self as i8
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

/// The broker's settings that have a Kafka name. `runtime_value` gives the value of a setting whose
/// default is derived at run time (`max_connections`: from the descriptor budget), by setting id.
pub fn describe_broker(
    settings: &Settings,
    runtime_value: &dyn Fn(&str) -> Option<String>,
) -> Vec<DescribedConfig> {
    SETTINGS
        .iter()
        .filter(|row| row.is_broker())
        .filter_map(|row| {
            let name = row.kafka_name?;
            let explicit = settings.is_explicit(row.id());
            let mut synonyms = Vec::new();
            if explicit {
                synonyms.push(Synonym {
                    name,
                    value: broker_value(settings, row, runtime_value),
                    source: ConfigSource::StaticBrokerConfig,
                });
            }
            if let Some(default) = fixed_default(row) {
                synonyms.push(Synonym {
                    name,
                    value: Some(default),
                    source: ConfigSource::DefaultConfig,
                });
            }
            Some(DescribedConfig {
                name,
                value: broker_value(settings, row, runtime_value),
                source: source_of(explicit),
                read_only: !row.dynamic,
                is_sensitive: false,
                config_type: row.config_type,
                documentation: row.doc,
                synonyms,
            })
        })
        .collect()
}

/// Every topic config of a topic with `overrides`, over the broker's `settings`.
pub fn describe_topic(
    settings: &Settings,
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
            // The broker-level synonym's name (the topic name for topic-only configs).
            let broker_name = row.kafka_name.unwrap_or(name);
            if row.is_broker() && settings.is_explicit(row.id()) {
                synonyms.push(Synonym {
                    name: broker_name,
                    value: settings.get(row.id()).map(|entry| entry.value.render()),
                    source: ConfigSource::StaticBrokerConfig,
                });
            }
            if let Some(default) = fixed_default(row) {
                synonyms.push(Synonym {
                    name: broker_name,
                    value: Some(default),
                    source: ConfigSource::DefaultConfig,
                });
            }
            let effective = synonyms.first()?.clone();
            Some(DescribedConfig {
                name,
                value: effective.value,
                source: effective.source,
                read_only: false,
                is_sensitive: false,
                config_type: row.config_type,
                documentation: row.doc,
                synonyms,
            })
        })
        .collect()
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
