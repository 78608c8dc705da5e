# Shared by the bench scripts: start a simulated tenant in its own process and write a
# collector config for it. Source it, then call
#   start_sim DIR SIM_BIN [extra kandji-sim flags...]
# which sets SIM (its pid) and URL, writes DIR/token and DIR/c.toml (data in DIR/data).
start_sim() {
  local dir=$1 bin=$2
  shift 2
  "$bin" --port 0 --per-second-limit 1000000 --hourly-limit 100000000 "$@" \
    >"$dir/sim.out" 2>/dev/null &
  SIM=$!
  for _ in $(seq 100); do [ -s "$dir/sim.out" ] && break; sleep 0.1; done
  URL=$(head -1 "$dir/sim.out")
  sed -n 2p "$dir/sim.out" | awk '{print $2}' | tr -d '\n' >"$dir/token"
  cat >"$dir/c.toml" <<TOML
data_dir = "$dir/data"
[[sources]]
name = "bench"
endpoint = "$URL"
token_file = "$dir/token"
allow_custom_endpoint = true
per_second = 50
budget_share = 1.0
TOML
}
