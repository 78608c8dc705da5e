#!/usr/bin/env bash
# First sync of one simulated fleet into each store, side by side in one run: the embedded
# SQLite store and the PostgreSQL store (the machine's server, a fresh schema each time),
# alternating SQLite, PostgreSQL, SQLite, PostgreSQL against the same simulator process.
# The streams are the ones that scale with the fleet (devices, the six Prism detail
# categories, apps).
#
# Usage: bench/pg_vs_sqlite.sh DEVICES [PG_URL]   (builds release binaries first)
# Prints per run: wall, collector CPU, peak RSS, records, records/s, the store's size; then
# the PostgreSQL / SQLite ratio of the walls.
set -euo pipefail
N=${1:-10000}
PG=${2:-postgres://postgres@127.0.0.1:5432/test}
cd "$(dirname "$0")/.."
. bench/lib.sh
cargo build --release -q -p kandji-sim -p kandji-collector
T=$(mktemp -d)
SCHEMAS=()
cleanup() {
  kill "$SIM" 2>/dev/null || true
  for s in "${SCHEMAS[@]}"; do psql "$PG" -qc "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
  rm -rf "$T"
}
trap cleanup EXIT
start_sim "$T" ./target/release/kandji-sim --devices "$N" --no-churn --app-richness "${APP_RICHNESS:-0}"
STREAMS=blueprints,tags,devices,device_details,apps
run() { # KIND ROUND
  local kind=$1 round=$2 cfg="$T/$1$2.toml"
  sed "s#^data_dir = .*#data_dir = \"$T/data-$1$2\"#" "$T/c.toml" >"$cfg"
  if [ "$kind" = pg ]; then
    local schema="kc_bench_$$_$round"
    SCHEMAS+=("$schema")
    printf 'store = "%s"\nstore_schema = "%s"\n' "$PG" "$schema" | cat - "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
  fi
  /usr/bin/time -v ./target/release/kandji-collector --config "$cfg" --log warn \
    sync --once --streams "$STREAMS" >"$T/out-$kind$round" 2>"$T/time-$kind$round"
  local wall rss cpu rec size
  wall=$(grep "Elapsed (wall clock)" "$T/time-$kind$round" | awk '{print $NF}')
  rss=$(grep "Maximum resident" "$T/time-$kind$round" | awk '{print $NF}')
  cpu=$(grep -E "User time|System time" "$T/time-$kind$round" | awk '{s+=$NF} END{print s}')
  rec=$(awk '/ ok /{for(i=1;i<=NF;i++) if($i=="records") s+=$(i+1)} END{print s}' "$T/out-$kind$round")
  if [ "$kind" = pg ]; then
    size=$(psql "$PG" -Atc "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'kc_bench_$$_$round' AND c.relkind IN ('r', 'm')")
  else
    size=$(stat -c %s "$T/data-$kind$round/kandji.sqlite3")
  fi
  python3 - "$kind" "$wall" "$cpu" "$rss" "$rec" "$size" <<'PY'
import sys
kind, wall, cpu, rss, rec, size = sys.argv[1:]
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
rec = int(rec or 0)
print(f"{kind:6s} wall_s={secs:.1f} collector_cpu_s={float(cpu):.1f} peak_rss_mb={int(rss)//1024} "
      f"records={rec} records_per_s={int(rec/secs)} store_mb={int(size or 0)/1e6:.0f}")
PY
}
echo "devices=$N (one simulator process, release builds, loopback)"
for round in 1 2; do
  run sqlite "$round" | tee -a "$T/results"
  run pg "$round" | tee -a "$T/results"
done
python3 - "$T/results" <<'PY'
import re, sys
rows = [l.split() for l in open(sys.argv[1])]
wall = {}
for r in rows:
    wall.setdefault(r[0], []).append(float(r[1].split("=")[1]))
for k in wall:
    print(f"{k}: mean wall {sum(wall[k])/len(wall[k]):.1f} s")
print(f"ratio postgres/sqlite: {sum(wall['pg'])/sum(wall['sqlite']):.2f}")
PY
