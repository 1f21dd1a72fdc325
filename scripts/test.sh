#!/usr/bin/env bash
# The project's test command: installs what it needs (Debian), builds the
# broker, runs the Rust tests and the real-client integration suite.
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh -k kcat         # extra args go to pytest
#
# Env knobs:
#   SKIP_CARGO_TEST=1   skip `cargo test`
#   SKIP_BUILD=1        don't (re)build the broker (use the existing binary)
#   PYTEST_TIMEOUT=N    per-test timeout in seconds (default 120)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- system deps
apt_pkgs=()
if ! command -v kcat >/dev/null 2>&1; then
    apt_pkgs+=(kcat)
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_pkgs+=(nodejs npm)
fi
if ! command -v python3 >/dev/null 2>&1; then
    apt_pkgs+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_pkgs+=(python3-venv)
fi
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    log "apt-get install ${apt_pkgs[*]}"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}"
fi

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found" >&2; exit 1; }

# ------------------------------------------------------------------- venv
REQ="tests/requirements.txt"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
want_hash="$( (sha256sum "$REQ"; python3 -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_hash" ] \
        && "$VENV/bin/python" -c 'import confluent_kafka, kafka, pytest' >/dev/null 2>&1; then
    log "python venv up to date ($VENV)"
else
    log "creating python venv ($VENV)"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV"; then
        # Debian's python without ensurepip: install python3-venv and retry.
        rm -rf "$VENV"
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq --no-install-recommends python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ"
    echo "$want_hash" > "$STAMP"
fi

# ---------------------------------------------------------------- kafkajs
# The kafkajs client (tests/kafkajs), pinned by package-lock.json.
KJS="tests/kafkajs"
kjs_hash="$(sha256sum "$KJS/package-lock.json" | cut -d' ' -f1)"
if [ -d "$KJS/node_modules/kafkajs" ] && [ "$(cat "$KJS/node_modules/.lock.sha256" 2>/dev/null)" = "$kjs_hash" ]; then
    log "kafkajs up to date ($KJS)"
else
    log "npm ci ($KJS)"
    (cd "$KJS" && npm ci --no-audit --no-fund)
    echo "$kjs_hash" > "$KJS/node_modules/.lock.sha256"
fi

# ------------------------------------------------------------------ build
# Release everywhere: the broker must be a release build, and `cargo test
# --release` then reuses the already-compiled dependencies.
if [ "${SKIP_BUILD:-0}" != "1" ]; then
    log "cargo build --release -p broker -p benches"
    cargo build --release -p broker -p benches
fi
test -x target/release/broker || { echo "target/release/broker missing" >&2; exit 1; }

if [ "${SKIP_CARGO_TEST:-0}" != "1" ]; then
    log "cargo test --workspace --release"
    cargo test --workspace --release
fi

# ------------------------------------------------------------ integration
log "integration tests (real Kafka clients)"
set +e
"$VENV/bin/python" -m pytest tests/integration -v \
    --timeout="${PYTEST_TIMEOUT:-120}" -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
