"""Shared helpers for the real-client integration tests.

* ``Broker``: runs ``target/release/broker`` on a free loopback port with a
  private data dir (and optionally a TOML ``--config`` file written from a
  dict), and can stop (SIGTERM), kill -9 and restart it.
* ``Cluster``: N ``Broker``s forming a Raft metadata quorum (node ids 1..N).
* Raw Kafka wire helpers (``struct``-encoded frames) used for readiness
  checks, the robustness tests, and DescribeQuorum / Metadata v12 from one
  given broker (``describe_quorum``, ``metadata``).
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
        # The Raft quorum port of a cluster node (set by `Cluster`); kill9 waits for it to close too.
        self.controller_port: int | None = None
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
        # False for a controller-only node (`--process-roles controller`): no Kafka listener.
        self.serves_clients = True
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
        self.spawn()
        self.wait_ready(timeout)
        return self

    def spawn(self) -> "Broker":
        """Start the process without waiting for it to answer (see `start`)."""
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
        return self

    def run_expecting_exit(self, timeout: float) -> int | None:
        """Start a run that is expected to end by itself (e.g. a refused start): returns its exit
        code, or None if it is still running after `timeout` seconds (cleanup stops it)."""
        self.spawn()
        self._expected_exit = True
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._close_log()
        return rc

    def wait_ready(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        last_err = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"broker exited during startup with code {self.proc.returncode}\n"
                                  + self.log_tail())
            if not self.serves_clients:
                # A controller-only node has no Kafka listener: its start-up log says when it is up.
                this_start = self.log_text().rsplit(f"===== start #{self.starts}:", 1)[-1]
                if "broker ready" in this_start:
                    return
                last_err = "no 'broker ready' line yet"
                time.sleep(0.05)
                continue
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
        wait until no socket listens on its ports (TCP state 0A in /proc/net/tcp)."""
        ports = [self.port] + ([self.controller_port] if self.controller_port else [])
        suffixes = tuple(f":{port:04X}" for port in ports)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open("/proc/net/tcp") as table:
                    rows = table.read().splitlines()[1:]
            except OSError:
                return
            if not any(row.split()[1].endswith(suffixes) and row.split()[3] == "0A"
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

    def last_run_log(self) -> str:
        """The log of the latest start only (the log file is appended to by every start)."""
        text = _ANSI.sub("", self.log_text())
        marker = text.rfind("\n===== start #")
        return text[marker + 1:] if marker >= 0 else text

    def meta_properties(self) -> dict[str, str] | None:
        """The data dir's meta.properties as {key: value}, or None while it does not exist."""
        return read_properties(self.data_dir / "meta.properties")


def read_properties(path: Path) -> dict[str, str] | None:
    """A Java .properties file of plain `key=value` lines (comments `#`/`!` skipped); None if absent."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return None
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def kill_all_brokers():
    for b in list(_ALL_BROKERS):
        if b.proc is not None and b.proc.poll() is None:
            b.proc.kill()


class Cluster:
    """N brokers forming one cluster with a Raft metadata quorum: node ids 1..N, each with its own
    Kafka port, quorum port (`--controller-quorum-voters`), data dir, rack `rack-<id>` and a
    `--config` TOML holding the broker session and heartbeat timeouts. Nodes named in
    `controller_only` run `--process-roles controller` (they vote, serve no clients); nodes named in
    `broker_only` run `--process-roles broker` (not voters: they follow the log as learners)."""

    def __init__(self, workdir: Path, n: int = 3, shards: int = 1, name: str = "node",
                 session_timeout_ms: int = 3000, heartbeat_interval_ms: int = 500,
                 config: dict | None = None, controller_only: tuple = (),
                 broker_only: tuple = ()):
        self.session_timeout_ms = session_timeout_ms
        self.ids = list(range(1, n + 1))
        taken: set[int] = set()
        self.voter_ids = [i for i in self.ids if i not in broker_only]
        controller_ports = {i: _unused_free_port(taken) for i in self.voter_ids}
        self.voters = ",".join(f"{i}@127.0.0.1:{controller_ports[i]}" for i in self.voter_ids)
        self.brokers: dict[int, Broker] = {}
        for i in self.ids:
            cfg = {"broker_session_timeout_ms": session_timeout_ms,
                   "broker_heartbeat_interval_ms": heartbeat_interval_ms, **(config or {})}
            roles = (["--process-roles", "controller"] if i in controller_only
                     else ["--process-roles", "broker"] if i in broker_only else [])
            b = Broker(workdir, shards=shards, name=f"{name}{i}", node_id=i, config=cfg,
                       extra_args=["--controller-quorum-voters", self.voters,
                                   "--rack", f"rack-{i}", *roles])
            b.serves_clients = i not in controller_only
            while b.port in taken:  # free_port() may hand out a port already given to a sibling
                b.port = free_port()
            taken.add(b.port)
            b.controller_port = controller_ports.get(i)
            self.brokers[i] = b

    def __getitem__(self, node_id: int) -> Broker:
        return self.brokers[node_id]

    @property
    def nodes(self) -> list[Broker]:
        return [self.brokers[i] for i in self.ids]

    def live_ids(self) -> list[int]:
        return [i for i in self.ids if self.brokers[i].alive()]

    def start(self, timeout: float = 30.0) -> "Cluster":
        """Starts every node that is not running: all processes first, then waits for each to
        answer ApiVersions (which a node does before its quorum has a leader)."""
        started = [b for b in self.nodes if not b.alive()]
        for b in started:
            b.spawn()
        deadline = time.monotonic() + timeout
        for b in started:
            b.wait_ready(max(1.0, deadline - time.monotonic()))
        return self

    def stop(self, timeout: float = 20.0) -> dict[int, int]:
        """SIGTERM every running node at once and wait; returns {node_id: exit code}. Raises
        (BrokerError) if one does not exit in time."""
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(self.ids)) as pool:
            futures = {i: pool.submit(self.brokers[i].stop, timeout) for i in self.ids}
            return {i: f.result() for i, f in futures.items()}

    def kill9(self, node_id: int) -> int:
        return self.brokers[node_id].kill9()

    def log_tails(self, n: int = 40) -> str:
        return "\n".join(f"----- {b.name} (node {i}) log tail -----\n{b.log_tail(n)}"
                         for i, b in self.brokers.items())


def _unused_free_port(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in taken:
            taken.add(port)
            return port


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


# Flexible versions (KIP-482): compact strings/arrays are a uvarint length + 1 (0 = null) and every
# structure ends with tagged fields (a uvarint count; none sent here).
TAGS_NONE = b"\x00"


def request_header_v2(api_key: int, api_version: int, correlation_id: int,
                      client_id: str = "itest-raw") -> bytes:
    """Request header v2: v1 (client_id is a classic int16-length string) + tagged fields."""
    return request_header_v1(api_key, api_version, correlation_id, client_id) + TAGS_NONE


def compact_string(s: str | None) -> bytes:
    if s is None:
        return _uvarint(0)
    b = s.encode()
    return _uvarint(len(b) + 1) + b


def compact_array(items: list[bytes] | None) -> bytes:
    if items is None:
        return _uvarint(0)
    return _uvarint(len(items) + 1) + b"".join(items)


class WireReader:
    """Sequential decoder over a response body; every read checks bounds."""

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf, self.pos = buf, pos

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise AssertionError(f"response truncated: need {n} bytes at {self.pos}, "
                                 f"have {len(self.buf) - self.pos}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def int8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise AssertionError("uvarint too long")

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode()

    def compact_array_len(self) -> int:
        """Element count; -1 for a null array."""
        return self.uvarint() - 1

    def skip_tags(self) -> dict[int, bytes]:
        tags = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            tags[tag] = self._take(self.uvarint())
        return tags

    def at_end(self) -> bool:
        return self.pos == len(self.buf)


def raw_call(address, request_frame: bytes, correlation_id: int, timeout: float = 5.0) -> bytes:
    """One request on a fresh connection; returns the response body after the correlation id
    (for a flexible response, starting with its header's tagged fields)."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(request_frame)
        corr, body = read_response(s)
    if corr != correlation_id:
        raise AssertionError(f"correlation id {corr}, expected {correlation_id}")
    return body


CLUSTER_METADATA_TOPIC = "__cluster_metadata"


def describe_quorum_v1_request(correlation_id: int, topic: str = CLUSTER_METADATA_TOPIC,
                               partition: int = 0) -> bytes:
    """DescribeQuorum (key 55) v1: Topics[TopicName, Partitions[PartitionIndex]] (flexible)."""
    part = struct.pack(">i", partition) + TAGS_NONE
    body = compact_array([compact_string(topic) + compact_array([part]) + TAGS_NONE]) + TAGS_NONE
    return frame(request_header_v2(55, 1, correlation_id) + body)


def parse_describe_quorum_v1(body: bytes, topic: str = CLUSTER_METADATA_TOPIC,
                             partition: int = 0) -> dict:
    """Decodes a DescribeQuorum v1 response body (after the correlation id). Returns the top-level
    `error_code` and, for `topic`/`partition` (None fields if absent): partition_error_code,
    leader_id, leader_epoch, high_watermark, voters and observers (lists of {replica_id,
    log_end_offset, last_fetch_timestamp, last_caught_up_timestamp})."""
    r = WireReader(body)
    r.skip_tags()                       # response header v1
    out = {"error_code": r.int16(), "partition_error_code": None, "leader_id": None,
           "leader_epoch": None, "high_watermark": None, "voters": None, "observers": None}

    def replicas():
        n = r.compact_array_len()
        states = []
        for _ in range(max(n, 0)):
            states.append({"replica_id": r.int32(), "log_end_offset": r.int64(),
                           "last_fetch_timestamp": r.int64(),
                           "last_caught_up_timestamp": r.int64()})
            r.skip_tags()
        return states

    for _ in range(max(r.compact_array_len(), 0)):
        name = r.compact_string()
        for _ in range(max(r.compact_array_len(), 0)):
            p = {"partition_index": r.int32(), "partition_error_code": r.int16(),
                 "leader_id": r.int32(), "leader_epoch": r.int32(), "high_watermark": r.int64(),
                 "voters": replicas(), "observers": replicas()}
            r.skip_tags()                # HighWatermarkUpdateTimeMs is tag 0 here (v1+)
            if name == topic and p.pop("partition_index") == partition:
                out.update(p)
        r.skip_tags()
    r.skip_tags()
    if not r.at_end():
        raise AssertionError(f"{len(body) - r.pos} unexpected trailing bytes in DescribeQuorum v1")
    return out


def describe_quorum(address, timeout: float = 5.0) -> dict:
    """DescribeQuorum v1 for __cluster_metadata-0, sent to one broker (see parse_describe_quorum_v1)."""
    return parse_describe_quorum_v1(raw_call(address, describe_quorum_v1_request(55), 55, timeout))


def metadata_v12_request(correlation_id: int) -> bytes:
    """Metadata (key 3) v12 for no topics: Topics=[] (not null = all), AllowAutoTopicCreation=false,
    IncludeTopicAuthorizedOperations=false."""
    body = compact_array([]) + b"\x00" + b"\x00" + TAGS_NONE
    return frame(request_header_v2(3, 12, correlation_id) + body)


def parse_metadata_v12(body: bytes) -> dict:
    """Returns {"brokers": {node_id: (host, port, rack)}, "cluster_id", "controller_id"}."""
    r = WireReader(body)
    r.skip_tags()                       # response header v1
    r.int32()                           # throttle_time_ms
    brokers = {}
    for _ in range(max(r.compact_array_len(), 0)):
        node_id, host, port, rack = r.int32(), r.compact_string(), r.int32(), r.compact_string()
        r.skip_tags()
        if node_id in brokers:
            raise AssertionError(f"broker {node_id} listed twice in Metadata")
        brokers[node_id] = (host, port, rack)
    out = {"brokers": brokers, "cluster_id": r.compact_string(), "controller_id": r.int32()}
    ntopics = r.compact_array_len()
    if ntopics <= 0:                     # asked for no topics: the rest is the tagged fields
        r.skip_tags()
        if not r.at_end():
            raise AssertionError(f"{len(body) - r.pos} unexpected trailing bytes in Metadata v12")
    return out


def metadata(address, timeout: float = 5.0) -> dict:
    """Metadata v12 (no topics) from exactly this broker (see parse_metadata_v12)."""
    return parse_metadata_v12(raw_call(address, metadata_v12_request(3), 3, timeout))


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
