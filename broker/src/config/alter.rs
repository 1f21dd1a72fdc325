//! AlterConfigs and IncrementalAlterConfigs applied to a resource's set of configs (a topic's overrides,
//! or one level of dynamic broker configs), as Kafka's `ConfigAdminManager` does.
//!
//! Invariant: [`alter`] returns a set in which every name is one the resource may hold (a topic config
//! of the table; a broker setting AlterConfigs may change here) with a valid value, or an error message
//! (answered as INVALID_CONFIG) and no change. AlterConfigs (`replace_all`) replaces the whole set with
//! the configs given; IncrementalAlterConfigs changes only the names it gives: SET, DELETE (a name not set
//! is no error), APPEND / SUBTRACT (list configs only: items added where missing, removed where present;
//! the starting list is the current value, else the default).

use super::dynamic::check_dynamic_broker_config;
use super::table::{topic_setting, ConfigType, DefaultValue, Setting};
use super::value::parse_text;
use std::collections::BTreeMap;

/// What kind of resource a set of configs belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    Topic,
    Broker,
}

/// IncrementalAlterConfigs' operations, with their wire codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Set = 0,
    Delete = 1,
    Append = 2,
    Subtract = 3,
}

impl Operation {
    /// The operation of wire code `code`, if it is one.
    pub fn from_code(code: i8) -> Option<Operation> {
        match code {
            0 => Some(Operation::Set),
            1 => Some(Operation::Delete),
            2 => Some(Operation::Append),
            3 => Some(Operation::Subtract),
            _ => None,
        }
    }
}

/// One change of one config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    pub name: String,
    pub operation: Operation,
    /// `None`: Kafka's null (only meaningful for DELETE).
    pub value: Option<String>,
}

/// The set `current` becomes after `changes` (see the module doc), every config checked.
pub fn alter(
    current: &BTreeMap<String, String>,
    kind: ResourceKind,
    replace_all: bool,
    changes: &[ConfigChange],
) -> Result<BTreeMap<String, String>, String> {
    let mut configs = if replace_all {
        BTreeMap::new()
    } else {
        current.clone()
    };
    for change in changes {
        let name = change.name.as_str();
        let value = || {
            change
                .value
                .clone()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match change.operation {
            Operation::Set => {
                configs.insert(change.name.clone(), value()?);
            }
            Operation::Delete => {
                configs.remove(name);
            }
            Operation::Append | Operation::Subtract => {
                let row = setting(kind, name)?;
                if row.config_type != ConfigType::List {
                    return Err(format!(
                        "{name} is not a list: APPEND and SUBTRACT apply to list configs only"
                    ));
                }
                let start = configs
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| default_text(row));
                let mut items: Vec<String> = list_items(&start);
                let given = value()?;
                for item in list_items(&given) {
                    match change.operation {
                        Operation::Append if !items.contains(&item) => items.push(item),
                        Operation::Subtract => items.retain(|existing| *existing != item),
                        _ => {}
                    }
                }
                configs.insert(change.name.clone(), items.join(","));
            }
        }
    }
    for (name, text) in &configs {
        check(kind, name, text)?;
    }
    Ok(configs)
}

/// Checks one config of a `kind` resource: a known name and a valid value.
pub fn check(kind: ResourceKind, name: &str, text: &str) -> Result<(), String> {
    match kind {
        ResourceKind::Broker => check_dynamic_broker_config(name, text),
        ResourceKind::Topic => {
            let row = setting(kind, name)?;
            parse_text(row, text)
                .map(drop)
                .map_err(|what| format!("invalid value {text:?} for {name}: {what}"))
        }
    }
}

fn setting(kind: ResourceKind, name: &str) -> Result<&'static Setting, String> {
    match kind {
        ResourceKind::Topic => {
            topic_setting(name).ok_or_else(|| format!("unknown topic config {name}"))
        }
        ResourceKind::Broker => super::dynamic::dynamic_broker_setting(name),
    }
}

fn default_text(row: &Setting) -> String {
    match row.default {
        DefaultValue::Fixed(text) => text.to_string(),
        DefaultValue::Derived(_) | DefaultValue::SameAs(_) => String::new(),
    }
}

fn list_items(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}
