"""Hostile bytes on the wire: absurd element counts in every request the clients send, and mutated
client frames, must never crash the broker, take memory in proportion to what a frame claims, or stop
it from serving a real client (issue: an 18-byte Metadata request used to abort the process)."""

import os
import struct

import pytest

import wire_fuzz
from harness import (DeliveryLog, api_versions_v0, ck_consume, ck_producer, create_topic, frame,
                     parse_api_versions_v0, request_header_v1)

# Bounded for CI; the long runs (1 million frames and more) are recorded in ROBUSTNESS.md.
FRAMES = int(os.environ.get("WIRE_FUZZ_FRAMES", "100000"))
RSS_BOUND_KIB = 512 * 1024


def _round_trip(broker, topic, count=50):
    create_topic(broker.bootstrap, topic)
    producer = ck_producer(broker.bootstrap)
    deliveries = DeliveryLog()
    for index in range(count):
        producer.produce(topic, value=b"after-fuzz-%d" % index, partition=0, on_delivery=deliveries)
    producer.flush(30)
    assert deliveries.count == count and not deliveries.errors, deliveries.errors
    received = ck_consume(broker.bootstrap, [(topic, 0, 0)], count, timeout=30)
    assert [record[4] for record in received] == [b"after-fuzz-%d" % i for i in range(count)]


def test_the_18_byte_metadata_request_that_aborted_the_broker(broker, topic):
    import socket
    sock = socket.create_connection(broker.address, timeout=10)
    # Metadata v0: topics array count 0x7fffffff, then one byte.
    sock.sendall(frame(request_header_v1(3, 0, 1) + struct.pack(">i", 0x7FFFFFFF) + b"\x00"))
    sock.settimeout(10)
    assert sock.recv(100) == b""  # closed as malformed, no answer
    assert broker.alive()
    # Metadata v12 (flexible): a compact topics array claiming 2^32 - 2 elements.
    sock = socket.create_connection(broker.address, timeout=10)
    body = b"\xff\xff\xff\xff\x0f\x00\x00\x00"
    sock.sendall(frame(struct.pack(">hhi", 3, 12, 2) + struct.pack(">h", -1) + b"\x00" + body))
    assert sock.recv(100) == b""
    assert broker.alive()
    with socket.create_connection(broker.address, timeout=10) as fresh:
        correlation_id, body = api_versions_v0(fresh)
        assert correlation_id == 1 and parse_api_versions_v0(body)[0] == 0
    assert "an element count larger than" in broker.log_text()
    _round_trip(broker, topic)


def test_absurd_counts_at_every_position_of_every_client_request(broker, topic):
    sprayer = wire_fuzz.Sprayer(broker.address)
    try:
        for payload in wire_fuzz.absurd_count_frames(wire_fuzz.load_seeds()):
            sprayer.send(payload)
    finally:
        sprayer.close()
    assert sprayer.sent > 10_000
    assert broker.alive(), broker.log_tail()
    rss = wire_fuzz.rss_kib(broker.proc.pid)
    assert rss < RSS_BOUND_KIB, f"broker RSS {rss} KiB"
    _round_trip(broker, topic)


def test_mutated_client_frames(broker_factory, topic):
    broker = broker_factory(shards=2)
    result = wire_fuzz.run(broker.address, FRAMES, seed=7, pid=broker.proc.pid, report_every=0)
    print(result)
    assert result["frames"] == FRAMES
    assert broker.alive(), broker.log_tail()
    assert result["peak_rss_kib"] < RSS_BOUND_KIB, result
    _round_trip(broker, topic)
