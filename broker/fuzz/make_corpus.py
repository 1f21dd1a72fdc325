#!/usr/bin/env python3
"""Writes the seed request frames of tests/fuzz/client-requests.jsonl as libFuzzer corpus files."""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
seeds = os.path.join(here, "..", "..", "tests", "fuzz", "client-requests.jsonl")
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "request_decode")
os.makedirs(out, exist_ok=True)
with open(seeds) as lines:
    for index, line in enumerate(lines):
        if line.strip():
            frame = bytes.fromhex(json.loads(line)["hex"])
            with open(os.path.join(out, f"seed-{index:03}"), "wb") as corpus_file:
                corpus_file.write(frame)
print(f"wrote seeds to {out}")
