"""Malformed requests cannot flood the broker's log: client-triggered warnings are rate-limited
with a count of what was held back (400k bad requests wrote 102 MB of log before)."""

import socket
import struct
import threading
import time

from harness import api_versions_v0, frame, request_header_v1

REQUESTS = 20_000
THREADS = 4

# Each closes its connection: a garbled header, an unknown API key, an unsupported version,
# a truncated Metadata body, a frame over socket.request.max.bytes.
BAD_REQUESTS = [
    frame(b"\x00\x03"),
    frame(request_header_v1(999, 0, 1)),
    frame(request_header_v1(3, 99, 2)),
    frame(request_header_v1(3, 1, 3) + b"\x00\x00\x00\x05\x00"),
    struct.pack(">i", 200 * 1024 * 1024),
]


def _send_bad(address, count, offset, errors):
    for index in range(count):
        try:
            with socket.create_connection(address, timeout=10) as s:
                s.sendall(BAD_REQUESTS[(offset + index) % len(BAD_REQUESTS)])
                s.settimeout(10)
                while s.recv(4096):  # the broker closes first
                    pass
        except OSError as error:
            errors.append(error)


def test_malformed_requests_do_not_flood_the_log(broker):
    log_before = broker.log_path.stat().st_size
    errors = []
    threads = [threading.Thread(target=_send_bad,
                                args=(broker.address, REQUESTS // THREADS, offset, errors))
               for offset in range(THREADS)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - start
    assert len(errors) < REQUESTS // 100, errors[:5]
    with socket.create_connection(broker.address, timeout=10) as s:
        s.settimeout(10)
        assert api_versions_v0(s, correlation_id=5)[0] == 5
    grown = broker.log_path.stat().st_size - log_before
    print(f"{REQUESTS} malformed requests in {elapsed:.1f}s: the log grew {grown} bytes")
    assert grown < 200 * 1024, f"log grew {grown} bytes for {REQUESTS} malformed requests"
    # What was held back is summarised, not lost: the first line of the next 10 s window counts it.
    time.sleep(max(0.0, 10.5 - (time.monotonic() - start)))
    _send_bad(broker.address, 1, 3, errors)
    time.sleep(0.5)
    log = broker.log_text()
    assert any(int(part.split("=")[1]) > 0 for part in log.split() if part.startswith("suppressed="))
