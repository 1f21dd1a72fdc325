"""The data directory across restarts that change what the broker finds there: fewer shards than
the data was written with, a hand-edited metadata file naming a shard that does not exist."""

import re
import time

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions

from harness import ck_admin, ck_consume, ck_producer, ck_produce_all, create_topic, wait_for_topic

GROUP = "data-dir-group"


def _write(broker, topics):
    """Produces 50 records to every partition of every topic; returns {(topic, partition): values}."""
    producer = ck_producer(broker.bootstrap)
    written = {}
    for topic, partitions in topics.items():
        for partition in range(partitions):
            values = [b"%s-%d-%d" % (topic.encode(), partition, i) for i in range(50)]
            log = ck_produce_all(producer, topic, [(None, v) for v in values], partition=partition)
            assert log.errors == []
            written[(topic, partition)] = values
    return written


def _commit(broker, offsets):
    admin = ck_admin(broker.bootstrap)
    request = ConsumerGroupTopicPartitions(
        GROUP, [TopicPartition(t, p, o) for (t, p), o in offsets.items()])
    # The first FindCoordinator creates __consumer_offsets; a commit racing its partitions' opening is
    # refused with NOT_COORDINATOR (a pre-existing window, not what this file tests): retry briefly.
    deadline = time.monotonic() + 15
    while True:
        result = admin.alter_consumer_group_offsets([request], request_timeout=15)[GROUP].result(30)
        errors = [(tp.topic, tp.partition, tp.error) for tp in result.topic_partitions
                  if tp.error is not None]
        if not errors:
            return
        assert time.monotonic() < deadline and all(
            e.code() in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
            for (_t, _p, e) in errors), errors
        time.sleep(0.2)


def _committed(broker):
    admin = ck_admin(broker.bootstrap)
    result = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(GROUP)], request_timeout=15)[GROUP].result(30)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def _assert_readable(broker, topics, written, committed):
    for topic, partitions in topics.items():
        wait_for_topic(broker.bootstrap, topic, partitions)
    assignments = [(t, p, 0) for (t, p) in written]
    messages = ck_consume(broker.bootstrap, assignments, expected=sum(map(len, written.values())),
                          timeout=30)
    got = {}
    for (t, p, _offset, _key, value, _headers, _timestamp) in messages:
        got.setdefault((t, p), []).append(value)
    assert got == written
    assert _committed(broker) == committed


def _placement(broker):
    text = (broker.data_dir / "cluster_metadata.toml").read_text()
    return [int(s) for array in re.findall(r"shards = \[([0-9, ]*)\]", text)
            for s in array.split(",") if s.strip()]


def test_restart_with_fewer_shards_then_more(broker_factory, topic):
    broker = broker_factory(shards=2)
    topics = {topic + "-a": 3, topic + "-b": 4, topic + "-c": 1}
    for name, partitions in topics.items():
        create_topic(broker.bootstrap, name, partitions=partitions)
    written = _write(broker, topics)
    committed = {(topic + "-a", 0): 10, (topic + "-b", 3): 49, (topic + "-c", 0): 1}
    _commit(broker, committed)
    assert 1 in _placement(broker)
    assert broker.stop() == 0

    broker.shards = 1
    broker.start()
    _assert_readable(broker, topics, written, committed)
    assert set(_placement(broker)) == {0}, "re-placement must be persisted"
    assert "re-placed" in broker.log_text()
    assert broker.stop() == 0

    broker.shards = 2
    broker.start()
    _assert_readable(broker, topics, written, committed)
    # New partitions go to the shard that has fewer; the old ones stay where they are.
    create_topic(broker.bootstrap, topic + "-d", partitions=2)
    assert 1 in _placement(broker)


def test_metadata_naming_a_missing_shard(broker_factory, topic):
    broker = broker_factory(shards=2)
    topics = {topic: 3}
    create_topic(broker.bootstrap, topic, partitions=3)
    written = _write(broker, topics)
    committed = {(topic, 2): 7}
    _commit(broker, committed)
    assert broker.stop() == 0

    path = broker.data_dir / "cluster_metadata.toml"
    edited = re.sub(r"shards = \[([0-9, ]*)\]",
                    lambda m: "shards = [" + ", ".join("7" for _ in m.group(1).split(",")) + "]",
                    path.read_text())
    path.write_text(edited)
    assert 7 in _placement(broker)

    broker.start()
    _assert_readable(broker, topics, written, committed)
    assert max(_placement(broker)) <= 1
