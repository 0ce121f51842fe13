#!/usr/bin/env bash
# Generator accuracy: coregate-load's closed loop against wrk on the same backend, same connections,
# one thread each pinned to the same core, interleaved rounds. Reports each tool's throughput and its
# own CPU time per request (utime+stime from /proc via `time`), and checks the generator's count
# against the backend's (nginx access log lines). Medians are printed.
#
# Usage: benches/e2e/load_vs_wrk.sh [rounds=3] [seconds=5] [connections=64]
# Needs: nginx, wrk, a release build (cargo build --release).
# Layout: backend on BACKEND_CPU (default last core), generators on GEN_CPU (default 0).
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${3:-64}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOAD=${LOAD_BIN:-$ROOT/target/release/coregate-load}
NCPU=$(nproc); BCPU=${BACKEND_CPU:-$((NCPU-1))}; GCPU=${GEN_CPU:-0}
W=$(mktemp -d); trap 'kill $(cat $W/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf $W' EXIT
PORT=19711
cat > $W/backend.conf <<NG
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/err;
events { worker_connections 10000; }
http { access_log $W/access.log; keepalive_requests 10000000;
  server { listen 127.0.0.1:$PORT; location / { default_type application/json;
    return 200 '{"id":42,"name":"ada","email":"ada@example.com","ok":true}'; } } }
NG
taskset -c $BCPU nginx -c $W/backend.conf -p $W >/dev/null 2>&1 &
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT/

lines() { wc -l < $W/access.log; }
cpu() { awk '{print $1+$2}' $W/time; }
for r in $(seq $ROUNDS); do
  before=$(lines)
  /usr/bin/time -o $W/time -f "%U %S" taskset -c $GCPU wrk -t1 -c$CONNS -d${SECS}s $URL > $W/wrk.out
  rps=$(awk '/Requests\/sec/ {print $2}' $W/wrk.out); n=$(awk '/requests in/ {print $1}' $W/wrk.out)
  echo "wrk $rps $(cpu) $n $(( $(lines) - before ))" >> $W/res
  before=$(lines)
  /usr/bin/time -o $W/time -f "%U %S" taskset -c $GCPU "$LOAD" run $URL -t1 -c$CONNS -d${SECS}s --quiet --json $W/cgl.json > /dev/null
  rps=$(grep -o '"throughput_rps": *[0-9.]*' $W/cgl.json | head -1 | cut -d: -f2 | tr -d ' ')
  n=$(grep -o '"requests": *[0-9]*' $W/cgl.json | head -1 | cut -d: -f2 | tr -d ' ')
  echo "coregate-load $rps $(cpu) $n $(( $(lines) - before ))" >> $W/res
done
echo "round results (tool req/s cpu_s counted backend_lines):"; cat $W/res
echo; echo "medians ($CONNS connections, ${SECS}s, $ROUNDS rounds):"
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for t in wrk coregate-load; do
  rps=$(awk -v t=$t '$1==t {print $2}' $W/res | med)
  cpu=$(awk -v t=$t '$1==t {print $3*1e6/($4>0?$4:1)}' $W/res | med)
  printf "%-14s %10.0f req/s  %6.2f CPU us/req\n" $t $rps $cpu
done
