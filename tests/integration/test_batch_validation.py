"""Record-level validation of produced batches, over real sockets.

A batch whose CRC is right but whose records do not parse, or whose header claims more records
than it holds, must be refused (INVALID_RECORD / CORRUPT_MESSAGE) without moving the high
watermark; a real consumer keeps reading the good data around it.

The produce requests are crafted by hand (Produce v3, magic-2 batches, CRC-32C from kafka-python's
helper) so that the CRC can be made valid over any bytes.
"""

import socket
import struct

from harness import (ck_consume, ck_consumer, ck_produce_all, ck_producer, create_topic, frame,
                     read_response, request_header_v1)
from kafka.record.util import calc_crc32c

INVALID_RECORD = 87
CORRUPT_MESSAGE = 2


def zigzag(value: int) -> bytes:
    encoded = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        if encoded < 0x80:
            out.append(encoded)
            return bytes(out)
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7


def record(index: int, value: bytes) -> bytes:
    body = (b"\x00" + zigzag(0) + zigzag(index) + zigzag(-1) + zigzag(len(value)) + value
            + zigzag(0))
    return zigzag(len(body)) + body


def batch(records: bytes, count: int, last_offset_delta: int | None = None,
          timestamp: int = 1_700_000_000_000) -> bytes:
    """A magic-2 batch around `records` with a valid CRC whatever the records are."""
    if last_offset_delta is None:
        last_offset_delta = count - 1
    after_crc = struct.pack(">hiqqqhii", 0, last_offset_delta, timestamp, timestamp, -1, -1, -1,
                            count) + records
    crc = calc_crc32c(after_crc)
    length = 4 + 1 + 4 + len(after_crc)  # leader epoch, magic, crc, rest
    return struct.pack(">qiibI", 0, length, -1, 2, crc) + after_crc


def produce(broker, topic: str, records: bytes) -> tuple[int, int]:
    """Produce v3 with acks=-1; returns (error_code, base_offset) of partition 0."""
    name = topic.encode()
    body = (struct.pack(">hhi", -1, -1, 10_000) + struct.pack(">i", 1)
            + struct.pack(">h", len(name)) + name + struct.pack(">i", 1)
            + struct.pack(">ii", 0, len(records)) + records)
    with socket.create_connection(broker.address, timeout=10) as sock:
        sock.sendall(frame(request_header_v1(0, 3, 7) + body))
        correlation_id, response = read_response(sock)
    assert correlation_id == 7
    (topics,) = struct.unpack_from(">i", response, 0)
    assert topics == 1
    (name_length,) = struct.unpack_from(">h", response, 4)
    position = 6 + name_length
    partitions, index, error_code, base_offset = struct.unpack_from(">iihq", response, position)
    assert (partitions, index) == (1, 0)
    return error_code, base_offset


def high_watermark(broker, topic: str) -> int:
    from confluent_kafka import TopicPartition
    consumer = ck_consumer(broker.bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def test_garbage_behind_a_valid_crc_is_refused(broker, topic):
    create_topic(broker.bootstrap, topic, 1)
    producer = ck_producer(broker.bootstrap)
    first = ck_produce_all(producer, topic, [(None, b"good-%d" % i) for i in range(5)],
                           partition=0)
    assert len(first.ok) == 5 and not first.errors

    # A well-formed request's batch as the control: it is accepted at offset 5.
    assert produce(broker, topic, batch(record(0, b"raw-ok"), 1)) == (0, 5)

    refused = {
        "garbage records": batch(b"\xff" * 40, 1),
        "one record claiming 2^31-1": batch(record(0, b"x"), 2**31 - 1),
        "one record claiming 3": batch(record(0, b"x"), 3),
        "second record with offset delta 0": batch(record(0, b"a") + record(0, b"b"), 2),
        "trailing bytes after the records": batch(record(0, b"a") + b"\x00\x00", 1),
        "header count -5": batch(zigzag(6) + b"\x00" + zigzag(0) + zigzag(0) + zigzag(-1)
                                 + zigzag(-1) + zigzag(-5), 1),
        "good batch followed by a bad one": batch(record(0, b"fine"), 1)
        + batch(b"\x01" * 30, 1),
    }
    for what, records in refused.items():
        error_code, base_offset = produce(broker, topic, records)
        assert error_code in (INVALID_RECORD, CORRUPT_MESSAGE), (what, error_code)
        assert base_offset == -1, what
        assert high_watermark(broker, topic) == 6, what

    second = ck_produce_all(producer, topic, [(None, b"after-%d" % i) for i in range(5)],
                            partition=0)
    assert sorted(offset for (_t, _p, offset, _k, _v) in second.ok) == list(range(6, 11))
    assert high_watermark(broker, topic) == 11

    messages = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=11, timeout=30)
    values = [value for (_t, _p, _o, _k, value, _h, _ts) in messages]
    assert values == ([b"good-%d" % i for i in range(5)] + [b"raw-ok"]
                      + [b"after-%d" % i for i in range(5)])
    assert [offset for (_t, _p, offset, *_rest) in messages] == list(range(11))


def test_real_clients_batches_pass_validation(broker, topic):
    """Every codec and both Python clients (keys, headers, many records per batch) pass the
    record walk: nothing a real client sends is refused."""
    from harness import kp_producer
    create_topic(broker.bootstrap, topic, 1)
    expected = []
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        producer = ck_producer(broker.bootstrap, **{"compression.codec": codec, "linger.ms": 20})
        items = [(b"k%d" % i, b"%s-%d" % (codec.encode(), i) * 10, [("h", b"v%d" % i)])
                 for i in range(200)]
        delivered = ck_produce_all(producer, topic, items, partition=0)
        assert len(delivered.ok) == 200 and not delivered.errors, codec
        expected += [value for (_k, value, _h) in items]
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        producer = kp_producer(broker.bootstrap, compression_type=codec, linger_ms=20)
        futures = [producer.send(topic, key=b"k", value=b"kp-%s-%d" % (str(codec).encode(), i),
                                 headers=[("h", b"x"), ("n", b"")], partition=0)
                   for i in range(100)]
        producer.flush(30)
        for future in futures:
            future.get(timeout=30)
        producer.close()
        expected += [b"kp-%s-%d" % (str(codec).encode(), i) for i in range(100)]
    messages = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=len(expected), timeout=30)
    assert [value for (_t, _p, _o, _k, value, _h, _ts) in messages] == expected
    assert "append rejected" not in broker.log_text()
