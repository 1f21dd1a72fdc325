#!/usr/bin/env python3
"""What replication costs a producer: kbench against a 3-node cluster (1 shard each, loopback), the
same workload on a topic with one replica and acks=1, then on one with three replicas,
min.insync.replicas 2 and acks=all. Reports produce throughput, ack latency percentiles and
end-to-end latency of each, at a fixed rate and as fast as one producer goes. How long replication
takes is the difference between the two ack latencies (acks=all answers once both followers fetched
past the records); the ISR after each run shows whether a follower fell behind for good.

    cargo build --release -p broker -p benches
    python3 benches/replication.py --seconds 10
    python3 benches/replication.py --seconds 10 --fsync-before-ack   # replica_fsync_before_ack = true

It uses the integration suite's harness (tests/integration/harness.py) and its Python environment
(`.venv`, which ./scripts/test.sh creates), target/release/broker (or $BROKER_BIN) and
target/release/kbench.
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
from harness import Cluster, ck_admin  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

KBENCH = ROOT / "target" / "release" / "kbench"


def run_kbench(bootstrap, topic, acks, seconds, rate, out):
    command = [str(KBENCH), "run", "--bootstrap", bootstrap, "--topic", topic,
               "--acks", acks, "--duration", str(seconds), "--warmup", "1", "--quiet",
               "--message-size", "1024", "--output", str(out)]
    if rate:
        command += ["--rate", str(rate)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "result.json").read_text())


def summary(result):
    ack = result["produce_ack_latency"]
    e2e = result["e2e_latency"]
    return (f"{result['produce']['msgs_per_sec']:>9,.0f} msg/s  {result['produce']['mb_per_sec']:6.1f} MB/s  "
            f"ack p50 {ack['p50_ms']:7.2f} p99 {ack['p99_ms']:7.2f} p999 {ack['p999_ms']:7.2f} ms  "
            f"e2e p50 {e2e['p50_ms']:7.2f} p99 {e2e['p99_ms']:7.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=2000, help="the fixed-rate runs' msgs/s")
    parser.add_argument("--fsync-before-ack", action="store_true",
                        help="start the brokers with replica_fsync_before_ack = true (acks=all "
                             "answered once fsynced on the leader and every in-sync follower)")
    args = parser.parse_args()
    config = {"replica_fsync_before_ack": True} if args.fsync_before_ack else {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        cluster = Cluster(work, n=3, config=config).start()
        try:
            admin = ck_admin(cluster[1].bootstrap)
            deadline = time.monotonic() + 30
            while len(admin.list_topics(timeout=10).brokers) < 3:
                if time.monotonic() > deadline:
                    raise SystemExit("three brokers never listed")
                time.sleep(0.2)
            topics = {"rf1": (1, {}), "rf3": (3, {"min.insync.replicas": "2"})}
            futures = admin.create_topics(
                [NewTopic(name, num_partitions=1, replication_factor=rf, config=config)
                 for name, (rf, config) in topics.items()], request_timeout=20)
            for future in futures.values():
                future.result(30)
            time.sleep(2)
            bootstrap = ",".join(cluster[i].bootstrap for i in cluster.ids)
            meta = admin.list_topics(timeout=10).topics
            for rate in (args.rate, None):
                label = f"{rate} msg/s" if rate else "as fast as possible"
                for name, acks in (("rf1", "1"), ("rf3", "all")):
                    leader = meta[name].partitions[0].leader
                    out = work / f"{name}-{rate or 'max'}"
                    result = run_kbench(bootstrap, name, acks, args.seconds, rate, out)
                    isr = sorted(admin.list_topics(topic=name, timeout=10)
                                 .topics[name].partitions[0].isrs)
                    print(f"{label:>20}  {name} acks={acks:<3} {summary(result)}  "
                          f"leader {leader} isr {isr}")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
