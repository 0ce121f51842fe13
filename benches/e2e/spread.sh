#!/usr/bin/env bash
# How evenly SO_REUSEPORT spreads work over coregate's workers: W workers (default 2, on all the
# cores), a `coregate-load serve` backend and generator sharing the machine, two loads:
#   keepalive  C long-lived connections (a few connections decide the whole run's spread)
#   close      every request on a new connection (`Connection: close`: many short connections)
# For each load it prints, per worker, the connections it accepted (from /metrics,
# coregate_worker_accepted_connections_total) and the CPU its thread used (utime+stime from
# /proc/PID/task/TID/stat), then max/mean of each: 1.00 is a perfect spread.
#
# Usage: [BALANCE=least-loaded|kernel] benches/e2e/spread.sh [workers=2] [seconds=5] [connections=64] [rounds=3]
# (BALANCE is coregate's --connection-balance; run both to compare.)
# Needs target/release/{coregate,coregate-load}.
set -euo pipefail
WORKERS=${1:-2}; SECS=${2:-5}; CONNS=${3:-64}; ROUNDS=${4:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TDIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TDIR/release/coregate; LOAD=$TDIR/release/coregate-load
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf $W' EXIT
"$LOAD" serve --listen 127.0.0.1:19601 --body-size 60 --workers 1 >/dev/null 2>&1 &
cat > $W/gw.toml <<TOML
[server]
listen = "127.0.0.1:19600"
[admin]
listen = "127.0.0.1:19609"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19601"]
[[route]]
path_prefix = "/"
upstream = "be"
TOML
"$BIN" run --config $W/gw.toml --workers $WORKERS --connection-balance ${BALANCE:-least-loaded} > $W/gw.log 2>&1 &
CG=$!
for _ in $(seq 50); do grep -q "ready" $W/gw.log 2>/dev/null && break; sleep 0.1; done
grep -q ready $W/gw.log || { cat $W/gw.log; exit 1; }

# per worker: "accepted cpu_ticks", one line each, in worker order (accepted: connections the
# worker served, handed-off ones counted at the worker that took them)
snapshot() {
  local m; m=$(curl -s http://127.0.0.1:19609/metrics)
  for i in $(seq 0 $((WORKERS-1))); do
    local acc tid ticks
    acc=$(echo "$m" | awk -v w="worker=\"$i\"" '$1 ~ /^coregate_worker_accepted_connections_total/ && index($1, w) {print $2}')
    tid=$(grep -l "^coregate-w$i\$" /proc/$CG/task/*/comm | head -1 | cut -d/ -f5)
    ticks=$(awk '{print $14+$15}' /proc/$CG/task/$tid/stat)
    echo "${acc:-0} $ticks"
  done
}
measure() { # label, then generator flags
  local label=$1; shift
  local a b
  a=$(snapshot)
  "$LOAD" run http://127.0.0.1:19600/x -c $CONNS -d ${SECS}s "$@" > /dev/null 2>&1
  b=$(snapshot)
  paste <(echo "$a") <(echo "$b") | awk -v l="$label" -v hz="$(getconf CLK_TCK)" '
    { acc[NR]=$3-$1; cpu[NR]=$4-$2; sa+=acc[NR]; sc+=cpu[NR] }
    END { ma=0; mc=0; line=l ":";
      for (i=1;i<=NR;i++) { if (acc[i]>ma) ma=acc[i]; if (cpu[i]>mc) mc=cpu[i];
        line=line sprintf(" w%d accepted=%d cpu=%.2fs", i-1, acc[i], cpu[i]/hz) }
      printf "%s | max/mean accepted %.2f cpu %.2f\n", line, ma/(sa/NR), mc/(sc/NR) }'
}
for r in $(seq 1 $ROUNDS); do
  echo "round $r"
  measure keepalive
  measure close -H "Connection: close"
done
