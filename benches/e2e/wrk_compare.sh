#!/usr/bin/env bash
# Side-by-side: coregate vs nginx as a reverse proxy, one worker each, pinned to the same core, in
# front of the same nginx backend, driven by wrk. Reports throughput, latency percentiles and the
# proxy's own CPU time per request (utime+stime of all its threads from /proc), the stable figure on a
# noisy machine. Runs are interleaved (A B A B ...) and medians are printed.
#
# Usage: benches/e2e/wrk_compare.sh [rounds=3] [seconds=10] [connections=64] [driver=uring]
# Needs: nginx, wrk (apt-get install nginx-light wrk), a release build (cargo build --release).
# Layout on a 2-core machine: proxy on the last core, backend + wrk on the other one.
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-10}; CONNS=${3:-64}; DRIVER=${4:-uring}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${COREGATE_BIN:-$ROOT/target/release/coregate}
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
W=$(mktemp -d); trap 'kill $(cat $W/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf $W' EXIT
BODY='{"id":42,"name":"ada","email":"ada@example.com","ok":true}'   # ~60 B JSON

cat > $W/backend.conf <<NG
worker_processes 1; daemon off; pid $W/backend.pid; error_log $W/backend.err;
events { worker_connections 10000; }
http { access_log off; keepalive_requests 10000000;
  server { listen 127.0.0.1:19101; location / { default_type application/json; return 200 '$BODY'; } } }
NG
cat > $W/nginx-proxy.conf <<NG
worker_processes 1; worker_cpu_affinity $(printf '1%0*d' $PCPU 0); daemon off; pid $W/nginx.pid; error_log $W/nginx.err;
events { worker_connections 10000; }
http { access_log off; keepalive_requests 10000000;
  upstream be { server 127.0.0.1:19101; keepalive 256; keepalive_requests 10000000; }
  server { listen 127.0.0.1:18081 reuseport;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NG
cat > $W/coregate.toml <<TOML
[server]
listen = "127.0.0.1:18080"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19101"]
max_idle_per_endpoint = 256
[[route]]
path_prefix = "/"
upstream = "be"
TOML

taskset -c $OCPU nginx -p $W -c $W/backend.conf & echo $! > $W/backend-launch.pid
sleep 0.5
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run_one() { # name port pid
  local name=$1 port=$2 pid=$3 t0 t1 out
  t0=$(cpu_ticks $pid)
  out=$(taskset -c $OCPU wrk -t1 -c$CONNS -d${SECS}s --latency http://127.0.0.1:$port/api/users/42)
  t1=$(cpu_ticks $pid)
  local reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  local p50=$(echo "$out" | awk '$1=="50%"{print $2}') p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  local hz=$(getconf CLK_TCK)
  local us=$(awk -v d=$((t1-t0)) -v n=$reqs -v hz=$hz 'BEGIN{printf "%.2f", d/hz*1e6/n}')
  echo "$name $rps $us $p50 $p99" >> $W/results
  printf '%-10s rps=%-10s cpu/req=%sus p50=%s p99=%s\n' $name $rps $us $p50 $p99
}
start_nginx() { nginx -p $W -c $W/nginx-proxy.conf & sleep 0.5; NGPID=$(pgrep -f "nginx: worker process" -n); }
taskset -c $PCPU "$BIN" run --config $W/coregate.toml --workers 1 --cpus $PCPU --driver $DRIVER 2>$W/cg.err & CGPID=$!; echo $CGPID > $W/cg.pid
nginx -p $W -c $W/nginx-proxy.conf & echo $! > $W/nginx-launch.pid
sleep 1
NGPID=$(pgrep -P $(cat $W/nginx.pid) | head -1)
for i in $(seq 1 $ROUNDS); do
  run_one coregate 18080 $CGPID
  run_one nginx 18081 $NGPID
done
echo; echo "medians over $ROUNDS rounds ($CONNS connections, ${SECS}s, driver=$DRIVER):"
python3 - $W/results <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
def ms(v):
    return float(v[:-2])/1000 if v.endswith('us') else float(v[:-2]) if v.endswith('ms') else float(v[:-1])*1000
agg = {}
for n, rps, us, p50, p99 in rows:
    a = agg.setdefault(n, [[], [], [], []])
    a[0].append(float(rps)); a[1].append(float(us)); a[2].append(ms(p50)); a[3].append(ms(p99))
med = {n: [st.median(x) for x in a] for n, a in agg.items()}
print(f"{'proxy':10} {'req/s':>10} {'cpu µs/req':>11} {'p50 ms':>8} {'p99 ms':>8}")
for n, (rps, us, p50, p99) in med.items():
    print(f"{n:10} {rps:10.0f} {us:11.2f} {p50:8.3f} {p99:8.3f}")
if 'nginx' in med and 'coregate' in med:
    c, g = med['coregate'], med['nginx']
    print(f"coregate/nginx: throughput {c[0]/g[0]:.2f}x, cpu per request {c[1]/g[1]:.2f}x, p99 {c[3]/g[3]:.2f}x")
PY
