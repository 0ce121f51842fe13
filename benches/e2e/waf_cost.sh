#!/usr/bin/env bash
# CPU per request of a WAF-protected route against the same route without a WAF, for coregate
# (`waf = { mode = "block" }`, paranoia 1) and for nginx + ModSecurity 3 + OWASP CRS 3.3.4
# (paranoia 1, `modsecurity on` in one location only), in the same run. The request is a typical
# small JSON API call: POST /x/api/orders?expand=items&page=2&currency=EUR with a browser
# User-Agent, a Referer, a session cookie and a 190-byte JSON order (names with apostrophes, an
# e-mail address, free text): nothing either WAF blocks. CPU is utime+stime of the proxy process
# from /proc over each run, divided by the requests the generator completed; one pinned worker per
# proxy, `coregate-load serve` as the backend and `coregate-load run` on the other core(s).
# Interleaved rounds, medians printed.
#
# Usage: benches/e2e/waf_cost.sh [rounds=3] [seconds=5] [connections=32]
# Needs target/release/{coregate,coregate-load} (cargo build --release -p coregate -p coregate-load),
# nginx with libnginx-mod-http-modsecurity and modsecurity-crs (Debian) for the nginx rows.
set -euo pipefail
ROUNDS=${1:-3}; SECS=${2:-5}; CONNS=${3:-32}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TDIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TDIR/release/coregate; LOAD=$TDIR/release/coregate-load
NCPU=$(nproc); PCPU=${PROXY_CPU:-$((NCPU-1))}; OCPU=${OTHER_CPUS:-0-$((PCPU>0 ? PCPU-1 : 0))}
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf $W' EXIT
taskset -c $OCPU "$LOAD" serve --listen 127.0.0.1:19401 --body-size 60 --workers 1 >/dev/null 2>&1 &
cat > $W/gw.toml <<TOML
[server]
listen = "127.0.0.1:19400"
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:19401"]
[[route]]
path_prefix = "/open"
upstream = "be"
[[route]]
path_prefix = "/waf"
upstream = "be"
waf = { mode = "block" }
TOML
"$BIN" run --config $W/gw.toml --workers 1 --cpus $PCPU > $W/gw.log 2>&1 &
CG=$!
NG=""
MODULE=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
if command -v nginx >/dev/null && [ -f $MODULE ] && [ -d /usr/share/modsecurity-crs ]; then
  MAIN=$(cd "$ROOT/benches/e2e" && python3 -c "import waf_corpus; print(waf_corpus.modsec_files('$W', 1, False))")
  mkdir -p $W/ng
  cat > $W/ng/nginx.conf <<NGX
load_module $MODULE;
daemon off; master_process off; worker_processes 1;
pid $W/ng/nginx.pid; error_log $W/ng/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/ng/body; proxy_temp_path $W/ng/proxy; fastcgi_temp_path $W/ng/fcgi;
  uwsgi_temp_path $W/ng/uwsgi; scgi_temp_path $W/ng/scgi;
  upstream be { server 127.0.0.1:19401; keepalive 64; }
  server {
    listen 127.0.0.1:19402;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /open { proxy_pass http://be; }
    location /waf { modsecurity on; modsecurity_rules_file $MAIN; proxy_pass http://be; }
  }
}
NGX
  taskset -c $PCPU nginx -c $W/ng/nginx.conf -p $W/ng > $W/ng/out.log 2>&1 &
  NG=$!
fi
for _ in $(seq 100); do grep -q "ready" $W/gw.log 2>/dev/null && break; sleep 0.1; done
sleep 1
BODY='{"customer":{"name":"Jane O'"'"'Brien","email":"jane.obrien@example.com"},"items":[{"sku":"ABC-12","qty":2},{"sku":"XYZ-7","qty":1}],"note":"Leave it at the back door, thanks! I'"'"'m out until 6 pm."}'
printf '%s' "$BODY" > $W/body.json
HDRS=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
      -H "Referer: https://shop.example.com/cart?step=2" -H "Cookie: session=6f1c2a9e4b7d4c11a2f0; theme=dark"
      -H "Content-Type: application/json")
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
HZ=$(getconf CLK_TCK)
CASES="coregate:open coregate:waf"
[ -n "$NG" ] && CASES="$CASES nginx:open nginx:modsec"
for r in $(seq $ROUNDS); do
  for c in $CASES; do
    proxy=${c%%:*}; route=${c##*:}
    case $proxy in coregate) port=19400; pid=$CG ;; nginx) port=19402; pid=$NG ;; esac
    path=$route; [ $route = modsec ] && path=waf
    url="http://127.0.0.1:$port/$path/api/orders?expand=items&page=2&currency=EUR"
    t0=$(cpu_ticks $pid)
    taskset -c $OCPU "$LOAD" run "$url" --method POST --body-file $W/body.json "${HDRS[@]}" \
      -c $CONNS -d ${SECS}s --quiet --json $W/out.json > /dev/null
    t1=$(cpu_ticks $pid)
    n=$(grep -o '"requests": *[0-9]*' $W/out.json | head -1 | tr -dc 0-9)
    ok=$(grep -o '"200": *[0-9]*' $W/out.json | head -1 | cut -d: -f2 | tr -d ' ')
    echo "$c $((t1-t0)) $n ${ok:-0}" >> $W/res
  done
done
echo "round results (case cpu_ticks requests 200s):"; cat $W/res
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo; echo "medians ($CONNS connections, ${SECS}s, $ROUNDS rounds, 1 worker each):"
for c in $CASES; do
  cpu=$(awk -v t=$c -v hz=$HZ '$1==t {print $2/hz*1e6/$3}' $W/res | med)
  printf "%-16s %7.2f CPU us/req\n" $c $cpu
done
cg_o=$(awk -v hz=$HZ '$1=="coregate:open" {print $2/hz*1e6/$3}' $W/res | med)
cg_w=$(awk -v hz=$HZ '$1=="coregate:waf" {print $2/hz*1e6/$3}' $W/res | med)
echo "coregate WAF adds $(echo "$cg_w $cg_o" | awk '{printf "%.2f", $1-$2}') us/req"
if [ -n "$NG" ]; then
  ng_o=$(awk -v hz=$HZ '$1=="nginx:open" {print $2/hz*1e6/$3}' $W/res | med)
  ng_w=$(awk -v hz=$HZ '$1=="nginx:modsec" {print $2/hz*1e6/$3}' $W/res | med)
  echo "ModSecurity+CRS adds $(echo "$ng_w $ng_o" | awk '{printf "%.2f", $1-$2}') us/req"
fi
