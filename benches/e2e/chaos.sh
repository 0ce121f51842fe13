#!/usr/bin/env bash
# Chaos benchmark: one of three endpoints turns failing (every answer 503) or slow (1 s before each
# answer) under open-loop load, and back. For each proxy configuration and fault kind, three
# consecutive `coregate-load run --rate` runs of SECS seconds each: before (all healthy), during
# (the fault is switched on just before the run starts, so detection time is inside it) and after
# (switched off just before; recovery is inside it). Per phase: requests completed (answers plus
# transport errors; those still in flight when the run stops are not counted), success rate (2xx
# share of them) and p99 latency from each request's intended send time (coordinated omission
# corrected).
#
# Configurations (each started fresh per fault kind, 1 worker):
#   coregate-plain      retries = 0, max_fails = 0: no resilience at all
#   coregate-resilient  [upstream.health_check] every 500ms, thresholds 2; [upstream.outlier_detection]
#                       consecutive_5xx = 3 (ejected 5s); [upstream.retry] on gateway-error, reset,
#                       connect-failure, timeout with per_try_timeout 200ms; retries = 2;
#                       max_fails = 3 / fail_timeout 5s (nginx's values)
#   nginx               max_fails=3 fail_timeout=5s, proxy_next_upstream error timeout http_503,
#                       proxy_next_upstream_tries 3, proxy_{connect,read,send}_timeout 200ms
# Backends: endpoint 1 is a small threaded python3 server whose behaviour a flag file switches
# (ok | fail | slow); endpoints 2 and 3 are `coregate-load serve`. Keep the rate modest: the python
# backend takes a third of it. Connections default to 1000 so that one 1 s answer does not hold
# up the next request scheduled on the same connection (each connection sends every c/rate s).
#
# Usage: benches/e2e/chaos.sh [rate=600] [seconds=8] [connections=1000] [faults="fail slow"]
# Builds with `cargo build --release` into $CARGO_TARGET_DIR (default target/) unless NO_BUILD=1;
# CONFIGS="coregate-plain coregate-resilient nginx" picks configurations (nginx skipped if absent).
set -euo pipefail
RATE=${1:-600}; SECS=${2:-8}; CONNS=${3:-1000}; FAULTS=${4:-fail slow}
CONFIGS=${CONFIGS:-coregate-plain coregate-resilient nginx}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TDIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TDIR/release/coregate; LOAD=$TDIR/release/coregate-load
if [ "${NO_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release -q -p coregate -p coregate-load)
fi
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf $W' EXIT
P=19600; B1=19601; B2=19602; B3=19603; FLAG=$W/mode

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listening on :$1" >&2; return 1; }
set_mode() { echo "$1" > $FLAG.tmp && mv $FLAG.tmp $FLAG; }

# The flappable backend: mode read from $FLAG on every request (a missing file is "ok").
cat > $W/flappy.py <<'PY'
import sys, time, http.server
port, flag = int(sys.argv[1]), sys.argv[2]
BODY = b'{"ok":true,"from":"flappy","pad":"0123456789012345678901234"}'
def resp(code, reason):
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (code, reason, len(BODY))) + BODY
OK, FAIL = resp(200, b"OK"), resp(503, b"Service Unavailable")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        try:
            with open(flag) as f: mode = f.read().strip()
        except OSError:
            mode = "ok"
        if mode == "slow": time.sleep(1.0)
        self.wfile.write(FAIL if mode == "fail" else OK)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
S(("127.0.0.1", port), H).serve_forever()
PY
set_mode ok
python3 $W/flappy.py $B1 $FLAG >$W/flappy.log 2>&1 &
"$LOAD" serve --listen 127.0.0.1:$B2 --body-size 60 --workers 1 >/dev/null 2>&1 &
"$LOAD" serve --listen 127.0.0.1:$B3 --body-size 60 --workers 1 >/dev/null 2>&1 &
wait_port $B1; wait_port $B2; wait_port $B3

coregate_conf() { # $1 plain|resilient
  cat <<TOML
[server]
listen = "127.0.0.1:$P"
workers = 1
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3"]
TOML
  if [ "$1" = plain ]; then
    printf 'retries = 0\nmax_fails = 0\n'
  else
    cat <<TOML
retries = 2
max_fails = 3
fail_timeout = "5s"
[upstream.health_check]
path = "/"
interval = "500ms"
healthy_threshold = 2
unhealthy_threshold = 2
[upstream.outlier_detection]
consecutive_5xx = 3
base_ejection_time = "5s"
[upstream.retry]
on = ["gateway-error", "reset", "connect-failure", "timeout"]
per_try_timeout = "200ms"
TOML
  fi
  printf '[[route]]\npath_prefix = "/"\nupstream = "be"\n'
}

nginx_conf() {
  mkdir -p $W/ng
  cat <<NGX
daemon off; master_process off; worker_processes 1;
pid $W/ng/nginx.pid; error_log $W/ng/error.log error;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $W/ng/body; proxy_temp_path $W/ng/proxy; fastcgi_temp_path $W/ng/fcgi;
  uwsgi_temp_path $W/ng/uwsgi; scgi_temp_path $W/ng/scgi;
  upstream be {
    server 127.0.0.1:$B1 max_fails=3 fail_timeout=5s;
    server 127.0.0.1:$B2 max_fails=3 fail_timeout=5s;
    server 127.0.0.1:$B3 max_fails=3 fail_timeout=5s;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$P backlog=4096;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_503;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 200ms; proxy_read_timeout 200ms; proxy_send_timeout 200ms;
    }
  }
}
NGX
}

start_proxy() { # $1 config name; sets PROXY
  case $1 in
    coregate-*)
      coregate_conf ${1#coregate-} > $W/gw.toml
      : > $W/gw.log
      "$BIN" run --config $W/gw.toml --workers 1 --no-pin > $W/gw.log 2>&1 &
      PROXY=$!
      for _ in $(seq 100); do grep -q "coregate: ready" $W/gw.log 2>/dev/null && break; sleep 0.1; done
      grep -q "coregate: ready" $W/gw.log || { echo "coregate did not start:" >&2; cat $W/gw.log >&2; exit 1; } ;;
    nginx)
      nginx_conf > $W/nginx.conf
      nginx -p $W/ng -c $W/nginx.conf -e $W/ng/error.log &
      PROXY=$!
      wait_port $P ;;
  esac
}
stop_proxy() { kill $PROXY 2>/dev/null || true; wait $PROXY 2>/dev/null || true; }

summarise() { # $1 json -> "requests success% p99ms"
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = sum(v for k, v in r["status"].items() if 200 <= int(k) < 300)
tot = r["requests"] + sum(r["errors"].values())
print(tot, "%.2f" % (100.0 * ok / tot if tot else 0.0), "%.1f" % (r["latency_us"]["p99"] / 1000.0))
PY
}

echo "chaos: rate $RATE req/s, $SECS s per phase, $CONNS connections, faults: $FAULTS" >&2
ROWS=$W/rows
for cfg in $CONFIGS; do
  if [ $cfg = nginx ] && ! command -v nginx >/dev/null; then echo "nginx not installed: skipped" >&2; continue; fi
  for fault in $FAULTS; do
    set_mode ok
    start_proxy $cfg
    # Warm the pools (and let the health checker pass once) before measuring.
    "$LOAD" run http://127.0.0.1:$P/ -c 32 --rate 200 -d 1s --quiet >/dev/null 2>&1 || true
    sleep 0.5
    for phase in before during after; do
      case $phase in during) set_mode $fault ;; after) set_mode ok ;; esac
      "$LOAD" run http://127.0.0.1:$P/ -c $CONNS --rate $RATE -d ${SECS}s --quiet \
        --json $W/$cfg-$fault-$phase.json >/dev/null 2>&1 || true
      read -r n succ p99 < <(summarise $W/$cfg-$fault-$phase.json)
      echo "| $cfg | $fault | $phase | $n | $succ | $p99 |" | tee -a $ROWS >&2
    done
    stop_proxy
  done
done

echo
echo "Open loop at $RATE req/s, $CONNS connections, $SECS s per phase; endpoint 1 of 3 faulty during \"during\"."
echo
echo "| config | fault | phase | requests | success % | p99 ms |"
echo "|---|---|---|---|---|---|"
cat $ROWS
