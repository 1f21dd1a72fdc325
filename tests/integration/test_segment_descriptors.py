"""A data directory with far more segments than the descriptor limit starts and serves everything.

Partitions keep only their active segment's three files open; inactive segments' `.log` files
are opened on demand through each shard's bounded pool (storage::SegmentFilePool). Before that
every segment's `.log` stayed open for the life of the log, so a data directory with more segments
than the descriptor limit could not be opened again (partitions went offline at start).
"""
import os
import threading
import time
from pathlib import Path

from harness import ck_consume, ck_produce_all, ck_producer, create_topic

PARTITIONS = 4
RECORDS_PER_PARTITION = 3000
VALUE_SIZE = 1000
SEGMENT_BYTES = 16384
DESCRIPTOR_LIMIT = 512


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_descriptor_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' line")


def test_many_segments_restart_under_a_low_descriptor_limit_and_serve_everything(broker_factory, topic):
    broker = broker_factory(shards=2)
    create_topic(broker.bootstrap, topic, PARTITIONS, config={"segment.bytes": str(SEGMENT_BYTES)})
    # Small batches: each segment holds about 16 records of 1 kB.
    producer = ck_producer(broker.bootstrap, batch_size=4096, linger_ms=1)
    items = []
    for partition in range(PARTITIONS):
        for i in range(RECORDS_PER_PARTITION):
            key = f"{partition}-{i}".encode()
            items.append((key, key.ljust(VALUE_SIZE, b".")))
    start = time.monotonic()
    for partition in range(PARTITIONS):
        mine = [item for item in items if item[0].startswith(f"{partition}-".encode())]
        deliveries = ck_produce_all(producer, topic, mine, partition=partition, timeout=40)
        assert not deliveries.errors, deliveries.errors[:3]
    produce_seconds = time.monotonic() - start
    # Already while producing, rolled segments let go of their files.
    assert open_descriptors(broker.proc.pid) < DESCRIPTOR_LIMIT
    assert broker.stop() == 0

    segment_files = sorted(broker.data_dir.glob(f"{topic}-*/*.log"))
    assert len(segment_files) > DESCRIPTOR_LIMIT + 100, (
        f"{len(segment_files)} segments: the old one-descriptor-per-segment design would fit")

    # Restart under a descriptor limit lower than the number of segments.
    plain_command = broker.command
    broker.command = lambda: ["prlimit", f"--nofile={DESCRIPTOR_LIMIT}:{DESCRIPTOR_LIMIT}", "--"] + plain_command()
    broker.start()
    pid = broker.proc.pid
    assert soft_descriptor_limit(pid) == DESCRIPTOR_LIMIT
    after_start = open_descriptors(pid)
    assert after_start < DESCRIPTOR_LIMIT // 2, f"{after_start} descriptors open after start"
    log_text = broker.log_path.read_text(errors="replace")
    assert "cannot open partition" not in log_text
    assert "Too many open files" not in log_text

    # Every record, from the beginning of every partition, with the descriptor count sampled while
    # the consumer walks all the segments.
    most_open = [after_start]
    consuming = threading.Event()

    def sample():
        while not consuming.is_set():
            most_open.append(open_descriptors(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        records = ck_consume(broker.bootstrap, [(topic, p, 0) for p in range(PARTITIONS)],
                             PARTITIONS * RECORDS_PER_PARTITION, timeout=45,
                             **{"max.partition.fetch.bytes": 65536})
    finally:
        consuming.set()
        sampler.join(5)
    most_open.append(open_descriptors(pid))
    assert len(records) == PARTITIONS * RECORDS_PER_PARTITION
    by_partition = {}
    for (_, partition, offset, key, value, _, _) in records:
        by_partition.setdefault(partition, []).append((offset, key, value))
    for partition in range(PARTITIONS):
        got = sorted(by_partition[partition])
        assert [offset for offset, _, _ in got] == list(range(RECORDS_PER_PARTITION))
        for offset, key, value in got:
            assert key == f"{partition}-{offset}".encode()
            assert value == key.ljust(VALUE_SIZE, b".")
    # Active segments (3 files x 4 partitions) + the pools (64 per shard here) + connections and
    # the broker's own files: far below the limit, whatever the number of segments.
    assert max(most_open) < DESCRIPTOR_LIMIT // 2, max(most_open)
    assert broker.alive()
    assert produce_seconds < 40
