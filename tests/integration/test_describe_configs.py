"""DescribeConfigs sources and synonyms, as the settings table reports them, seen by a real client
(confluent-kafka's AdminClient): a topic override is TOPIC_CONFIG (DYNAMIC_TOPIC_CONFIG to the client),
a broker setting given in the TOML file is STATIC_BROKER_CONFIG (for the broker and as the default of
its topic synonym), anything else DEFAULT_CONFIG."""

from confluent_kafka.admin import ConfigResource, ConfigSource, NewTopic, ResourceType

from harness import ck_admin, wait_for_topic


def _describe(admin, resource):
    return admin.describe_configs([resource])[resource].result(30)


def _synonyms(entry):
    return [(name, ConfigSource(synonym.source)) for name, synonym in entry.synonyms.items()]


def test_topic_override_is_topic_config_and_the_rest_default(broker, topic):
    admin = ck_admin(broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                  config={"segment.bytes": "1048576"})])[topic].result(30)
    wait_for_topic(broker.bootstrap, topic, 1)

    entries = _describe(admin, ConfigResource(ResourceType.TOPIC, topic))
    segment = entries["segment.bytes"]
    assert segment.value == "1048576"
    assert ConfigSource(segment.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG, segment
    assert not segment.is_default
    assert not segment.is_read_only

    for name, value in [("max.message.bytes", "1048588"), ("retention.ms", "604800000"),
                        ("cleanup.policy", "delete"), ("message.timestamp.type", "CreateTime")]:
        entry = entries[name]
        assert entry.value == value, entry
        assert ConfigSource(entry.source) == ConfigSource.DEFAULT_CONFIG, entry
        assert entry.is_default, entry

    # The override comes first, then the broker-level default.
    assert _synonyms(segment) == [("segment.bytes", ConfigSource.DYNAMIC_TOPIC_CONFIG),
                                  ("log.segment.bytes", ConfigSource.DEFAULT_CONFIG)]

    broker_entries = _describe(admin, ConfigResource(ResourceType.BROKER, "0"))
    for name in ("num.partitions", "log.segment.bytes", "offsets.topic.num.partitions"):
        assert ConfigSource(broker_entries[name].source) == ConfigSource.DEFAULT_CONFIG, \
            broker_entries[name]
    assert broker_entries["broker.id"].value == broker_entries["node.id"].value == "0"


def test_broker_settings_from_the_file_are_static(broker_factory, topic):
    broker = broker_factory(config={"num_partitions": 2, "log_segment_bytes": 4194304})
    admin = ck_admin(broker.bootstrap)

    broker_entries = _describe(admin, ConfigResource(ResourceType.BROKER, "0"))
    partitions = broker_entries["num.partitions"]
    assert partitions.value == "2"
    assert ConfigSource(partitions.source) == ConfigSource.STATIC_BROKER_CONFIG, partitions
    # (Its synonyms, the given value and the default, share the name: the client keys them by name.)
    assert ConfigSource(broker_entries["log.roll.ms"].source) == ConfigSource.DEFAULT_CONFIG

    admin.create_topics([NewTopic(topic, num_partitions=-1, replication_factor=1,
                                  config={"max.message.bytes": "2000000"})])[topic].result(30)
    wait_for_topic(broker.bootstrap, topic, 2)
    entries = _describe(admin, ConfigResource(ResourceType.TOPIC, topic))
    assert ConfigSource(entries["max.message.bytes"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    # Not overridden, but the broker's default for it was given in the file.
    segment = entries["segment.bytes"]
    assert segment.value == "4194304"
    assert ConfigSource(segment.source) == ConfigSource.STATIC_BROKER_CONFIG, segment
    assert ConfigSource(entries["segment.ms"].source) == ConfigSource.DEFAULT_CONFIG
