"""`__consumer_offsets` as a compacted topic, driven by real clients.

Every removal the group coordinator makes is a tombstone (a record with the same key and a null
value), so compaction forgets what was deleted: DeleteGroups (confluent-kafka's AdminClient)
tombstones the group's offsets and metadata, OffsetDelete (kafka-python's `delete_group_offsets`)
the deleted offsets. The topic is read raw with a kafka-python consumer assigned to its partition,
and a restart must not bring deleted offsets back. The topic itself is created compacted, with
`offsets_topic_segment_bytes` as its segment size.

Offset expiry (`offsets_retention_minutes`, at least a minute) is covered on the manual clock by the
in-process test `broker/src/in_process_tests/offsets.rs`, not here, to keep the suite fast.
"""

import struct
import time

from confluent_kafka import (ConsumerGroupTopicPartitions, KafkaException, TopicPartition)
from confluent_kafka.admin import ConfigResource, ResourceType

from harness import ck_admin, ck_consumer, create_topic

OFFSETS_TOPIC = "__consumer_offsets"
SEGMENT_BYTES = 1 << 20
CONFIG = {
    "group_initial_rebalance_delay_ms": 100,
    # One partition: every group's records are in partition 0.
    "offsets_topic_num_partitions": 1,
    "offsets_topic_segment_bytes": SEGMENT_BYTES,
}


def parse_key(key: bytes):
    """("offset", group, topic, partition) or ("group", group), from Kafka's key formats."""
    (version,) = struct.unpack_from(">h", key, 0)
    pos = 2

    def string():
        nonlocal pos
        (length,) = struct.unpack_from(">h", key, pos)
        pos += 2
        text = key[pos:pos + length].decode()
        pos += length
        return text

    group = string()
    if version in (0, 1):
        topic = string()
        (partition,) = struct.unpack_from(">i", key, pos)
        return ("offset", group, topic, partition)
    assert version == 2, f"unknown key version {version}"
    return ("group", group)


def offsets_topic_records(bootstrap: str) -> list:
    """Every (parsed key, value) of __consumer_offsets partition 0, in log order."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition as KTP
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=200)
    try:
        partition = KTP(OFFSETS_TOPIC, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        out = []
        deadline = time.time() + 20
        while consumer.position(partition) < end and time.time() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend((parse_key(record.key), record.value) for record in batch)
        assert consumer.position(partition) >= end, "read the whole offsets partition"
        return out
    finally:
        consumer.close()


def committed(admin, group: str) -> dict:
    """{(topic, partition): offset} of `group`'s committed offsets ({} when none or no group)."""
    try:
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                request_timeout=15)[group].result(30)
    except KafkaException:
        return {}
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions if tp.offset >= 0}


def join_commit_and_leave(bootstrap: str, group: str, topic: str, offsets: dict):
    """A confluent-kafka consumer joins `group` (so it gets a generation and metadata record),
    commits `offsets` ({partition: offset}) and leaves."""
    consumer = ck_consumer(bootstrap, **{"group.id": group, "enable.auto.commit": False,
                                          "session.timeout.ms": 6000,
                                          "heartbeat.interval.ms": 500,
                                          "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.time() + 30
        while not consumer.assignment() and time.time() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment(), "assigned"
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                        asynchronous=False)
    finally:
        consumer.close()


def wait_empty(admin, group: str):
    deadline = time.time() + 20
    while time.time() < deadline:
        d = admin.describe_consumer_groups([group], request_timeout=15)[group].result(30)
        if not d.members:
            return
        time.sleep(0.2)
    raise AssertionError(f"{group} did not become empty")


def test_delete_groups_tombstones_offsets_and_metadata_and_restart_keeps_them_gone(
        broker_factory, topic):
    b = broker_factory(shards=1, config=CONFIG)
    create_topic(b.bootstrap, topic, partitions=2)
    admin = ck_admin(b.bootstrap)
    deleted, kept = f"deleted-{topic}", f"kept-{topic}"
    join_commit_and_leave(b.bootstrap, deleted, topic, {0: 5, 1: 6})
    join_commit_and_leave(b.bootstrap, kept, topic, {0: 9})
    wait_empty(admin, deleted)
    assert committed(admin, deleted) == {(topic, 0): 5, (topic, 1): 6}

    assert admin.delete_consumer_groups([deleted], request_timeout=15)[deleted].result(30) is None
    assert committed(admin, deleted) == {}

    records = offsets_topic_records(b.bootstrap)
    last = {}
    for key, value in records:
        last[key] = value
    # The offsets and the group had values, and their last record is a tombstone.
    for key in [("offset", deleted, topic, 0), ("offset", deleted, topic, 1), ("group", deleted)]:
        assert any(k == key and v is not None for k, v in records), f"{key} was written"
        assert key in last and last[key] is None, f"{key} ends with a tombstone"
    assert last[("offset", kept, topic, 0)] is not None
    assert last[("group", kept)] is not None

    b.restart()
    admin = ck_admin(b.bootstrap)
    deadline = time.time() + 20
    while committed(admin, kept) != {(topic, 0): 9} and time.time() < deadline:
        time.sleep(0.2)
    assert committed(admin, kept) == {(topic, 0): 9}, "the kept group survives the restart"
    assert committed(admin, deleted) == {}, "a restart does not bring deleted offsets back"


def test_offset_delete_tombstones_the_deleted_offsets(broker_factory, topic):
    from kafka.admin import KafkaAdminClient
    from kafka.structs import TopicPartition as KTP
    b = broker_factory(shards=1, config=CONFIG)
    create_topic(b.bootstrap, topic, partitions=2)
    admin = ck_admin(b.bootstrap)
    group = f"simple-{topic}"
    # A simple consumer's commit (no group membership): AlterConsumerGroupOffsets.
    res = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)])])[group].result(30)
    assert [tp.error for tp in res.topic_partitions] == [None, None]

    kp_admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        errors = kp_admin.delete_group_offsets(group, [KTP(topic, 0)])
    finally:
        kp_admin.close()
    assert [error.errno for error in errors.values()] == [0], errors
    assert committed(admin, group) == {(topic, 1): 4}

    last = {}
    for key, value in offsets_topic_records(b.bootstrap):
        last[key] = value
    assert last[("offset", group, topic, 0)] is None, "the deleted offset ends with a tombstone"
    assert last[("offset", group, topic, 1)] is not None

    b.restart()
    admin = ck_admin(b.bootstrap)
    deadline = time.time() + 20
    while committed(admin, group) != {(topic, 1): 4} and time.time() < deadline:
        time.sleep(0.2)
    assert committed(admin, group) == {(topic, 1): 4}, "the deleted offset stays deleted"


def test_the_offsets_topic_is_compacted_with_the_configured_segment_size(broker_factory):
    b = broker_factory(shards=1, config=CONFIG)
    admin = ck_admin(b.bootstrap)
    # FindCoordinator (through a group lookup) creates the offsets topic.
    committed(admin, "any-group")
    deadline = time.time() + 20
    while OFFSETS_TOPIC not in admin.list_topics(timeout=10).topics and time.time() < deadline:
        time.sleep(0.2)
    resource = ConfigResource(ResourceType.TOPIC, OFFSETS_TOPIC)
    configs = admin.describe_configs([resource], request_timeout=15)[resource].result(30)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].value == str(SEGMENT_BYTES)
