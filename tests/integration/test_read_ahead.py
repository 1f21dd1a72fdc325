"""Read-ahead for catch-up consumers (storage `read_ahead`): readers that start at the beginning of
partitions whose data has left the batch cache are served from background O_DIRECT reads. With 4 KiB
read-ahead chunks most batches span two or more chunks; every record must still come back exactly as
produced, to librdkafka and to kafka-python, through partitions on both shards."""

import random

from harness import ck_consume, ck_producer, ck_produce_all, create_topic, kp_consume

READ_AHEAD = {
    "batch_cache_bytes": 0,          # every fetch goes to the segment files
    "read_ahead_chunk_bytes": 4096,  # batches of up to ~30 KiB span several chunks
    "read_ahead_chunks": 3,
}


def _produce(broker, topic, partitions, count, seed):
    rng = random.Random(seed)
    items = []
    for i in range(count):
        size = rng.choice((10, 300, 1500, 3000))
        items.append((b"key-%d" % (i % 97), (b"%08d-" % i) + bytes([65 + i % 26]) * size))
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 20, "batch.size": 32768})
    delivered = ck_produce_all(producer, topic, items)
    assert delivered.errors == []
    expected = {(partition, offset): value for (_t, partition, offset, _k, value) in delivered.ok}
    assert len(expected) == count
    return expected


def test_catch_up_consumers_read_every_record_through_read_ahead(broker_factory, topic):
    broker = broker_factory(shards=2, config=READ_AHEAD)
    partitions = 4
    create_topic(broker.bootstrap, topic, partitions=partitions, config={"segment.bytes": "262144"})
    expected = _produce(broker, topic, partitions, 6000, seed=12)
    assignments = [(topic, partition, 0) for partition in range(partitions)]

    # librdkafka, with small fetches so that each partition is read in many sequential steps.
    messages = ck_consume(broker.bootstrap, assignments, expected=len(expected),
                          **{"max.partition.fetch.bytes": 20000})
    got = {(m[1], m[2]): m[4] for m in messages}
    assert got == expected

    # kafka-python, twice (the second pass meets streams left by the first).
    for _ in range(2):
        records = kp_consume(broker.bootstrap, assignments, expected=len(expected),
                             max_partition_fetch_bytes=25000, fetch_max_bytes=80000)
        assert {(r.partition, r.offset): r.value for r in records} == expected
    assert broker.alive()


def test_read_ahead_off_serves_the_same_records(broker_factory, topic):
    broker = broker_factory(config={"batch_cache_bytes": 0, "read_ahead_bytes": 0})
    create_topic(broker.bootstrap, topic, partitions=1, config={"segment.bytes": "262144"})
    expected = _produce(broker, topic, 1, 1500, seed=7)
    messages = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(expected),
                          **{"max.partition.fetch.bytes": 20000})
    assert {(m[1], m[2]): m[4] for m in messages} == expected
