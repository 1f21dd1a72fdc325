"""Connection and file-descriptor limits: max.connections, max.connections.per.ip,
connections.max.idle.ms (slow-loris included), the descriptor limit raised at start, and
partition counts refused before they would exhaust descriptors."""

import re
import shlex
import socket
import struct
import time

import pytest

from harness import (Broker, api_versions_v0, create_topic, ck_admin, frame,
                     request_header_v1)


def _connect(broker):
    s = socket.create_connection(broker.address, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _closed_within(sock, seconds):
    """True if the peer closes (EOF/reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _served(broker) -> bool:
    with _connect(broker) as s:
        s.settimeout(5)
        corr, _ = api_versions_v0(s, correlation_id=99)
        return corr == 99


def _admitted(broker, correlation_id):
    """A connection the broker serves, retried while the readiness probe's close is still counted."""
    deadline = time.monotonic() + 5
    while True:
        sock = _connect(broker)
        try:
            assert api_versions_v0(sock, correlation_id=correlation_id)[0] == correlation_id
            return sock
        except (ConnectionError, OSError):
            sock.close()
            assert time.monotonic() < deadline, "no place for a connection within the limits"
            time.sleep(0.05)


class LimitedBroker(Broker):
    """A broker started under `ulimit -n` (soft and hard, or soft only)."""

    def __init__(self, *args, nofile: int, soft_only: bool = False, **kw):
        super().__init__(*args, **kw)
        self.nofile, self.soft_only = nofile, soft_only

    def command(self):
        flag = "-Sn" if self.soft_only else "-n"
        return ["sh", "-c", f"ulimit {flag} {self.nofile} && exec {shlex.join(super().command())}"]


@pytest.fixture
def limited_broker(request, tmp_path):
    brokers = []
    request.node._brokers = brokers

    def make(**kw):
        broker = LimitedBroker(tmp_path, name=f"limited{len(brokers)}", **kw)
        brokers.append(broker)
        return broker.start()

    yield make
    problems = [problem for broker in brokers for problem in broker.cleanup()]
    assert not problems, problems


def test_connections_over_the_per_ip_limit_are_closed_after_accept(broker_factory):
    broker = broker_factory(config={"max_connections_per_ip": 5})
    held = [_admitted(broker, index) for index in range(5)]
    refused = [_connect(broker) for _ in range(50)]
    for sock in refused:
        assert _closed_within(sock, 5), "a connection over max.connections.per.ip stayed open"
        sock.close()
    held.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the place is given back once the broker sees the close
        try:
            if _served(broker):
                break
        except (ConnectionError, OSError):
            pass
        assert time.monotonic() < deadline, "a place freed by a close was not given back"
        time.sleep(0.05)
    for sock in held:
        sock.close()
    log = broker.log_text()
    refusals = log.count("connection refused")
    assert 1 <= refusals <= 10, f"{refusals} refusal lines for 50 refusals: not rate-limited"


def test_max_connections_is_broker_wide_across_shards(broker_factory):
    broker = broker_factory(shards=2, config={"max_connections": 6})
    held = [_admitted(broker, index) for index in range(6)]
    extra = [_connect(broker) for _ in range(10)]
    for sock in extra:
        assert _closed_within(sock, 5), "a connection over max.connections stayed open"
        sock.close()
    for sock in held:
        sock.close()


def test_idle_and_slow_loris_connections_are_closed(broker_factory):
    broker = broker_factory(config={"connections_max_idle_ms": 1500})
    idle = _connect(broker)
    loris = _connect(broker)
    # A frame announcing 100 bytes, trickled one byte every 200 ms.
    loris.sendall(struct.pack(">i", 100))
    active = _connect(broker)
    start = time.monotonic()
    loris_closed = idle_closed = None
    correlation = 0
    while time.monotonic() - start < 5 and (loris_closed is None or idle_closed is None):
        correlation += 1
        assert api_versions_v0(active, correlation_id=correlation)[0] == correlation
        try:
            loris.send(b"x")
        except (BrokenPipeError, ConnectionResetError):
            loris_closed = loris_closed or time.monotonic() - start
        if loris_closed is None and _closed_within(loris, 0.1):
            loris_closed = time.monotonic() - start
        if idle_closed is None and _closed_within(idle, 0.1):
            idle_closed = time.monotonic() - start
        time.sleep(0.2)
    assert idle_closed is not None and 1.0 < idle_closed < 4, idle_closed
    assert loris_closed is not None and 1.0 < loris_closed < 4, loris_closed
    # The client that kept sending requests was never idle.
    assert api_versions_v0(active, correlation_id=1000)[0] == 1000
    for sock in (idle, loris, active):
        sock.close()


def test_the_soft_descriptor_limit_is_raised_to_the_hard_limit(limited_broker):
    broker = limited_broker(nofile=1024, soft_only=True)
    line = next(line for line in broker.log_text().splitlines() if "file-descriptor limit" in line)
    soft = int(re.search(r"soft=(\d+)", line).group(1))
    hard = int(re.search(r"hard=(\d+)", line).group(1))
    assert soft == hard and soft > 1024, line


def test_partitions_beyond_the_descriptor_budget_are_refused(limited_broker):
    from confluent_kafka.admin import NewPartitions, NewTopic
    from confluent_kafka import KafkaError, KafkaException
    # 1024 descriptors: 256 kept for the broker, 307 for connections, (768 - 307) / 3 = 153 partitions.
    broker = limited_broker(nofile=1024)
    line = next(line for line in broker.log_text().splitlines() if "file-descriptor limit" in line)
    assert "max_partitions=153" in line, line
    create_topic(broker.bootstrap, "fits", partitions=100)
    admin = ck_admin(broker.bootstrap)
    futures = admin.create_topics([NewTopic("too-many", num_partitions=100, replication_factor=1)],
                                  request_timeout=20)
    with pytest.raises(KafkaException) as refused:
        futures["too-many"].result(30)
    assert refused.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    futures = admin.create_partitions([NewPartitions("fits", 160)], request_timeout=20)
    with pytest.raises(KafkaException) as refused:
        futures["fits"].result(30)
    assert refused.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    admin.create_partitions([NewPartitions("fits", 150)], request_timeout=20)["fits"].result(30)
    # A flood of connections past max.connections cannot take the descriptors partitions and
    # metadata need: the admin client's open connection still creates a topic (files opened,
    # metadata persisted) while the flood holds every place.
    flood = [_connect(broker) for _ in range(400)]
    time.sleep(1)
    open_flood = [sock for sock in flood if not _closed_within(sock, 0.01)]
    assert len(open_flood) < 307, len(open_flood)  # the admin client holds places too
    admin.create_topics([NewTopic("still-fits", num_partitions=3, replication_factor=1)],
                        request_timeout=20)["still-fits"].result(30)
    for sock in flood:
        sock.close()
    # The places come back as the broker reads each close; until then a new connection may be refused.
    _admitted(broker, 99).close()
    md = admin.list_topics(timeout=10)
    assert len(md.topics["fits"].partitions) == 150
    assert len(md.topics["still-fits"].partitions) == 3
    assert "too-many" not in md.topics


def test_a_partition_that_cannot_be_opened_is_not_reported_created(broker):
    from confluent_kafka.admin import NewTopic
    from confluent_kafka import KafkaError, KafkaException
    # A directory where partition 1's first segment file should go: that partition cannot be opened.
    # (A plain file in place of the partition directory is moved aside as a stray and does not block.)
    (broker.data_dir / "blocked-1" / "00000000000000000000.log").mkdir(parents=True)
    admin = ck_admin(broker.bootstrap)
    futures = admin.create_topics([NewTopic("blocked", num_partitions=3, replication_factor=1)],
                                  request_timeout=20)
    with pytest.raises(KafkaException) as failed:
        futures["blocked"].result(30)
    assert failed.value.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR
    assert "[1]" in failed.value.args[0].str()
    assert _served(broker)
