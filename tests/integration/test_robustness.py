"""Malformed / hostile raw connections must not disturb normal clients."""

import os
import socket
import struct
import threading
import time

from harness import (DeliveryLog, api_versions_v0, api_versions_v3_request, ck_consume,
                     ck_consumer, ck_producer, create_topic, frame, parse_api_versions_v0,
                     parse_api_versions_v3, read_response, request_header_v1)


def _closed_within(sock, seconds):
    """True if the peer closes (EOF/reset) within `seconds`, draining any data."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def _connect(broker):
    s = socket.create_connection(broker.address, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Background:
    """A normal producer + consumer running while the abuse happens."""

    def __init__(self, broker, topic):
        self.broker, self.topic = broker, topic
        self.stop = threading.Event()
        self.dl = DeliveryLog()
        self.received = []
        self.errors = []
        self.producer_done = threading.Event()
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]

    def _produce(self):
        p = ck_producer(self.broker.bootstrap, **{"linger.ms": 1})
        i = 0
        while not self.stop.is_set():
            p.produce(self.topic, value=b"bg-%d" % i, partition=0, on_delivery=self.dl)
            p.poll(0.01)
            i += 1
        p.flush(30)
        self.sent = i

    def _consume(self):
        from confluent_kafka import TopicPartition
        c = ck_consumer(self.broker.bootstrap, **{"fetch.wait.max.ms": 100})
        c.assign([TopicPartition(self.topic, 0, 0)])
        try:
            while not self.producer_done.is_set() or len(self.received) < self.dl.count:
                for m in c.consume(100, timeout=0.2):
                    if m.error():
                        self.errors.append(str(m.error()))
                    else:
                        self.received.append(m.value())
                if time.monotonic() > self.deadline:
                    break
        finally:
            c.close()

    def __enter__(self):
        self.deadline = float("inf")
        for t in self.threads:
            t.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.threads[0].join(60)
        self.producer_done.set()
        self.deadline = time.monotonic() + 30
        self.threads[1].join(60)


def test_hostile_connections_do_not_disturb_clients(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    with Background(broker, topic) as bg:
        # 1. pure garbage
        for seed in range(5):
            s = _connect(broker)
            s.sendall(os.urandom(4096))
            _closed_within(s, 2)
            s.close()
        # 2. garbage inside a plausibly sized frame
        s = _connect(broker)
        s.sendall(struct.pack(">i", 64) + os.urandom(64))
        _closed_within(s, 2)
        s.close()
        # 3. a frame header claiming 200 MiB: the broker must not wait for/allocate it
        s = _connect(broker)
        s.sendall(struct.pack(">i", 200 * 1024 * 1024) + b"\x00" * 1024)
        assert _closed_within(s, 10), "broker kept a connection announcing a 200 MiB frame open"
        s.close()
        # 4. negative length
        s = _connect(broker)
        s.sendall(struct.pack(">i", -5) + b"\x00" * 16)
        assert _closed_within(s, 10), "broker kept a connection with a negative frame length open"
        s.close()
        # 5. truncated frame then hang up; many quick connects
        for _ in range(50):
            s = _connect(broker)
            s.sendall(struct.pack(">i", 100) + b"\x00\x12")
            s.close()
        # 6. unknown api key 9999: either an error response or a closed connection
        s = _connect(broker)
        s.sendall(frame(request_header_v1(9999, 0, 4242)))
        s.settimeout(10)
        try:
            corr, body = read_response(s)
        except socket.timeout:
            raise AssertionError("api key 9999: neither a response nor a close within 10s")
        except (ConnectionError, OSError):
            pass      # closing the connection is an acceptable answer
        else:
            assert corr == 4242
            assert struct.unpack(">h", body[:2])[0] == 35, body[:16]
        s.close()
        # 7. a healthy raw ApiVersions on a new connection still works meanwhile
        s = _connect(broker)
        corr, body = api_versions_v0(s, 99)
        assert corr == 99 and parse_api_versions_v0(body)[0] == 0
        s.close()

    assert broker.alive(), "broker died"
    assert bg.dl.errors == [], bg.dl.errors[:3]
    assert bg.errors == [], bg.errors[:3]
    assert bg.dl.count > 50, f"background producer made little progress: {bg.dl.count}"
    assert bg.received == [v for (_t, _p, _o, _k, v) in sorted(bg.dl.ok, key=lambda r: r[2])]

    # Fresh clients still work.
    msgs = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=bg.dl.count)
    assert len(msgs) == bg.dl.count


def test_api_versions_unsupported_version_gets_v0_error(broker):
    s = _connect(broker)
    s.settimeout(10)
    s.sendall(frame(request_header_v1(18, 99, 777)))
    corr, body = read_response(s)
    assert corr == 777
    err, keys = parse_api_versions_v0(body)   # asserts the exact v0 layout
    assert err == 35, f"expected UNSUPPORTED_VERSION (35), got {err}"
    if keys:
        assert 18 in keys and keys[18][0] == 0 and keys[18][1] >= 3, keys

    # The connection stays usable: a supported version now succeeds.
    s.sendall(api_versions_v3_request(778))
    corr, body = read_response(s)
    assert corr == 778
    err, keys, _throttle = parse_api_versions_v3(body)
    assert err == 0
    for api in (0, 1, 2, 3, 18, 19, 20, 22, 32, 37, 60):
        assert api in keys, f"api key {api} not advertised: {sorted(keys)}"
    assert keys[18][1] >= 3
    s.close()
    assert broker.alive()


def test_api_versions_v0_lists_supported_apis(broker):
    s = _connect(broker)
    corr, body = api_versions_v0(s, 5)
    assert corr == 5
    err, keys = parse_api_versions_v0(body)
    assert err == 0
    assert keys[18][0] == 0
    for k, (lo, hi) in keys.items():
        assert 0 <= lo <= hi, (k, lo, hi)
    s.close()


def test_pipelined_requests_answered_in_order(broker):
    s = _connect(broker)
    s.settimeout(10)
    s.sendall(b"".join(frame(request_header_v1(18, 0, 1000 + i)) for i in range(20)))
    corrs = [read_response(s)[0] for _ in range(20)]
    assert corrs == list(range(1000, 1020))
    s.close()


def test_slowloris_partial_frame_does_not_block_others(broker):
    slow = _connect(broker)
    req = frame(request_header_v1(18, 0, 31))
    slow.sendall(req[:5])                      # half a request, then stall
    t0 = time.monotonic()
    s = _connect(broker)
    corr, _ = api_versions_v0(s, 32)
    assert corr == 32 and time.monotonic() - t0 < 5
    slow.sendall(req[5:])                      # completing it later still works
    slow.settimeout(10)
    assert read_response(slow)[0] == 31
    s.close()
    slow.close()
