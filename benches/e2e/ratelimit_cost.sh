#!/usr/bin/env bash
# CPU per request of rate-limited routes against the same route unlimited, measured on the gateway
# itself (utime+stime of its threads from /proc over each run, divided by the requests the generator
# completed). One pinned gateway worker; `coregate-load serve` as the backend and `coregate-load run`
# on the other core(s). Interleaved rounds, medians printed. Every limited request is admitted (the
# limits are far above the load), so the numbers are the cost of the check and its headers.
#
# Routes: /open (no limit), /ip (token bucket keyed by client_ip), /both (client_ip bucket plus a
# global request quota: two policies, two header items).
#
# Usage: benches/e2e/ratelimit_cost.sh [rounds=3] [seconds=5] [connections=64]
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${3:-64}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/coregate; LOAD=$ROOT/target/release/coregate-load
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf $W' EXIT
taskset -c $OCPU "$LOAD" serve --listen 127.0.0.1:19401 --body-size 60 --workers 1 >/dev/null 2>&1 &
cat > $W/gw.toml <<TOML
[server]
listen = "127.0.0.1:19400"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19401"]
[[rate_limit]]
name = "per_ip"
key = "client_ip"
rate = "100000000/s"
burst = 100000000
[[quota]]
name = "daily"
key = "global"
limit = "1000000000000/day"
[[route]]
path_prefix = "/open"
upstream = "be"
[[route]]
path_prefix = "/ip"
upstream = "be"
rate_limits = ["per_ip"]
[[route]]
path_prefix = "/both"
upstream = "be"
rate_limits = ["per_ip"]
quotas = ["daily"]
TOML
"$BIN" run --config $W/gw.toml --workers 1 --cpus $PCPU > $W/gw.log 2>&1 &
GW=$!
for _ in $(seq 100); do grep -q "ready" $W/gw.log 2>/dev/null && break; sleep 0.1; done
cpu_ticks() { awk '{print $14+$15}' /proc/$GW/stat; }
HZ=$(getconf CLK_TCK)
ROUTES="open ip both"
for r in $(seq $ROUNDS); do
  for name in $ROUTES; do
    t0=$(cpu_ticks)
    taskset -c $OCPU "$LOAD" run http://127.0.0.1:19400/$name/x -c $CONNS -d ${SECS}s --quiet --json $W/out.json > /dev/null
    t1=$(cpu_ticks)
    n=$(grep -o '"requests": *[0-9]*' $W/out.json | head -1 | tr -dc 0-9)
    rps=$(grep -o '"throughput_rps": *[0-9.]*' $W/out.json | head -1 | cut -d: -f2 | tr -d ' ')
    p99=$(grep -o '"p99": *[0-9.]*' $W/out.json | head -1 | cut -d: -f2 | tr -d ' ')
    echo "$name $rps $(( (t1-t0) )) $n ${p99:-0}" >> $W/res
  done
done
echo "round results (route req/s cpu_ticks requests p99_us):"; cat $W/res
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo; echo "medians ($CONNS connections, ${SECS}s, $ROUNDS rounds, 1 worker):"
base=$(awk -v hz=$HZ '$1=="open" {print $3/hz*1e6/$4}' $W/res | med)
for name in $ROUTES; do
  rps=$(awk -v t=$name '$1==t {print $2}' $W/res | med)
  cpu=$(awk -v t=$name -v hz=$HZ '$1==t {print $3/hz*1e6/$4}' $W/res | med)
  p99=$(awk -v t=$name '$1==t {print $5}' $W/res | med)
  printf "%-5s %9.0f req/s  %6.2f CPU us/req  %5.3fx open  p99 %s us\n" $name $rps $cpu $(echo "$cpu $base" | awk '{print $1/$2}') $p99
done
