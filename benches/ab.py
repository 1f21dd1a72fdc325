#!/usr/bin/env python3
"""A/B comparison of two broker binaries on one kbench workload, runs interleaved (A B A B ...) so that
drift of the machine hits both alike. Reports, per run and as medians: produce MB/s, consume MB/s, ack
p50/p99, broker CPU ms per MB (user+system of the broker process over produced+consumed MB, as kbench
measures it with --broker-pid) and RSS; when no consumer runs during production (catch-up mode, or
--consumers 0) also CPU per produced MB and per Produce request, and in catch-up mode CPU per consumed MB.

    cargo build --release -p broker -p benches
    python3 benches/ab.py --a /path/to/old/broker --b target/release/broker --runs 3 -- \
        --partitions 16 --consumers 0 --duration 10 --warmup 2

Everything after `--` goes to `kbench run` unchanged. `--client-cpus 1` runs kbench on CPU 1 only (the
broker keeps the process's CPUs, and pins its shard 0 to the first), so client and broker do not share a core. To compare one binary under two settings, pass the
same binary twice with `--a-config`/`--b-config` (a broker TOML file per side) and `--a-args`/`--b-args`
(extra kbench arguments per side, e.g. topic configs):

    python3 benches/ab.py --a target/release/broker --b target/release/broker \
        --b-config /tmp/lifecycle.toml --b-args "--topic-config retention.bytes=8388608" -- --partitions 4

The read path: write 1 GB, then read it back from the beginning with 4 consumers:

    python3 benches/ab.py --a /path/to/old/broker --b target/release/broker -- \
        --consume-mode catchup --messages 1000000 --partitions 16 --consumers 4 --producers 2

Transactions against the idempotent baseline, same binary (commit latency in the last two columns):

    python3 benches/ab.py --a target/release/broker --b target/release/broker \
        --a-args "--property enable.idempotence=true" \
        --b-args "--transactional-id ab --txn-commit-every 1000" -- --acks all --partitions 4 --consumers 0
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baseline  # noqa: E402  (Broker process wrapper and the kbench runner)


def one_run(binary, shards, workdir, label, kbench_args, config_file=None, client_cpus=None):
    baseline.BROKER = binary
    all_cpus = os.sched_getaffinity(0)
    broker = baseline.Broker(shards, workdir, config_file=config_file)
    try:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)  # inherited by kbench, not by the running broker
        data = baseline.kbench(broker, workdir, label, kbench_args)
    finally:
        os.sched_setaffinity(0, all_cpus)
        broker.stop()
    ack = data["produce_ack_latency"]
    # Transactional runs (kbench --transactional-id): the commit_transaction call's percentiles.
    commit = (data.get("transactions") or {}).get("commit_latency") or {}
    cpu = data.get("broker") or {}
    return {
        "produce_mb_s": data["produce"]["mb_per_sec"],
        "consume_mb_s": data["consume"]["mb_per_sec"],
        "ack_p50_ms": ack.get("p50_ms"),
        "ack_p99_ms": ack.get("p99_ms"),
        "cpu_ms_per_mb": data["broker_cpu_ms_per_mb"],
        "cpu_ms_per_produced_mb": cpu.get("cpu_ms_per_produced_mb"),
        "cpu_us_per_produce_req": cpu.get("cpu_us_per_produce_request"),
        "cpu_ms_per_consumed_mb": cpu.get("cpu_ms_per_consumed_mb"),
        # kbench's CPU window (producers' release to the end, warmup included) over every message acked.
        "cpu_us_per_msg": 1e6 * (data["broker_cpu_seconds"] or 0) / max(1, data.get("messages_acked") or 0),
        "rss_mib": data["broker_memory"]["rss_kib"] / 1024,
        "txn_commit_p50_ms": commit.get("p50_ms"),
        "txn_commit_p99_ms": commit.get("p99_ms"),
    }


def median_or_none(values):
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="broker binary A (baseline)")
    parser.add_argument("--b", required=True, help="broker binary B (candidate)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--out", default=None, help="keep kbench outputs here (default: a temp dir)")
    parser.add_argument("--a-config", default=None, help="broker TOML file for A")
    parser.add_argument("--b-config", default=None, help="broker TOML file for B")
    parser.add_argument("--a-args", default="", help="extra kbench arguments for A (one string)")
    parser.add_argument("--b-args", default="", help="extra kbench arguments for B (one string)")
    parser.add_argument("--client-cpus", default=None, help="CPUs for kbench, e.g. 1 or 1,2")
    parser.add_argument("kbench", nargs=argparse.REMAINDER, help="-- then kbench run arguments")
    args = parser.parse_args()
    kbench_args = [a for a in args.kbench if a != "--"]
    workdir = args.out or tempfile.mkdtemp(prefix="ab-")
    os.makedirs(workdir, exist_ok=True)
    client_cpus = {int(cpu) for cpu in args.client_cpus.split(",")} if args.client_cpus else None
    results = {"A": [], "B": []}
    for run in range(args.runs):
        for name, binary, config, extra in (("A", args.a, args.a_config, args.a_args),
                                            ("B", args.b, args.b_config, args.b_args)):
            result = one_run(binary, args.shards, workdir, f"{name}{run}", kbench_args + extra.split(),
                             config, client_cpus)
            results[name].append(result)
            print(f"{name} run {run}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items() if v is not None),
                  flush=True)
    print()
    print("| binary | " + " | ".join(results["A"][0].keys()) + " |")
    print("|---|" + "---|" * len(results["A"][0]))
    for name in ("A", "B"):
        medians = {k: median_or_none(r[k] for r in results[name]) for k in results[name][0]}
        print(f"| {name} (median of {args.runs}) | "
              + " | ".join("-" if v is None else f"{v:.3f}" for v in medians.values()) + " |")
    json.dump(results, open(os.path.join(workdir, "ab.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
