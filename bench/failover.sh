#!/usr/bin/env bash
# Failover time of replicas on the machine's PostgreSQL: TENANTS simulated tenants (one
# kandji-sim process), two `kandji-collector run` replicas (release) with the default lease
# TTL (or TTL), kill -9 of one once the sources are spread; prints the seconds until the
# survivor holds every source.
#
# Usage: bench/failover.sh [TENANTS] [TTL] [PG_URL]
set -euo pipefail
TENANTS=${1:-10}
TTL=${2:-30s}
PG=${3:-postgres://postgres@127.0.0.1:5432/test}
cd "$(dirname "$0")/.."
cargo build --release -q -p kandji-sim -p kandji-collector
T=$(mktemp -d)
SCHEMA="kc_failover_$$"
cleanup() {
  for p in ${A:-} ${B:-} ${SIM:-}; do kill -9 "$p" 2>/dev/null || true; done
  psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
./target/release/kandji-sim --tenants "$TENANTS" --devices 50 >"$T/tenants" 2>/dev/null &
SIM=$!
for _ in $(seq 100); do [ "$(wc -l <"$T/tenants")" -ge "$TENANTS" ] && break; sleep 0.2; done
{
  printf 'data_dir = "%s/data"\nstore = "%s"\nstore_schema = "%s"\nlease_ttl = "%s"\n' "$T" "$PG" "$SCHEMA" "$TTL"
  i=0
  while read -r name url token; do
    printf '%s' "$token" >"$T/token$i"
    printf '[[sources]]\nname = "%s"\nendpoint = "%s"\ntoken_file = "%s/token%s"\nallow_custom_endpoint = true\n' \
      "$name" "$url" "$T" "$i"
    i=$((i + 1))
  done <"$T/tenants"
} >"$T/c.toml"
K=./target/release/kandji-collector
$K --config "$T/c.toml" --data-dir "$T/a" --log warn run --no-console >/dev/null 2>&1 &
A=$!
$K --config "$T/c.toml" --data-dir "$T/b" --log warn run --no-console >/dev/null 2>&1 &
B=$!
owners() { psql "$PG" -Atc "SELECT count(DISTINCT l.owner) FROM $SCHEMA.leases l JOIN $SCHEMA.replicas r ON r.replica = l.owner WHERE r.expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT" 2>/dev/null || echo 0; }
until [ "$(owners)" = 2 ]; do sleep 0.5; done
sleep 5
KILLED=$(date +%s.%N)
kill -9 "$A"
held_by_one() { psql "$PG" -Atc "SELECT count(DISTINCT owner) = 1 AND count(*) FILTER (WHERE owner IS NULL) = 0 FROM $SCHEMA.leases"; }
until [ "$(held_by_one)" = t ]; do sleep 0.2; done
TAKEN=$(date +%s.%N)
python3 -c "print(f'tenants=$TENANTS ttl=$TTL: every source held by the survivor {$TAKEN - $KILLED:.1f} s after kill -9')"
