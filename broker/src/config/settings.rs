//! The broker's resolved settings: every row of the table with its value and whether it was given.
//!
//! Precedence: flag > TOML file > the table's default. A setting whose default is derived at start
//! (`shards`, `advertise`) gets its value from `BrokerConfig::from_cli`; one derived at run time
//! (`max_connections`) or the same as another (`broker.id`) has no entry until configured. An entry is
//! `explicit` when a flag or the file gave it: DescribeConfigs reports it as STATIC_BROKER_CONFIG, every
//! other as DEFAULT_CONFIG.

use super::table::{setting, DefaultValue, Setting, SETTINGS};
use super::value::{parse_text, parse_toml, validate, Value};
use super::{Cli, ConfigError};
use std::collections::BTreeMap;
use std::path::Path;

/// One setting's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    /// Given by a flag or the TOML file (else the default).
    pub explicit: bool,
}

/// Values by setting id (see [`Setting::id`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    entries: BTreeMap<&'static str, Entry>,
}

impl Settings {
    /// The table's defaults (those it fixes), nothing given.
    pub fn defaults() -> Settings {
        let mut settings = Settings::default();
        for row in SETTINGS {
            if let DefaultValue::Fixed(text) = row.default {
                // A default its own row refuses is a table error, caught by the unit tests; it is left
                // out rather than taking the broker down.
                if let Ok(value) = parse_text(row, text) {
                    settings.insert(row, value, false);
                }
            }
        }
        settings
    }

    /// Defaults, then the TOML `file` (read from `path`), then the flags.
    pub fn resolve(
        cli: &Cli,
        file: Option<(&Path, &toml::Table)>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = Settings::defaults();
        if let Some((path, table)) = file {
            settings.apply_file(path, table)?;
        }
        settings.apply_flags(cli)?;
        Ok(settings)
    }

    /// Applies a parsed TOML file: every key must be a setting's key and its value valid.
    pub fn apply_file(&mut self, path: &Path, table: &toml::Table) -> Result<(), ConfigError> {
        for (key, item) in table {
            let row = SETTINGS
                .iter()
                .find(|row| row.key == Some(key.as_str()))
                .ok_or_else(|| ConfigError::Unknown {
                    path: path.to_path_buf(),
                    key: key.clone(),
                })?;
            let value = parse_toml(row, item).map_err(|message| ConfigError::Invalid {
                key: row.id(),
                message,
            })?;
            self.insert(row, value, true);
        }
        Ok(())
    }

    fn apply_flags(&mut self, cli: &Cli) -> Result<(), ConfigError> {
        let given = [
            ("listen", cli.listen.clone().map(Value::Text)),
            ("advertise", cli.advertise.clone().map(Value::Text)),
            (
                "data_dir",
                cli.data_dir
                    .as_ref()
                    .map(|path| Value::Text(path.display().to_string())),
            ),
            (
                "shards",
                cli.shards
                    .map(|shards| Value::Int(i64::try_from(shards).unwrap_or(i64::MAX))),
            ),
            ("node_id", cli.node_id.map(|id| Value::Int(id.into()))),
            ("process_roles", cli.process_roles.clone().map(Value::Text)),
            (
                "controller_quorum_voters",
                cli.controller_quorum_voters.clone().map(Value::Text),
            ),
            (
                "controller_listen",
                cli.controller_listen.clone().map(Value::Text),
            ),
            ("rack", cli.rack.clone().map(Value::Text)),
            (
                "recover_unknown_data",
                cli.recover_unknown_data.then_some(Value::Bool(true)),
            ),
        ];
        for (id, value) in given {
            let (Some(row), Some(value)) = (setting(id), value) else {
                continue;
            };
            let value = validate(row, value).map_err(|message| ConfigError::Invalid {
                key: row.id(),
                message,
            })?;
            self.insert(row, value, true);
        }
        Ok(())
    }

    /// Sets a value derived at start (not given, so reported as the default).
    pub fn derive(&mut self, id: &str, value: Value) {
        if let Some(row) = setting(id) {
            let explicit = self.is_explicit(id);
            self.insert(row, value, explicit);
        }
    }

    /// Like [`Settings::derive`], after checking `value` against the setting's validator.
    pub fn derive_checked(&mut self, id: &str, value: Value) -> Result<(), String> {
        match setting(id) {
            Some(row) => {
                let value = validate(row, value)?;
                self.derive(id, value);
                Ok(())
            }
            None => Err(format!("{id} is not a setting")),
        }
    }

    fn insert(&mut self, row: &'static Setting, value: Value, explicit: bool) {
        self.entries.insert(row.id(), Entry { value, explicit });
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn is_explicit(&self, id: &str) -> bool {
        self.get(id).is_some_and(|entry| entry.explicit)
    }

    /// Entries in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Entry)> {
        self.entries.iter().map(|(id, entry)| (*id, entry))
    }
}
