#!/usr/bin/env bash
# Admission accuracy of a rate limit under load at 3x the limit, as an exact figure:
#  1. gateway scope: one coregate with 2 workers, `key = "global"`, rate R/s, burst B;
#  2. cluster scope: two coregate processes (1 worker each) sharing the budget through a real
#     redis-server, each loaded at half the total.
# coregate-load runs open loop at 3R req/s in total over 128 connections for SECS seconds; the
# admitted count (200s) is compared with R*SECS + B (the bucket starts full). Also prints how many
# Redis script calls (EVALSHA/EVAL: leases and returns) the cluster run needed per admitted and
# per offered request. LOAD_FACTOR (default 3) sets the offered load as a multiple of the limit.
#
# Usage: benches/e2e/ratelimit_accuracy.sh [rate=2000] [burst=100] [seconds=10]
set -euo pipefail
R=${1:-2000}; B=${2:-100}; SECS=${3:-10}; F=${LOAD_FACTOR:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/coregate; LOAD=$ROOT/target/release/coregate-load
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf $W' EXIT
"$LOAD" serve --listen 127.0.0.1:19501 --body-size 60 --workers 1 >/dev/null 2>&1 &
redis-server --port 19510 --bind 127.0.0.1 --save "" --appendonly no --dir $W >/dev/null 2>&1 &
for _ in $(seq 50); do redis-cli -p 19510 ping >/dev/null 2>&1 && break; sleep 0.1; done
conf() { # $1 listen port, $2 scope
  cat <<TOML
[server]
listen = "127.0.0.1:$1"
[redis]
addr = "127.0.0.1:19510"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19501"]
[[rate_limit]]
name = "all"
key = "global"
rate = "$R/s"
burst = $B
scope = "$2"
[[route]]
upstream = "be"
rate_limits = ["all"]
TOML
}
start() { # $1 name, $2 port, $3 scope, $4 workers
  conf $2 $3 > $W/$1.toml
  "$BIN" run --config $W/$1.toml --workers $4 --no-pin > $W/$1.log 2>&1 &
  for _ in $(seq 100); do grep -q "ready" $W/$1.log 2>/dev/null && break; sleep 0.1; done
}
admitted() { grep -o '"200": *[0-9]*' $1 | head -1 | cut -d: -f2 | tr -d ' '; }
offered() { grep -o '"requests": *[0-9]*' $1 | head -1 | tr -dc 0-9; }
expected=$((R * SECS + B))
if [ "$F" -lt 1 ]; then echo "LOAD_FACTOR must be >= 1"; exit 2; fi

start gw 19500 gateway 2
"$LOAD" run http://127.0.0.1:19500/ -c 128 --rate $((F * R)) -d ${SECS}s --quiet --json $W/g.json >/dev/null
ok=$(admitted $W/g.json)
echo "gateway scope, 2 workers: admitted $ok of $(offered $W/g.json) offered; expected $expected; error $(awk -v a=$ok -v e=$expected 'BEGIN{printf "%+.2f%%", (a-e)/e*100}')"

redis-cli -p 19510 config resetstat >/dev/null
start c1 19520 cluster 1
start c2 19521 cluster 1
"$LOAD" run http://127.0.0.1:19520/ -c 64 --rate $((F * R / 2)) -d ${SECS}s --quiet --json $W/c1.json >/dev/null &
L1=$!
"$LOAD" run http://127.0.0.1:19521/ -c 64 --rate $((F * R / 2)) -d ${SECS}s --quiet --json $W/c2.json >/dev/null
wait $L1
sleep 0.5
ok=$(( $(admitted $W/c1.json) + $(admitted $W/c2.json) ))
off=$(( $(offered $W/c1.json) + $(offered $W/c2.json) ))
cmds=$(redis-cli -p 19510 info commandstats | grep -E '^cmdstat_(evalsha|eval):' | sed 's/^[^=]*=\([0-9]*\).*/\1/' | paste -sd+ | bc)
echo "cluster scope, 2 processes + redis: admitted $ok of $off offered; expected $expected; error $(awk -v a=$ok -v e=$expected 'BEGIN{printf "%+.2f%%", (a-e)/e*100}')"
echo "redis script calls (leases and returns): $cmds ($(awk -v c=$cmds -v a=$ok 'BEGIN{printf "%.2f", c/a}') per admitted, $(awk -v c=$cmds -v o=$off 'BEGIN{printf "%.3f", c/o}') per offered request)"
