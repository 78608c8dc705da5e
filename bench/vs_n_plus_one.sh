#!/usr/bin/env bash
# The collector's full first sync (devices, details, apps) beside a plain N+1 client
# (bench/n_plus_one.py) on the same simulated tenant, in one run, at several fleet sizes.
#
# Usage: bench/vs_n_plus_one.sh [LATENCY_MS] [DEVICES ...]   (default: 0 ms, 500 2000 10000)
# LATENCY_MS is added by the simulator to every API response (150 for a far tenant).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
LAT=${1:-0}
shift || true
SIZES=${*:-500 2000 10000}
cargo build --release -q -p kandji-sim -p kandji-collector
for N in $SIZES; do
  T=$(mktemp -d)
  start_sim "$T" ./target/release/kandji-sim --devices "$N" --no-churn --latency-ms "$LAT"
  NP1=$(python3 bench/n_plus_one.py "$URL" "$T/token")
  S0=$(date +%s.%N)
  ./target/release/kandji-collector --config "$T/c.toml" --log warn sync --once \
    --streams blueprints,tags,devices,device_details,apps >/dev/null
  S1=$(date +%s.%N)
  python3 - "$N" "$LAT" "$NP1" "$S0" "$S1" <<'PY'
import json, sys
n, lat, np1, s0, s1 = sys.argv[1:]
np1 = json.loads(np1)
sync = float(s1) - float(s0)
print(f"devices={n} latency_ms={lat} n_plus_one_s={np1['wall_s']} ({np1['requests']} requests) "
      f"sync_s={sync:.2f} speedup={np1['wall_s']/sync:.1f}x")
PY
  kill $SIM 2>/dev/null || true
  rm -rf "$T"
done
