#!/usr/bin/env python3
"""The broker's performance baseline, reproducibly: physical limits of this machine, then the broker's
numbers for the scenarios BENCHMARKS.md reports, with 1 and 2 shards.

    cargo build --release -p broker -p benches
    python3 benches/baseline.py --out baseline-results          # ~10 minutes on 2 cores
    python3 benches/baseline.py --catchup-only --out catchup-results   # read path only, ~1 GB each run

It starts the real broker (target/release/broker) on a free loopback port with a fresh data directory
per shard count and drives it with target/release/kbench, passing it the broker's process id
(`kbench run --broker-pid`): kbench samples the broker's CPU time per phase from /proc and reports CPU
per MB produced and consumed and per Produce request; this script reads those figures from each run's
result.json, and samples idle CPU and memory itself. Results: <out>/summary.md (the tables pasted into
BENCHMARKS.md), <out>/summary.json, and every kbench run's own directory (result.json, .hlog,
latency.svg). Physical limits need iperf3 and fio (`apt-get install iperf3 fio`); they are skipped with a
note when missing. fio runs in <out>, the file system of the brokers' data directories.

--catchup-only runs the physical limits (fio sequential write and read, iperf3) and the catch-up runs
alone: write --catchup-messages 1 KiB records, then read them all from the beginning, with 1 partition
and 1 consumer and with 16 partitions and 4 consumers, per shard count; so consume MB/s and broker CPU
per consumed MB stand beside fio read in one run.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKER = os.path.join(ROOT, "target/release/broker")
KBENCH = os.path.join(ROOT, "target/release/kbench")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# KBENCH_CPUS=1 runs kbench under `taskset -c 1`: on a small machine, the client on the cores the broker's
# shards do not use (shard i is pinned to the i-th online core).
CLIENT_PREFIX = ["taskset", "-c", os.environ["KBENCH_CPUS"]] if os.environ.get("KBENCH_CPUS") else []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------- physical limits

def loopback_tcp(seconds):
    if not shutil.which("iperf3"):
        return None
    port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        out = run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"]).stdout
        bits = json.loads(out)["end"]["sum_received"]["bits_per_second"]
        return {"tool": "iperf3 -c 127.0.0.1 -t %d (one stream)" % seconds, "MB_per_sec": bits / 8 / 1e6}
    finally:
        server.wait(timeout=10)


def disk_write(directory, size_mb, block):
    if not shutil.which("fio"):
        return None
    path = os.path.join(directory, "fio.dat")
    try:
        out = run(["fio", "--name=seqwrite", "--rw=write", f"--bs={block}", f"--size={size_mb}M", "--direct=1",
                   "--ioengine=io_uring", "--iodepth=8", "--end_fsync=1", f"--filename={path}", "--output-format=json"]).stdout
        job = json.loads(out)["jobs"][0]["write"]
        return {"tool": f"fio seq write O_DIRECT io_uring bs={block} iodepth=8 {size_mb} MiB", "MB_per_sec": job["bw_bytes"] / 1e6}
    finally:
        if os.path.exists(path):
            os.remove(path)


def disk_reads(directory, size_mb, runtime_s=30):
    """Sequential O_DIRECT reads of one file (laid out by fio first, not timed): bs=1M iodepth=8 as a
    catch-up consumer with deep prefetch would read, bs=64k iodepth=1 as one fetch at a time would."""
    if not shutil.which("fio"):
        return {"disk_read_1M": None, "disk_read_64k": None}
    path = os.path.join(directory, "fio-read.dat")
    rows = {}
    try:
        run(["fio", "--name=layout", "--rw=write", "--bs=1M", f"--size={size_mb}M", "--direct=1", "--ioengine=io_uring",
             "--iodepth=8", "--end_fsync=1", f"--filename={path}", "--output-format=json"])
        for name, block, depth in (("disk_read_1M", "1M", 8), ("disk_read_64k", "64k", 1)):
            out = run(["fio", "--name=seqread", "--rw=read", f"--bs={block}", f"--size={size_mb}M", "--direct=1",
                       "--ioengine=io_uring", f"--iodepth={depth}", f"--runtime={runtime_s}", f"--filename={path}",
                       "--output-format=json"]).stdout
            job = json.loads(out)["jobs"][0]["read"]
            rows[name] = {"tool": f"fio seq read O_DIRECT io_uring bs={block} iodepth={depth} {size_mb} MiB "
                                  f"(at most {runtime_s} s)",
                          "MB_per_sec": job["bw_bytes"] / 1e6}
    finally:
        if os.path.exists(path):
            os.remove(path)
    return rows


def physical_limits(out_dir):
    physical = {"loopback_tcp": loopback_tcp(10), "disk_write_1M": disk_write(out_dir, 2048, "1M"),
                "disk_write_64k": disk_write(out_dir, 1024, "64k")}
    physical.update(disk_reads(out_dir, 2048))
    return physical


# ---------------------------------------------------------------- the broker

class Broker:
    def __init__(self, shards, workdir, direct_io=True, config_file=None):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix=f"data-{shards}-", dir=workdir)
        self.log = open(os.path.join(workdir, f"broker-{shards}-{'direct' if direct_io else 'buffered'}.log"), "w")
        config = os.path.join(workdir, "buffered.toml")
        open(config, "w").write("direct_io = false\n")
        extra = [] if direct_io else ["--config", config]
        if config_file:
            # An operator's TOML file (ab.py --a-config/--b-config); it may set direct_io itself.
            extra = ["--config", config_file]
        self.proc = subprocess.Popen([BROKER, "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data,
                                      "--shards", str(shards)] + extra, stderr=self.log, stdout=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("broker did not start")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def memory_kib(self):
        status = open(f"/proc/{self.proc.pid}/status").read()
        grab = lambda key: int(re.search(rf"^{key}:\s+(\d+)", status, re.M).group(1))
        return {"rss_kib": grab("VmRSS"), "peak_rss_kib": grab("VmHWM")}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


def kbench(broker, out_dir, label, args):
    """One `kbench run` with --broker-pid; the broker's CPU figures are kbench's (result.json "broker":
    producers' release -> last message consumed, per phase). `broker_cpu_seconds_outside` is this
    script's own sample around the whole kbench process (topic creation and client start included)."""
    directory = os.path.join(out_dir, label)
    cpu_before = broker.cpu_seconds()
    result = subprocess.run(CLIENT_PREFIX + [KBENCH, "run", "--bootstrap", broker.bootstrap, "--quiet", "--output", directory,
                             "--label", label, "--broker-pid", str(broker.proc.pid)] + args,
                            capture_output=True, text=True)
    cpu_outside = broker.cpu_seconds() - cpu_before
    if result.returncode not in (0, 3):
        print(result.stdout, result.stderr, file=sys.stderr)
        raise RuntimeError(f"kbench failed for {label}")
    data = json.load(open(os.path.join(directory, "result.json")))
    cpu = data.get("broker") or {}
    data["broker_cpu_seconds"] = cpu.get("cpu_seconds")
    data["broker_cpu_seconds_outside"] = cpu_outside
    data["broker_cpu_ms_per_mb"] = cpu.get("cpu_ms_per_mb")
    data["broker_memory"] = broker.memory_kib()
    data["errors_total"] = sum(v for v in data.get("errors", {}).values() if isinstance(v, (int, float)))
    return data


def scenarios(broker, out_dir, shards, seconds):
    rows = []
    common = ["--duration", str(seconds), "--warmup", "2"]
    # Produce throughput: as fast as possible, no consumers.
    maxima = {}
    for size in (100, 1024):
        for partitions in (1, 16):
            for acks in ("1", "all"):
                label = f"s{shards}-produce-{size}B-p{partitions}-acks{acks}"
                r = kbench(broker, out_dir, label, common + ["--message-size", str(size), "--partitions", str(partitions),
                                                             "--acks", acks, "--consumers", "0", "--recreate"])
                maxima[(size, partitions, acks)] = r["produce"]["msgs_per_sec"]
                rows.append(("produce max", size, partitions, acks, r))
    # Consume: catch-up (read back a backlog) and tailing (consumers during production).
    r = kbench(broker, out_dir, f"s{shards}-catchup-1KiB-p16", ["--messages", "1000000", "--message-size", "1024",
                                                                 "--partitions", "16", "--consumers", "2", "--producers", "2",
                                                                 "--consume-mode", "catchup", "--recreate"])
    rows.append(("consume catch-up", 1024, 16, "1", r))
    # Latency at 50% and 80% of the maximum (1 KiB, 1 partition, acks=1), with a tailing consumer for
    # end-to-end latency; linger 0 so the client sends at once. The maximum is measured with those same
    # client settings (no linger batching, a consumer running), so the percentages are of what this
    # client and broker sustain together.
    r = kbench(broker, out_dir, f"s{shards}-max-linger0-1KiB-p1", common + ["--message-size", "1024", "--partitions", "1",
                                                                          "--acks", "1", "--consumers", "1", "--linger-ms", "0",
                                                                          "--consume-mode", "tail", "--recreate"])
    rows.append(("max, linger 0, tailing consumer", 1024, 1, "1", r))
    top = r["produce"]["msgs_per_sec"]
    for share in (0.5, 0.8):
        rate = int(top * share)
        label = f"s{shards}-latency-{int(share * 100)}pct-1KiB-p1"
        r = kbench(broker, out_dir, label, common + ["--message-size", "1024", "--partitions", "1", "--acks", "1",
                                                     "--rate", str(rate), "--consumers", "1", "--linger-ms", "0",
                                                     "--consume-mode", "tail", "--recreate"])
        rows.append((f"latency @{int(share * 100)}% ({rate}/s)", 1024, 1, "1", r))
    # A light fixed rate, to see latency without queueing.
    r = kbench(broker, out_dir, f"s{shards}-latency-light-1KiB-p1", common + ["--message-size", "1024", "--partitions", "1",
                                                                             "--acks", "1", "--rate", "1000", "--consumers", "1",
                                                                             "--linger-ms", "0", "--consume-mode", "tail", "--recreate"])
    rows.append(("latency @1000/s", 1024, 1, "1", r))
    return rows


def storage_modes(out_dir, seconds):
    """O_DIRECT against buffered segment writes, 1 shard: latency at fixed rates and the produce maximum."""
    rows = []
    for direct in (True, False):
        mode = "O_DIRECT" if direct else "buffered"
        broker = Broker(1, out_dir, direct_io=direct)
        try:
            for rate in (1000, 20000):
                r = kbench(broker, out_dir, f"mode-{mode}-{rate}", ["--duration", str(seconds), "--warmup", "2", "--message-size", "1024",
                                                                   "--partitions", "1", "--acks", "1", "--rate", str(rate), "--consumers", "1",
                                                                   "--linger-ms", "0", "--consume-mode", "tail", "--recreate"])
                rows.append((f"{mode} @{rate}/s", r))
            r = kbench(broker, out_dir, f"mode-{mode}-max", ["--duration", str(seconds), "--warmup", "2", "--message-size", "1024",
                                                            "--partitions", "1", "--acks", "1", "--consumers", "0", "--recreate"])
            rows.append((f"{mode} max", r))
        finally:
            broker.stop()
    return rows


def idle_cpu(broker, seconds):
    """Broker CPU while idle with one consumer long-polling an empty partition."""
    consumer = None
    if shutil.which("kcat"):
        consumer = subprocess.Popen(["kcat", "-b", broker.bootstrap, "-C", "-t", "idle", "-o", "end", "-q"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
    before = broker.cpu_seconds()
    time.sleep(seconds)
    used = broker.cpu_seconds() - before
    if consumer:
        consumer.terminate()
    return {"seconds": seconds, "cpu_seconds": used, "cpu_percent": 100 * used / seconds, "with_idle_consumer": consumer is not None}


# (partitions, consumers, producers) of the catch-up runs.
CATCHUP_SHAPES = ((1, 1, 1), (16, 4, 2))


def catchup_runs(out_dir, shards, messages):
    """Write `messages` 1 KiB records, then read them all back from the beginning, per shape."""
    rows = []
    broker = Broker(shards, out_dir)
    try:
        for partitions, consumers, producers in CATCHUP_SHAPES:
            label = f"s{shards}-catchup-1KiB-p{partitions}-c{consumers}"
            r = kbench(broker, out_dir, label, ["--messages", str(messages), "--message-size", "1024",
                                                "--partitions", str(partitions), "--consumers", str(consumers),
                                                "--producers", str(producers), "--consume-mode", "catchup", "--recreate"])
            rows.append((partitions, consumers, r))
    finally:
        broker.stop()
    return rows


def catchup_table(rows_by_shards):
    """summary.md rows of --catchup-only."""
    md = ["", "### Catch-up: write N x 1 KiB, then read from the beginning (kbench --consume-mode catchup)", "",
          "| shards | partitions | consumers | messages | produce MB/s | consume MB/s | broker CPU ms per produced MB | "
          "µs per Produce request | broker CPU ms per consumed MB | peak RSS MiB | errors |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for shards, rows in rows_by_shards.items():
        for partitions, consumers, r in rows:
            b = r.get("broker") or {}
            peak = b.get("peak_rss_kib")
            md.append(f"| {shards} | {partitions} | {consumers} | {r['messages_consumed']:,} | {fmt(r['produce']['mb_per_sec'], 1)} | "
                      f"{fmt(r['consume']['mb_per_sec'], 1)} | {fmt(b.get('cpu_ms_per_produced_mb'), 2)} | "
                      f"{fmt(b.get('cpu_us_per_produce_request'), 1)} | {fmt(b.get('cpu_ms_per_consumed_mb'), 2)} | "
                      f"{fmt(peak and peak / 1024, 0)} | {r['errors_total']} |")
    return md


def fmt(x, digits=2):
    return "–" if x is None else f"{x:,.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="baseline-results")
    parser.add_argument("--shards", default="1,2")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--catchup-only", action="store_true",
                        help="only the physical limits and the catch-up runs (issue 12's read path)")
    parser.add_argument("--catchup-messages", type=int, default=1_000_000,
                        help="records written (then read back) per catch-up run; 1 KiB each (default ~1 GB)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for binary in (BROKER, KBENCH):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} missing: cargo build --release -p broker -p benches")

    summary = {"machine": {"cores": os.cpu_count(), "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
                           "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d")}}
    summary["physical"] = physical_limits(args.out)
    md = [f"Machine: {summary['machine']['cores']} cores ({summary['machine']['cpu']}), kernel {summary['machine']['kernel']}, "
          f"{summary['machine']['date']}.", "", "| physical limit | MB/s |", "|---|---|"]
    for name, value in summary["physical"].items():
        md.append(f"| {value['tool'] if value else name + ' (tool missing)'} | {fmt(value and value['MB_per_sec'], 0)} |")

    if args.catchup_only:
        runs = {shards: catchup_runs(args.out, shards, args.catchup_messages)
                for shards in [int(s) for s in args.shards.split(",")]}
        md += catchup_table(runs)
        keep = ("produce", "consume", "messages_consumed", "broker", "errors_total")
        summary["catchup"] = {shards: [(p, c, {k: r.get(k) for k in keep}) for p, c, r in rows]
                              for shards, rows in runs.items()}
        open(os.path.join(args.out, "summary.md"), "w").write("\n".join(md) + "\n")
        json.dump(summary, open(os.path.join(args.out, "summary.json"), "w"), indent=2, default=str)
        print("\n".join(md))
        return

    summary["runs"] = {}
    for shards in [int(s) for s in args.shards.split(",")]:
        broker = Broker(shards, args.out)
        try:
            rows = scenarios(broker, args.out, shards, args.seconds)
            idle = idle_cpu(broker, 10)
            memory = broker.memory_kib()
        finally:
            broker.stop()
        summary["runs"][shards] = {"rows": [(n, s, p, a, r["workload"] if "workload" in r else None) for n, s, p, a, r in rows],
                                   "idle": idle, "memory": memory}
        md += ["", f"### {shards} shard{'s' if shards > 1 else ''}", "",
               "| scenario | msg size | partitions | acks | produce msg/s | produce MB/s | consume MB/s | produce-ack p50 / p99 / p99.9 ms | e2e p50 / p99 / p99.9 ms | broker CPU ms per MB | errors |",
               "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, size, partitions, acks, r in rows:
            pa, e2e = r["produce_ack_latency"], r["e2e_latency"]
            lat = lambda s: "–" if not s["count"] else f"{s['p50_ms']:.3f} / {s['p99_ms']:.3f} / {s['p999_ms']:.3f}"
            md.append(f"| {name} | {size} | {partitions} | {acks} | {fmt(r['produce']['msgs_per_sec'], 0)} | {fmt(r['produce']['mb_per_sec'], 1)} | "
                      f"{fmt(r['consume']['mb_per_sec'], 1)} | {lat(pa)} | {lat(e2e)} | {fmt(r['broker_cpu_ms_per_mb'], 1)} | {r['errors_total']} |")
        md += ["", f"Idle broker CPU over {idle['seconds']} s with an idle consumer long-polling: {idle['cpu_percent']:.2f}% of one core. "
               f"Broker memory after the runs: RSS {memory['rss_kib'] / 1024:.0f} MiB, peak {memory['peak_rss_kib'] / 1024:.0f} MiB."]
        summary["runs"][shards]["table"] = [(n, s, p, a, {k: r[k] for k in ("produce", "consume", "produce_ack_latency", "e2e_latency", "broker_cpu_ms_per_mb", "broker_memory", "errors_total")}) for n, s, p, a, r in rows]
    md += ["", "### Storage write mode (1 shard, 1 KiB, 1 partition, acks=1, linger 0, tailing consumer)", "",
           "| mode | produce msg/s | produce MB/s | produce-ack p50 / p99 / p99.9 ms | e2e p50 / p99 / p99.9 ms |", "|---|---|---|---|---|"]
    for name, r in storage_modes(args.out, args.seconds):
        lat = lambda s: "–" if not s["count"] else f"{s['p50_ms']:.3f} / {s['p99_ms']:.3f} / {s['p999_ms']:.3f}"
        md.append(f"| {name} | {fmt(r['produce']['msgs_per_sec'], 0)} | {fmt(r['produce']['mb_per_sec'], 1)} | {lat(r['produce_ack_latency'])} | {lat(r['e2e_latency'])} |")
    open(os.path.join(args.out, "summary.md"), "w").write("\n".join(md) + "\n")
    json.dump(summary, open(os.path.join(args.out, "summary.json"), "w"), indent=2, default=str)
    print("\n".join(md))


if __name__ == "__main__":
    main()
