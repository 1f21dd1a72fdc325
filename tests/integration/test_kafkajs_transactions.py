"""kafkajs's transactional producer (its own protocol implementation, not librdkafka):
producer.transaction(), send, sendOffsets, commit and abort (tests/kafkajs/transactions.js), checked
here with confluent-kafka read_committed / read_uncommitted consumers and the group's committed offsets.

The client lives in tests/kafkajs (package.json + package-lock.json); scripts/test.sh installs it with
`npm ci`.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from txn_helpers import read, values_of

KAFKAJS_DIR = Path(__file__).resolve().parents[1] / "kafkajs"


def _values(prefix: str, count: int) -> list[bytes]:
    return [b"%s-%d" % (prefix.encode(), i) for i in range(count)]


def test_kafkajs_transactional_producer(broker, topic):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/test.sh installs it)"
    assert (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(), "run `npm ci` in tests/kafkajs"
    bootstrap = broker.bootstrap
    input_topic, group = f"{topic}-in", f"{topic}-group"
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
    result = subprocess.run(
        [node, str(KAFKAJS_DIR / "transactions.js"), bootstrap, topic, input_topic, group, f"{topic}-txn"],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, f"kafkajs failed:\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["aborted"] == ["aborted"]

    assignments = [(topic, 0, 0), (topic, 1, 0)]
    committed = (_values("first-p0", 3) + _values("second-p0", 3)
                 + _values("first-p1", 2) + _values("second-p1", 2))
    seen = read(bootstrap, assignments, len(committed), committed=True, settle=1.5)
    assert values_of(seen) == committed, \
        f"read_committed: kafkajs's two committed transactions only, never the aborted one: {values_of(seen)}"
    # Partition 0: first 0..2 + COMMIT 3, aborted 4..6 + ABORT 7, second 8..10 + COMMIT 11.
    assert [m[2] for m in seen if m[1] == 0] == [0, 1, 2, 8, 9, 10]
    everything = read(bootstrap, assignments, 15, committed=False)
    assert values_of(everything) == (_values("first-p0", 3) + _values("aborted-p0", 3) + _values("second-p0", 3)
                                     + _values("first-p1", 2) + _values("aborted-p1", 2)
                                     + _values("second-p1", 2)), \
        "read_uncommitted sees the aborted transaction's records too"
    inputs = read(bootstrap, [(input_topic, 0, 0)], 2, committed=True)
    assert values_of(inputs) == [b"first-in", b"second-in"], "the second topic of each transaction"

    checker = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                        "group.id": group, "isolation.level": "read_committed"})
    try:
        offsets = checker.committed([TopicPartition(input_topic, p) for p in (0, 1)], timeout=15)
    finally:
        checker.close()
    assert {tp.partition: tp.offset for tp in offsets} == {0: 5, 1: 3}, (
        "sendOffsets of the committed transaction (5, 3) are the group's offsets, not the aborted "
        f"one's (99): {[(tp.partition, tp.offset) for tp in offsets]}")
