#!/usr/bin/env python3
"""How long a 3-node cluster's metadata quorum is without a leader when its leader dies (kill -9) or is
stopped (SIGTERM: it hands its leadership over first), measured from the signal until both survivors
report the same new leader (DescribeQuorum, polled every 10 ms), over several trials. Reports each
trial and the median and worst, per way of stopping.

    cargo build --release -p broker
    python3 benches/failover.py --trials 10

It uses the integration suite's harness (tests/integration/harness.py) with its Python environment
(`.venv`, which ./scripts/test.sh creates), and the broker binary at target/release/broker (or
$BROKER_BIN).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from harness import Cluster, describe_quorum, kill_all_brokers  # noqa: E402


def agreed_leader(cluster, ids):
    views = set()
    for i in ids:
        try:
            answer = describe_quorum(cluster[i].address)
        except OSError:
            return None
        views.add((answer["leader_id"], answer["leader_epoch"]))
    if len(views) != 1:
        return None
    (leader, epoch), = views
    return (leader, epoch) if leader in ids else None


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    results = {"kill -9": [], "SIGTERM": []}
    with tempfile.TemporaryDirectory() as work:
        cluster = Cluster(Path(work), n=3).start()
        try:
            for trial in range(args.trials):
                for way in results:
                    leader, epoch = wait_for(lambda: agreed_leader(cluster, cluster.ids), 30,
                                             "a leader agreed by all three")
                    survivors = [i for i in cluster.ids if i != leader]
                    started = time.monotonic()
                    if way == "kill -9":
                        cluster[leader].proc.kill()
                    else:
                        cluster[leader].proc.terminate()
                    wait_for(lambda: (agreed_leader(cluster, survivors) or (None, 0))[1] > epoch,
                             30, "a new leader among the survivors")
                    elapsed_ms = (time.monotonic() - started) * 1000
                    results[way].append(elapsed_ms)
                    print(f"trial {trial + 1} {way}: leader {leader} -> new leader after "
                          f"{elapsed_ms:.0f} ms", flush=True)
                    if way == "kill -9":
                        cluster[leader].kill9()
                    else:
                        cluster[leader].proc.wait(20)
                        cluster[leader]._expected_exit = True
                    cluster[leader].start()
        finally:
            cluster.stop()
            kill_all_brokers()
    for way, times in results.items():
        print(f"{way}: median {statistics.median(times):.0f} ms, worst {max(times):.0f} ms "
              f"over {len(times)} trials")


if __name__ == "__main__":
    main()
