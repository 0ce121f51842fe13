#!/usr/bin/env bash
# What TLS termination costs the gateway, next to nginx doing the same (1 worker each, pinned to the
# same CPU, `coregate-load serve` as the backend, clients on the other core(s)). Server CPU is
# utime+stime of the server's threads from /proc over each run, divided by the operations the client
# completed. Per cert type (ECDSA P-256 and RSA 2048; a CA and a leaf for "bench.test" made here with
# the openssl CLI; both servers get the same chain and key):
#   ka     keep-alive HTTPS requests proxied to the backend: `wrk` (coregate-load speaks no TLS),
#          CPU us/request, req/s, p50/p99
#   full   full handshakes: `openssl s_time -new`, one connection per handshake, no resumption
#   resume resumed handshakes: `openssl s_time -reuse` (TLS 1.3 PSK from a session ticket)
# s_time fetches /hs on every connection (-www; in TLS 1.3 the client only sees the ticket once it
# reads), which both servers answer with a local 404 without touching the backend, so a handshake
# op is: accept + handshake + one tiny local answer + close. s_time prints one mark per connection
# ('r' when resumed); the share of resumed connections is checked and printed. TLS 1.3 by default
# (X25519 key share, the client's cipher order: TLS_AES_256_GCM_SHA384); TLS_VERSION=1.2 makes the
# handshake runs use TLS 1.2 instead (wrk always negotiates the highest). Interleaved rounds,
# medians printed; handshakes per core = 1e6 / CPU us per handshake. wrk with `Connection: close` is
# not used for handshakes: it keeps the SSL object across reconnects and so resumes.
# Goal (issue 13): keep-alive CPU <= 0.8x nginx's, handshakes per core > nginx's.
#
# Usage: benches/e2e/tls_cost.sh [rounds=3] [seconds=5] [connections=64]
#   env: KEYS="ecdsa rsa"  TLS_VERSION=1.3|1.2  HS_CLIENTS=4 (parallel s_time)  WRK_THREADS=1
#        PROXY_CPU / OTHER_CPUS as in observability_cost.sh
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${3:-64}
KEYS=${KEYS:-ecdsa rsa}; TLSV=${TLS_VERSION:-1.3}; HSC=${HS_CLIENTS:-4}; WT=${WRK_THREADS:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/coregate; LOAD=$ROOT/target/release/coregate-load
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
for t in wrk nginx openssl; do command -v $t > /dev/null || { echo "needs $t (apt-get install -y $t)" >&2; exit 1; }; done
[ -x "$BIN" ] && [ -x "$LOAD" ] || { echo "build first: cargo build --release -p coregate -p coregate-load" >&2; exit 1; }
W=$(mktemp -d)
cleanup() {
  set +e
  for f in $W/*/nginx.pid $W/cg-*.pid; do [ -s $f ] && kill $(cat $f) 2> /dev/null; done
  kill $(jobs -p) 2> /dev/null; wait 2> /dev/null; rm -rf $W
}
trap cleanup EXIT
taskset -c $OCPU "$LOAD" serve --listen 127.0.0.1:19461 --body-size 60 --workers 1 > /dev/null 2>&1 &
certs() { # $1 dir, then the -newkey arguments
  local d=$1; shift; mkdir -p $d
  openssl req -x509 -new -nodes "$@" -keyout $d/ca.key -out $d/ca.pem -days 30 -subj "/CN=bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2> /dev/null
  openssl req -new -nodes "$@" -keyout $d/leaf.key -out $d/leaf.csr -subj /CN=bench.test 2> /dev/null
  printf 'subjectAltName=DNS:bench.test\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > $d/ext
  openssl x509 -req -in $d/leaf.csr -CA $d/ca.pem -CAkey $d/ca.key -CAcreateserial -days 30 -out $d/leaf.pem -extfile $d/ext 2> /dev/null
  cat $d/leaf.pem $d/ca.pem > $d/chain.pem
}
probe() { # $1 port -> "TLSv1.3 TLS_AES_256_GCM_SHA384" or nothing
  echo | timeout 5 openssl s_client -connect 127.0.0.1:$1 -servername bench.test 2> /dev/null \
    | awk '/^New, /{gsub(",", ""); print $2, $5; exit}'
}
NAMES=""; p=19462
for k in $KEYS; do
  case $k in ecdsa) certs $W/$k -newkey ec -pkeyopt ec_paramgen_curve:P-256 ;;
             rsa) certs $W/$k -newkey rsa:2048 ;; *) echo "unknown key type $k" >&2; exit 1 ;; esac
  # coregate: a plain [server] listener (unused) and the TLS listener
  cat > $W/cg-$k.toml <<CG
[server]
listen = "127.0.0.1:$((p+1))"
[[listener]]
listen = "127.0.0.1:$p"
[listener.tls]
certificates = [ { cert_file = "$W/$k/chain.pem", key_file = "$W/$k/leaf.key" } ]
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19461"]
[[route]]
name = "x"
path_prefix = "/x"
upstream = "be"
CG
  "$BIN" run --config $W/cg-$k.toml --workers 1 --cpus $PCPU > $W/cg-$k.log 2>&1 &
  echo $! > $W/cg-$k.pid
  for _ in $(seq 100); do grep -q "ready" $W/cg-$k.log 2> /dev/null && break; kill -0 $(cat $W/cg-$k.pid) 2> /dev/null || break; sleep 0.1; done
  v=$(probe $p || true)
  if [ -n "$v" ] && kill -0 $(cat $W/cg-$k.pid) 2> /dev/null; then
    NAMES="$NAMES cg-$k"; eval PORT_cg_$k=$p; echo "coregate $k: $v"
  else
    echo "coregate $k: SKIPPED (no TLS on 127.0.0.1:$p); its log:"; sed 's/^/  | /' $W/cg-$k.log | tail -5
    kill $(cat $W/cg-$k.pid) 2> /dev/null || true; : > $W/cg-$k.pid
  fi
  # nginx: the same listener, 1 worker on the gateway's CPU
  mkdir -p $W/ng-$k
  cat > $W/ng-$k/nginx.conf <<NG
worker_processes 1; worker_cpu_affinity $(printf '1%0*d' $PCPU 0); daemon off; pid $W/ng-$k/nginx.pid; error_log $W/ng-$k/err;
events { worker_connections 10000; }
http { keepalive_requests 10000000; access_log off;
  upstream be { server 127.0.0.1:19461; keepalive 256; keepalive_requests 10000000; }
  server { listen 127.0.0.1:$((p+2)) ssl reuseport;
    ssl_certificate $W/$k/chain.pem; ssl_certificate_key $W/$k/leaf.key;
    ssl_session_cache shared:SSL:10m; ssl_session_tickets on; ssl_protocols TLSv1.2 TLSv1.3;
    location /x { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location / { return 404; } } }
NG
  nginx -p $W/ng-$k -c $W/ng-$k/nginx.conf > /dev/null 2>&1 &
  for _ in $(seq 50); do [ -s $W/ng-$k/nginx.pid ] && pgrep -P $(cat $W/ng-$k/nginx.pid) > /dev/null && break; sleep 0.1; done
  pgrep -P $(cat $W/ng-$k/nginx.pid) | head -1 > $W/ng-$k.pid
  eval PORT_ng_$k=$((p+2)); NAMES="$NAMES ng-$k"; echo "nginx $k: $(probe $((p+2)))"
  p=$((p+10))
done
cat > $W/done.lua <<'LUA'
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format("WRK %d %.0f %.0f %d %d\n", s.requests, lat:percentile(50), lat:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
LUA
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' /proc/$(cat $W/$1.pid)/stat 2> /dev/null || { echo "$1 is gone:" >&2; tail -3 $W/$1.log >&2; echo 0; }; }
HSFLAG=""; [ "$TLSV" = 1.2 ] && HSFLAG=-tls1_2
run() { # $1 server, $2 case -> appends "server case ops ticks secs p50 p99 errors resumed%"
  local port=PORT_${1/-/_} t0 t1 s0 s1 out
  t0=$(ticks $1); s0=$(date +%s.%N)
  case $2 in
    ka) out=$(taskset -c $OCPU wrk -t$WT -c$CONNS -d${SECS}s -s $W/done.lua https://127.0.0.1:${!port}/x | grep '^WRK' || echo "WRK 0 0 0 1 0")
        t1=$(ticks $1); s1=$(date +%s.%N)
        set -- $1 $2 $out; echo "$1 $2 $4 $((t1-t0)) $(echo "$s1 $s0" | awk '{print $1-$2}') $5 $6 $(($7+$8)) -" >> $W/res ;;
    full|resume)
        local mode=-new; [ $2 = resume ] && mode=-reuse
        local pids="" n=0 r=0 a=0 e=0 i
        for i in $(seq $HSC); do
          taskset -c $OCPU openssl s_time -connect 127.0.0.1:${!port} $mode $HSFLAG -www /hs -time $SECS > $W/st.$i 2>&1 &
          pids="$pids $!"
        done
        for i in $pids; do wait $i || e=$((e+1)); done # s_time gives up on the first failed connection
        t1=$(ticks $1); s1=$(date +%s.%N)
        for i in $(seq $HSC); do
          n=$((n + $(awk '/real seconds/{v=$1} END{print v+0}' $W/st.$i)))
          r=$((r + $({ grep -E '^[*rt3]+$' $W/st.$i || true; } | tr -cd r | wc -c)))
          a=$((a + $({ grep -E '^[*rt3]+$' $W/st.$i || true; } | tr -cd 'r*t3' | wc -c)))
          grep -qi error $W/st.$i && { e=$((e+1)); cp $W/st.$i $W/err-$1-$2.$i; }
        done
        echo "$1 $2 $n $((t1-t0)) $(echo "$s1 $s0" | awk '{print $1-$2}') - - $e $(awk -v r=$r -v a=$a 'BEGIN{printf "%.0f%%", a ? 100*r/a : 0}')" >> $W/res ;;
  esac
}
for r in $(seq $ROUNDS); do for c in ka full resume; do for s in $NAMES; do run $s $c; done; done; done
echo; echo "round results (server case ops cpu_ticks secs p50_us p99_us errors resumed%):"; cat $W/res
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
col() { awk -v s=$1 -v c=$2 -v hz=$HZ '$1==s && $2==c {print '"$3"'}' $W/res | med; }
echo; echo "medians ($ROUNDS rounds x ${SECS}s, 1 worker on CPU $PCPU, clients on CPU $OCPU; ka: wrk $CONNS conns, handshakes: $HSC x s_time, TLS $TLSV):"
printf "%-20s %10s %10s %12s %8s %8s %7s %8s %s\n" case cpu_us/op ops/s per_core/s p50_us p99_us errors resumed "cpu vs nginx"
for k in $KEYS; do for c in ka full resume; do for s in cg ng; do
  grep -q "^$s-$k $c " $W/res || continue
  cpu=$(col $s-$k $c '$4/hz*1e6/($3>0?$3:1)'); ng=$(col ng-$k $c '$4/hz*1e6/($3>0?$3:1)')
  printf "%-20s %10.2f %10.0f %12.0f %8s %8s %7s %8s %s\n" "$([ $s = cg ] && echo coregate || echo nginx) $k $c" $cpu \
    $(col $s-$k $c '$3/$5') $(echo $cpu | awk '{print ($1 > 0 ? 1e6 / $1 : 0)}') $(col $s-$k $c '$6') $(col $s-$k $c '$7') \
    $(awk -v s=$s-$k -v c=$c '$1==s && $2==c {e+=$8} END {print e+0}' $W/res) $(col $s-$k $c '$9') \
    "$(echo $cpu $ng | awk '{printf "%.3fx", $1/$2}')"
done; done; done
echo "goal: ka cpu <= 0.8x nginx; full and resume cpu < 1.0x nginx (more handshakes per core)"
for s in $NAMES; do case $s in cg-*) echo "$s log: $(grep -ciE 'error|warn|panic' $W/$s.log || true) error/warn lines"
  { grep -iE 'error|warn|panic' $W/$s.log || true; } | cut -c1-160 | sort | uniq -c | sort -rn | head -3 ;; esac; done
for f in $W/err-*; do [ -e $f ] && { echo "s_time failure ${f#$W/err-}:"; grep -i error $f | head -2; }; done
echo "reproduce: KEYS=\"$KEYS\" TLS_VERSION=$TLSV HS_CLIENTS=$HSC WRK_THREADS=$WT $0 $ROUNDS $SECS $CONNS"
