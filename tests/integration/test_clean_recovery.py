"""Recovery after a clean stop (SIGTERM) does not trust the segment tail.

The base offset of a batch is not covered by its CRC: overwriting the last batch's base offset on
disk used to move the high watermark to 1.1e12 on the next (clean) start, and garbage appended to
the segment was cut without a word. Now the tail is checked for offset continuity and CRCs on every
start, the damage is cut, and the cut is logged at WARN.
"""

import struct
from pathlib import Path

from harness import ck_consume, ck_consumer, ck_produce_all, ck_producer, create_topic

WARNING = "truncating a damaged segment tail"


def produce_batches(broker, topic: str, batches: int, per_batch: int, prefix: bytes) -> list:
    """Produces `batches` × `per_batch` records, flushing after each group; returns the values
    in offset order."""
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 0})
    values = []
    for batch in range(batches):
        items = [(None, b"%s-%d-%d" % (prefix, batch, i)) for i in range(per_batch)]
        delivered = ck_produce_all(producer, topic, items, partition=0)
        assert len(delivered.ok) == per_batch and not delivered.errors
        values += [value for (_k, value) in items]
    return values


def segment(broker, topic: str) -> Path:
    return broker.data_dir / f"{topic}-0" / ("0" * 20 + ".log")


def batch_positions(path: Path) -> list[tuple[int, int, int]]:
    """(position, base offset, last offset) of every batch in a segment file."""
    data = path.read_bytes()
    out, position = [], 0
    while position + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, position)
        (last_delta,) = struct.unpack_from(">i", data, position + 23)
        out.append((position, base, base + last_delta))
        position += 12 + length
    assert position == len(data), "the segment ends with a partial batch"
    return out


def high_watermark(broker, topic: str) -> int:
    from confluent_kafka import TopicPartition
    consumer = ck_consumer(broker.bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def consumed_values(broker, topic: str, expected: int) -> list:
    messages = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=expected, timeout=30)
    assert [offset for (_t, _p, offset, *_rest) in messages] == list(range(len(messages)))
    return [value for (_t, _p, _o, _k, value, _h, _ts) in messages]


def warnings_since_last_start(broker) -> list[str]:
    text = broker.log_text().split("===== start #")[-1]
    return [line for line in text.splitlines() if WARNING in line]


def test_corrupt_base_offset_of_the_last_batch_after_a_clean_stop(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    values = produce_batches(broker, topic, batches=6, per_batch=4, prefix=b"v")
    assert broker.stop() == 0

    path = segment(broker, topic)
    batches = batch_positions(path)
    position, cut, last = batches[-1]
    assert last == 23 and cut > 0
    with open(path, "r+b") as file:
        file.seek(position)
        file.write(struct.pack(">q", 1_100_000_000_000))

    broker.start()
    assert high_watermark(broker, topic) == cut
    assert consumed_values(broker, topic, cut) == values[:cut]
    warnings = warnings_since_last_start(broker)
    assert len(warnings) == 1, broker.log_tail()
    assert "WARN" in warnings[0] and path.name in warnings[0]
    assert f"position={position}" in warnings[0], warnings[0]
    assert f"last_offset_kept={cut - 1}" in warnings[0], warnings[0]
    assert "1100000000000" in warnings[0], warnings[0]

    # The log goes on from the cut, all readable.
    more = produce_batches(broker, topic, batches=1, per_batch=3, prefix=b"after")
    assert high_watermark(broker, topic) == cut + 3
    assert consumed_values(broker, topic, cut + 3) == values[:cut] + more


def test_garbage_after_the_tail_after_a_clean_stop(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    values = produce_batches(broker, topic, batches=5, per_batch=3, prefix=b"g")
    assert broker.stop() == 0

    path = segment(broker, topic)
    size = path.stat().st_size
    with open(path, "ab") as file:
        file.write(bytes(range(256)) * 3)

    broker.start()
    assert high_watermark(broker, topic) == 15
    assert consumed_values(broker, topic, 15) == values
    warnings = warnings_since_last_start(broker)
    assert len(warnings) == 1, broker.log_tail()
    assert f"position={size}" in warnings[0] and "bytes_cut=768" in warnings[0]
    assert path.stat().st_size == size

    more = produce_batches(broker, topic, batches=2, per_batch=2, prefix=b"after")
    assert consumed_values(broker, topic, 19) == values + more
    # A second clean restart finds nothing to cut.
    broker.stop()
    broker.start()
    assert high_watermark(broker, topic) == 19
    assert warnings_since_last_start(broker) == []
