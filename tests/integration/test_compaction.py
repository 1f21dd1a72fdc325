"""Log compaction (cleanup.policy=compact) with real clients: the log cleaner keeps the latest
value per key in closed segments (offsets kept, with gaps), drops tombstones once
delete.retention.ms passed (and keeps them before), survives a kill -9 in the middle of a
cleaning pass, and keyless records to a compacted topic are refused with INVALID_RECORD."""

import random
import time
from pathlib import Path

from confluent_kafka import KafkaError, TopicPartition

from harness import ck_consumer, ck_producer, ck_produce_all, create_topic

# A cleaner that looks again every 100 ms, so that a pass follows a roll at once.
FAST_CLEANER = {"log_cleaner_backoff_ms": 100}


def compact_topic(broker, topic, delete_retention_ms=200, segment_bytes=4096):
    create_topic(broker.bootstrap, topic, config={
        "cleanup.policy": "compact",
        "segment.bytes": str(segment_bytes),
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": str(delete_retention_ms),
    })


def consume_all(bootstrap, topic, timeout=20.0):
    """Every record from offset 0 to the high watermark: [(offset, key, value)]."""
    consumer = ck_consumer(bootstrap)
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        records = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in consumer.consume(num_messages=10000, timeout=0.2):
                assert message.error() is None, message.error()
                records.append((message.offset(), message.key(), message.value()))
            if records and records[-1][0] >= high - 1:
                break
        assert records and records[-1][0] == high - 1, f"read up to {records[-1:]} of {high}"
        offsets = [offset for offset, _key, _value in records]
        assert offsets == sorted(set(offsets)), "offsets increase, no duplicates"
        return records
    finally:
        consumer.close()


def latest(records):
    out = {}
    for _offset, key, value in records:
        out[key] = value
    return out


def produce_updates(broker, topic, updates, keys, value_size=40, start=0):
    """`updates` records over `keys` keys in a random (seeded) order."""
    producer = ck_producer(broker.bootstrap, linger_ms=2)
    chooser = random.Random(start)
    items = [(b"key-%d" % chooser.randrange(keys), (b"value-%d-" % update).ljust(value_size, b"x"))
             for update in range(start, start + updates)]
    log = ck_produce_all(producer, topic, items)
    assert log.errors == []
    return items


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_latest_value_per_key_and_tombstones(broker_factory, topic):
    broker = broker_factory(config=FAST_CLEANER)
    short, long = topic + "-short", topic + "-long"
    compact_topic(broker, short, delete_retention_ms=300)
    compact_topic(broker, long, delete_retention_ms=3_600_000)
    expected = {}
    for name in (short, long):
        items = produce_updates(broker, name, 1500, 10)
        producer = ck_producer(broker.bootstrap)
        ck_produce_all(producer, name, [(b"key-3", None), (b"key-7", None)])
        # Roll the tombstones out of the active segment.
        items += produce_updates(broker, name, 300, 5, start=1500)
        expected[name] = latest([(0, key, value) for key, value in items])
        expected[name][b"key-7"] = None
        produced = 1802

        def compacted():
            # Below the last 300 updates, one record per key at most (a key of 0-4 none, once
            # the segments holding the last updates were cleaned too).
            records = consume_all(broker.bootstrap, name)
            early = [key for offset, key, _value in records if offset < 1500]
            done = len(early) == len(set(early)) and len(records) < produced // 4
            return records if done else None
        records = wait_for(compacted, 20, f"{name} compacted")
        offsets = [offset for offset, _key, _value in records]
        assert offsets != list(range(offsets[0], offsets[0] + len(offsets))), "gaps"
        got = latest(records)
        for key, value in expected[name].items():
            if value is not None:
                assert got[key] == value, key

    # The long delete.retention.ms keeps the tombstone of key-7 (key-3 was written again).
    records = consume_all(broker.bootstrap, long)
    assert [value for _offset, key, value in records if key == b"key-7"] == [None]
    # The short one drops it once delete.retention.ms passed and the log is dirty again.
    time.sleep(0.5)

    def tombstone_gone():
        produce_updates(broker, short, 100, 5, start=5000)
        records = consume_all(broker.bootstrap, short)
        return all(key != b"key-7" for _offset, key, _value in records)
    wait_for(tombstone_gone, 20, "the tombstone to go")
    assert all(value is not None for _o, _k, value in consume_all(broker.bootstrap, short)
               if _o < 1500)


def test_keyless_records_refused_by_a_compacted_topic(broker, topic):
    compact_topic(broker, topic)
    producer = ck_producer(broker.bootstrap, message_timeout_ms=10000)
    log = ck_produce_all(producer, topic, [(None, b"no key")])
    codes = [error.code() for error, _key, _value in log.errors]
    assert codes == [KafkaError.INVALID_RECORD], log.errors
    # The batch is refused whole and nothing was written; keyed records go on.
    log = ck_produce_all(producer, topic, [(b"k", b"keyed")])
    assert log.errors == []
    assert [(offset, key) for _t, _p, offset, key, _v in log.ok] == [(0, b"k")]


def leftovers(data_dir):
    return [path.name for path in Path(data_dir).rglob("*")
            if path.name.endswith(".cleaned") or path.name.endswith(".swap")]


def test_kill_9_during_cleaning_keeps_every_latest_value(broker_factory, topic):
    # A slow cleaner (300 KB/s) over ~700 KB: a pass takes seconds, so the kill lands in one.
    broker = broker_factory(config={**FAST_CLEANER,
                                    "log_cleaner_io_max_bytes_per_second": 300_000})
    compact_topic(broker, topic, segment_bytes=32768)
    items = produce_updates(broker, topic, 6000, 50, value_size=100)
    items += produce_updates(broker, topic, 50, 50, value_size=100, start=6000)
    expected = latest([(0, key, value) for key, value in items])
    wait_for(lambda: leftovers(broker.data_dir), 30, "the cleaner to write a cleaned segment")
    broker.kill9()
    broker.restart()
    assert leftovers(broker.data_dir) == []
    records = consume_all(broker.bootstrap, topic)
    assert latest(records) == expected
    # The cleaner finishes after the restart; nothing is lost.
    records = wait_for(lambda: (lambda r: r if len(r) < 1000 else None)(
        consume_all(broker.bootstrap, topic)), 40, "compaction after the restart")
    assert latest(records) == expected
