//! The cluster's rows of the settings table (`SETTINGS` lists them in order; they live here to keep
//! `table.rs` under the file-size bound): this node's id, its roles, the metadata quorum's voters, the
//! controller listener, the rack, the broker's session with the controllers, and replication. Parsing
//! and the checks across them live in `config::quorum`.

use super::{row, ConfigType, DefaultValue, Scope, Setting, Target, Validator};
use crate::config::quorum::{parse_quorum_voters, ProcessRoles};
use crate::config::ReplicaSelector;
use std::time::Duration;

/// Longest `broker.rack` (Kafka does not bound it; this keeps it a name, not a payload).
pub const MAX_RACK_LENGTH: usize = 255;

pub const NODE_ID: Setting = Setting {
    flag: Some("--node-id"),
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("0"),
    validator: Validator::Range(0, i32::MAX as i64 - 1),
    target: Target::Broker(|config, value| {
        config.node_id = value.as_int() as i32;
        Ok(())
    }),
    ..row("node_id", Some("node.id"), "this broker's id")
};

pub const BROKER_ID: Setting = Setting {
    key: None,
    config_type: ConfigType::Int,
    default: DefaultValue::SameAs("node_id"),
    ..row(
        "",
        Some("broker.id"),
        "this broker's id (node.id's older name)",
    )
};

pub const PROCESS_ROLES: Setting = Setting {
    flag: Some("--process-roles"),
    config_type: ConfigType::List,
    default: DefaultValue::Fixed("broker,controller"),
    validator: Validator::ListOf(&["broker", "controller"]),
    target: Target::Broker(|config, value| {
        config.process_roles = ProcessRoles::parse(value.as_text());
        Ok(())
    }),
    ..row(
        "process_roles",
        Some("process.roles"),
        "what this node runs: broker (serves clients), controller (votes in the metadata quorum), or both",
    )
};

pub const CONTROLLER_QUORUM_VOTERS: Setting = Setting {
    flag: Some("--controller-quorum-voters"),
    config_type: ConfigType::List,
    default: DefaultValue::Derived("this node alone"),
    target: Target::Broker(|config, value| {
        config.quorum_voters = parse_quorum_voters(value.as_text())?;
        Ok(())
    }),
    ..row(
        "controller_quorum_voters",
        Some("controller.quorum.voters"),
        "the metadata quorum's voters: ID@HOST:PORT,ID@HOST:PORT,... (their controller listeners)",
    )
};

pub const CONTROLLER_LISTEN: Setting = Setting {
    flag: Some("--controller-listen"),
    config_type: ConfigType::String,
    default: DefaultValue::Derived(
        "this node's entry in controller_quorum_voters; none for a cluster of one",
    ),
    target: Target::Broker(|config, value| {
        config.controller_listen = Some(crate::config::resolve(value.as_text())?);
        Ok(())
    }),
    ..row(
        "controller_listen",
        None,
        "where this node listens for the metadata quorum's traffic (HOST:PORT); controllers only",
    )
};

pub const RACK: Setting = Setting {
    flag: Some("--rack"),
    config_type: ConfigType::String,
    default: DefaultValue::Derived("none"),
    target: Target::Broker(|config, value| {
        let rack = value.as_text();
        if rack.is_empty() {
            return Err("is empty; leave it out for no rack".into());
        }
        if rack.chars().count() > MAX_RACK_LENGTH {
            return Err(format!(
                "is {} characters long, the maximum is {MAX_RACK_LENGTH}",
                rack.chars().count()
            ));
        }
        config.rack = Some(rack.to_string());
        Ok(())
    }),
    ..row(
        "rack",
        Some("broker.rack"),
        "this broker's rack (failure domain)",
    )
};

pub const BROKER_SESSION_TIMEOUT_MS: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("9000"),
    validator: Validator::AtLeast(100),
    target: Target::Broker(|config, value| {
        config.broker_session_timeout = Duration::from_millis(value.as_int() as u64);
        Ok(())
    }),
    ..row(
        "broker_session_timeout_ms",
        Some("broker.session.timeout.ms"),
        "a broker whose heartbeats the controller has not had for this long is fenced",
    )
};

pub const BROKER_HEARTBEAT_INTERVAL_MS: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("2000"),
    validator: Validator::AtLeast(10),
    target: Target::Broker(|config, value| {
        config.broker_heartbeat_interval = Duration::from_millis(value.as_int() as u64);
        Ok(())
    }),
    ..row(
        "broker_heartbeat_interval_ms",
        Some("broker.heartbeat.interval.ms"),
        "how often a broker heartbeats to the controller (less than broker_session_timeout_ms)",
    )
};

pub const METADATA_SNAPSHOT_BYTES: Setting = Setting {
    default: DefaultValue::Fixed("20971520"),
    validator: Validator::AtLeast(1),
    target: Target::Broker(|config, value| {
        config.metadata_snapshot_bytes = value.as_int() as u64;
        Ok(())
    }),
    ..row(
        "metadata_log_max_record_bytes_between_snapshots",
        Some("metadata.log.max.record.bytes.between.snapshots"),
        "bytes of metadata-log entries written before the log is compacted into a snapshot",
    )
};

pub const REPLICA_LAG_TIME_MAX_MS: Setting = Setting {
    config_type: ConfigType::Long,
    default: DefaultValue::Fixed("30000"),
    validator: Validator::AtLeast(100),
    target: Target::Broker(|config, value| {
        config.replica_lag_time_max = Duration::from_millis(value.as_int() as u64);
        Ok(())
    }),
    ..row(
        "replica_lag_time_max_ms",
        Some("replica.lag.time.max.ms"),
        "a follower not caught up with its leader's log end for this long leaves the ISR",
    )
};

pub const AUTO_LEADER_REBALANCE_ENABLE: Setting = Setting {
    config_type: ConfigType::Boolean,
    default: DefaultValue::Fixed("true"),
    target: Target::Broker(|config, value| {
        config.leader_balance.enabled = value.as_bool();
        Ok(())
    }),
    ..row(
        "auto_leader_rebalance_enable",
        Some("auto.leader.rebalance.enable"),
        "the active controller moves leadership back to preferred leaders (first replicas) when brokers' shares drift",
    )
};

pub const LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS: Setting = Setting {
    config_type: ConfigType::Long,
    default: DefaultValue::Fixed("300"),
    validator: Validator::Range(1, 86_400),
    target: Target::Broker(|config, value| {
        config.leader_balance.check_interval = Duration::from_secs(value.as_int() as u64);
        Ok(())
    }),
    ..row(
        "leader_imbalance_check_interval_seconds",
        Some("leader.imbalance.check.interval.seconds"),
        "how often the active controller looks for leadership to move back to preferred leaders",
    )
};

pub const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE: Setting = Setting {
    config_type: ConfigType::Int,
    default: DefaultValue::Fixed("10"),
    validator: Validator::Range(0, 100),
    target: Target::Broker(|config, value| {
        config.leader_balance.imbalance_percentage = value.as_int() as u32;
        Ok(())
    }),
    ..row(
        "leader_imbalance_per_broker_percentage",
        Some("leader.imbalance.per.broker.percentage"),
        "a broker's preferred partitions may be led elsewhere up to this percentage before leadership moves back",
    )
};

pub const FOLLOWER_REPLICATION_THROTTLED_RATE: Setting = Setting {
    config_type: ConfigType::Long,
    default: DefaultValue::Fixed("9223372036854775807"),
    validator: Validator::AtLeast(0),
    dynamic: true,
    target: Target::Broker(|config, value| {
        config.follower_replication_throttled_rate = value.as_int() as u64;
        Ok(())
    }),
    ..row(
        "follower_replication_throttled_rate",
        Some("follower.replication.throttled.rate"),
        "bytes per second a follower copies for the replicas its topics' follower.replication.throttled.replicas name (dynamic; default: no limit)",
    )
};

pub const LEADER_REPLICATION_THROTTLED_RATE: Setting = Setting {
    key: None,
    config_type: ConfigType::Long,
    default: DefaultValue::Fixed("9223372036854775807"),
    validator: Validator::AtLeast(0),
    dynamic: true,
    ..row(
        "",
        Some("leader.replication.throttled.rate"),
        "accepted and reported (dynamic); the throttle applies on followers (follower.replication.throttled.rate)",
    )
};

pub const REPLICA_FSYNC_BEFORE_ACK: Setting = Setting {
    config_type: ConfigType::Boolean,
    default: DefaultValue::Fixed("false"),
    target: Target::Broker(|config, value| {
        config.replica_fsync_before_ack = value.as_bool();
        Ok(())
    }),
    ..row(
        "replica_fsync_before_ack",
        Some("replica.fsync.before.ack"),
        "acks=all produces are acknowledged only once fsynced on the leader and every in-sync follower (followers fsync what they fetched before fetching again); acks=0 and 1 are unchanged",
    )
};

pub const REPLICA_SELECTOR: Setting = Setting {
    config_type: ConfigType::String,
    default: DefaultValue::Fixed("leader"),
    validator: Validator::OneOf(&["leader", "rack-aware", ReplicaSelector::RACK_AWARE_CLASS]),
    target: Target::Broker(|config, value| {
        config.replica_selector = ReplicaSelector::parse(value.as_text());
        Ok(())
    }),
    ..row(
        "replica_selector",
        Some("replica.selector.class"),
        "where consumers (Fetch v11+) read: leader, or rack-aware (a follower in the consumer's client.rack when the leader is not; Kafka's RackAwareReplicaSelector class name is accepted too)",
    )
};

/// Starting over on a directory whose metadata is lost (here to keep `table.rs` under the file-size
/// bound).
pub const RECOVER_UNKNOWN_DATA: Setting = Setting {
    flag: Some("--recover-unknown-data"),
    config_type: ConfigType::Boolean,
    default: DefaultValue::Fixed("false"),
    target: Target::Broker(|config, value| {
        config.recover_unknown_data = value.as_bool();
        Ok(())
    }),
    ..row("recover_unknown_data", None, "start over partition directories although no usable metadata file exists: rebuild the metadata from them")
};

/// The controllers elect leaders from the metadata log alone, so the brokers' level is the dynamic
/// cluster-wide config (AlterConfigs on the broker resource ""), never a file setting.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: Setting = Setting {
    key: None,
    scope: Scope::BrokerAndTopic { topic_name: "unclean.leader.election.enable" },
    config_type: ConfigType::Boolean,
    default: DefaultValue::Fixed("false"),
    dynamic: true,
    ..row("", Some("unclean.leader.election.enable"), "when every in-sync replica is down, a live out-of-sync replica may lead (records only they had are lost, and logged); else the partition stays offline. Topic config, or the brokers' dynamic default (AlterConfigs on broker \"\")")
};
