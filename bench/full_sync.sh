#!/usr/bin/env bash
# Full first sync of a simulated fleet: devices, details (6 Prism categories), apps.
# Usage: bench/full_sync.sh DEVICES   (builds release binaries first)
# Prints wall time, requests (the simulator's own count), records, records/s and peak RSS
# of the collector process (the simulator runs as a separate process, unthrottled).
set -euo pipefail
N=${1:-10000}
cd "$(dirname "$0")/.."
cargo build --release -q -p kandji-sim -p kandji-collector
T=$(mktemp -d)
trap 'kill $SIM 2>/dev/null || true; rm -rf "$T"' EXIT
./target/release/kandji-sim --devices "$N" --port 0 --no-churn --per-second-limit 1000000 \
  --hourly-limit 100000000 >"$T/sim.out" 2>/dev/null &
SIM=$!
for _ in $(seq 100); do [ -s "$T/sim.out" ] && break; sleep 0.1; done
URL=$(head -1 "$T/sim.out")
sed -n 2p "$T/sim.out" | awk '{print $2}' | tr -d '\n' >"$T/token"
cat >"$T/c.toml" <<TOML
data_dir = "$T/data"
[[sources]]
name = "bench"
endpoint = "$URL"
token_file = "$T/token"
allow_custom_endpoint = true
per_second = 50
budget_share = 1.0
TOML
/usr/bin/time -v ./target/release/kandji-collector --config "$T/c.toml" --log warn \
  sync --once --streams blueprints,tags,devices,device_details,apps >"$T/out" 2>"$T/time"
cat "$T/out"
WALL=$(grep "Elapsed (wall clock)" "$T/time" | awk '{print $NF}')
RSS=$(grep "Maximum resident" "$T/time" | awk '{print $NF}')
REQ=$(curl -s "$URL/__sim/stats" | python3 -c "import sys,json;print(json.load(sys.stdin)['total'])")
REC=$(awk '/ ok /{for(i=1;i<=NF;i++) if($i=="records") s+=$(i+1)} END{print s}' "$T/out")
SECS=$(python3 -c "p='$WALL'.split(':');print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))")
echo "devices=$N wall=${WALL} requests=$REQ records=$REC records_per_s=$(python3 -c "print(int($REC/$SECS))") peak_rss_kb=$RSS"
