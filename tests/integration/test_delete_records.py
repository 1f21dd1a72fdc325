"""DeleteRecords (API 21) with confluent-kafka's AdminClient.delete_records: the low watermark
moves, ListOffsets earliest follows, a consumer at an old offset resets with
auto.offset.reset=earliest, the new start survives a clean restart and kill -9, and offsets past
the high watermark are refused with OFFSET_OUT_OF_RANGE."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from harness import ck_admin, ck_consumer, ck_producer, ck_produce_all, create_topic


def _produce(bootstrap, topic, count, partition=0):
    # Small batches (10 records of ~100 bytes): several segments of 4 KiB.
    producer = ck_producer(bootstrap, batch_num_messages=10)
    dl = ck_produce_all(producer, topic,
                        [(b"k", b"value-%d-" % i + b"v" * 90) for i in range(count)],
                        partition=partition)
    assert dl.errors == []
    return dl


def _delete_records(bootstrap, topic, offset, partition=0):
    """Returns the low watermark the broker answered, or raises the KafkaException."""
    admin = ck_admin(bootstrap)
    futures = admin.delete_records([TopicPartition(topic, partition, offset)],
                                   request_timeout=20, operation_timeout=10)
    (future,) = futures.values()
    return future.result(30).low_watermark


def _watermarks(bootstrap, topic, partition=0):
    consumer = ck_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()


def _first_offset_read(bootstrap, topic, start_offset, partition=0, timeout=20.0):
    """Consumes from `start_offset` with auto.offset.reset=earliest; the first message's offset."""
    consumer = ck_consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, partition, start_offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            return message.offset()
        raise AssertionError("nothing consumed")
    finally:
        consumer.close()


def test_delete_records_moves_the_low_watermark_and_consumers_reset(broker, topic):
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "4096"})
    _produce(broker.bootstrap, topic, 300)
    assert _watermarks(broker.bootstrap, topic) == (0, 300)

    assert _delete_records(broker.bootstrap, topic, 120) == 120
    assert _watermarks(broker.bootstrap, topic) == (120, 300)
    # Lower than the start: nothing moves, the current low watermark is answered.
    assert _delete_records(broker.bootstrap, topic, 50) == 120
    # A consumer positioned below the start gets OFFSET_OUT_OF_RANGE and resets to the earliest.
    assert _first_offset_read(broker.bootstrap, topic, 10) == 120
    # Whole segments below the start are gone from the partition directory (renamed .deleted).
    logs = sorted(p.name for p in (broker.data_dir / f"{topic}-0").glob("*.log"))
    assert logs and int(logs[0].split(".")[0]) <= 120
    assert "00000000000000000000.log" not in logs

    # Past the high watermark: OFFSET_OUT_OF_RANGE, nothing moves.
    with pytest.raises(KafkaException) as refused:
        _delete_records(broker.bootstrap, topic, 301)
    assert refused.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert _watermarks(broker.bootstrap, topic) == (120, 300)

    # -1 (OFFSET_END in librdkafka): the high watermark.
    assert _delete_records(broker.bootstrap, topic, -1) == 300
    assert _watermarks(broker.bootstrap, topic) == (300, 300)
    _produce(broker.bootstrap, topic, 5)
    assert _first_offset_read(broker.bootstrap, topic, 0) == 300


def test_delete_records_survives_restart_and_kill9(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2, config={"segment.bytes": "4096"})
    _produce(broker.bootstrap, topic, 200, partition=0)
    _produce(broker.bootstrap, topic, 200, partition=1)
    assert _delete_records(broker.bootstrap, topic, 77, partition=0) == 77
    assert broker.stop() == 0
    broker.restart()
    assert _watermarks(broker.bootstrap, topic, 0) == (77, 200)
    assert _watermarks(broker.bootstrap, topic, 1) == (0, 200)

    # Acknowledged, then killed at once: the start was checkpointed before the answer.
    assert _delete_records(broker.bootstrap, topic, 163, partition=1) == 163
    assert _delete_records(broker.bootstrap, topic, 101, partition=0) == 101
    broker.kill9()
    broker.restart()
    assert _watermarks(broker.bootstrap, topic, 0) == (101, 200)
    assert _watermarks(broker.bootstrap, topic, 1) == (163, 200)
    assert _first_offset_read(broker.bootstrap, topic, 0, partition=1) == 163
    assert not list((broker.data_dir / f"{topic}-1").glob("*.deleted")), \
        "leftover .deleted files are removed when the log opens"
