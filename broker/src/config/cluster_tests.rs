//! Unit tests of the cluster settings: process roles, the quorum's voters, the controller listener
//! (configured or derived), the rack and the broker timings, with each refusal's message.

use super::*;
use std::time::Duration;

fn from_flags(cli: Cli) -> Result<BrokerConfig, ConfigError> {
    BrokerConfig::from_cli(Cli {
        shards: Some(1),
        ..cli
    })
}

fn from_toml(text: &str) -> Result<BrokerConfig, ConfigError> {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broker.toml");
    std::fs::write(&path, text).unwrap();
    from_flags(Cli {
        config: Some(path),
        ..Cli::default()
    })
}

fn refusal(result: Result<BrokerConfig, ConfigError>) -> (&'static str, String) {
    match result {
        Err(ConfigError::Invalid { key, message }) => (key, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn voter(node_id: i32, host: &str, port: u16) -> QuorumVoter {
    QuorumVoter {
        node_id,
        host: host.into(),
        port,
    }
}

#[test]
fn defaults_make_a_cluster_of_one() {
    let config = from_flags(Cli::default()).unwrap();
    assert_eq!(config.process_roles, ProcessRoles::COMBINED);
    assert!(config.process_roles.combined());
    assert!(config.quorum_voters.is_empty());
    assert_eq!(config.controller_listen, None);
    assert_eq!(config.rack, None);
    assert_eq!(config.broker_session_timeout, Duration::from_millis(9000));
    assert_eq!(
        config.broker_heartbeat_interval,
        Duration::from_millis(2000)
    );
    assert_eq!(config.voter_ids(), vec![0]);
    assert!(config.is_cluster_of_one());
    assert!(config.settings.get("controller_listen").is_none());
    assert!(config.settings.get("controller_quorum_voters").is_none());
    assert_eq!(
        config
            .settings
            .get("process_roles")
            .unwrap()
            .value
            .as_text(),
        "broker,controller"
    );
}

#[test]
fn flags_fill_the_cluster_settings_and_derive_the_controller_listener() {
    let config = from_flags(Cli {
        node_id: Some(2),
        controller_quorum_voters: Some(
            "1@127.0.0.1:19093,2@127.0.0.1:19094,3@127.0.0.1:19095".into(),
        ),
        rack: Some("eu-west-1a".into()),
        ..Cli::default()
    })
    .unwrap();
    assert_eq!(
        config.quorum_voters,
        vec![
            voter(1, "127.0.0.1", 19093),
            voter(2, "127.0.0.1", 19094),
            voter(3, "127.0.0.1", 19095),
        ]
    );
    assert_eq!(
        config.controller_listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 19094)))
    );
    let derived = config.settings.get("controller_listen").unwrap();
    assert_eq!(derived.value.as_text(), "127.0.0.1:19094");
    assert!(!derived.explicit);
    assert_eq!(config.rack.as_deref(), Some("eu-west-1a"));
    assert_eq!(config.voter_ids(), vec![1, 2, 3]);
    assert!(!config.is_cluster_of_one());
}

#[test]
fn an_explicit_controller_listener_wins_over_the_voters_entry() {
    let config = from_flags(Cli {
        node_id: Some(1),
        controller_quorum_voters: Some("1@127.0.0.1:19093,2@127.0.0.1:19094".into()),
        controller_listen: Some("0.0.0.0:29093".into()),
        ..Cli::default()
    })
    .unwrap();
    assert_eq!(
        config.controller_listen,
        Some(SocketAddr::from(([0, 0, 0, 0], 29093)))
    );
    assert!(config.settings.is_explicit("controller_listen"));
    // A cluster of one may open a controller port when asked to.
    let alone = from_flags(Cli {
        controller_listen: Some("127.0.0.1:29093".into()),
        ..Cli::default()
    })
    .unwrap();
    assert!(alone.is_cluster_of_one());
    assert_eq!(
        alone.controller_listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 29093)))
    );
}

#[test]
fn a_single_voter_that_is_this_node_is_a_cluster_of_one() {
    let config = from_flags(Cli {
        node_id: Some(7),
        controller_quorum_voters: Some("7@127.0.0.1:19093".into()),
        ..Cli::default()
    })
    .unwrap();
    assert!(config.is_cluster_of_one());
    assert_eq!(config.voter_ids(), vec![7]);
    assert_eq!(
        config.controller_listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 19093)))
    );
}

#[test]
fn a_broker_only_node_joins_the_voters_without_a_controller_port() {
    let config = from_toml(
        "node_id = 4\nprocess_roles = \"broker\"\n\
         controller_quorum_voters = \"1@127.0.0.1:19093,2@127.0.0.1:19094,3@127.0.0.1:19095\"\n\
         broker_session_timeout_ms = 18000\nbroker_heartbeat_interval_ms = 500\n",
    )
    .unwrap();
    assert_eq!(
        config.process_roles,
        ProcessRoles {
            broker: true,
            controller: false
        }
    );
    assert_eq!(config.controller_listen, None);
    assert_eq!(config.voter_ids(), vec![1, 2, 3]);
    assert!(!config.is_cluster_of_one());
    assert_eq!(config.broker_session_timeout, Duration::from_secs(18));
    assert_eq!(config.broker_heartbeat_interval, Duration::from_millis(500));
}

#[test]
fn a_controller_only_node_must_be_a_voter() {
    let config = from_flags(Cli {
        node_id: Some(1),
        process_roles: Some("controller".into()),
        controller_quorum_voters: Some("1@127.0.0.1:19093".into()),
        ..Cli::default()
    })
    .unwrap();
    assert!(!config.process_roles.broker && config.process_roles.controller);
    assert!(config.controller_listen.is_some());
}

#[test]
fn inconsistent_cluster_settings_are_refused() {
    let voters = "1@127.0.0.1:19093,2@127.0.0.1:19094,3@127.0.0.1:19095";
    for (text, key, message) in [
        (
            format!("node_id = 4\ncontroller_quorum_voters = \"{voters}\""),
            "controller_quorum_voters",
            "node 4 has the controller role but is not in controller_quorum_voters (1, 2, 3)",
        ),
        (
            format!("node_id = 4\nprocess_roles = \"controller\"\ncontroller_quorum_voters = \"{voters}\""),
            "controller_quorum_voters",
            "node 4 has the controller role but is not in controller_quorum_voters (1, 2, 3)",
        ),
        (
            "process_roles = \"broker\"".into(),
            "controller_quorum_voters",
            "a broker-only node needs controller_quorum_voters (the controllers it joins)",
        ),
        (
            format!("node_id = 2\nprocess_roles = \"broker\"\ncontroller_quorum_voters = \"{voters}\""),
            "controller_quorum_voters",
            "names node 2 as a voter, but it has no controller role (process_roles): a broker-only node follows the quorum without voting",
        ),
        (
            format!("node_id = 4\nprocess_roles = \"broker\"\ncontroller_quorum_voters = \"{voters}\"\ncontroller_listen = \"127.0.0.1:1\""),
            "controller_listen",
            "is set, but this node has no controller role (process_roles)",
        ),
        (
            "broker_heartbeat_interval_ms = 9000".into(),
            "broker_heartbeat_interval_ms",
            "must be less than broker_session_timeout_ms",
        ),
    ] {
        assert_eq!(refusal(from_toml(&text)), (key, message.to_string()), "{text}");
    }
}

#[test]
fn bad_cluster_values_are_refused() {
    let long_rack = format!("rack = \"{}\"", "r".repeat(256));
    for (text, key, message) in [
        ("process_roles = \"\"", "process_roles", "expected broker and/or controller"),
        ("process_roles = \"broker,observer\"", "process_roles", "expected broker and/or controller"),
        ("controller_quorum_voters = \"\"", "controller_quorum_voters", "is empty; leave controller_quorum_voters out for a cluster of one, or list ID@HOST:PORT entries separated by commas"),
        ("controller_quorum_voters = \"0@h:1,0@h:2\"", "controller_quorum_voters", "node id 0 is listed twice"),
        ("controller_quorum_voters = \"0@h:0\"", "controller_quorum_voters", "entry \"0@h:0\": port \"0\" is not in 1..=65535"),
        ("controller_listen = \"nowhere\"", "controller_listen", "nowhere: invalid socket address"),
        ("rack = \"\"", "rack", "is empty; leave it out for no rack"),
        (long_rack.as_str(), "rack", "is 256 characters long, the maximum is 255"),
        ("node_id = -1", "node_id", "-1 is not in 0..=2147483646"),
        ("node_id = 2147483647", "node_id", "2147483647 is not in 0..=2147483646"),
        ("broker_session_timeout_ms = 99", "broker_session_timeout_ms", "must be at least 100"),
        ("broker_heartbeat_interval_ms = 9", "broker_heartbeat_interval_ms", "must be at least 10"),
        ("broker_session_timeout_ms = 2147483648", "broker_session_timeout_ms", "2147483648 does not fit a 32-bit integer"),
    ] {
        assert_eq!(refusal(from_toml(text)), (key, message.to_string()), "{text}");
    }
    // A rack of 255 characters is fine.
    let config = from_toml(&format!("rack = \"{}\"", "r".repeat(255))).unwrap();
    assert_eq!(config.rack.map(|rack| rack.len()), Some(255));
}

#[test]
fn a_voter_host_that_does_not_resolve_is_refused_for_the_derived_listener() {
    let (key, message) = refusal(from_flags(Cli {
        controller_quorum_voters: Some("0@no-such-host.invalid:19093".into()),
        ..Cli::default()
    }));
    assert_eq!(key, "controller_listen");
    assert!(
        message.starts_with(
            "from this node's entry 0@no-such-host.invalid:19093 in controller_quorum_voters: "
        ),
        "{message}"
    );
}

#[test]
fn replica_selector_takes_leader_rack_aware_or_kafkas_class_name() {
    use crate::config::ReplicaSelector;
    assert_eq!(
        from_toml("").unwrap().replica_selector,
        ReplicaSelector::Leader
    );
    for (text, expected) in [
        ("replica_selector = \"leader\"", ReplicaSelector::Leader),
        (
            "replica_selector = \"rack-aware\"",
            ReplicaSelector::RackAware,
        ),
        (
            "replica_selector = \"org.apache.kafka.common.replica.RackAwareReplicaSelector\"",
            ReplicaSelector::RackAware,
        ),
    ] {
        assert_eq!(
            from_toml(text).unwrap().replica_selector,
            expected,
            "{text}"
        );
    }
    let (key, message) = refusal(from_toml("replica_selector = \"nearest\""));
    assert_eq!(key, "replica_selector");
    assert!(message.starts_with("expected leader"), "{message}");
}
