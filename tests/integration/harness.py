"""Shared helpers for the real-client integration tests.

* ``Broker``: runs ``target/release/broker`` on a free loopback port with a
  private data dir (and optionally a TOML ``--config`` file written from a
  dict), and can stop (SIGTERM), kill -9 and restart it.
* Raw Kafka wire helpers (``struct``-encoded frames) used for readiness
  checks and the robustness tests.
* Thin wrappers around confluent-kafka and kafka-python for creating topics,
  producing with delivery-report bookkeeping and consuming with manual
  ``assign`` (group consumers live in test_groups.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_BIN = Path(os.environ.get("BROKER_BIN", REPO_ROOT / "target" / "release" / "broker"))

# A consumer group id is mandatory for confluent-kafka's Consumer, but with
# assign() + no commits the coordinator is never contacted.
UNUSED_GROUP = "itest-no-group"


# --------------------------------------------------------------------------
# Broker process
# --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """preexec_fn: SIGKILL the broker if the test process dies (no orphans)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_ALL_BROKERS: list["Broker"] = []
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BrokerError(AssertionError):
    pass


def toml_text(config: dict) -> str:
    """Flat TOML from {key: int | float | bool | str}."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string literal is a valid TOML basic string
        raise TypeError(f"unsupported TOML value {v!r}")
    return "".join(f"{k} = {value(v)}\n" for k, v in config.items())


class Broker:
    def __init__(self, workdir: Path, shards: int = 1, name: str = "broker",
                 node_id: int | None = None, extra_args: list[str] | None = None,
                 config: dict | None = None):
        """`config`: TOML keys for a `--config` file (written once, in the workdir, and
        used by every start), e.g. {"group_initial_rebalance_delay_ms": 100}."""
        self.name = name
        self.shards = shards
        self.node_id = node_id
        self.extra_args = list(extra_args or [])
        self.port = free_port()
        self.host = "127.0.0.1"
        self.data_dir = Path(workdir) / f"{name}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = Path(workdir) / f"{name}.toml"
            self.config_path.write_text(toml_text(config))
        self.log_path = Path(workdir) / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self._log_fh = None
        self._expected_exit = False
        self.starts = 0
        _ALL_BROKERS.append(self)

    # -- addresses ---------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def address(self):
        return (self.host, self.port)

    # -- lifecycle ---------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [str(BROKER_BIN),
               "--listen", self.bootstrap,
               "--advertise", self.bootstrap,
               "--data-dir", str(self.data_dir),
               "--shards", str(self.shards)]
        if self.node_id is not None:
            cmd += ["--node-id", str(self.node_id)]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd + self.extra_args

    def start(self, timeout: float = 30.0) -> "Broker":
        if not BROKER_BIN.exists():
            raise BrokerError(f"broker binary not found at {BROKER_BIN} "
                              "(build it with `cargo build --release -p broker`)")
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        self._log_fh = open(self.log_path, "ab", buffering=0)
        self.starts += 1
        self._log_fh.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._log_fh, stderr=subprocess.STDOUT,
                                     env=env, cwd=str(self.data_dir.parent),
                                     preexec_fn=_die_with_parent)
        self._expected_exit = False
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"broker exited during startup with code {self.proc.returncode}\n"
                                  + self.log_tail())
            try:
                with socket.create_connection(self.address, timeout=2) as s:
                    s.settimeout(5)
                    corr, body = api_versions_v0(s, correlation_id=7)
                    if corr == 7 and len(body) >= 2:
                        return
                    last_err = f"bad ApiVersions response corr={corr} body={body[:32]!r}"
            except OSError as e:
                last_err = repr(e)
            time.sleep(0.05)
        raise BrokerError(f"broker not ready after {timeout}s: {last_err}\n" + self.log_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait. Returns the exit code; raises if it doesn't exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            self._expected_exit = True
            return self.proc.returncode if self.proc else 0
        self._expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise BrokerError(f"broker did not exit within {timeout}s of SIGTERM (killed)\n"
                              + self.log_tail())
        finally:
            self._close_log()
        return rc

    def kill9(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            self._expected_exit = True
            return self.proc.returncode if self.proc else 0
        self._expected_exit = True
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(10)
        self._close_log()
        self._wait_until_not_listening()
        return rc

    def _wait_until_not_listening(self, timeout: float = 10.0):
        """A killed process's listening socket can outlive it briefly (the kernel tears its io_uring
        down asynchronously), and the broker refuses to start while a socket listens on its port:
        wait until no socket listens on the port (TCP state 0A in /proc/net/tcp)."""
        port_hex = f"{self.port:04X}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open("/proc/net/tcp") as table:
                    rows = table.read().splitlines()[1:]
            except OSError:
                return
            if not any(row.split()[1].endswith(":" + port_hex) and row.split()[3] == "0A"
                       for row in rows):
                return
            time.sleep(0.05)

    def restart(self, timeout: float = 30.0) -> "Broker":
        """Start again on the same port and data dir (stopping first if running)."""
        if self.alive():
            self.stop()
        return self.start(timeout)

    def _close_log(self):
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None

    def cleanup(self) -> list[str]:
        """Stop the broker; return a list of problems found (crash, panic)."""
        problems = []
        if self.proc is not None:
            if self.proc.poll() is not None and not self._expected_exit:
                problems.append(f"{self.name} exited unexpectedly with code {self.proc.returncode}")
            if self.proc.poll() is None:
                try:
                    self.stop(timeout=15)
                except BrokerError as e:
                    problems.append(str(e).splitlines()[0])
        self._close_log()
        log = self.log_text()
        if "panicked at" in log:
            problems.append(f"{self.name} panicked (see log)")
        if self in _ALL_BROKERS:
            _ALL_BROKERS.remove(self)
        return problems

    # -- logs --------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        lines = _ANSI.sub("", self.log_text()).splitlines()
        return "\n".join(lines[-n:])


def kill_all_brokers():
    for b in list(_ALL_BROKERS):
        if b.proc is not None and b.proc.poll() is None:
            b.proc.kill()


# --------------------------------------------------------------------------
# Raw wire protocol helpers
# --------------------------------------------------------------------------

def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)}/{n} bytes")
        buf += chunk
    return bytes(buf)


def request_header_v1(api_key: int, api_version: int, correlation_id: int,
                      client_id: str = "itest-raw") -> bytes:
    cid = client_id.encode()
    return struct.pack(">hhih", api_key, api_version, correlation_id, len(cid)) + cid


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def read_response(sock: socket.socket):
    """Read one response frame; returns (correlation_id, rest_of_body)."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 4 or size > 64 * 1024 * 1024:
        raise AssertionError(f"implausible response size {size}")
    payload = recv_exact(sock, size)
    (corr,) = struct.unpack(">i", payload[:4])
    return corr, payload[4:]


def api_versions_v0(sock: socket.socket, correlation_id: int = 1):
    sock.sendall(frame(request_header_v1(18, 0, correlation_id)))
    return read_response(sock)


def parse_api_versions_v0(body: bytes):
    """Returns (error_code, {api_key: (min, max)}); asserts exact v0 layout."""
    error_code, n = struct.unpack(">hi", body[:6])
    assert n >= 0, f"negative api_keys array length {n}"
    assert len(body) == 6 + 6 * n, (
        f"ApiVersions response is not v0-shaped: body {len(body)} bytes, {n} entries")
    keys = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i])
        keys[k] = (lo, hi)
    return error_code, keys


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_uvarint(buf: bytes, pos: int):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def api_versions_v3_request(correlation_id: int) -> bytes:
    # request header v2 = v1 header + empty tagged fields
    hdr = request_header_v1(18, 3, correlation_id) + _uvarint(0)
    name, ver = b"itest-raw", b"1.0"
    body = _uvarint(len(name) + 1) + name + _uvarint(len(ver) + 1) + ver + _uvarint(0)
    return frame(hdr + body)


def parse_api_versions_v3(body: bytes):
    """Response header for ApiVersions is always v0 (no tagged fields)."""
    (error_code,) = struct.unpack(">h", body[:2])
    n, pos = _read_uvarint(body, 2)
    n -= 1
    keys = {}
    for _ in range(max(n, 0)):
        k, lo, hi = struct.unpack(">hhh", body[pos:pos + 6])
        pos += 6
        ntags, pos = _read_uvarint(body, pos)
        assert ntags == 0, "unexpected tagged fields in api key entry"
        keys[k] = (lo, hi)
    (throttle,) = struct.unpack(">i", body[pos:pos + 4])
    return error_code, keys, throttle


def fetch_v4_request(correlation_id: int, topic: str, partition: int, offset: int,
                     max_wait_ms: int, min_bytes: int = 1, max_bytes: int = 1 << 20) -> bytes:
    t = topic.encode()
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", 1) + struct.pack(">h", len(t)) + t
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes)
    return frame(request_header_v1(1, 4, correlation_id) + body)


def parse_fetch_v4(body: bytes):
    """Returns list of (topic, partition, error_code, high_watermark, records_bytes_len)."""
    pos = 0
    (_throttle, ntopics) = struct.unpack(">ii", body[pos:pos + 8])
    pos += 8
    out = []
    for _ in range(ntopics):
        (tl,) = struct.unpack(">h", body[pos:pos + 2])
        pos += 2
        topic = body[pos:pos + tl].decode()
        pos += tl
        (nparts,) = struct.unpack(">i", body[pos:pos + 4])
        pos += 4
        for _ in range(nparts):
            part, err, hw, _lso = struct.unpack(">ihqq", body[pos:pos + 22])
            pos += 22
            (naborted,) = struct.unpack(">i", body[pos:pos + 4])
            pos += 4
            if naborted > 0:
                pos += 16 * naborted
            (rlen,) = struct.unpack(">i", body[pos:pos + 4])
            pos += 4
            if rlen > 0:
                pos += rlen
            out.append((topic, part, err, hw, max(rlen, 0)))
    return out


# --------------------------------------------------------------------------
# confluent-kafka helpers
# --------------------------------------------------------------------------

def ck_admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})


def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 20.0):
    """Wait until metadata shows `partitions` partitions, each with a leader."""
    admin = ck_admin(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions \
                and all(p.leader >= 0 for p in t.partitions.values()):
            return t
        last = t
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} not ready with {partitions} partitions: {last}")


def create_topic(bootstrap: str, topic: str, partitions: int = 1, config: dict | None = None):
    from confluent_kafka.admin import NewTopic
    admin = ck_admin(bootstrap)
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                       config=config or {})],
                             operation_timeout=10, request_timeout=20)
    fs[topic].result(30)
    return wait_for_topic(bootstrap, topic, partitions)


def ck_producer(bootstrap: str, **overrides):
    from confluent_kafka import Producer
    conf = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "linger.ms": 5,
        "acks": "all",
        "message.timeout.ms": 30000,
    }
    conf.update({k.replace("_", "."): v for k, v in overrides.items()})
    return Producer(conf)


class DeliveryLog:
    """Delivery-report callback collecting successes and failures (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = []      # (topic, partition, offset, key, value)
        self.errors = []  # (KafkaError, key, value)

    def __call__(self, err, msg):
        with self.lock:
            if err is not None:
                self.errors.append((err, msg.key(), msg.value()))
            else:
                self.ok.append((msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()))

    @property
    def count(self):
        with self.lock:
            return len(self.ok)


def ck_produce_all(producer, topic, items, partition=None, timeout=60.0, **kw):
    """Produce items = iterable of (key, value[, headers]); flush; return DeliveryLog."""
    dl = DeliveryLog()
    for it in items:
        key, value = it[0], it[1]
        args = dict(topic=topic, key=key, value=value, on_delivery=dl, **kw)
        if len(it) > 2 and it[2] is not None:
            args["headers"] = it[2]
        if partition is not None:
            args["partition"] = partition
        while True:
            try:
                producer.produce(**args)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    return dl


def ck_consumer(bootstrap: str, **overrides):
    from confluent_kafka import Consumer
    conf = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "group.id": UNUSED_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "error",
    }
    conf.update(overrides)
    return Consumer(conf)


def drain(poll, expected: int, timeout: float, settle: float) -> list:
    """Calls `poll()` (each call returns a list of messages, waiting briefly) until `expected`
    messages arrived plus `settle` seconds to catch extras, or until `timeout`."""
    out = []
    deadline = time.monotonic() + timeout
    settle_until = None
    while True:
        now = time.monotonic()
        if settle_until is None and len(out) >= expected:
            settle_until = now + settle
        if (settle_until is not None and now >= settle_until) or now >= deadline:
            return out
        out.extend(poll())


def ck_consume(bootstrap: str, assignments, expected: int, timeout: float = 60.0,
               settle: float = 0.5, **conf):
    """Assign [(topic, partition, offset)], consume until `expected` messages
    arrived (+ `settle` seconds to catch extras). Returns a list of
    (topic, partition, offset, key, value, headers, timestamp)."""
    from confluent_kafka import TopicPartition
    c = ck_consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(t, p, o) for (t, p, o) in assignments])
        def poll():
            batch = []
            for m in c.consume(num_messages=10000, timeout=0.2):
                if m.error():
                    raise AssertionError(f"consumer error: {m.error()}")
                batch.append((m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                              m.headers(), m.timestamp()))
            return batch
        return drain(poll, expected, timeout, settle)
    finally:
        c.close()


# --------------------------------------------------------------------------
# kafka-python helpers
# --------------------------------------------------------------------------

def kp_consumer(bootstrap: str, **kw):
    from kafka import KafkaConsumer
    conf = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=30000)
    conf.update(kw)
    return KafkaConsumer(**conf)


def kp_consume(bootstrap: str, assignments, expected: int, timeout: float = 60.0,
               settle: float = 0.5, **kw):
    """Like ck_consume but with kafka-python; returns ConsumerRecords."""
    from kafka import TopicPartition
    c = kp_consumer(bootstrap, **kw)
    try:
        tps = [TopicPartition(t, p) for (t, p, _o) in assignments]
        c.assign(tps)
        for (t, p, o) in assignments:
            c.seek(TopicPartition(t, p), o)
        def poll():
            return [r for recs in c.poll(timeout_ms=200, max_records=10000).values() for r in recs]
        out = drain(poll, expected, timeout, settle)
        out.sort(key=lambda r: (r.topic, r.partition, r.offset))
        return out
    finally:
        c.close()


def kp_producer(bootstrap: str, **kw):
    from kafka import KafkaProducer
    conf = dict(bootstrap_servers=bootstrap, request_timeout_ms=30000, linger_ms=5)
    conf.update(kw)
    return KafkaProducer(**conf)
