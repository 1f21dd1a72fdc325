//! AlterConfigs and IncrementalAlterConfigs on shard 0: each alteration is applied to a copy of the
//! resource's configs (`config::alter`), checked as a whole, and stored in the new metadata version
//! unless `validate_only`. Topic overrides live in `topics.<name>.configs`, dynamic broker configs in
//! `broker_default_configs` / `broker_configs`; every shard applies them when the version arrives.

use super::requests::{ConfigAlteration, ConfigResource, TopicOutcome};
use crate::config::alter::{alter, ResourceKind};
use crate::config::{BrokerConfig, TopicConfig};
use crate::metadata::ClusterMetadata;
use kafka_protocol::error::ResponseError;

/// Applies `alterations` to `metadata` (unless `validate_only`); one outcome each.
pub fn apply(
    config: &BrokerConfig,
    metadata: &mut ClusterMetadata,
    alterations: &[ConfigAlteration],
    validate_only: bool,
) -> Vec<TopicOutcome> {
    alterations
        .iter()
        .map(|alteration| apply_one(config, metadata, alteration, validate_only))
        .collect()
}

fn apply_one(
    config: &BrokerConfig,
    metadata: &mut ClusterMetadata,
    alteration: &ConfigAlteration,
    validate_only: bool,
) -> TopicOutcome {
    let invalid = |message: String| (ResponseError::InvalidConfig, message);
    match &alteration.resource {
        ConfigResource::Topic(name) => {
            let Some(topic) = metadata.topics.get(name) else {
                return Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                ));
            };
            let configs = alter(
                &topic.configs,
                ResourceKind::Topic,
                alteration.replace_all,
                &alteration.changes,
            )
            .map_err(invalid)?;
            let defaults = config.effective_log_defaults(metadata.dynamic_configs());
            TopicConfig::resolve(&defaults, &configs).map_err(invalid)?;
            if !validate_only && configs != topic.configs {
                tracing::info!(topic = %name, ?configs, "topic configs altered");
                if let Some(topic) = metadata.topics.get_mut(name) {
                    topic.configs = configs;
                }
            }
            Ok(())
        }
        ConfigResource::BrokerDefault | ConfigResource::ThisBroker => {
            let current = match alteration.resource {
                ConfigResource::BrokerDefault => &metadata.broker_default_configs,
                _ => &metadata.broker_configs,
            };
            let configs = alter(
                current,
                ResourceKind::Broker,
                alteration.replace_all,
                &alteration.changes,
            )
            .map_err(invalid)?;
            if !validate_only && &configs != current {
                tracing::info!(resource = ?alteration.resource, ?configs, "dynamic broker configs altered");
                match alteration.resource {
                    ConfigResource::BrokerDefault => metadata.broker_default_configs = configs,
                    _ => metadata.broker_configs = configs,
                }
            }
            Ok(())
        }
    }
}
