//! The cluster's shape as configured: this node's roles (`process_roles`) and the metadata quorum's
//! voters (`controller_quorum_voters`, Kafka's `1@HOST:PORT,2@HOST:PORT,...`), and the checks across
//! them and `node_id` that [`BrokerConfig::from_cli`](super::BrokerConfig::from_cli) runs once every
//! setting is read.
//!
//! Invariant: an empty voter list means "this node alone" (a cluster of one, which opens no
//! controller port); a non-empty one has unique ids in `0..i32::MAX`, non-empty hosts and ports in
//! `1..=65535`.

use super::{resolve, BrokerConfig, ConfigError};
use crate::config::settings::Settings;
use crate::config::value::Value;
use std::fmt;

/// What this node runs (`process.roles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessRoles {
    /// Serves clients (produce, fetch, groups, ...).
    pub broker: bool,
    /// Is a voter of the metadata quorum.
    pub controller: bool,
}

impl ProcessRoles {
    /// Both roles in one process (the default).
    pub const COMBINED: ProcessRoles = ProcessRoles {
        broker: true,
        controller: true,
    };

    /// Whether this node is both a broker and a controller.
    pub fn combined(&self) -> bool {
        self.broker && self.controller
    }

    /// Reads a list the table's validator accepted (`broker`, `controller`, comma-separated).
    pub fn parse(text: &str) -> ProcessRoles {
        let has = |role: &str| text.split(',').any(|word| word.trim() == role);
        ProcessRoles {
            broker: has("broker"),
            controller: has("controller"),
        }
    }
}

impl Default for ProcessRoles {
    fn default() -> ProcessRoles {
        ProcessRoles::COMBINED
    }
}

impl fmt::Display for ProcessRoles {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.broker, self.controller) {
            (true, true) => formatter.write_str("broker,controller"),
            (true, false) => formatter.write_str("broker"),
            (false, true) => formatter.write_str("controller"),
            (false, false) => Ok(()),
        }
    }
}

/// One voter of the metadata quorum: `ID@HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumVoter {
    pub node_id: i32,
    /// A host name or an IP address (an IPv6 one without its brackets).
    pub host: String,
    pub port: u16,
}

impl QuorumVoter {
    /// `HOST:PORT`, with brackets around an IPv6 address (for resolving or connecting).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for QuorumVoter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}@{}", self.node_id, self.address())
    }
}

/// Parses `ID@HOST:PORT,ID@HOST:PORT,...` (spaces around entries allowed). Refuses an empty list (leave
/// the setting out for a cluster of one), a malformed entry, an id outside `0..i32::MAX`, an empty host,
/// port 0 and an id listed twice.
pub fn parse_quorum_voters(text: &str) -> Result<Vec<QuorumVoter>, String> {
    if text.trim().is_empty() {
        return Err(
            "is empty; leave controller_quorum_voters out for a cluster of one, or list \
             ID@HOST:PORT entries separated by commas"
                .into(),
        );
    }
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let voter = parse_voter(entry)?;
        if voters.iter().any(|other| other.node_id == voter.node_id) {
            return Err(format!("node id {} is listed twice", voter.node_id));
        }
        voters.push(voter);
    }
    Ok(voters)
}

fn parse_voter(entry: &str) -> Result<QuorumVoter, String> {
    if entry.is_empty() {
        return Err("an entry is empty (two commas in a row, or a trailing comma?)".into());
    }
    let malformed = |why: &str| format!("entry {entry:?} {why}; expected ID@HOST:PORT");
    let (id, address) = entry
        .split_once('@')
        .ok_or_else(|| malformed("has no '@'"))?;
    let node_id = id
        .trim()
        .parse::<i64>()
        .map_err(|_| malformed("does not start with a node id"))?;
    if !(0..i64::from(i32::MAX)).contains(&node_id) {
        return Err(format!(
            "entry {entry:?}: node id {node_id} is not in 0..{}",
            i32::MAX
        ));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| malformed("has no ':PORT'"))?;
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed
            .strip_suffix(']')
            .ok_or_else(|| malformed("has an unclosed '['"))?,
        None if host.contains(':') => return Err(malformed("has an IPv6 address without [ ]")),
        None => host,
    };
    if host.is_empty() {
        return Err(malformed("has no host"));
    }
    if host.contains(|c: char| c.is_whitespace() || matches!(c, '@' | '[' | ']' | ',')) {
        return Err(malformed("has a malformed host"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("entry {entry:?}: port {port:?} is not in 1..=65535"))?;
    Ok(QuorumVoter {
        node_id: node_id as i32,
        host: host.to_string(),
        port,
    })
}

/// The checks across `process_roles`, `controller_quorum_voters`, `node_id` and the broker timings, and
/// `controller_listen`'s derived value, once every setting is read.
pub(super) fn resolve_cluster(
    config: &mut BrokerConfig,
    settings: &mut Settings,
) -> Result<(), ConfigError> {
    let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
    let ids = || {
        config
            .quorum_voters
            .iter()
            .map(|voter| voter.node_id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !config.process_roles.controller && config.quorum_voters.is_empty() {
        return Err(invalid(
            "controller_quorum_voters",
            "a broker-only node needs controller_quorum_voters (the controllers it joins)".into(),
        ));
    }
    let own_entry = config
        .quorum_voters
        .iter()
        .find(|voter| voter.node_id == config.node_id)
        .cloned();
    if config.process_roles.controller && !config.quorum_voters.is_empty() && own_entry.is_none() {
        return Err(invalid(
            "controller_quorum_voters",
            format!(
                "node {} has the controller role but is not in controller_quorum_voters ({})",
                config.node_id,
                ids()
            ),
        ));
    }
    if !config.process_roles.controller && own_entry.is_some() {
        return Err(invalid(
            "controller_quorum_voters",
            format!(
                "names node {} as a voter, but it has no controller role (process_roles): a \
                 broker-only node follows the quorum without voting",
                config.node_id
            ),
        ));
    }
    if !config.process_roles.controller && settings.is_explicit("controller_listen") {
        return Err(invalid(
            "controller_listen",
            "is set, but this node has no controller role (process_roles)".into(),
        ));
    }
    if config.broker_heartbeat_interval >= config.broker_session_timeout {
        return Err(invalid(
            "broker_heartbeat_interval_ms",
            "must be less than broker_session_timeout_ms".into(),
        ));
    }
    if config.controller_listen.is_none() && config.process_roles.controller {
        if let Some(voter) = own_entry {
            let address = resolve(&voter.address()).map_err(|message| {
                invalid(
                    "controller_listen",
                    format!(
                        "from this node's entry {voter} in controller_quorum_voters: {message}"
                    ),
                )
            })?;
            config.controller_listen = Some(address);
        }
    }
    if let Some(address) = config.controller_listen {
        settings.derive("controller_listen", Value::Text(address.to_string()));
    }
    Ok(())
}

impl BrokerConfig {
    /// The ids of the metadata quorum's voters: those of `controller_quorum_voters`, or this node's alone.
    pub fn voter_ids(&self) -> Vec<i32> {
        if self.quorum_voters.is_empty() {
            vec![self.node_id]
        } else {
            self.quorum_voters
                .iter()
                .map(|voter| voter.node_id)
                .collect()
        }
    }

    /// Whether this node is the whole cluster: no `controller_quorum_voters`, or this node as their only
    /// one.
    pub fn is_cluster_of_one(&self) -> bool {
        match self.quorum_voters.as_slice() {
            [] => true,
            [only] => only.node_id == self.node_id,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(node_id: i32, host: &str, port: u16) -> QuorumVoter {
        QuorumVoter {
            node_id,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn voters_parse() {
        assert_eq!(
            parse_quorum_voters("1@a:9093, 2@b.example.com:9094,3@[::1]:9095,0@10.0.0.1:1")
                .unwrap(),
            vec![
                voter(1, "a", 9093),
                voter(2, "b.example.com", 9094),
                voter(3, "::1", 9095),
                voter(0, "10.0.0.1", 1),
            ]
        );
        assert_eq!(
            parse_quorum_voters("2147483646@h:65535").unwrap(),
            vec![voter(i32::MAX - 1, "h", 65535)]
        );
    }

    #[test]
    fn voters_display_as_written() {
        assert_eq!(voter(3, "::1", 9095).to_string(), "3@[::1]:9095");
        assert_eq!(voter(1, "a", 9093).address(), "a:9093");
    }

    #[test]
    fn bad_voters_are_refused_with_a_reason() {
        for (text, reason) in [
            ("", "is empty"),
            ("  ", "is empty"),
            ("1@a:1,,2@b:2", "an entry is empty"),
            ("1@a:1,", "an entry is empty"),
            ("a:9093", "has no '@'"),
            ("x@a:9093", "does not start with a node id"),
            ("-1@a:9093", "node id -1 is not in 0..2147483647"),
            ("2147483647@a:9093", "node id 2147483647 is not in"),
            ("1@a", "has no ':PORT'"),
            ("1@:9093", "has no host"),
            ("1@[]:9093", "has no host"),
            ("1@::1:9093", "IPv6 address without [ ]"),
            ("1@[::1:9093", "has an unclosed '['"),
            ("1@a b:9093", "malformed host"),
            ("1@a:0", "port \"0\" is not in 1..=65535"),
            ("1@a:65536", "port \"65536\" is not in 1..=65535"),
            ("1@a:http", "port \"http\" is not in 1..=65535"),
            ("1@a:1,2@b:2,1@c:3", "node id 1 is listed twice"),
        ] {
            match parse_quorum_voters(text) {
                Ok(voters) => panic!("{text:?} parsed as {voters:?}"),
                Err(message) => assert!(message.contains(reason), "{text:?}: {message}"),
            }
        }
    }

    #[test]
    fn roles_parse_and_display() {
        let both = ProcessRoles::parse("broker, controller");
        assert!(both.combined());
        assert_eq!(both, ProcessRoles::default());
        assert_eq!(both.to_string(), "broker,controller");
        let broker = ProcessRoles::parse("broker");
        assert!(broker.broker && !broker.controller && !broker.combined());
        assert_eq!(broker.to_string(), "broker");
        let controller = ProcessRoles::parse("controller");
        assert!(!controller.broker && controller.controller);
    }
}
