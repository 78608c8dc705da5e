#!/usr/bin/env bash
# One replica (`kandji-collector run --no-console`, release) on the machine's PostgreSQL,
# collecting TENANTS simulated tenants of DEVICES devices each, served by one kandji-sim
# process (`--tenants`, live churn at its default rates, real-time clock). Measures the first
# sync of every tenant, then a steady-state window: the replica's CPU (from /proc), its
# resident memory, the requests each tenant saw (the simulator's own counts), and what
# PostgreSQL wrote (WAL bytes) and holds.
#
# Usage: bench/replicas_scale.sh TENANTS DEVICES [WINDOW_S] [PG_URL]
set -euo pipefail
TENANTS=${1:-100}
DEVICES=${2:-1000}
WINDOW=${3:-600}
PG=${4:-postgres://postgres@127.0.0.1:5432/test}
cd "$(dirname "$0")/.."
cargo build --release -q -p kandji-sim -p kandji-collector
T=$(mktemp -d)
SCHEMA="kc_scale_$$"
cleanup() {
  [ -n "${REP:-}" ] && kill "$REP" 2>/dev/null || true
  [ -n "${SIM:-}" ] && kill "$SIM" 2>/dev/null || true
  psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
./target/release/kandji-sim --tenants "$TENANTS" --devices "$DEVICES" >"$T/tenants" 2>"$T/sim.log" &
SIM=$!
for _ in $(seq 600); do [ "$(wc -l <"$T/tenants")" -ge "$TENANTS" ] && break; sleep 0.5; done
{
  printf 'data_dir = "%s/data"\nstore = "%s"\nstore_schema = "%s"\nstore_pool_size = 8\n' "$T" "$PG" "$SCHEMA"
  i=0
  while read -r name url token; do
    printf '%s' "$token" >"$T/token$i"
    printf '[[sources]]\nname = "%s"\nendpoint = "%s"\ntoken_file = "%s/token%s"\nallow_custom_endpoint = true\n' \
      "$name" "$url" "$T" "$i"
    i=$((i + 1))
  done <"$T/tenants"
} >"$T/c.toml"
STREAMS=$(./target/release/kandji-collector --config "$T/c.toml" validate | awk -F'· ' '/stream\(s\)/{print $3}' | head -1 | awk '{print $1}')
START=$(date +%s)
./target/release/kandji-collector --config "$T/c.toml" --log warn run --no-console >"$T/out" 2>"$T/err" &
REP=$!
WANT=$((TENANTS * STREAMS))
while :; do
  done_n=$(psql "$PG" -Atc "SELECT count(*) FROM $SCHEMA.stream_status WHERE last_success_at IS NOT NULL" 2>/dev/null || true)
  done_n=${done_n:-0}
  [ "${done_n:-0}" -ge "$WANT" ] && break
  kill -0 "$REP" || { echo "the replica died"; cat "$T/err" | tail -20; exit 1; }
  sleep 5
done
FIRST=$(( $(date +%s) - START ))
echo "tenants=$TENANTS devices=$DEVICES: first sync of every stream of every tenant in ${FIRST} s"
cpu() { awk '{print $14 + $15}' "/proc/$REP/stat"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$REP/status"; }
reqs() { while read -r _ url _; do curl -s "$url/__sim/stats" | python3 -c "import sys,json;print(json.load(sys.stdin)['total'])"; done <"$T/tenants" | awk '{s+=$1} END{print s}'; }
lsn() { psql "$PG" -Atc "SELECT pg_current_wal_lsn()"; }
TICK=$(getconf CLK_TCK)
C0=$(cpu); R0=$(reqs); L0=$(lsn); W0=$(date +%s)
MAXRSS=0; SUMRSS=0; N=0
while [ $(( $(date +%s) - W0 )) -lt "$WINDOW" ]; do
  r=$(rss); SUMRSS=$((SUMRSS + r)); N=$((N + 1)); [ "$r" -gt "$MAXRSS" ] && MAXRSS=$r
  sleep 10
done
C1=$(cpu); R1=$(reqs); L1=$(lsn); W1=$(date +%s)
WAL=$(psql "$PG" -Atc "SELECT pg_wal_lsn_diff('$L1', '$L0')")
SIZE=$(psql "$PG" -Atc "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$SCHEMA' AND c.relkind IN ('r', 'm')")
CONNS=$(psql "$PG" -Atc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kandji-collector'")
python3 - "$TENANTS" "$DEVICES" "$((W1 - W0))" "$(( (C1 - C0) ))" "$TICK" "$MAXRSS" "$((SUMRSS / N))" "$((R1 - R0))" "$WAL" "$SIZE" "$CONNS" <<'PY'
import sys
t, d, w, ticks, hz, maxrss, meanrss, reqs, wal, size, conns = map(int, sys.argv[1:])
cpu_s = ticks / hz
print(f"steady window {w} s: replica CPU {cpu_s:.1f} s = {100*cpu_s/w:.1f} % of one core "
      f"({100*cpu_s/w/t:.3f} % per tenant)")
print(f"resident memory: mean {meanrss/1024:.0f} MB, max {maxrss/1024:.0f} MB "
      f"({meanrss/1024/t:.2f} MB per tenant)")
print(f"requests: {reqs} in {w} s = {reqs*3600/w/t:.0f} per tenant per hour")
print(f"PostgreSQL: WAL {wal/1e6:.1f} MB in {w} s = {wal*3600/w/t/1e6:.1f} MB per tenant per hour; "
      f"schema {size/1e6:.0f} MB = {size/t/1e6:.1f} MB per tenant of {d} devices; "
      f"{conns} connection(s) open")
PY
