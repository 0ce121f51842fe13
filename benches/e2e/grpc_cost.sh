#!/usr/bin/env bash
# gRPC unary calls through the gateway, next to the same calls straight to the server and through
# nginx's grpc_pass: h2load (nghttp2-client) sends a gRPC-framed `test.Echo/Unary` request body
# (`content-type: application/grpc`, `te: trailers`) over h2c; the server is the tests' tonic
# service (`examples/grpc_echo.rs`). coregate (`protocol = "http2"` upstream) and nginx run 1 worker
# pinned to the same CPU; the server and h2load share the other core(s). Proxy CPU is
# utime+stime from /proc over each run divided by completed calls; latency is h2load's mean time
# per request. Interleaved rounds, medians printed.
#
# Usage: benches/e2e/grpc_cost.sh [rounds=3] [seconds=5]
#   env: CONNS=16 STREAMS=1 PROXY_CPU / OTHER_CPUS as in observability_cost.sh
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${CONNS:-16}; STREAMS=${STREAMS:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/coregate; SRV=$ROOT/target/release/examples/grpc_echo
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
for t in h2load nginx python3; do command -v $t > /dev/null || { echo "needs $t (apt-get install -y nghttp2-client nginx)" >&2; exit 1; }; done
[ -x "$BIN" ] && [ -x "$SRV" ] || { echo "build first: cargo build --release -p coregate && cargo build --release --example grpc_echo" >&2; exit 1; }
W=$(mktemp -d)
cleanup() {
  set +e
  for f in $W/ng/nginx.pid $W/cg.pid $W/srv.pid; do [ -s $f ] && kill $(cat $f) 2> /dev/null; done
  kill $(jobs -p) 2> /dev/null; wait 2> /dev/null; rm -rf $W
}
trap cleanup EXIT
taskset -c $OCPU "$SRV" > $W/srv.log 2>&1 &
echo $! > $W/srv.pid
for _ in $(seq 100); do grep -q listening $W/srv.log 2> /dev/null && break; sleep 0.1; done
UP=$(awk '/listening/{print $2}' $W/srv.log)
# one request message: field 1 (text) = "hello", field 2 (n) = 7, in a gRPC frame
python3 -c 'import sys; m=b"\x0a\x05hello\x10\x07"; sys.stdout.buffer.write(b"\x00"+len(m).to_bytes(4,"big")+m)' > $W/req.bin
cat > $W/cg.toml <<CG
[server]
listen = "127.0.0.1:19482"
[[upstream]]
name = "grpc"
endpoints = ["$UP"]
protocol = "http2"
[[route]]
name = "echo"
path_prefix = "/test.Echo/"
upstream = "grpc"
CG
"$BIN" run --config $W/cg.toml --workers 1 --cpus $PCPU > $W/cg.log 2>&1 &
echo $! > $W/cg.pid
for _ in $(seq 100); do grep -q "ready" $W/cg.log 2> /dev/null && break; sleep 0.1; done
mkdir -p $W/ng
cat > $W/ng/nginx.conf <<NG
worker_processes 1; worker_cpu_affinity $(printf '1%0*d' $PCPU 0); daemon off; pid $W/ng/nginx.pid; error_log $W/ng/err;
events { worker_connections 10000; }
http { keepalive_requests 10000000; access_log off;
  upstream grpcs { server $UP; keepalive 64; keepalive_requests 10000000; }
  server { listen 127.0.0.1:19483 http2 reuseport;
    location /test.Echo/ { grpc_pass grpc://grpcs; } } }
NG
nginx -p $W/ng -c $W/ng/nginx.conf > /dev/null 2>&1 &
for _ in $(seq 50); do [ -s $W/ng/nginx.pid ] && pgrep -P $(cat $W/ng/nginx.pid) > /dev/null && break; sleep 0.1; done
pgrep -P $(cat $W/ng/nginx.pid) | head -1 > $W/ng.pid
ADDR_cg=127.0.0.1:19482; ADDR_ng=127.0.0.1:19483; ADDR_direct=$UP
HZ=$(getconf CLK_TCK)
ticks() { [ $1 = direct ] && echo 0 || awk '{print $14+$15}' /proc/$(cat $W/$1.pid)/stat; }
run() { # $1 target -> "target calls ticks secs failed mean_latency_us"
  local addr=ADDR_$1 t0 t1 out
  t0=$(ticks $1)
  out=$(taskset -c $OCPU h2load -c $CONNS -m $STREAMS -D $SECS -d $W/req.bin \
    -H 'content-type: application/grpc' -H 'te: trailers' http://${!addr}/test.Echo/Unary 2>&1 || true)
  t1=$(ticks $1)
  local done=$(echo "$out" | awk '/^requests:/{print $8}') failed=$(echo "$out" | awk '/^requests:/{print $10+$12}')
  local secs=$(echo "$out" | awk '/^finished in/{gsub("s,", "", $3); print $3}')
  local mean=$(echo "$out" | awk '/^time for request:/{v=$4; if (v ~ /ms$/) {sub("ms","",v); v*=1000} else if (v ~ /us$/) {sub("us","",v)} else {sub("s","",v); v*=1e6}; print v}')
  echo "$1 ${done:-0} $((t1-t0)) ${secs:-$SECS} ${failed:-?} ${mean:-0}" >> $W/res
}
for r in $(seq $ROUNDS); do for t in direct cg ng; do run $t; done; done
echo "round results (target calls cpu_ticks secs failed mean_us):"; cat $W/res
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
col() { awk -v t=$1 -v hz=$HZ '$1==t {print '"$2"'}' $W/res | med; }
echo; echo "medians ($ROUNDS rounds x ${SECS}s, proxy on CPU $PCPU, server + h2load on CPU $OCPU; $CONNS conns x $STREAMS streams):"
printf "%-10s %12s %10s %12s %8s\n" target proxy_us/call calls/s mean_lat_us failed
for t in direct cg ng; do
  cpu=$([ $t = direct ] && echo - || col $t '$3/hz*1e6/($2>0?$2:1)')
  printf "%-10s %12s %10.0f %12.0f %8s\n" "$([ $t = cg ] && echo coregate || ([ $t = ng ] && echo nginx || echo direct))" \
    "$cpu" $(col $t '$2/$4') $(col $t '$6') $(awk -v t=$t '$1==t {e+=$5} END {print e+0}' $W/res)
done
