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


def test_kbench_catchup_broker_cpu(broker, tmp_path):
    """--broker-pid in catch-up mode (`--mode` is an alias of --consume-mode): kbench samples the broker's
    CPU time at the phase boundaries and reports CPU per produced MB, per Produce request and per
    consumed MB, and the broker's memory."""
    out_dir = tmp_path / "kbench-cpu"
    messages = 200_000
    out = run_kbench("run", "--bootstrap", broker.bootstrap, "--mode", "catchup", "--messages", str(messages),
                     "--message-size", "1024", "--partitions", "2", "--consumers", "2", "--quiet",
                     "--output", str(out_dir), "--broker-pid", str(broker.proc.pid))
    assert "errors: none" in out, out
    assert f"broker   pid {broker.proc.pid}" in out and "produce phase" in out and "consume phase" in out, out
    res = json.loads((out_dir / "result.json").read_text())
    assert res["messages_consumed"] == messages
    cpu = res["broker"]
    assert cpu["pid"] == broker.proc.pid and cpu["comm"], cpu
    assert cpu["clock_ticks_per_second"] > 0
    for key in ("cpu_seconds", "cpu_ms_per_mb", "produce_phase_cpu_seconds", "cpu_ms_per_produced_mb",
                "cpu_us_per_produce_request", "cpu_us_per_produced_message", "consume_phase_cpu_seconds",
                "cpu_ms_per_consumed_mb"):
        assert cpu[key] is not None and cpu[key] > 0, (key, cpu)
    # librdkafka batches: at least one Produce request, at most one per message.
    assert 0 < cpu["produce_requests"] <= messages, cpu
    # The phases lie inside the run (one clock tick of slack per sample).
    tick = 1 / cpu["clock_ticks_per_second"]
    assert cpu["produce_phase_cpu_seconds"] + cpu["consume_phase_cpu_seconds"] <= cpu["cpu_seconds"] + 2 * tick, cpu
    # The figures are the phase CPU over the phase's volume.
    produced_mb = res["produce"]["bytes"] / 1e6
    assert abs(cpu["cpu_ms_per_produced_mb"] - 1000 * cpu["produce_phase_cpu_seconds"] / produced_mb) < 1e-6, cpu
    consumed_mb = res["consume"]["bytes"] / 1e6
    assert abs(cpu["cpu_ms_per_consumed_mb"] - 1000 * cpu["consume_phase_cpu_seconds"] / consumed_mb) < 1e-6, cpu
    assert cpu["peak_rss_kib"] >= cpu["rss_kib"] > 0, cpu


def test_kbench_counts_every_produce_request(broker, tmp_path):
    """One record per batch (batch.num.messages=1), one partition: one Produce request per record, so
    kbench's count (librdkafka statistics, read after the producer's flush) must equal the record count."""
    out_dir = tmp_path / "kbench-requests"
    messages = 3000
    run_kbench("run", "--bootstrap", broker.bootstrap, "--mode", "catchup", "--messages", str(messages),
               "--linger-ms", "0", "--property", "batch.num.messages=1", "--quiet", "--output", str(out_dir),
               "--broker-pid", str(broker.proc.pid))
    cpu = json.loads((out_dir / "result.json").read_text())["broker"]
    assert cpu["produce_requests"] == messages, cpu
    assert abs(cpu["cpu_us_per_produce_request"] - cpu["cpu_us_per_produced_message"]) < 1e-6, cpu


def test_kbench_tail_broker_cpu_is_one_combined_figure(broker, tmp_path):
    """In tail mode producers and consumers run together: one CPU figure per MB produced + consumed."""
    out_dir = tmp_path / "kbench-cpu-tail"
    run_kbench("run", "--bootstrap", broker.bootstrap, "--messages", "50000", "--message-size", "1024",
               "--quiet", "--output", str(out_dir), "--broker-pid", str(broker.proc.pid))
    cpu = json.loads((out_dir / "result.json").read_text())["broker"]
    assert cpu["cpu_seconds"] > 0 and cpu["cpu_ms_per_mb"] > 0, cpu
    assert cpu["produce_phase_cpu_seconds"] is None and cpu["cpu_ms_per_produced_mb"] is None, cpu
    assert cpu["consume_phase_cpu_seconds"] is None and cpu["cpu_ms_per_consumed_mb"] is None, cpu


def test_kbench_compare_with_pids(broker, tmp_path):
    out_dir = tmp_path / "kbench-cmp-pid"
    pid = str(broker.proc.pid)
    out = run_kbench("compare", "--a", broker.bootstrap, "--b", broker.bootstrap, "--mode", "catchup",
                     "--messages", "50000", "--quiet", "--output", str(out_dir), "--a-pid", pid, "--b-pid", pid)
    assert "broker CPU s" in out, out
    cmp = json.loads((out_dir / "compare.json").read_text())
    metrics = {r["metric"] for r in cmp["rows"]}
    assert {"broker CPU s", "broker CPU ms/MB (all)", "broker CPU ms/produced MB",
            "broker CPU ms/consumed MB", "broker peak RSS MiB"} <= metrics, metrics
    assert cmp["a"]["broker"]["pid"] == broker.proc.pid and cmp["b"]["broker"]["pid"] == broker.proc.pid


def test_kbench_refuses_a_missing_broker_pid(tmp_path):
    if not KBENCH.exists():
        pytest.fail(f"kbench not found at {KBENCH} (cargo build --release -p benches)")
    p = subprocess.run([str(KBENCH), "run", "--bootstrap", "127.0.0.1:1", "--broker-pid", "4294967295",
                        "--output", str(tmp_path / "none")], capture_output=True, timeout=30)
    assert p.returncode == 1
    assert b"--broker-pid" in p.stderr and b"/proc/4294967295/stat" in p.stderr, p.stderr
