#!/usr/bin/env bash
# Full first sync of a simulated fleet (devices, details = 6 Prism categories, apps), side by
# side in one run with its floor: downloading the same seven Prism exports at once and
# discarding the bytes (bench/download_exports.py). The simulator runs as its own process,
# unthrottled, on loopback.
#
# Usage: [APP_RICHNESS=30] bench/full_sync.sh DEVICES [KEEP_DIR]   (builds release binaries
# first; APP_RICHNESS=30 gives about 150 apps per device instead of 100)
# Prints: download wall (before and after the sync), the sync's wall, the ratio, requests
# (the simulator's own count), records, records/s, peak RSS, and the store's size by table.
set -euo pipefail
N=${1:-10000}
KEEP=${2:-}
cd "$(dirname "$0")/.."
. bench/lib.sh
cargo build --release -q -p kandji-sim -p kandji-collector
T=$(mktemp -d)
trap 'kill $SIM 2>/dev/null || true; [ -n "$KEEP" ] || rm -rf "$T"' EXIT
start_sim "$T" ./target/release/kandji-sim --devices "$N" --no-churn --app-richness "${APP_RICHNESS:-0}"
D1=$(python3 bench/download_exports.py "$URL" "$T/token")
/usr/bin/time -v ./target/release/kandji-collector --config "$T/c.toml" --log warn \
  sync --once --streams blueprints,tags,devices,device_details,apps >"$T/out" 2>"$T/time"
D2=$(python3 bench/download_exports.py "$URL" "$T/token")
cat "$T/out"
WALL=$(grep "Elapsed (wall clock)" "$T/time" | awk '{print $NF}')
RSS=$(grep "Maximum resident" "$T/time" | awk '{print $NF}')
CPU=$(grep -E "User time|System time" "$T/time" | awk '{s+=$NF} END{print s}')
REQ=$(curl -s "$URL/__sim/stats" | python3 -c "import sys,json;print(json.load(sys.stdin)['total'])")
REC=$(awk '/ ok /{for(i=1;i<=NF;i++) if($i=="records") s+=$(i+1)} END{print s}' "$T/out")
python3 - "$WALL" "$REC" "$D1" "$D2" "$N" "$REQ" "$RSS" "$CPU" "$T/data/kandji.sqlite3" <<'PY'
import json, sqlite3, sys
wall, rec, d1, d2, n, req, rss, cpu, db = sys.argv[1:]
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
d1, d2 = json.loads(d1), json.loads(d2)
dl = (d1["wall_s"] + d2["wall_s"]) / 2
rec = int(rec)
print(f"devices={n} download_s={d1['wall_s']}/{d2['wall_s']} (csv {d1['bytes']/1e6:.0f} MB) "
      f"sync_s={secs:.1f} ratio={secs/dl:.2f} requests={req} records={rec} "
      f"records_per_s={int(rec/secs)} collector_cpu_s={float(cpu):.1f} peak_rss_kb={rss}")
c = sqlite3.connect(db)
total = c.execute("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size").fetchone()[0]
apps = c.execute("SELECT count(*) FROM app_installs").fetchone()[0]
print(f"store {total/1e6:.0f} MB, {apps} app installs, {total/max(apps,1):.0f} bytes per install (whole store)")
try:
    for name, size in c.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 12"):
        print(f"  {name:36s} {size/1e6:8.1f} MB")
except sqlite3.OperationalError as e:
    print(f"  (no dbstat: {e})")
PY
