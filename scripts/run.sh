#!/usr/bin/env bash
# The project's run command: builds the broker (release) and starts it with the embedded defaults
# (listen 0.0.0.0:9092, data in ./data, one shard per core). Extra arguments go to the broker, e.g.
#   ./scripts/run.sh --listen 127.0.0.1:9092 --shards 2
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
cargo build --release -p broker
exec target/release/broker "$@"
