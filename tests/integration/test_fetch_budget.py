"""Fetch `max_bytes` is the whole response's budget, across every shard the partitions live on (it used
to be applied per shard: a consumer with fetch.max.bytes=1000000 got a 1,843,787-byte answer, rejected it
as "Invalid response size" and never progressed — librdkafka test 0082)."""

import socket
import struct

from harness import (DeliveryLog, ck_consume, ck_producer, create_topic, frame, read_response,
                     request_header_v1)

PARTITIONS = 8
PER_PARTITION = 300
VALUE = b"x" * 1000


def _fill(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 20})
    deliveries = DeliveryLog()
    for partition in range(PARTITIONS):
        for index in range(PER_PARTITION):
            producer.produce(topic, value=VALUE, key=b"%d" % index, partition=partition,
                             on_delivery=deliveries)
    producer.flush(60)
    assert deliveries.count == PARTITIONS * PER_PARTITION and not deliveries.errors


def _fetch_v4(topic, max_bytes, partition_max_bytes):
    name = topic.encode()
    body = struct.pack(">iiiib", -1, 100, 1, max_bytes, 0)  # replica, max wait, min bytes, max bytes, isolation
    body += struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    body += struct.pack(">i", PARTITIONS)
    for partition in range(PARTITIONS):
        body += struct.pack(">iqi", partition, 0, partition_max_bytes)
    return frame(request_header_v1(1, 4, 11) + body)


def test_a_raw_fetch_answer_respects_max_bytes_across_shards(broker_factory, topic):
    broker = broker_factory(shards=2)
    _fill(broker, topic)
    with socket.create_connection(broker.address, timeout=10) as sock:
        sock.sendall(_fetch_v4(topic, max_bytes=1_000_000, partition_max_bytes=1_000_000))
        correlation_id, body = read_response(sock)
    assert correlation_id == 11
    # The whole answer: headers plus records stay within max_bytes plus a little framing.
    assert len(body) <= 1_000_000 + 4096, len(body)
    # And it is not empty: the budget was used.
    assert len(body) > 500_000, len(body)


def test_a_consumer_with_a_small_fetch_max_bytes_reads_everything(broker_factory, topic):
    broker = broker_factory(shards=2)
    _fill(broker, topic)
    received = ck_consume(broker.bootstrap, [(topic, p, 0) for p in range(PARTITIONS)],
                          PARTITIONS * PER_PARTITION, timeout=60,
                          **{"fetch.max.bytes": 1_000_000, "message.max.bytes": 1_000_000,
                             "max.partition.fetch.bytes": 1_000_000, "receive.message.max.bytes": 1_100_000})
    assert len(received) == PARTITIONS * PER_PARTITION
