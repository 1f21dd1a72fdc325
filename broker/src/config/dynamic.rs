//! Dynamic broker configs (AlterConfigs on a BROKER resource) and the levels a setting resolves through.
//!
//! Levels, lowest precedence first: the table's default, the static broker setting (flag or TOML file),
//! the dynamic default of every broker (resource name "", Kafka's DYNAMIC_DEFAULT_BROKER_CONFIG), the
//! dynamic config of this broker (resource name "<node id>", DYNAMIC_BROKER_CONFIG); a topic's own
//! override tops them all for topic configs. Dynamic configs are kept by Kafka name in the cluster
//! metadata, validated before they get there ([`check_dynamic_broker_config`]).
//!
//! Retention has three broker names, `log.retention.ms` > `log.retention.minutes` >
//! `log.retention.hours`: as in Kafka, the first *name* given at any level wins over the later names at
//! every level ([`synonym_chain`]), so `log.retention.ms` given statically beats a dynamic
//! `log.retention.hours`.

use super::table::{Setting, Target, SETTINGS};
use super::value::{parse_text, Value};
use super::{BrokerConfig, LifecycleConfig, Settings};
use std::collections::BTreeMap;
use storage::log::LogConfig;

static NO_CONFIGS: BTreeMap<String, String> = BTreeMap::new();

/// The dynamic broker configs in force, by Kafka name.
#[derive(Clone, Copy, Debug)]
pub struct DynamicConfigs<'a> {
    /// For every broker (resource name "").
    pub cluster_default: &'a BTreeMap<String, String>,
    /// For this broker (resource name = its node id).
    pub this_broker: &'a BTreeMap<String, String>,
}

impl DynamicConfigs<'static> {
    /// No dynamic configs: static settings and defaults only.
    pub fn none() -> DynamicConfigs<'static> {
        DynamicConfigs {
            cluster_default: &NO_CONFIGS,
            this_broker: &NO_CONFIGS,
        }
    }
}

/// Where a given value comes from (a level above the table's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    ThisBroker,
    ClusterDefault,
    Static,
}

/// A value given for a setting at some level.
#[derive(Clone)]
pub struct Given {
    pub setting: &'static Setting,
    pub level: Level,
    pub value: Value,
}

impl Given {
    /// The value in the unit of the chain's first setting (retention: milliseconds).
    pub fn in_primary_unit(&self) -> Value {
        match (millis_per_unit(self.setting.id()), &self.value) {
            (1, value) => value.clone(),
            (_, Value::Int(number)) if *number < 0 => Value::Int(-1),
            (factor, Value::Int(number)) => Value::Int(number.saturating_mul(factor)),
            (_, value) => value.clone(),
        }
    }
}

/// The settings that together decide `row`'s value, in precedence order of their names (ids). Only
/// retention has more than one.
pub fn synonym_chain(row: &'static Setting) -> Vec<&'static Setting> {
    match row.id() {
        "log_retention_ms" => [
            "log_retention_ms",
            "log_retention_minutes",
            "log_retention_hours",
        ]
        .iter()
        .filter_map(|id| super::table::setting(id))
        .collect(),
        _ => vec![row],
    }
}

/// How many milliseconds one unit of a retention synonym is (1 for every other setting).
fn millis_per_unit(id: &str) -> i64 {
    match id {
        "log_retention_minutes" => 60_000,
        "log_retention_hours" => 3_600_000,
        _ => 1,
    }
}

/// The values given for `row`'s chain, in precedence order: by name first, then by level (this broker,
/// every broker, static). The first is the one in effect; none given: the default applies.
pub fn given_values(
    settings: &Settings,
    dynamic: DynamicConfigs,
    row: &'static Setting,
) -> Vec<Given> {
    let mut given = Vec::new();
    for setting in synonym_chain(row) {
        if let Some(name) = setting.kafka_name {
            for (level, configs) in [
                (Level::ThisBroker, dynamic.this_broker),
                (Level::ClusterDefault, dynamic.cluster_default),
            ] {
                if let Some(value) = configs
                    .get(name)
                    .and_then(|text| parse_text(setting, text).ok())
                {
                    given.push(Given {
                        setting,
                        level,
                        value,
                    });
                }
            }
        }
        if let Some(entry) = settings.get(setting.id()).filter(|entry| entry.explicit) {
            given.push(Given {
                setting,
                level: Level::Static,
                value: entry.value.clone(),
            });
        }
    }
    given
}

/// The broker setting `name` (Kafka's name) if AlterConfigs may change it here: a setting this broker
/// applies without a restart.
pub fn dynamic_broker_setting(name: &str) -> Result<&'static Setting, String> {
    let row = SETTINGS
        .iter()
        .find(|row| row.is_broker() && row.kafka_name == Some(name))
        .ok_or_else(|| format!("unknown broker config {name}"))?;
    if !row.dynamic {
        return Err(format!(
            "{name} cannot be changed without a restart (set it in the broker's configuration file)"
        ));
    }
    Ok(row)
}

/// Checks one dynamic broker config: a setting [`dynamic_broker_setting`] accepts, and a valid value.
pub fn check_dynamic_broker_config(name: &str, text: &str) -> Result<(), String> {
    let row = dynamic_broker_setting(name)?;
    parse_text(row, text)
        .map(drop)
        .map_err(|what| format!("invalid value {text:?} for {name}: {what}"))
}

/// Retention's broker default in milliseconds, from its three names (see the module doc).
pub fn retention_ms(settings: &Settings, dynamic: DynamicConfigs) -> Option<i64> {
    let row = super::table::setting("log_retention_ms")?;
    match given_values(settings, dynamic, row).first() {
        Some(given) => Some(given.in_primary_unit().as_int()),
        None => settings.get(row.id()).map(|entry| entry.value.as_int()),
    }
}

impl BrokerConfig {
    /// This configuration with the dynamic broker configs applied over the static ones (cluster-wide
    /// first, then this broker's own).
    pub fn with_dynamic(&self, dynamic: DynamicConfigs) -> BrokerConfig {
        let mut config = self.clone();
        for configs in [dynamic.cluster_default, dynamic.this_broker] {
            for (name, text) in configs {
                let Ok(row) = dynamic_broker_setting(name) else {
                    continue;
                };
                let Ok(value) = parse_text(row, text) else {
                    continue;
                };
                match row.target {
                    Target::Broker(apply) => {
                        if let Err(message) = apply(&mut config, &value) {
                            tracing::warn!(%name, %message, "dynamic broker config not applied");
                        }
                    }
                    Target::Log(apply) => apply(&mut config.log_defaults, &value),
                    Target::Reported => {}
                }
            }
        }
        if let Some(retention) = retention_ms(&self.settings, dynamic) {
            config.log_defaults.retention_ms = retention;
        }
        config
    }

    /// The topic defaults in force: static settings under the dynamic broker configs.
    pub fn effective_log_defaults(&self, dynamic: DynamicConfigs) -> LogConfig {
        self.with_dynamic(dynamic).log_defaults
    }

    /// Retention's and the log cleaner's settings in force (dynamic ones included).
    pub fn effective_lifecycle(&self, dynamic: DynamicConfigs) -> LifecycleConfig {
        self.with_dynamic(dynamic).lifecycle
    }
}
