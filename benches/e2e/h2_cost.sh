#!/usr/bin/env bash
# What a proxied HTTP/2 request costs the gateway, next to nginx doing the same (h2c with prior
# knowledge on both, 1 worker each pinned to the same CPU, `coregate-load serve` as the HTTP/1.1
# backend, h2load from nghttp2-client on the other core(s)). Server CPU is utime+stime of the
# server's threads from /proc over each run, divided by the requests h2load completed.
#   m1    CONNS connections, 1 stream at a time on each (h2load -m 1)
#   m100  CONNS100 connections, 100 concurrent streams on each (h2load -m 100)
# Both keep up to 512 idle upstream connections (m100 has 400 requests in flight: a smaller pool
# makes either server open and close upstream connections all the time). Interleaved rounds,
# medians printed. Goal (issue 14): at most 0.8x nginx's CPU per h2 request.
#
# Usage: benches/e2e/h2_cost.sh [rounds=3] [seconds=5]
#   env: CONNS=16 CONNS100=4 PROXY_CPU / OTHER_CPUS as in observability_cost.sh
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${CONNS:-16}; CONNS100=${CONNS100:-4}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/coregate; LOAD=$ROOT/target/release/coregate-load
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
for t in h2load nginx; do command -v $t > /dev/null || { echo "needs $t (apt-get install -y nghttp2-client nginx)" >&2; exit 1; }; done
[ -x "$BIN" ] && [ -x "$LOAD" ] || { echo "build first: cargo build --release -p coregate -p coregate-load" >&2; exit 1; }
W=$(mktemp -d)
cleanup() {
  set +e
  for f in $W/ng/nginx.pid $W/cg.pid; do [ -s $f ] && kill $(cat $f) 2> /dev/null; done
  kill $(jobs -p) 2> /dev/null; wait 2> /dev/null; rm -rf $W
}
trap cleanup EXIT
taskset -c $OCPU "$LOAD" serve --listen 127.0.0.1:19471 --body-size 60 --workers 1 > /dev/null 2>&1 &
cat > $W/cg.toml <<CG
[server]
listen = "127.0.0.1:19472"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19471"]
max_idle_per_endpoint = 512
[[route]]
name = "x"
path_prefix = "/x"
upstream = "be"
CG
"$BIN" run --config $W/cg.toml --workers 1 --cpus $PCPU > $W/cg.log 2>&1 &
echo $! > $W/cg.pid
for _ in $(seq 100); do grep -q "ready" $W/cg.log 2> /dev/null && break; sleep 0.1; done
mkdir -p $W/ng
cat > $W/ng/nginx.conf <<NG
worker_processes 1; worker_cpu_affinity $(printf '1%0*d' $PCPU 0); daemon off; pid $W/ng/nginx.pid; error_log $W/ng/err;
events { worker_connections 10000; }
http { keepalive_requests 10000000; access_log off; http2_max_concurrent_streams 128;
  upstream be { server 127.0.0.1:19471; keepalive 512; keepalive_requests 10000000; }
  server { listen 127.0.0.1:19473 http2 reuseport;
    location /x { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NG
nginx -p $W/ng -c $W/ng/nginx.conf > /dev/null 2>&1 &
for _ in $(seq 50); do [ -s $W/ng/nginx.pid ] && pgrep -P $(cat $W/ng/nginx.pid) > /dev/null && break; sleep 0.1; done
pgrep -P $(cat $W/ng/nginx.pid) | head -1 > $W/ng.pid
PORT_cg=19472; PORT_ng=19473
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' /proc/$(cat $W/$1.pid)/stat; }
run() { # $1 server, $2 case -> "server case requests ticks secs failed"
  local port=PORT_$1 t0 t1 out c m
  case $2 in m1) c=$CONNS; m=1 ;; m100) c=$CONNS100; m=100 ;; esac
  t0=$(ticks $1)
  out=$(taskset -c $OCPU h2load -c $c -m $m -D $SECS http://127.0.0.1:${!port}/x 2>&1 || true)
  t1=$(ticks $1)
  local done=$(echo "$out" | awk '/^requests:/{print $8}') failed=$(echo "$out" | awk '/^requests:/{print $10+$12}')
  local secs=$(echo "$out" | awk '/^finished in/{gsub("s,", "", $3); print $3}')
  echo "$1 $2 ${done:-0} $((t1-t0)) ${secs:-$SECS} ${failed:-?}" >> $W/res
}
for r in $(seq $ROUNDS); do for c in m1 m100; do for s in cg ng; do run $s $c; done; done; done
echo "round results (server case requests cpu_ticks secs failed):"; cat $W/res
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
col() { awk -v s=$1 -v c=$2 -v hz=$HZ '$1==s && $2==c {print '"$3"'}' $W/res | med; }
echo; echo "medians ($ROUNDS rounds x ${SECS}s, 1 worker on CPU $PCPU, h2load on CPU $OCPU; m1: $CONNS conns x 1 stream, m100: $CONNS100 conns x 100 streams):"
printf "%-16s %10s %10s %8s %s\n" case cpu_us/req req/s failed "cpu vs nginx"
for c in m1 m100; do for s in cg ng; do
  cpu=$(col $s $c '$4/hz*1e6/($3>0?$3:1)'); ng=$(col ng $c '$4/hz*1e6/($3>0?$3:1)')
  printf "%-16s %10.2f %10.0f %8s %s\n" "$([ $s = cg ] && echo coregate || echo nginx) $c" $cpu $(col $s $c '$3/$5') \
    $(awk -v s=$s -v c=$c '$1==s && $2==c {e+=$6} END {print e+0}' $W/res) "$(echo $cpu $ng | awk '{printf "%.3fx", $1/$2}')"
done; done
