//! Topic management through librdkafka's AdminClient (futures driven by `block_on`; the admin
//! client polls on its own thread, so no async runtime is needed).

use futures_lite::future::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};

pub fn base_config(bootstrap: &str, extra: &[String]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "kbench")
        .set("log_level", "3");
    for kv in extra {
        if let Some((k, v)) = kv.split_once('=') {
            c.set(k.trim(), v.trim());
        }
    }
    c
}

/// Partition count of `topic` from metadata, or None if it does not exist (yet).
pub fn partition_count(md_client: &BaseConsumer, topic: &str) -> Option<usize> {
    let md = md_client
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    if t.partitions().iter().any(|p| p.leader() < 0) {
        return None;
    }
    Some(t.partitions().len())
}

/// Makes sure `topic` exists (deleting it first with `recreate`); returns its partition count.
pub fn ensure_topic(
    bootstrap: &str,
    extra: &[String],
    topic: &str,
    partitions: i32,
    replication: i32,
    recreate: bool,
    topic_configs: &[String],
) -> Result<usize, String> {
    let cfg = base_config(bootstrap, extra);
    let admin: AdminClient<DefaultClientContext> =
        cfg.create().map_err(|e| format!("admin client: {e}"))?;
    let md_client: BaseConsumer = base_config(bootstrap, extra)
        .set("group.id", "kbench-unused")
        .create()
        .map_err(|e| format!("metadata client: {e}"))?;
    md_client
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| format!("cannot reach {bootstrap}: {e}"))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));

    if recreate {
        let res =
            block_on(admin.delete_topics(&[topic], &opts)).map_err(|e| format!("delete: {e}"))?;
        for r in res {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((t, code)) => return Err(format!("delete topic {t}: {code}")),
            }
        }
        // Wait for the deletion to be visible.
        let deadline = Instant::now() + Duration::from_secs(30);
        while partition_count(&md_client, topic).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    } else if let Some(n) = partition_count(&md_client, topic) {
        if n as i32 != partitions {
            eprintln!(
                "kbench: topic {topic} exists with {n} partitions (asked {partitions}); using {n}"
            );
        }
        return Ok(n);
    }

    let mut nt = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for pair in topic_configs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--topic-config {pair:?}: expected KEY=VALUE"))?;
        nt = nt.set(key, value);
    }
    let res = block_on(admin.create_topics([&nt], &opts)).map_err(|e| format!("create: {e}"))?;
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(format!("create topic {t}: {code}")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(n) = partition_count(&md_client, topic) {
            if n as i32 >= partitions {
                return Ok(n);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "topic {topic} not ready (all partitions with a leader) after 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// High watermark of each partition (where this run's messages will start).
pub fn high_watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: usize,
) -> Result<Vec<i64>, String> {
    (0..partitions as i32)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map(|(_, hi)| hi)
                .map_err(|e| format!("watermarks {topic}/{p}: {e}"))
        })
        .collect()
}
