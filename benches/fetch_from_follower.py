#!/usr/bin/env python3
"""Fetch from follower (KIP-392) against fetching from the leader: kbench against a 3-node cluster
(1 shard each, loopback, racks rack-1..rack-3, `replica_selector = "rack-aware"`) on one topic of
one partition on nodes 1, 2, 3 led by 1 (acks=all). kbench's clients get `client.rack` rack-1 (the
leader's rack: consumers read from the leader) or rack-2 (consumers are sent to follower 2). Reports
end-to-end latency of a tailing consumer at a fixed rate, and a catch-up consumer's throughput
(write everything, then read it back). A confluent-kafka consumer's statistics confirm which broker
serves each rack.

    cargo build --release -p broker -p benches
    .venv/bin/python benches/fetch_from_follower.py --seconds 8

It uses the integration suite's harness (tests/integration/harness.py), target/release/broker (or
$BROKER_BIN) and target/release/kbench.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from harness import Cluster, ck_admin, ck_consumer  # noqa: E402
from confluent_kafka import TopicPartition  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

KBENCH = ROOT / "target" / "release" / "kbench"
TOPIC = "fff"


def kbench(bootstrap, rack, seconds, rate, mode, out):
    command = [str(KBENCH), "run", "--bootstrap", bootstrap, "--topic", TOPIC, "--acks", "all",
               "--duration", str(seconds), "--warmup", "1", "--quiet", "--message-size", "1024",
               "--consume-mode", mode, "--property", f"client.rack={rack}",
               "--output", str(out)]
    if rate:
        command += ["--rate", str(rate)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "result.json").read_text())


def served_by(bootstrap, rack):
    """The broker a consumer in `rack` fetches partition 0 from, per librdkafka's statistics."""
    seen = {}

    def on_stats(text):
        p = json.loads(text)["topics"].get(TOPIC, {}).get("partitions", {}).get("0")
        if p:
            seen["broker"] = p["broker"]
    c = ck_consumer(bootstrap, **{"client.rack": rack, "statistics.interval.ms": 200,
                                  "stats_cb": on_stats})
    c.assign([TopicPartition(TOPIC, 0, 0)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        c.consume(num_messages=10000, timeout=0.2)
    c.close()
    return seen.get("broker")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rate", type=int, default=2000, help="the tailing runs' msgs/s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        cluster = Cluster(work, n=3, config={"replica_selector": "rack-aware"}).start()
        try:
            admin = ck_admin(cluster[1].bootstrap)
            while len(admin.list_topics(timeout=10).brokers) < 3:
                time.sleep(0.2)
            admin.create_topics([NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1, 2, 3]])],
                                request_timeout=20)[TOPIC].result(30)
            while sorted(admin.list_topics(topic=TOPIC, timeout=10).topics[TOPIC]
                         .partitions[0].isrs) != [1, 2, 3]:
                time.sleep(0.2)
            bootstrap = ",".join(cluster[i].bootstrap for i in cluster.ids)
            runs = [("tail", args.rate), ("catchup", None)]
            for mode, rate in runs:
                for round_ in range(2):
                    for rack, label in (("rack-1", "leader"), ("rack-2", "follower")):
                        out = work / f"{mode}-{rack}-{round_}"
                        r = kbench(bootstrap, rack, args.seconds, rate, mode, out)
                        e2e = r["e2e_latency"]
                        print(f"{mode:>7} {label:<8} round {round_ + 1}: produce "
                              f"{r['produce']['msgs_per_sec']:>9,.0f} msg/s, consume "
                              f"{r['consume']['msgs_per_sec']:>9,.0f} msg/s "
                              f"{r['consume']['mb_per_sec']:6.1f} MB/s, e2e p50 "
                              f"{e2e['p50_ms']:8.2f} p99 {e2e['p99_ms']:8.2f} ms")
            for rack in ("rack-1", "rack-2"):
                print(f"a consumer in {rack} is served by broker {served_by(bootstrap, rack)}")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
