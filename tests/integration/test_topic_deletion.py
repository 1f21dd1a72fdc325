"""Topic deletion is crash-safe and the broker never serves data its metadata does not own:
kill -9 during a large DeleteTopics never brings the old records back under a re-created topic,
and a lost metadata file makes the broker refuse to start (or recover on request) instead of
starting a new cluster over the old partition directories."""

import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

from harness import (BrokerError, ck_admin, ck_consume, ck_producer, ck_produce_all, create_topic,
                     wait_for_topic)

PARTITIONS = 300


def _fill(broker, topic, partitions):
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 20})
    for partition in range(partitions):
        producer.produce(topic, value=b"old-%d" % partition, partition=partition)
        producer.poll(0)
    assert producer.flush(60) == 0


def _end_offsets(broker, topic, partitions):
    admin = ck_admin(broker.bootstrap)
    wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    result = admin.list_offsets(wanted, request_timeout=30)
    return {tp.partition: future.result(30).offset for tp, future in result.items()}


def _topics(broker):
    admin = ck_admin(broker.bootstrap)
    return set(admin.list_topics(timeout=15).topics)


def _delete_and_wait(broker, topic):
    admin = ck_admin(broker.bootstrap)
    admin.delete_topics([topic], request_timeout=60)[topic].result(60)
    deadline = time.monotonic() + 20
    while topic in _topics(broker):
        assert time.monotonic() < deadline, "topic still listed after deletion"
        time.sleep(0.1)


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1, 0.4])
def test_kill_during_delete_then_recreate_is_empty(broker, topic, delay):
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    _fill(broker, topic, PARTITIONS)
    assert set(_end_offsets(broker, topic, PARTITIONS).values()) == {1}

    admin = ck_admin(broker.bootstrap)
    futures = admin.delete_topics([topic], request_timeout=60)
    time.sleep(delay)
    broker.kill9()
    del futures, admin

    broker.start()
    if topic in _topics(broker):
        # The request did not get through before the kill: delete it now.
        _delete_and_wait(broker, topic)
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    wait_for_topic(broker.bootstrap, topic, PARTITIONS)
    ends = _end_offsets(broker, topic, PARTITIONS)
    assert set(ends.values()) == {0}, {p: o for p, o in ends.items() if o != 0}
    leftovers = [p.name for p in broker.data_dir.iterdir()
                 if p.name.startswith(topic) and p.name.endswith(("-delete", "-stray"))]
    assert leftovers == []


def test_lost_metadata_refuses_then_recovers(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3, config={"max.message.bytes": "300000"})
    log = ck_produce_all(ck_producer(broker.bootstrap), topic,
                         [(None, b"v%d" % i) for i in range(30)])
    assert log.errors == []
    # The last change, which the previous copy of the metadata does not know.
    create_topic(broker.bootstrap, topic + "-last", partitions=2)
    assert broker.stop() == 0

    # Losing the current file alone: the previous copy takes over (with a WARN); the directories of
    # the topic only the lost version knew are moved aside, not served.
    (broker.data_dir / "cluster_metadata.toml").unlink()
    broker.start()
    assert "starting from the previous copy" in broker.log_text()
    wait_for_topic(broker.bootstrap, topic, 3)
    assert topic + "-last" not in _topics(broker)
    strays = sorted(p.name.split(".")[0] for p in broker.data_dir.iterdir()
                    if p.name.endswith("-stray"))
    assert strays == [topic + "-last-0", topic + "-last-1"]
    assert broker.stop() == 0

    for name in ("cluster_metadata.toml", "cluster_metadata.toml.prev"):
        (broker.data_dir / name).unlink()
    with pytest.raises(BrokerError):
        broker.start(timeout=15)
    assert broker.proc.returncode != 0
    assert "refusing to start a new cluster over data it cannot account for" in broker.log_text()
    assert "--recover-unknown-data" in broker.log_text()
    assert not (broker.data_dir / "cluster_metadata.toml").exists()

    broker.extra_args.append("--recover-unknown-data")
    broker.start()
    wait_for_topic(broker.bootstrap, topic, 3)
    messages = ck_consume(broker.bootstrap, [(topic, p, 0) for p in range(3)], expected=30,
                          timeout=30)
    assert sorted(m[4] for m in messages) == sorted(b"v%d" % i for i in range(30))
    # The flag is harmless once the metadata exists again.
    broker.restart()
    wait_for_topic(broker.bootstrap, topic, 3)
