"""Admin operations with confluent-kafka's AdminClient and kafka-python's KafkaAdminClient."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (ConfigResource, ConfigSource, NewPartitions, NewTopic,
                                   ResourceType)

from harness import ck_admin, wait_for_topic

DEFAULT_SOURCES = (ConfigSource.DEFAULT_CONFIG, ConfigSource.STATIC_BROKER_CONFIG)


def _err_code(fut, timeout=30):
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout)
    return ei.value.args[0].code()


def _wait_gone(list_fn, topic, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if topic not in list_fn():
            return
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} still listed {timeout}s after delete")


# ---------------------------------------------------------------- confluent

def test_confluent_create_and_describe_topic(broker, topic):
    admin = ck_admin(broker.bootstrap)
    fs = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1,
                                       config={"max.message.bytes": "2000000",
                                               "segment.bytes": "10485760"})],
                             operation_timeout=10)
    assert fs[topic].result(30) is None

    t = wait_for_topic(broker.bootstrap, topic, 4)
    assert sorted(t.partitions) == [0, 1, 2, 3]
    for p in t.partitions.values():
        assert p.error is None
        assert p.leader == 0
        assert list(p.replicas) == [0]
        assert list(p.isrs) == [0]
    md = admin.list_topics(timeout=10)
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {0: ("127.0.0.1", broker.port)}
    assert md.controller_id in (0, -1)


def test_confluent_describe_cluster(broker):
    admin = ck_admin(broker.bootstrap)
    res = admin.describe_cluster(request_timeout=15).result(30)
    assert [(n.id, n.host, n.port) for n in res.nodes] == [(0, "127.0.0.1", broker.port)]
    assert res.controller is not None and res.controller.id == 0
    assert res.cluster_id


def test_confluent_describe_configs_topic_and_broker(broker, topic):
    admin = ck_admin(broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                  config={"max.message.bytes": "2000000"})])[topic].result(30)
    wait_for_topic(broker.bootstrap, topic, 1)

    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([res])[res].result(30)
    assert "max.message.bytes" in entries, sorted(entries)
    mmb = entries["max.message.bytes"]
    assert mmb.value == "2000000"
    assert ConfigSource(mmb.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG, mmb
    assert not mmb.is_default

    # A config the topic did not override is reported from the defaults.
    assert "message.timestamp.type" in entries, sorted(entries)
    ts = entries["message.timestamp.type"]
    assert ts.value == "CreateTime"
    assert ConfigSource(ts.source) in DEFAULT_SOURCES, ts
    assert "segment.bytes" in entries
    assert int(entries["segment.bytes"].value) > 0
    assert ConfigSource(entries["segment.bytes"].source) in DEFAULT_SOURCES

    bres = ConfigResource(ResourceType.BROKER, "0")
    bentries = admin.describe_configs([bres])[bres].result(30)
    assert bentries, "broker config is empty"
    assert "num.partitions" in bentries, sorted(bentries)
    assert bentries["num.partitions"].value == "1"
    for e in bentries.values():
        assert ConfigSource(e.source) != ConfigSource.DYNAMIC_TOPIC_CONFIG, e


def test_confluent_create_partitions(broker, topic):
    admin = ck_admin(broker.bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    wait_for_topic(broker.bootstrap, topic, 2)

    assert admin.create_partitions([NewPartitions(topic, 5)])[topic].result(30) is None
    t = wait_for_topic(broker.bootstrap, topic, 5)
    assert all(p.leader == 0 for p in t.partitions.values())

    code = _err_code(admin.create_partitions([NewPartitions(topic, 3)])[topic])
    assert code == KafkaError.INVALID_PARTITIONS
    code = _err_code(admin.create_partitions([NewPartitions(topic, 5)])[topic])
    assert code == KafkaError.INVALID_PARTITIONS
    # unchanged
    assert len(admin.list_topics(timeout=10).topics[topic].partitions) == 5


def test_confluent_delete_topic(broker, topic):
    admin = ck_admin(broker.bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    wait_for_topic(broker.bootstrap, topic, 3)
    assert admin.delete_topics([topic], operation_timeout=10)[topic].result(30) is None
    _wait_gone(lambda: admin.list_topics(timeout=10).topics, topic)
    # deleting again: unknown topic
    code = _err_code(admin.delete_topics([topic])[topic])
    assert code == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_confluent_invalid_and_duplicate_topic(broker, topic):
    admin = ck_admin(broker.bootstrap)
    for bad in ["bad topic!", "a/b", "..", "x" * 250]:
        code = _err_code(admin.create_topics([NewTopic(bad, 1, 1)])[bad])
        assert code == KafkaError.TOPIC_EXCEPTION, (bad, code)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    code = _err_code(admin.create_topics([NewTopic(topic, 1, 1)])[topic])
    assert code == KafkaError.TOPIC_ALREADY_EXISTS
    names = admin.list_topics(timeout=10).topics
    assert "bad topic!" not in names and topic in names


# ------------------------------------------------------------- kafka-python

@pytest.fixture
def kp_admin(broker):
    from kafka.admin import KafkaAdminClient
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    yield a
    a.close()


def _kp_wait_topic(kp_admin, topic, n, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        ts = [t for t in kp_admin.describe_topics([topic]) if t["name"] == topic]
        if ts and ts[0]["error_code"] == 0 and len(ts[0]["partitions"]) == n:
            return ts[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic} not visible with {n} partitions: {ts}")
        time.sleep(0.2)


def test_kafka_python_admin_lifecycle(broker, kp_admin, topic):
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType

    res = kp_admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                          "configs": {"message.timestamp.type": "LogAppendTime"}}})
    assert [(t["name"], t["error_code"]) for t in res["topics"]] == [(topic, 0)]
    assert topic in kp_admin.list_topics()

    t = _kp_wait_topic(kp_admin, topic, 3)
    assert sorted(p["partition_index"] for p in t["partitions"]) == [0, 1, 2]
    assert all(p["leader_id"] == 0 for p in t["partitions"])

    cfg = kp_admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic)],
                                    config_filter="all")
    entries = cfg["topic"][topic]
    assert entries["message.timestamp.type"]["value"] == "LogAppendTime"
    assert entries["message.timestamp.type"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert entries["max.message.bytes"]["config_source"] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG")
    modified = kp_admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic)])
    assert "message.timestamp.type" in modified["topic"][topic]
    assert "max.message.bytes" not in modified["topic"][topic]

    bcfg = kp_admin.describe_configs([KConfigResource(ConfigResourceType.BROKER, "0")],
                                     config_filter="all")
    assert bcfg["broker"]["0"]["num.partitions"]["value"] == "1"

    kp_admin.create_partitions({topic: 6})
    t = _kp_wait_topic(kp_admin, topic, 6)
    assert all(p["leader_id"] == 0 for p in t["partitions"])

    cluster = kp_admin.describe_cluster()
    assert cluster["controller_id"] == 0, cluster
    assert [(b["broker_id"], b["port"]) for b in cluster["brokers"]] == [(0, broker.port)], cluster

    kp_admin.delete_topics([topic])
    _wait_gone(kp_admin.list_topics, topic)


def test_kafka_python_admin_errors(broker, kp_admin, topic):
    import kafka.errors as Errors

    with pytest.raises(Errors.InvalidTopicError):
        kp_admin.create_topics({"bad topic!": {"num_partitions": 1, "replication_factor": 1}})
    kp_admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    with pytest.raises(Errors.TopicAlreadyExistsError):
        kp_admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    _kp_wait_topic(kp_admin, topic, 2)
    with pytest.raises(Errors.InvalidPartitionsError):
        kp_admin.create_partitions({topic: 1})
    with pytest.raises(Errors.UnknownTopicOrPartitionError):
        kp_admin.delete_topics(["no-such-topic-xyz"])
    assert len(_kp_wait_topic(kp_admin, topic, 2)["partitions"]) == 2


# ------------------------------------------------------------------ misc

def test_auto_created_topic_has_default_one_partition(broker, topic):
    from harness import ck_producer, ck_produce_all
    dl = ck_produce_all(ck_producer(broker.bootstrap), topic, [(b"k", b"v")])
    assert [(p, o) for (_t, p, o, _k, _v) in dl.ok] == [(0, 0)]
    t = wait_for_topic(broker.bootstrap, topic, 1)
    assert t.partitions[0].leader == 0


def test_recreated_topic_starts_empty(broker, topic):
    from harness import ck_consume, ck_producer, ck_produce_all
    admin = ck_admin(broker.bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    wait_for_topic(broker.bootstrap, topic, 2)
    ck_produce_all(ck_producer(broker.bootstrap), topic, [(None, b"old-%d" % i) for i in range(50)],
                   partition=0)
    admin.delete_topics([topic])[topic].result(30)
    _wait_gone(lambda: admin.list_topics(timeout=10).topics, topic)

    deadline = time.monotonic() + 15
    while True:   # deletion may complete asynchronously; retry the create briefly
        try:
            admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
            break
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    wait_for_topic(broker.bootstrap, topic, 3)
    dl = ck_produce_all(ck_producer(broker.bootstrap), topic, [(None, b"new")], partition=0)
    assert dl.ok[0][2] == 0, "recreated topic continued the old topic's offsets"
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=1, settle=1.0)
    assert [m[4] for m in msgs] == [b"new"]


def test_describe_configs_unknown_topic(broker):
    admin = ck_admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, "no-such-topic-cfg")
    code = _err_code(admin.describe_configs([res])[res])
    assert code == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_find_coordinator_v1_groups_and_transactions(broker):
    """FindCoordinator v1 over the raw wire: a group's coordinator is this broker (the offsets topic is
    created on the way), and so is a transactional id's (the transaction state topic is created too)."""
    import socket
    import struct
    from harness import api_versions_v0, frame, read_response, request_header_v1
    s = socket.create_connection(broker.address, timeout=10)
    s.settimeout(10)
    key = b"some-group"
    s.sendall(frame(request_header_v1(10, 1, 55) + struct.pack(">h", len(key)) + key + b"\x00"))
    corr, body = read_response(s)
    assert corr == 55
    _throttle, err = struct.unpack(">ih", body[:6])
    assert err == 0, f"FindCoordinator for a group failed with {err}"
    (msg_len,) = struct.unpack(">h", body[6:8])
    rest = body[8 + max(msg_len, 0):]
    (node_id, host_len) = struct.unpack(">ih", rest[:6])
    host = rest[6:6 + host_len].decode()
    (port,) = struct.unpack(">i", rest[6 + host_len:10 + host_len])
    assert (node_id, host, port) == (0, broker.host, broker.port)
    s.sendall(frame(request_header_v1(10, 1, 56) + struct.pack(">h", len(key)) + key + b"\x01"))
    corr, body = read_response(s)
    assert corr == 56
    _throttle, err = struct.unpack(">ih", body[:6])
    assert err == 0, f"FindCoordinator for a transactional id failed with {err}"
    (msg_len,) = struct.unpack(">h", body[6:8])
    rest = body[8 + max(msg_len, 0):]
    (node_id, host_len) = struct.unpack(">ih", rest[:6])
    assert (node_id, rest[6:6 + host_len].decode()) == (0, broker.host)
    assert api_versions_v0(s, 57)[0] == 57      # connection still usable
    s.close()
    assert broker.alive()
