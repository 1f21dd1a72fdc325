"""Memory a client can make the broker hold is bounded: announced frame sizes reserve nothing,
unread responses stop a connection's dispatching, and memory comes back when clients go."""

import socket
import struct
import time

from harness import (api_versions_v0, ck_consume, ck_produce_all, ck_producer, create_topic,
                     fetch_v4_request)

MIB = 1024 * 1024


def _memory(broker):
    """(VmRSS, VmSize) of the broker process, in bytes."""
    values = {}
    with open(f"/proc/{broker.proc.pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmSize"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmSize"]


def _connect(broker):
    s = socket.create_connection(broker.address, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _served(broker, correlation_id=77):
    with _connect(broker) as s:
        s.settimeout(10)
        return api_versions_v0(s, correlation_id=correlation_id)[0] == correlation_id


def test_announced_frame_sizes_reserve_no_memory(broker):
    rss_before, size_before = _memory(broker)
    sockets = []
    for _ in range(1000):
        s = _connect(broker)
        # A 100 MiB frame is announced; 16 bytes of it arrive.
        s.sendall(struct.pack(">i", 100 * MIB - 1) + b"\0" * 16)
        sockets.append(s)
    time.sleep(1)
    assert _served(broker), "the broker stopped serving while frames were announced"
    rss, size = _memory(broker)
    # Before: 1000 x 100 MiB = 100 GB of address space was reserved, here growth is a few MB.
    print(f"announced frames: RSS {rss_before >> 20} -> {rss >> 20} MiB, VmSize {size_before >> 20} -> {size >> 20} MiB")
    assert size - size_before < 1024 * MIB, (size_before, size)
    assert rss - rss_before < 200 * MIB, (rss_before, rss)
    for s in sockets:
        s.close()


def test_a_client_that_never_reads_its_fetches_holds_bounded_memory(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 20})
    payload = b"v" * (100 * 1024)
    ck_produce_all(producer, topic, [(None, payload)] * 40)  # 4 MB in the partition
    producer.flush(10)
    # Restarted, the batch cache is empty: every fetch reads its own copy from the segment.
    broker.restart()
    rss_before, _ = _memory(broker)
    greedy = _connect(broker)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    greedy.setblocking(False)
    request = b"".join(fetch_v4_request(index, topic, 0, 0, max_wait_ms=0, max_bytes=MIB)
                       for index in range(1200))
    sent = 0
    deadline = time.monotonic() + 10
    while sent < len(request) and time.monotonic() < deadline:
        try:
            sent += greedy.send(request[sent:sent + 256 * 1024])
        except BlockingIOError:
            time.sleep(0.05)  # the broker stopped reading: TCP pushes back
    time.sleep(2)
    rss_during, _ = _memory(broker)
    # 1200 x 1 MiB responses used to pile up (1.28 GB); the bound is 8 MiB queued plus what is in flight.
    print(f"unread fetches: RSS {rss_before >> 20} -> {rss_during >> 20} MiB, request bytes sent {sent}/{len(request)}")
    assert rss_during - rss_before < 150 * MIB, (rss_before, rss_during, sent)
    # Other clients are still served, fetches included.
    assert _served(broker)
    got = ck_consume(broker.bootstrap, [(topic, 0, 0)], expected=40, timeout=30)
    assert len(got) == 40
    greedy.close()
    # The memory comes back once the greedy client is gone (the trimmer looks every 5 s).
    deadline = time.monotonic() + 15
    while True:
        rss_after, _ = _memory(broker)
        if rss_after - rss_before < 16 * MIB or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(f"after the client left: RSS {rss_after >> 20} MiB")
    assert rss_after - rss_before < 16 * MIB, (rss_before, rss_during, rss_after)


def test_partial_large_frames_wait_for_the_request_budget(broker):
    """8 clients each sending 30 MiB of a 90 MiB frame: one holds the shard's budget (100 MiB), the
    others are not read (TCP pushes back) instead of each pinning its part (767 MB before)."""
    rss_before, _ = _memory(broker)
    chunk = b"\0" * (1 * MIB)
    clients = []
    for _ in range(8):
        s = _connect(broker)
        s.sendall(struct.pack(">i", 90 * MIB))
        s.setblocking(False)
        clients.append([s, 0])
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        for client in clients:
            if client[1] >= 30 * MIB:
                continue
            try:
                client[1] += client[0].send(chunk)
            except BlockingIOError:
                pass
        time.sleep(0.01)
    rss, _ = _memory(broker)
    sent = sorted(client[1] >> 20 for client in clients)
    print(f"partial large frames: RSS {rss_before >> 20} -> {rss >> 20} MiB, MiB sent per client {sent}")
    assert rss - rss_before < 80 * MIB, (rss_before, rss, sent)
    assert _served(broker)
    for client in clients:
        client[0].close()
