#!/usr/bin/env bash
# What observability costs a proxied request, measured on the gateway itself (utime+stime of its
# threads from /proc over each run, divided by the requests the generator completed), one pinned
# gateway worker, `coregate-load serve` as the backend and `coregate-load run` on the other core(s).
# Interleaved rounds, medians printed:
#   off   metrics + tracing (always on), access log off
#   log   the same with the access log to a file (JSON lines, per-core buffer, writer thread)
#   base  optional: BASE_BIN=/path/to/an/older/coregate (e.g. the commit before metrics/tracing)
#   nginx / nginx+log  when nginx is installed: the same proxy in nginx (1 worker, same CPU), access
#         log off, and a JSON access log to a file (escape=json, buffer=64k flush=100ms): what the
#         same feature costs there, in the same run
# Then one more run against `off` while /stats is scraped 4 times a second (curl pinned with the
# generator): the worker stall each scrape caused (scrape_worker_us, as the gateway measures it)
# and the p99 next to the unscraped runs.
#
# Usage: benches/e2e/observability_cost.sh [rounds=3] [seconds=5] [connections=64]
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${3:-64}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/coregate; LOAD=$ROOT/target/release/coregate-load
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
W=$(mktemp -d)
trap 'for f in $W/*/nginx.pid; do [ -s $f ] && kill $(cat $f) 2>/dev/null; done; kill $(jobs -p) 2>/dev/null || true; rm -rf $W' EXIT
taskset -c $OCPU "$LOAD" serve --listen 127.0.0.1:19411 --body-size 60 --workers 1 >/dev/null 2>&1 &
conf() { # $1 listen port, $2 admin port, $3 extra
  printf '[server]\nlisten = "127.0.0.1:%s"\n[admin]\nlisten = "127.0.0.1:%s"\n%b\n[[upstream]]\nname = "be"\nendpoints = ["127.0.0.1:19411"]\n[[route]]\nname = "all"\npath_prefix = "/"\nupstream = "be"\n' "$1" "$2" "$3"
}
conf 19410 19419 "" > $W/off.toml
conf 19420 19429 '[access_log]\nsink = "file"\npath = "'$W'/access.log"\n' > $W/log.toml
start() { # $1 name, $2 binary, $3 config
  "$2" run --config $3 --workers 1 --cpus $PCPU > $W/$1.log 2>&1 &
  echo $! > $W/$1.pid
  for _ in $(seq 100); do grep -q "ready" $W/$1.log 2>/dev/null && break; sleep 0.1; done
}
start off "$BIN" $W/off.toml
start log "$BIN" $W/log.toml
NAMES="off log"; PORT_off=19410; PORT_log=19420
if [ -n "${BASE_BIN:-}" ]; then
  conf 19430 19439 "" > $W/base.toml; start base "$BASE_BIN" $W/base.toml
  NAMES="base off log"; PORT_base=19430
fi
if command -v nginx > /dev/null; then
  for v in "ngoff 19440 off" "nglog 19450 $W/nginx-access.log j buffer=64k flush=100ms"; do
    set -- $v; name=$1; port=$2; shift 2
    mkdir -p $W/$name
    cat > $W/$name/nginx.conf <<NG
worker_processes 1; worker_cpu_affinity $(printf '1%0*d' $PCPU 0); daemon off; pid $W/$name/nginx.pid; error_log $W/$name/err;
events { worker_connections 10000; }
http { keepalive_requests 10000000;
  log_format j escape=json '{"time":"\$time_iso8601","request_id":"\$request_id","client_ip":"\$remote_addr","method":"\$request_method","path":"\$request_uri","upstream":"\$upstream_addr","status":\$status,"bytes_in":\$request_length,"bytes_out":\$body_bytes_sent,"duration_s":\$request_time,"upstream_s":"\$upstream_response_time"}';
  access_log $*;
  upstream be { server 127.0.0.1:19411; keepalive 256; keepalive_requests 10000000; }
  server { listen 127.0.0.1:$port reuseport;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NG
    nginx -p $W/$name -c $W/$name/nginx.conf > /dev/null 2>&1 &
    for _ in $(seq 50); do [ -s $W/$name/nginx.pid ] && pgrep -P $(cat $W/$name/nginx.pid) > /dev/null && break; sleep 0.1; done
    pgrep -P $(cat $W/$name/nginx.pid) | head -1 > $W/$name.pid
    eval PORT_$name=$port
  done
  NAMES="$NAMES ngoff nglog"
fi
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' /proc/$(cat $W/$1.pid)/stat; }
run() { # $1 name -> appends "name rps ticks requests p99"
  local port; port=PORT_$1; t0=$(ticks $1)
  taskset -c $OCPU "$LOAD" run http://127.0.0.1:${!port}/x -c $CONNS -d ${SECS}s --quiet --json $W/out.json > /dev/null
  t1=$(ticks $1)
  n=$(grep -o '"requests": *[0-9]*' $W/out.json | head -1 | tr -dc 0-9)
  rps=$(grep -o '"throughput_rps": *[0-9.]*' $W/out.json | head -1 | cut -d: -f2 | tr -d ' ')
  p99=$(grep -o '"p99": *[0-9.]*' $W/out.json | head -1 | cut -d: -f2 | tr -d ' ')
  echo "$2 $rps $((t1-t0)) $n ${p99:-0}" >> $W/res
}
for r in $(seq $ROUNDS); do for name in $NAMES; do run $name $name; done; done
# scraped run: /stats 4x per second during the load
cat > $W/scrape.sh <<SH
while true; do
  curl -s 127.0.0.1:19419/stats | tr -d ' \\n' | grep -o '"scrape_worker_us":\\[[0-9,]*\\]' | tr -dc '0-9,\\n' | tr ',' '\\n' >> $W/stall
  echo >> $W/stall; sleep 0.25
done
SH
taskset -c $OCPU bash $W/scrape.sh &
SCRAPER=$!
run off scraped
kill $SCRAPER 2>/dev/null || true
echo "round results (variant req/s cpu_ticks requests p99_us):"; cat $W/res
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo; echo "medians ($CONNS connections, ${SECS}s, $ROUNDS rounds, 1 worker):"
base=$(awk -v hz=$HZ '$1=="off" {print $3/hz*1e6/$4}' $W/res | med)
for name in $NAMES scraped; do
  rps=$(awk -v t=$name '$1==t {print $2}' $W/res | med)
  cpu=$(awk -v t=$name -v hz=$HZ '$1==t {print $3/hz*1e6/$4}' $W/res | med)
  p99=$(awk -v t=$name '$1==t {print $5}' $W/res | med)
  printf "%-8s %9.0f req/s  %6.2f CPU us/req  %5.3fx off  p99 %s us\n" $name $rps $cpu $(echo "$cpu $base" | awk '{print $1/$2}') $p99
done
grep -v '^$' $W/stall | sort -g > $W/stall.sorted || true
if [ -s $W/stall.sorted ]; then
  echo; echo "scrape stall per worker over $(wc -l < $W/stall.sorted) scrapes: median $(awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}' $W/stall.sorted) us, max $(tail -1 $W/stall.sorted) us"
fi
echo "access log: $(wc -l < $W/access.log) lines, $(du -h $W/access.log | cut -f1)"
if [ -f $W/nginx-access.log ]; then
  ng=$(awk '$1=="ngoff"' $W/res | awk -v hz=$HZ '{print $3/hz*1e6/$4}' | med)
  ngl=$(awk '$1=="nglog"' $W/res | awk -v hz=$HZ '{print $3/hz*1e6/$4}' | med)
  echo "logging cost: coregate $(echo "$(awk -v hz=$HZ '$1=="log" {print $3/hz*1e6/$4}' $W/res | med) $base" | awk '{printf "%.3fx", $1/$2}'), nginx $(echo "$ngl $ng" | awk '{printf "%.3fx", $1/$2}') (nginx log: $(wc -l < $W/nginx-access.log) lines)"
fi
