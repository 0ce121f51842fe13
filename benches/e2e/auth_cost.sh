#!/usr/bin/env bash
# CPU per request of a JWT-protected route against the same route without auth, measured on the
# gateway itself (utime+stime of its threads from /proc over each run, divided by the requests the
# generator completed). One pinned gateway worker; `coregate-load serve` as the backend and
# `coregate-load run` (scenario minting tokens for 1,000 users) on the other core(s). Interleaved
# rounds, medians printed.
#
# Routes: /open (no auth), /hs (HS256), /rs (RS256), /rs-nocache (RS256 with cache_size = 0: every
# request pays the signature check).
#
# Usage: benches/e2e/auth_cost.sh [rounds=3] [seconds=5] [connections=64]
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${3:-64}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release/coregate; LOAD=$ROOT/target/release/coregate-load
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf $W' EXIT
KEYS=$ROOT/tests/fixtures/keys
export CG_BENCH_SECRET=bench-secret-0123456789abcdef
taskset -c $OCPU "$LOAD" serve --listen 127.0.0.1:19301 --body-size 60 --workers 1 >/dev/null 2>&1 &
cat > $W/gw.toml <<TOML
[server]
listen = "127.0.0.1:19300"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19301"]
[[auth]]
name = "hs"
type = "jwt"
algorithms = ["HS256"]
secret_env = "CG_BENCH_SECRET"
[[auth]]
name = "rs"
type = "jwt"
algorithms = ["RS256"]
public_key_files = ["$KEYS/rsa.pub"]
[[auth]]
name = "rs-nocache"
type = "jwt"
algorithms = ["RS256"]
public_key_files = ["$KEYS/rsa.pub"]
cache_size = 0
[[route]]
path_prefix = "/open"
upstream = "be"
[[route]]
path_prefix = "/hs"
upstream = "be"
auth = "hs"
[[route]]
path_prefix = "/rs-nocache"
upstream = "be"
auth = "rs-nocache"
[[route]]
path_prefix = "/rs"
upstream = "be"
auth = "rs"
TOML
"$BIN" run --config $W/gw.toml --workers 1 --cpus $PCPU > $W/gw.log 2>&1 &
GW=$!
for _ in $(seq 100); do grep -q "ready" $W/gw.log 2>/dev/null && break; sleep 0.1; done
for name in open hs rs rs-nocache; do
  case $name in
    open) jwt="" ;;
    hs) jwt=$'[jwt]\nalg = "HS256"\nkey = "bench-secret-0123456789abcdef"\nusers = 1000' ;;
    rs*) jwt=$'[jwt]\nalg = "RS256"\nkey_file = "'$KEYS/rsa.key$'"\nusers = 1000' ;;
  esac
  printf 'target = "http://127.0.0.1:19300/%s/x"\n[[request]]\npath = "/%s/x"\n%s\n' "$name" "$name" "$jwt" > $W/$name.toml
done
cpu_ticks() { awk '{print $14+$15}' /proc/$GW/stat; }
HZ=$(getconf CLK_TCK)
for r in $(seq $ROUNDS); do
  for name in open hs rs rs-nocache; do
    t0=$(cpu_ticks)
    taskset -c $OCPU "$LOAD" run --scenario $W/$name.toml -c $CONNS -d ${SECS}s --quiet --json $W/out.json > /dev/null
    t1=$(cpu_ticks)
    n=$(grep -o '"requests": *[0-9]*' $W/out.json | head -1 | tr -dc 0-9)
    rps=$(grep -o '"throughput_rps": *[0-9.]*' $W/out.json | head -1 | cut -d: -f2 | tr -d ' ')
    ok=$(grep -o '"200": *[0-9]*' $W/out.json | head -1 | cut -d: -f2 | tr -d ' ')
    echo "$name $rps $(( (t1-t0) )) $n ${ok:-0}" >> $W/res
  done
done
echo "round results (route req/s cpu_ticks requests 200s):"; cat $W/res
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo; echo "medians ($CONNS connections, ${SECS}s, $ROUNDS rounds, 1 worker):"
base=$(awk -v hz=$HZ '$1=="open" {print $3/hz*1e6/$4}' $W/res | med)
for name in open hs rs rs-nocache; do
  rps=$(awk -v t=$name '$1==t {print $2}' $W/res | med)
  cpu=$(awk -v t=$name -v hz=$HZ '$1==t {print $3/hz*1e6/$4}' $W/res | med)
  printf "%-11s %9.0f req/s  %6.2f CPU us/req  %5.2fx open\n" $name $rps $cpu $(echo "$cpu $base" | awk '{print $1/$2}')
done
