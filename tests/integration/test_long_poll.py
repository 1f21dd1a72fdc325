"""Fetch long polling: an idle fetch waits, and wakes up promptly when data arrives."""

import socket
import statistics
import threading
import time

from confluent_kafka import TopicPartition

from harness import (ck_consumer, ck_producer, create_topic, fetch_v4_request, kp_consumer,
                     parse_fetch_v4, read_response)


def test_confluent_consumer_wakes_up_on_new_data(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    c = ck_consumer(broker.bootstrap, **{"fetch.wait.max.ms": 2000, "fetch.min.bytes": 1})
    c.assign([TopicPartition(topic, 0, 0)])
    p = ck_producer(broker.bootstrap, **{"linger.ms": 0})
    try:
        assert c.poll(1.5) is None          # idle topic: nothing arrives
        latencies = []
        for i in range(5):
            time.sleep(0.3)                 # let the consumer settle into a long poll
            t0 = time.monotonic()
            p.produce(topic, value=b"ping-%d" % i, partition=0)
            p.flush(10)
            m = None
            while m is None and time.monotonic() - t0 < 10:
                m = c.poll(0.05)
            assert m is not None and m.error() is None, m and m.error()
            assert m.value() == b"ping-%d" % i
            latencies.append(time.monotonic() - t0)
        # fetch.wait.max.ms is 2 s; a broker that answers only at the timeout
        # would put the median near 1 s.
        assert statistics.median(latencies) < 0.5, latencies
        assert max(latencies) < 1.9, latencies
    finally:
        c.close()


def test_kafka_python_consumer_wakes_up_on_new_data(broker, topic):
    from kafka import TopicPartition as KTP
    create_topic(broker.bootstrap, topic, partitions=1)
    c = kp_consumer(broker.bootstrap, fetch_max_wait_ms=2000, fetch_min_bytes=1)
    tp = KTP(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    assert c.poll(timeout_ms=1000) == {}
    p = ck_producer(broker.bootstrap, **{"linger.ms": 0})

    def later():
        time.sleep(0.5)
        p.produce(topic, value=b"wake", partition=0)
        p.flush(10)

    th = threading.Thread(target=later, daemon=True)
    t0 = time.monotonic()
    th.start()
    got = []
    while not got and time.monotonic() - t0 < 10:
        for recs in c.poll(timeout_ms=100).values():
            got.extend(recs)
    elapsed = time.monotonic() - t0
    c.close()
    assert [r.value for r in got] == [b"wake"]
    assert elapsed < 2.0, f"message took {elapsed:.2f}s (fetch wait is 2s)"


def _raw_fetch(broker, topic, max_wait_ms, corr):
    s = socket.create_connection(broker.address, timeout=15)
    s.settimeout(15)
    s.sendall(fetch_v4_request(corr, topic, 0, 0, max_wait_ms=max_wait_ms, min_bytes=1))
    return s


def test_raw_fetch_waits_then_returns_on_data(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)

    # 1. Empty partition: the broker holds the fetch for ~max_wait_ms.
    t0 = time.monotonic()
    s = _raw_fetch(broker, topic, 1500, 11)
    corr, body = read_response(s)
    waited = time.monotonic() - t0
    s.close()
    assert corr == 11
    [(t, part, err, hw, nbytes)] = parse_fetch_v4(body)
    assert (t, part, err, hw, nbytes) == (topic, 0, 0, 0, 0)
    assert 1.2 <= waited <= 6, f"empty long-poll returned after {waited:.2f}s (max_wait 1.5s)"

    # 2. Data arriving mid-wait completes the fetch early.
    s = _raw_fetch(broker, topic, 5000, 12)
    time.sleep(0.3)
    p = ck_producer(broker.bootstrap, **{"linger.ms": 0})
    t0 = time.monotonic()
    p.produce(topic, value=b"x" * 100, partition=0)
    p.flush(10)
    corr, body = read_response(s)
    elapsed = time.monotonic() - t0
    s.close()
    assert corr == 12
    [(t, part, err, hw, nbytes)] = parse_fetch_v4(body)
    assert err == 0 and hw == 1 and nbytes > 100
    assert elapsed < 2.5, f"fetch completed {elapsed:.2f}s after the produce (max_wait 5s)"


def test_raw_fetch_min_bytes_waits_for_enough_data(broker, topic):
    """min_bytes counts bytes, not batches: a fetch for 20 KB keeps waiting while single small batches
    arrive, and completes once enough bytes are there (or at max_wait)."""
    create_topic(broker.bootstrap, topic, partitions=1)
    p = ck_producer(broker.bootstrap, **{"linger.ms": 0})
    s = socket.create_connection(broker.address, timeout=15)
    s.settimeout(15)
    s.sendall(fetch_v4_request(21, topic, 0, 0, max_wait_ms=8000, min_bytes=20_000))
    time.sleep(0.3)
    # Three small batches (~1 KB each) are not enough: the fetch must still be waiting.
    for i in range(3):
        p.produce(topic, value=b"s" * 1000, partition=0)
        p.flush(10)
    s.settimeout(1.0)
    try:
        s.recv(1, socket.MSG_PEEK)
        raise AssertionError("fetch answered before min_bytes were available")
    except socket.timeout:
        pass
    # Enough bytes now: the fetch completes well before max_wait.
    t0 = time.monotonic()
    for i in range(3):
        p.produce(topic, value=b"b" * 10_000, partition=0)
        p.flush(10)
    s.settimeout(15)
    corr, body = read_response(s)
    elapsed = time.monotonic() - t0
    s.close()
    assert corr == 21
    [(t, part, err, hw, nbytes)] = parse_fetch_v4(body)
    # It answers as soon as min_bytes are there: after the second 10 KB batch (3 KB + 20 KB) at the latest.
    assert err == 0 and hw >= 5 and nbytes >= 20_000, (err, hw, nbytes)
    assert elapsed < 4, f"fetch completed {elapsed:.2f}s after enough data arrived (max_wait 8s)"


def test_raw_fetch_of_unknown_partition_answers_at_once(broker, topic):
    """A partition with an error (here: one that does not exist) ends the long poll at once, as in Kafka,
    instead of holding the fetch for max_wait."""
    create_topic(broker.bootstrap, topic, partitions=1)
    s = socket.create_connection(broker.address, timeout=15)
    s.settimeout(15)
    t0 = time.monotonic()
    s.sendall(fetch_v4_request(31, topic, 7, 0, max_wait_ms=5000, min_bytes=1))
    corr, body = read_response(s)
    elapsed = time.monotonic() - t0
    s.close()
    assert corr == 31
    [(t, part, err, hw, nbytes)] = parse_fetch_v4(body)
    assert (t, part, err, nbytes) == (topic, 7, 3, 0)   # UNKNOWN_TOPIC_OR_PARTITION
    assert elapsed < 2.0, f"took {elapsed:.2f}s (max_wait 5s)"
