#!/usr/bin/env bash
# The explorer on a collected tenant: collects every stream of a simulated fleet (twice,
# a simulated day apart, so events and changes exist), then times every explorer read
# (tests/explorer_bench.rs) and the devices CSV.
#
# Usage: [APP_RICHNESS=30] bench/explorer.sh DEVICES [KEEP_DIR]
set -euo pipefail
N=${1:-50000}
KEEP=${2:-}
cd "$(dirname "$0")/.."
. bench/lib.sh
cargo build --release -q -p kandji-sim -p kandji-collector
T=${KEEP:-$(mktemp -d)}
mkdir -p "$T"
trap 'kill $SIM 2>/dev/null || true; [ -n "$KEEP" ] || rm -rf "$T"' EXIT
start_sim "$T" ./target/release/kandji-sim --devices "$N" --app-richness "${APP_RICHNESS:-0}" --clock-speed 0
./target/release/kandji-collector --config "$T/c.toml" --log error sync --once >/dev/null || true
curl -s -X POST "$URL/__sim/clock/advance?seconds=86400" >/dev/null
./target/release/kandji-collector --config "$T/c.toml" --log error sync --once >/dev/null || true
KANDJI_BENCH_STORE="$T/data" KANDJI_BENCH_CONFIG="$T/c.toml" cargo test --release -q \
  -p kandji-collector --test explorer_bench -- --ignored --nocapture --test-threads=1 2>&1 | grep -v '^running\|^test \|^$\|test result'
