"""AlterConfigs and IncrementalAlterConfigs with a real client (confluent-kafka's AdminClient): topic
overrides altered, described as DYNAMIC_TOPIC_CONFIG, kept across a restart, reset by DELETE, effective
at once (a smaller max.message.bytes refuses a produce); dynamic broker configs (cluster default "" and
broker "0") change a topic's effective retention.ms and are described with their sources; invalid names,
values and broker ids refused; CreateTopics accepts Kafka 4.x topic configs it does not act on."""

import socket
import struct

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)

from harness import (ck_admin, ck_producer, create_topic, frame, read_response, request_header_v1,
                     wait_for_topic)

SET, DELETE = 0, 1


def _string(text):
    if text is None:
        return struct.pack(">h", -1)
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _raw_incremental(broker, resource_type, resource_name, changes):
    """IncrementalAlterConfigs v0 over a socket (librdkafka refuses the cluster-default broker
    resource, name ""); returns (error_code, error_message) of the one resource."""
    body = struct.pack(">i", 1) + struct.pack(">b", resource_type) + _string(resource_name)
    body += struct.pack(">i", len(changes))
    for name, operation, value in changes:
        body += _string(name) + struct.pack(">b", operation) + _string(value)
    body += struct.pack(">?", False)
    with socket.create_connection(broker.address, timeout=10) as sock:
        sock.sendall(frame(request_header_v1(44, 0, 7) + body))
        correlation_id, response = read_response(sock)
    assert correlation_id == 7
    (count,) = struct.unpack_from(">i", response, 4)
    assert count == 1
    (error_code, length) = struct.unpack_from(">hh", response, 8)
    message = response[12:12 + length].decode() if length >= 0 else None
    return error_code, message


def _describe(admin, resource):
    return admin.describe_configs([resource])[resource].result(30)


def _incremental(admin, resource, entries, validate_only=False):
    resource = ConfigResource(resource.restype, resource.name, incremental_configs=entries)
    return admin.incremental_alter_configs([resource], validate_only=validate_only)[resource].result(30)


def _error_code(excinfo):
    error = excinfo.value.args[0]
    return error.code() if isinstance(error, KafkaError) else None


class _Reader:
    def __init__(self, data):
        self.data, self.position = data, 0

    def take(self, layout):
        values = struct.unpack_from(layout, self.data, self.position)
        self.position += struct.calcsize(layout)
        return values if len(values) > 1 else values[0]

    def string(self):
        length = self.take(">h")
        if length < 0:
            return None
        self.position += length
        return self.data[self.position - length:self.position].decode()


def _raw_describe_broker_defaults(broker):
    """DescribeConfigs v1 of broker resource "" (the dynamic defaults of every broker):
    {name: (value, source)}."""
    body = struct.pack(">i", 1) + struct.pack(">b", 4) + _string("") + struct.pack(">i", -1)
    body += struct.pack(">?", False)
    with socket.create_connection(broker.address, timeout=10) as sock:
        sock.sendall(frame(request_header_v1(32, 1, 9) + body))
        _, response = read_response(sock)
    reader = _Reader(response)
    reader.take(">i")
    assert reader.take(">i") == 1
    assert reader.take(">h") == 0
    reader.string(), reader.take(">b"), reader.string()
    configs = {}
    for _ in range(reader.take(">i")):
        name, value = reader.string(), reader.string()
        _read_only, source, _sensitive = reader.take(">?b?")
        for _ in range(reader.take(">i")):
            reader.string(), reader.string(), reader.take(">b")
        configs[name] = (value, source)
    return configs


def test_topic_configs_altered_described_restarted_and_deleted(broker_factory, topic):
    broker = broker_factory(shards=2)
    admin = ck_admin(broker.bootstrap)
    create_topic(broker.bootstrap, topic, partitions=2)
    resource = ConfigResource(ResourceType.TOPIC, topic)

    _incremental(admin, resource, [
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    entries = _describe(admin, resource)
    assert entries["retention.ms"].value == "3600000"
    assert ConfigSource(entries["retention.ms"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert entries["cleanup.policy"].value == "delete,compact"

    _incremental(admin, resource, [
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)])
    assert _describe(admin, resource)["cleanup.policy"].value == "compact"

    # validate_only changes nothing.
    _incremental(admin, resource, [ConfigEntry("retention.ms", "1000",
                                               incremental_operation=AlterConfigOpType.SET)],
                 validate_only=True)
    assert _describe(admin, resource)["retention.ms"].value == "3600000"

    broker.restart()
    admin = ck_admin(broker.bootstrap)
    entries = _describe(admin, resource)
    assert entries["retention.ms"].value == "3600000", "overrides survive a restart"
    assert entries["cleanup.policy"].value == "compact"

    _incremental(admin, resource, [
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    entries = _describe(admin, resource)
    assert entries["retention.ms"].value == "604800000"
    assert ConfigSource(entries["retention.ms"].source) == ConfigSource.DEFAULT_CONFIG
    assert entries["cleanup.policy"].value == "compact"

    # AlterConfigs (not incremental) replaces the whole set: cleanup.policy goes back to its default.
    admin.alter_configs([ConfigResource(ResourceType.TOPIC, topic,
                                        set_config={"segment.ms": "600000"})])[
        ConfigResource(ResourceType.TOPIC, topic)].result(30)
    entries = _describe(admin, resource)
    assert entries["segment.ms"].value == "600000"
    assert ConfigSource(entries["segment.ms"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert entries["cleanup.policy"].value == "delete"
    assert ConfigSource(entries["cleanup.policy"].source) == ConfigSource.DEFAULT_CONFIG


def test_invalid_alterations_are_refused(broker, topic):
    admin = ck_admin(broker.bootstrap)
    create_topic(broker.bootstrap, topic)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    for entry in [ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
                  ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
                  ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)]:
        with pytest.raises(KafkaException) as excinfo:
            _incremental(admin, resource, [entry])
        assert _error_code(excinfo) == KafkaError.INVALID_CONFIG, excinfo.value
    with pytest.raises(KafkaException) as excinfo:
        _incremental(admin, ConfigResource(ResourceType.TOPIC, topic + "-missing"),
                     [ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
    assert _error_code(excinfo) == KafkaError.UNKNOWN_TOPIC_OR_PART
    # A broker setting that needs a restart, and a broker id that is not ours.
    error_code, message = _raw_incremental(broker, 4, "", [("num.partitions", SET, "3")])
    assert error_code == KafkaError.INVALID_CONFIG and "restart" in message, message
    error_code, message = _raw_incremental(broker, 4, "", [("log.retention.ms", SET, "-5")])
    assert error_code == KafkaError.INVALID_CONFIG, message
    error_code, message = _raw_incremental(broker, 4, "7", [("log.retention.ms", SET, "1000")])
    assert error_code == KafkaError.INVALID_REQUEST, message
    assert _describe(admin, resource)["retention.ms"].value == "604800000"


def test_smaller_max_message_bytes_applies_without_restart(broker_factory, topic):
    broker = broker_factory(shards=2)
    admin = ck_admin(broker.bootstrap)
    create_topic(broker.bootstrap, topic, partitions=2)
    producer = ck_producer(broker.bootstrap, linger_ms=0, message_timeout_ms=10000)

    def produce(size):
        outcome = []
        producer.produce(topic, value=b"x" * size, partition=1,
                         on_delivery=lambda err, msg: outcome.append(err))
        producer.flush(15)
        return outcome[0]

    assert produce(20000) is None
    _incremental(admin, ConfigResource(ResourceType.TOPIC, topic), [
        ConfigEntry("max.message.bytes", "5000", incremental_operation=AlterConfigOpType.SET)])
    error = produce(20000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
    assert produce(100) is None


def test_dynamic_broker_configs_set_topic_defaults(broker_factory, topic):
    broker = broker_factory()
    admin = ck_admin(broker.bootstrap)
    create_topic(broker.bootstrap, topic)
    topic_resource = ConfigResource(ResourceType.TOPIC, topic)

    assert _raw_incremental(broker, 4, "", [("log.retention.ms", SET, "7200000"),
                                            ("log.cleaner.backoff.ms", SET, "1000")]) == (0, None)
    assert _raw_describe_broker_defaults(broker) == {
        "log.retention.ms": ("7200000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value),
        "log.cleaner.backoff.ms": ("1000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)}
    retention = _describe(admin, topic_resource)["retention.ms"]
    assert retention.value == "7200000"
    assert ConfigSource(retention.source) == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG

    # This broker's own dynamic config wins over the cluster-wide one.
    _incremental(admin, ConfigResource(ResourceType.BROKER, "0"), [
        ConfigEntry("log.retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    broker_entries = _describe(admin, ConfigResource(ResourceType.BROKER, "0"))
    assert broker_entries["log.retention.ms"].value == "3600000"
    assert ConfigSource(broker_entries["log.retention.ms"].source) == \
        ConfigSource.DYNAMIC_BROKER_CONFIG
    assert not broker_entries["log.retention.ms"].is_read_only
    assert broker_entries["log.cleaner.backoff.ms"].value == "1000"
    assert ConfigSource(broker_entries["log.cleaner.backoff.ms"].source) == \
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
    assert broker_entries["num.partitions"].is_read_only

    broker.restart()
    admin = ck_admin(broker.bootstrap)
    retention = _describe(admin, topic_resource)["retention.ms"]
    assert retention.value == "3600000", "dynamic broker configs survive a restart"
    assert ConfigSource(retention.source) == ConfigSource.DYNAMIC_BROKER_CONFIG

    _incremental(admin, ConfigResource(ResourceType.BROKER, "0"), [
        ConfigEntry("log.retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    assert _raw_incremental(broker, 4, "", [("log.retention.ms", DELETE, None),
                                            ("log.retention.hours", SET, "1")]) == (0, None)
    retention = _describe(admin, topic_resource)["retention.ms"]
    assert retention.value == "3600000", "log.retention.hours applies where log.retention.ms is unset"
    assert ConfigSource(retention.source) == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG


def test_create_topics_accepts_kafka_topic_configs(broker, topic):
    admin = ck_admin(broker.bootstrap)
    configs = {"delete.retention.ms": "1000", "min.compaction.lag.ms": "10",
               "local.retention.ms": "-2", "segment.jitter.ms": "5",
               "message.timestamp.after.max.ms": "60000", "preallocate": "false",
               "compression.zstd.level": "5", "unclean.leader.election.enable": "false"}
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(30)
    wait_for_topic(broker.bootstrap, topic, 1)
    entries = _describe(admin, ConfigResource(ResourceType.TOPIC, topic))
    for name, value in configs.items():
        assert entries[name].value == value, entries[name]
        assert ConfigSource(entries[name].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    for bad in [{"no.such.config": "1"}, {"compression.gzip.level": "12"},
                {"local.retention.ms": "-3"}]:
        name = topic + "-bad"
        with pytest.raises(KafkaException) as excinfo:
            admin.create_topics([NewTopic(name, 1, 1, config=bad)])[name].result(30)
        assert _error_code(excinfo) == KafkaError.INVALID_CONFIG, bad
