#!/usr/bin/env bash
# Steady state: the CPU one collection cycle costs once the first full sync is done (Prism
# deltas, the /devices sweep, events), for a build's collector binary.
#
# Usage: bench/steady_cycle.sh DEVICES [COLLECTOR_BIN] [SIM_BIN]
#   (defaults: this tree's release binaries, built first). Run it with an older build's
#   binaries to compare: the simulator is the same tenant (seed 1, no churn).
# Prints the first sync's wall and CPU, then the CPU (user + system) of three further
# cycles, one after another.
set -euo pipefail
N=${1:-10000}
cd "$(dirname "$0")/.."
. bench/lib.sh
COLLECTOR=${2:-}
SIMBIN=${3:-}
if [ -z "$COLLECTOR" ]; then
  cargo build --release -q -p kandji-sim -p kandji-collector
  COLLECTOR=./target/release/kandji-collector
fi
SIMBIN=${SIMBIN:-./target/release/kandji-sim}
T=$(mktemp -d)
trap 'kill $SIM 2>/dev/null || true; rm -rf "$T"' EXIT
start_sim "$T" "$SIMBIN" --devices "$N" --no-churn
cycle() {
  /usr/bin/time -f "%e %U %S" "$COLLECTOR" --config "$T/c.toml" --log error sync --once \
    >/dev/null 2>"$T/t" || true
  tail -1 "$T/t"
}
read -r w u s < <(cycle)
echo "first sync: wall ${w}s cpu $(python3 -c "print(round($u+$s,2))")s"
for i in 1 2 3; do
  read -r w u s < <(cycle)
  echo "cycle $i: wall ${w}s cpu $(python3 -c "print(round($u+$s,2))")s"
done
