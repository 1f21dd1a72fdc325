"""Smoke test of the kbench harness (benches/, `target/release/kbench`) against the real broker.

scripts/test.sh must build it: `cargo build --release -p broker -p benches`.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness import REPO_ROOT

KBENCH = Path(os.environ.get("KBENCH_BIN", REPO_ROOT / "target" / "release" / "kbench"))

PCTS = ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "p9999_ms", "max_ms"]


def run_kbench(*args, timeout=120):
    if not KBENCH.exists():
        pytest.fail(f"kbench not found at {KBENCH} (cargo build --release -p benches)")
    p = subprocess.run([str(KBENCH), *args], capture_output=True, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, f"kbench exited {p.returncode}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    return out


def check_monotonic(summary):
    vals = [summary[k] for k in PCTS]
    assert all(a <= b for a, b in zip(vals, vals[1:])), summary
    assert vals[0] > 0, summary


@pytest.mark.parametrize("mode", ["tail", "catchup"])
def test_kbench_fixed_rate(broker, tmp_path, mode):
    out_dir = tmp_path / "kbench"
    out = run_kbench("run", "--bootstrap", broker.bootstrap, "--duration", "3", "--rate", "2000",
                     "--partitions", "2", "--consume-mode", mode, "--quiet",
                     "--output", str(out_dir))
    assert "produce-ack" in out and "errors: none" in out, out

    res = json.loads((out_dir / "result.json").read_text())
    assert res["partitions"] == 2
    assert res["machine"]["cores"] >= 1
    assert res["errors"]["delivery_or_send_errors"] == 0, res["errors"]
    produced = res["messages_acked"]
    assert produced > 0
    # ~2000 msg/s for 3 s, allow generous slack on a loaded CI machine
    assert 4000 <= produced <= 6500, produced
    assert res["messages_sent"] == produced
    assert res["messages_consumed"] == produced, (res["messages_consumed"], produced)
    assert res["produce"]["msgs_per_sec"] > 1000, res["produce"]

    pa = res["produce_ack_latency"]
    assert pa["count"] == produced
    check_monotonic(pa)
    if mode == "tail":
        e2e = res["e2e_latency"]
        assert e2e["count"] == produced
        check_monotonic(e2e)
    else:
        assert res["consume"]["msgs"] == produced

    svg = out_dir / "latency.svg"
    assert svg.exists() and "<svg" in svg.read_text()
    for name in ("produce.hlog", "e2e.hlog"):
        hlog = (out_dir / name).read_text()
        assert "#[StartTime:" in hlog
        assert "HISTFAAA" in hlog, f"{name} has no interval histograms"


def test_kbench_max_rate_messages(broker, tmp_path):
    out_dir = tmp_path / "kbench-max"
    run_kbench("run", "--bootstrap", broker.bootstrap, "--messages", "20000", "--producers", "2",
               "--partitions", "3", "--message-size", "200", "--quiet", "--output", str(out_dir))
    res = json.loads((out_dir / "result.json").read_text())
    assert res["messages_acked"] == 20000
    assert res["messages_consumed"] == 20000
    assert "as fast as possible" in res["latency_basis"]
    check_monotonic(res["produce_ack_latency"])


def test_kbench_compare_same_broker(broker, tmp_path):
    out_dir = tmp_path / "kbench-cmp"
    out = run_kbench("compare", "--a", broker.bootstrap, "--b", broker.bootstrap, "--duration", "2",
                     "--rate", "500", "--quiet", "--output", str(out_dir))
    assert "B/A" in out
    cmp = json.loads((out_dir / "compare.json").read_text())
    assert cmp["a"]["messages_acked"] > 0 and cmp["b"]["messages_acked"] > 0
    assert any(r["metric"] == "produce msg/s" for r in cmp["rows"])
    assert (out_dir / "a" / "result.json").exists() and (out_dir / "b" / "result.json").exists()


def test_kbench_transactional_mode(broker, tmp_path):
    """--transactional-id: two producers (ids kb-0, kb-1) commit every 500 records; a read_committed
    consumer reads every committed record; commit latencies land in result.json."""
    out_dir = tmp_path / "kbench-txn"
    out = run_kbench("run", "--bootstrap", broker.bootstrap, "--messages", "5000", "--producers", "2",
                     "--partitions", "2", "--message-size", "200", "--acks", "all",
                     "--transactional-id", "kb", "--txn-commit-every", "500",
                     "--isolation-level", "read_committed", "--quiet", "--output", str(out_dir))
    assert "txn-commit" in out and "errors: none" in out, out
    res = json.loads((out_dir / "result.json").read_text())
    assert res["messages_acked"] == 5000
    assert res["messages_consumed"] == 5000, "read_committed consumer must see every committed record"
    txn = res["transactions"]
    assert txn["committed"] == 10 and txn["aborted"] == 0, txn  # 2500 records per producer / 500
    assert txn["commit_latency"]["count"] == 10, txn
    assert txn["transaction_latency"]["count"] == 10, txn
    check_monotonic(txn["commit_latency"])
    check_monotonic(txn["transaction_latency"])
    assert txn["transaction_latency"]["max_ms"] >= txn["commit_latency"]["max_ms"], \
        "a transaction (begin -> committed) lasts at least as long as its commit call"
    assert res["workload"]["transactional_id"] == "kb"
