"""kafkajs, a client with its own protocol implementation (not librdkafka), against the real broker:
produce, consume in a consumer group, commit, resume from committed offsets, admin group calls.

The client lives in tests/kafkajs (package.json + package-lock.json); scripts/test.sh installs it with
`npm ci`.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

KAFKAJS_DIR = Path(__file__).resolve().parents[1] / "kafkajs"


def test_kafkajs_group_consume_commit_and_resume(broker_factory, topic):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/test.sh installs it)"
    assert (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(), "run `npm ci` in tests/kafkajs"
    broker = broker_factory(shards=2, config={"group_initial_rebalance_delay_ms": 100})
    group = f"{topic}-group"
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
    result = subprocess.run([node, str(KAFKAJS_DIR / "smoke.js"), broker.bootstrap, topic, group],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, f"kafkajs failed:\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    first, second = report["first"], report["second"]
    assert sorted(first) == sorted(f"a{i}" for i in range(300)), "first consumer: each message once"
    assert sorted(second) == sorted(f"b{i}" for i in range(50)), \
        "second consumer resumes from the committed offsets: only the new messages"
    assert sum(report["committed"]) == 350
    assert report["listed"] and report["listed"][0]["protocolType"] == "consumer"
    assert report["state"] == "Empty"           # both consumers left
    assert report["protocolType"] == "consumer"
    print(f"kafkajs joined its group {report['firstJoinedAfterMs']} ms after subscribing")
