"""A full disk: produce is refused with KAFKA_STORAGE_ERROR (retriable), what is on disk stays
readable, and produce works again as soon as space is free, without a restart.

The broker's data dir is a 16 MiB tmpfs (mounted here; the test is skipped if mounting is not
permitted). It runs twice: with `direct_io = true` (older kernels' tmpfs refuses O_DIRECT and the
broker falls back to buffered segment files; since Linux 6.6 tmpfs accepts it; the test prints
which path ran) and with `direct_io = false` (buffered).
"""

import socket
import struct
import subprocess

import pytest

from harness import (ck_consume, ck_consumer, ck_producer, create_topic, frame, read_response,
                     request_header_v1)
from kafka.record.util import calc_crc32c

KAFKA_STORAGE_ERROR = 56
VALUE_SIZE = 8 * 1024


@pytest.fixture(params=[True, False], ids=["direct_io", "buffered"])
def tmpfs_broker(request, broker_factory):
    broker = broker_factory(start=False, config={"direct_io": request.param})
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs",
                              str(broker.data_dir)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        # Space to free later: a filler file in the same tmpfs.
        filler = broker.data_dir / "filler"
        filler.write_bytes(b"\0" * (4 << 20))
        broker.start()
        yield broker, filler
    finally:
        if broker.alive():
            broker.stop()
        subprocess.run(["umount", str(broker.data_dir)], check=False)


def raw_produce(broker, topic: str, value: bytes) -> int:
    """Produce v3, one uncompressed record, acks=-1; returns partition 0's error code."""
    def zigzag(number: int) -> bytes:
        encoded, out = (number << 1) ^ (number >> 63), bytearray()
        while encoded >= 0x80:
            out.append((encoded & 0x7F) | 0x80)
            encoded >>= 7
        return bytes(out + bytes([encoded]))
    body = b"\x00" + zigzag(0) + zigzag(0) + zigzag(-1) + zigzag(len(value)) + value + zigzag(0)
    records = zigzag(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, 0, 1, 1, -1, -1, -1, 1) + records
    batch = struct.pack(">qiibI", 0, 9 + len(after_crc), -1, 2, calc_crc32c(after_crc)) + after_crc
    name = topic.encode()
    request = (struct.pack(">hhi", -1, -1, 10_000) + struct.pack(">ih", 1, len(name)) + name
               + struct.pack(">iii", 1, 0, len(batch)) + batch)
    with socket.create_connection(broker.address, timeout=10) as sock:
        sock.sendall(frame(request_header_v1(0, 3, 11) + request))
        _correlation_id, response = read_response(sock)
    (name_length,) = struct.unpack_from(">h", response, 4)
    _partitions, _index, error_code = struct.unpack_from(">iih", response, 6 + name_length)
    return error_code


class Acks:
    def __init__(self):
        self.ok = {}  # offset -> value
        self.errors = []

    def __call__(self, err, msg):
        if err is None:
            self.ok[msg.offset()] = msg.value()
        else:
            self.errors.append(err)


def produce_some(producer, topic: str, acks: Acks, prefix: str, count: int):
    for i in range(count):
        value = f"{prefix}-{i:05d}-".encode().ljust(VALUE_SIZE, b"x")
        while True:
            try:
                producer.produce(topic, value=value, partition=0, on_delivery=acks)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0


def consume_all(broker, topic: str, expected: int) -> dict:
    messages = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=expected, timeout=30)
    offsets = [offset for (_t, _p, offset, *_rest) in messages]
    assert offsets == list(range(len(messages))), "offsets not contiguous from 0"
    return {offset: value for (_t, _p, offset, _k, value, _h, _ts) in messages}


def test_full_disk_refuses_then_resumes(tmpfs_broker, topic):
    broker, filler = tmpfs_broker
    create_topic(broker.bootstrap, topic, 1)
    log = broker.log_text()
    buffered = ("O_DIRECT is not available" in log or "O_DIRECT refused" in log
                or "direct_io=false" in log)
    assert buffered or "direct_io=true" in log
    print(f"segment data I/O on tmpfs: {'buffered fallback' if buffered else 'O_DIRECT'}")

    producer = ck_producer(broker.bootstrap, **{"message.timeout.ms": 4000,
                                                "request.timeout.ms": 3000, "linger.ms": 5})
    acks = Acks()
    for round_number in range(40):  # 40 × 50 × 8 KiB = 16 MiB: more than the free space
        produce_some(producer, topic, acks, f"fill{round_number}", 50)
        if acks.errors:
            break
    assert acks.errors, "the disk never filled up"
    assert len(acks.ok) > 100

    # While full: refused with KAFKA_STORAGE_ERROR, and nothing moved.
    # (larger than what is left: a smaller write might still fit)
    assert raw_produce(broker, topic, b"while-full".ljust(900_000, b"w")) == KAFKA_STORAGE_ERROR
    from confluent_kafka import TopicPartition
    consumer = ck_consumer(broker.bootstrap)
    high_watermark = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    consumer.close()
    assert high_watermark == max(acks.ok) + 1 == len(acks.ok)

    # Everything acknowledged is readable while the disk is full.
    assert consume_all(broker, topic, len(acks.ok)) == acks.ok

    # Space freed: produce works again, no restart.
    filler.unlink()
    acks.errors.clear()
    produce_some(producer, topic, acks, "after", 40)
    assert not acks.errors, acks.errors[:3]
    assert raw_produce(broker, topic, b"raw-after") == 0

    # All acknowledged records once each, nothing unacknowledged, contiguous offsets.
    stored = consume_all(broker, topic, len(acks.ok) + 1)
    assert len(stored) == len(acks.ok) + 1
    assert {offset: value for offset, value in stored.items() if offset in acks.ok} == acks.ok
    assert list(stored.values()).count(b"raw-after") == 1
    assert len(set(stored.values())) == len(stored), "a record appears twice"

    # A clean restart keeps it all.
    broker.stop()
    broker.start()
    assert consume_all(broker, topic, len(stored)) == stored
