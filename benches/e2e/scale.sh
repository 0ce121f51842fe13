#!/usr/bin/env bash
# Scaling: throughput and CPU per request of coregate vs nginx as the number of workers grows
# (1, 2, 4, 8 by default), each worker pinned to its own core, same nginx backend, same wrk load.
#
# Usage: benches/e2e/scale.sh [workers="1 2 4 8"] [seconds=5] [connections=256] [rounds=1]
# Needs >= 16 cores for the default layout: proxy on cores 0..W-1, backend nginx on BACKEND_CPUS
# (default 8-11, 4 workers), wrk on WRK_CPUS (default 12-15, 4 threads). Override with env vars.
# COREGATE_BIN, NGINX, WRK may point at other binaries; COREGATE_ARGS adds coregate flags (e.g.
# COREGATE_ARGS="--connection-balance kernel" to see SO_REUSEPORT's hash alone).
set -euo pipefail
WORKERS=${1:-"1 2 4 8"}; SECS=${2:-5}; CONNS=${3:-256}; ROUNDS=${4:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${COREGATE_BIN:-$ROOT/target/release/coregate}
NGINX=${NGINX:-nginx}; WRK=${WRK:-wrk}
BACKEND_CPUS=${BACKEND_CPUS:-8-11}; WRK_CPUS=${WRK_CPUS:-12-15}; WRK_THREADS=${WRK_THREADS:-4}
DRIVERS=${DRIVERS:-"uring epoll"}
W=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT
BODY='{"id":42,"name":"ada","email":"ada@example.com","ok":true}'
mkdir -p $W/tmp
common="client_body_temp_path $W/tmp/b; proxy_temp_path $W/tmp/p; fastcgi_temp_path $W/tmp/f; uwsgi_temp_path $W/tmp/u; scgi_temp_path $W/tmp/s;"
cat > $W/backend.conf <<NG
user root; worker_processes 4; daemon off; pid $W/backend.pid; error_log $W/backend.err;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 10000000; $common
  server { listen 127.0.0.1:19101 reuseport; location / { default_type application/json; return 200 '$BODY'; } } }
NG
taskset -c $BACKEND_CPUS $NGINX -e $W/backend.err -p $W -c $W/backend.conf & PIDS+=($!)
sleep 0.5
cpu_of() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
run_load() { # name workers port pids...
  local name=$1 w=$2 port=$3; shift 3
  local t0 t1 out; t0=$(cpu_of "$@")
  out=$(taskset -c $WRK_CPUS $WRK -t$WRK_THREADS -c$CONNS -d${SECS}s --latency http://127.0.0.1:$port/api/users/42)
  t1=$(cpu_of "$@")
  local reqs rps p50 p99 us hz; hz=$(getconf CLK_TCK)
  reqs=$(echo "$out" | awk '/requests in/{print $1}'); rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p50=$(echo "$out" | awk '$1=="50%"{print $2}'); p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  us=$(awk -v d=$((t1-t0)) -v n=$reqs -v hz=$hz 'BEGIN{printf "%.2f", d/hz*1e6/n}')
  echo "$w $name $rps $us $p50 $p99" | tee -a $W/results
}
for r in $(seq 1 $ROUNDS); do
for w in $WORKERS; do
  cpus="0-$((w-1))"
  for d in $DRIVERS; do
    cat > $W/cg.toml <<TOML
[server]
listen = "127.0.0.1:18080"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19101"]
max_idle_per_endpoint = 1024
[[route]]
path_prefix = "/"
upstream = "be"
TOML
    "$BIN" run --config $W/cg.toml --workers $w --cpus $cpus --driver $d ${COREGATE_ARGS:-} 2>$W/cg.err & CG=$!
    sleep 0.7
    grep -q "driver=" $W/cg.err || { echo "coregate did not start:"; cat $W/cg.err; exit 1; }
    run_load "coregate-$d" $w 18080 $CG
    kill $CG; wait $CG 2>/dev/null || true
  done
  mask=""; for i in $(seq 0 $((w-1))); do m=$(printf '%016d' 0); mask="$mask ${m:0:$((15-i))}1${m:$((16-i))}"; done
  cat > $W/ngx.conf <<NG
user root; worker_processes $w; worker_cpu_affinity$mask; daemon off; pid $W/ngx.pid; error_log $W/ngx.err;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 10000000; $common
  upstream be { server 127.0.0.1:19101; keepalive 1024; keepalive_requests 10000000; }
  server { listen 127.0.0.1:18081 reuseport;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NG
  $NGINX -e $W/ngx.err -p $W -c $W/ngx.conf & NG=$!
  sleep 0.7
  run_load nginx $w 18081 $(pgrep -P $NG)
  kill $NG; wait $NG 2>/dev/null || true
done
done
echo; echo "medians ($CONNS connections, ${SECS}s, wrk $WRK_THREADS threads, rounds=$ROUNDS):"
python3 - $W/results <<'PY' 2>/dev/null || sort $W/results
import sys, statistics as st
rows=[l.split() for l in open(sys.argv[1])]
def ms(v): return float(v[:-2])/1000 if v.endswith('us') else float(v[:-2]) if v.endswith('ms') else float(v[:-1])*1000
agg={}
for w,n,rps,us,p50,p99 in rows: agg.setdefault((int(w),n),[]).append((float(rps),float(us),ms(p50),ms(p99)))
print(f"{'workers':>7} {'proxy':16} {'req/s':>10} {'cpu µs/req':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs nginx rps':>12}")
for (w,n),v in sorted(agg.items()):
    m=[st.median(x) for x in zip(*v)]; ng=agg.get((w,'nginx'))
    ratio=m[0]/st.median([x[0] for x in ng]) if ng else float('nan')
    print(f"{w:>7} {n:16} {m[0]:10.0f} {m[1]:10.2f} {m[2]:8.3f} {m[3]:8.3f} {ratio:12.2f}")
PY
