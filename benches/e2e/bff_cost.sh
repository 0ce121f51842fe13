#!/usr/bin/env bash
# The BFF layer's cost, end to end, side by side with nginx in the same run:
#   proxied   GET /open/item          coregate and nginx, plain reverse proxy
#   cached    GET /cached/item        coregate `cache = { ttl = "60s" }` and nginx `proxy_cache`
#                                     (keys_zone in memory, proxy_cache_valid 200 60s): hits
#   agg4      GET /agg/7              coregate aggregate of 4 parts (4 upstream calls, merged)
# CPU is utime+stime of the proxy process from /proc over each run divided by the requests the
# generator completed; latency percentiles are the generator's. One pinned worker per proxy,
# `coregate-load serve` as the backend (60-byte JSON body) and `coregate-load run` on the other
# core(s). Interleaved rounds, medians printed. "client does 4 calls" is 4 x the proxied row (CPU)
# and 4 x its p50 (latency, one call after another on one connection).
#
# Usage: benches/e2e/bff_cost.sh [rounds=3] [seconds=5] [connections=32]
# Needs target/release/{coregate,coregate-load} (cargo build --release -p coregate -p coregate-load);
# nginx for the nginx rows.
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${3:-32}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TDIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TDIR/release/coregate; LOAD=$TDIR/release/coregate-load
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf $W' EXIT
taskset -c $OCPU "$LOAD" serve --listen 127.0.0.1:19501 --body-size 60 --workers 1 >/dev/null 2>&1 &
cat > $W/gw.toml <<TOML
[server]
listen = "127.0.0.1:19500"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19501"]
[[route]]
path_prefix = "/open"
upstream = "be"
[[route]]
path_prefix = "/cached"
upstream = "be"
cache = { ttl = "60s" }
[[route]]
path_template = "/agg/{id}"
aggregate = [
  { key = "profile", upstream = "be", path = "/users/{id}" },
  { key = "orders", upstream = "be", path = "/orders?user={id}" },
  { key = "recs", upstream = "be", path = "/recs/{id}", required = false },
  { key = "settings", upstream = "be", path = "/settings/{id}", required = false },
]
TOML
"$BIN" run --config $W/gw.toml --workers 1 --cpus $PCPU > $W/gw.log 2>&1 &
CG=$!
NG=""
if command -v nginx >/dev/null; then
  mkdir -p $W/ng $W/ng/cache
  cat > $W/ng/nginx.conf <<NGX
daemon off; master_process off; worker_processes 1;
pid $W/ng/nginx.pid; error_log $W/ng/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/ng/body; proxy_temp_path $W/ng/proxy; fastcgi_temp_path $W/ng/fcgi;
  uwsgi_temp_path $W/ng/uwsgi; scgi_temp_path $W/ng/scgi;
  proxy_cache_path $W/ng/cache levels=1:2 keys_zone=bff:10m max_size=64m inactive=10m use_temp_path=off;
  upstream be { server 127.0.0.1:19501; keepalive 64; }
  server {
    listen 127.0.0.1:19502;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /open { proxy_pass http://be; }
    location /cached { proxy_cache bff; proxy_cache_valid 200 60s; proxy_pass http://be; }
  }
}
NGX
  taskset -c $PCPU nginx -c $W/ng/nginx.conf -p $W/ng > $W/ng/out.log 2>&1 &
  NG=$!
fi
for _ in $(seq 100); do grep -q "ready" $W/gw.log 2>/dev/null && break; sleep 0.1; done
sleep 1
# warm both caches
curl -s -o /dev/null http://127.0.0.1:19500/cached/item
[ -n "$NG" ] && curl -s -o /dev/null http://127.0.0.1:19502/cached/item
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
HZ=$(getconf CLK_TCK)
CASES="coregate:open coregate:cached coregate:agg"
[ -n "$NG" ] && CASES="$CASES nginx:open nginx:cached"
for r in $(seq $ROUNDS); do
  for c in $CASES; do
    proxy=${c%%:*}; route=${c##*:}
    case $proxy in coregate) port=19500; pid=$CG ;; nginx) port=19502; pid=$NG ;; esac
    case $route in agg) path=agg/7 ;; *) path=$route/item ;; esac
    t0=$(cpu_ticks $pid)
    taskset -c $OCPU "$LOAD" run "http://127.0.0.1:$port/$path" -c $CONNS -d ${SECS}s --quiet \
      --json $W/out.json > /dev/null
    t1=$(cpu_ticks $pid)
    python3 - "$c" "$((t1-t0))" "$HZ" "$W/out.json" >> $W/res <<'PY'
import json, sys
case, ticks, hz, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
d = json.load(open(path))
n = d["requests"]; ok = d["status"].get("200", 0); l = d["latency_us"]
print(case, ticks / hz * 1e6 / max(n, 1), n, ok, l["p50"], l["p99"])
PY
  done
done
echo "round results (case cpu_us/req requests 200s p50_us p99_us):"; cat $W/res
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo; echo "medians ($CONNS connections, ${SECS}s, $ROUNDS rounds, 1 worker each):"
printf "%-16s %10s %9s %9s\n" case "CPU us/req" "p50 us" "p99 us"
for c in $CASES; do
  cpu=$(awk -v t=$c '$1==t {print $2}' $W/res | med)
  p50=$(awk -v t=$c '$1==t {print $5}' $W/res | med)
  p99=$(awk -v t=$c '$1==t {print $6}' $W/res | med)
  printf "%-16s %10.2f %9s %9s\n" $c $cpu $p50 $p99
done
o=$(awk '$1=="coregate:open" {print $2}' $W/res | med)
p=$(awk '$1=="coregate:open" {print $5}' $W/res | med)
printf "%-16s %10.2f %9s %9s   (4 x coregate:open, calls one after another)\n" \
  "client:4calls" "$(echo "$o" | awk '{print 4*$1}')" "$(echo "$p" | awk '{print 4*$1}')" "-"
