#!/usr/bin/env python3
"""Wire-level mutation fuzzing: mutated real client request frames sent to a running broker over TCP.

The seeds are the 118 request frames of tests/fuzz/client-requests.jsonl (librdkafka and kafka-python on
the wire). Each frame is mutated (bit flips, absurd i32 counts, maximal varints, insertions, deletions,
truncation, other API versions, splices), given its length prefix and sent on one of several connections,
pipelined; answers are read and dropped; a connection the broker closes (as it must on a malformed
request) is replaced. Used by test_wire_fuzz.py (bounded) and standalone for the long runs recorded in
ROBUSTNESS.md:

    python3 tests/integration/wire_fuzz.py --bootstrap 127.0.0.1:9092 --frames 1000000 --pid PID
"""

from __future__ import annotations

import argparse
import json
import os
import random
import selectors
import socket
import struct
import time
from pathlib import Path

SEEDS_PATH = Path(__file__).resolve().parents[1] / "fuzz" / "client-requests.jsonl"

EXTREME_I32 = [0x7FFFFFFF, -1, -2, -(2**31), 0x01000000, 0xFFFF, 1 << 20, 0]
EXTREME_VARINTS = [b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x80\x01",
                   b"\xff\xff\xff\x07", b"\x00"]


def load_seeds(skip_keys: set[int] | None = None) -> list[bytes]:
    seeds = []
    for line in SEEDS_PATH.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if skip_keys and record["key"] in skip_keys:
                continue
            seeds.append(bytes.fromhex(record["hex"]))
    return seeds


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    frame = bytearray(rng.choice(seeds))
    for _ in range(1 + rng.randrange(4)):
        at = rng.randrange(max(len(frame), 1))
        kind = rng.randrange(10)
        if kind == 0 and frame:
            frame[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and frame:
            frame[at] = rng.randrange(256)
        elif kind == 2:
            value = struct.pack(">i", rng.choice(EXTREME_I32))
            for offset, byte in enumerate(value):
                if at + offset < len(frame):
                    frame[at + offset] = byte
        elif kind == 3:
            frame[at:at + 5] = rng.choice(EXTREME_VARINTS)
        elif kind == 4:
            frame[at:at] = os.urandom(1 + rng.randrange(16))
        elif kind == 5:
            del frame[at:at + 1 + rng.randrange(16)]
        elif kind == 6:
            del frame[at:]
        elif kind == 7 and len(frame) >= 4:
            frame[2:4] = struct.pack(">h", rng.randrange(18))
        elif kind == 8:
            other = rng.choice(seeds)
            frame[at:] = other[rng.randrange(max(len(other), 1)):]
        else:
            end = min(at + 1 + rng.randrange(8), len(frame))
            frame[at:at] = frame[at:end]
    return bytes(frame)


def absurd_count_frames(seeds: list[bytes]):
    """Every seed with every position (past the fixed header prefix) overwritten by an absurd i32 count,
    and by a maximal unsigned varint (a compact count)."""
    for seed in seeds:
        for at in range(8, len(seed)):
            frame = bytearray(seed)
            frame[at:at + 4] = struct.pack(">i", 0x7FFFFFFF)
            yield bytes(frame[:len(seed)])
            frame = bytearray(seed)
            frame[at:at + 5] = EXTREME_VARINTS[0]
            yield bytes(frame)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sprayer:
    """Sends frames over `connections` pipelined connections, replacing those the broker closes."""

    def __init__(self, address, connections: int = 16, frames_per_connection: int = 64):
        self.address = address
        self.frames_per_connection = frames_per_connection
        self.selector = selectors.DefaultSelector()
        self.sockets: list[socket.socket | None] = [None] * connections
        self.sent_on: list[int] = [0] * connections
        self.sent = 0
        self.closed_by_broker = 0
        self.next_slot = 0

    def _open(self, slot: int) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Close with a reset: no TIME_WAIT pile-up over a million frames.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.setblocking(False)
        self.sockets[slot] = sock
        self.sent_on[slot] = 0
        self.selector.register(sock, selectors.EVENT_READ, slot)
        return sock

    def _drop(self, slot: int):
        sock = self.sockets[slot]
        if sock is not None:
            self.selector.unregister(sock)
            sock.close()
            self.sockets[slot] = None

    def _drain(self):
        for key, _ in self.selector.select(timeout=0):
            slot = key.data
            try:
                data = key.fileobj.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self.closed_by_broker += 1
                self._drop(slot)

    def send(self, payload: bytes):
        slot = self.next_slot
        self.next_slot = (slot + 1) % len(self.sockets)
        sock = self.sockets[slot]
        if sock is None or self.sent_on[slot] >= self.frames_per_connection:
            self._drop(slot)
            sock = self._open(slot)
        message = struct.pack(">i", len(payload)) + payload
        try:
            sock.send(message)  # partial or refused sends are part of the abuse
        except OSError:
            self._drop(slot)
        self.sent_on[slot] += 1
        self.sent += 1
        if self.sent % 16 == 0:
            self._drain()

    def close(self):
        for slot in range(len(self.sockets)):
            self._drop(slot)


def run(address, frames: int, seed: int, pid: int | None = None, report_every: int = 100_000,
        skip_keys: set[int] | None = None) -> dict:
    seeds = load_seeds(skip_keys)
    rng = random.Random(seed)
    sprayer = Sprayer(address)
    peak_rss = 0
    started = time.monotonic()
    try:
        for index in range(frames):
            sprayer.send(mutate(rng, seeds))
            if pid is not None and index % 5000 == 0:
                peak_rss = max(peak_rss, rss_kib(pid))
            if report_every and index and index % report_every == 0:
                rate = index / (time.monotonic() - started)
                print(f"{index} frames, {rate:.0f}/s, broker RSS {rss_kib(pid) if pid else '-'} KiB",
                      flush=True)
    finally:
        sprayer.close()
    if pid is not None:
        peak_rss = max(peak_rss, rss_kib(pid))
    return {"frames": sprayer.sent, "closed_by_broker": sprayer.closed_by_broker,
            "seconds": time.monotonic() - started, "peak_rss_kib": peak_rss}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pid", type=int, help="the broker's pid, to sample its RSS")
    args = parser.parse_args()
    host, port = args.bootstrap.rsplit(":", 1)
    print(json.dumps(run((host, int(port)), args.frames, args.seed, args.pid)))


if __name__ == "__main__":
    main()
