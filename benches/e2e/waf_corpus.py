#!/usr/bin/env python3
"""WAF detection quality: replays benches/waf/attacks.tsv and benign.tsv through (a) coregate with
`waf = { mode = "block", paranoia = PL }` and (b) nginx + ModSecurity v3 + OWASP CRS at paranoia
level PL, both in front of one python upstream that answers 200. Reports per attack family the
share answered 403 (blocked) and for the benign corpus the share answered 403 (false positives);
any other non-2xx answer or transport error is "other". A payload is the attacker's raw string,
URL-encoded once where the placement needs it (`%2e` goes on the wire as `%252e`). Placements:
query (GET ?q=), form (POST urlencoded q=), json (POST {"q": ...}); traversal also `path` (GET
/static/<payload as given>), scanner only `ua` (User-Agent). See benches/waf/README.md.
Writes the report to stdout and OUT/waf-corpus-<date>[-pl<N>].md, and every miss / false positive
(coregate first) to OUT/waf-misses.txt. OUT defaults to benches/results. coregate is "n/a" when
`coregate check` refuses the config (no `waf` key yet), ModSecurity when it is not installed.
Usage: benches/e2e/waf_corpus.py [--paranoia N] [--only modsec|coregate]
         [--placements query,form,json,path] [--bin PATH] [--out DIR] [--modsec-audit --workdir D]
"""
import argparse, datetime, glob, http.client, json, os, re, shutil, signal, socket, subprocess
import sys, tempfile, time, urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT_CG, PORT_NG, PORT_UP = 19811, 19812, 19813
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HOST = "api.example.test"
ALL_PLACEMENTS = ["query", "form", "json", "path"]
ESC = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\"}
UNESC = {v: k for k, v in ESC.items()}

UPSTREAM = r'''
import http.server, sys
BODY = b'{"ok":true}'
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(BODY)) + BODY
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms per request
    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        self.wfile.write(RESP)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = handle_any
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def load_tsv(path):
    """Lines `label<TAB>payload`; '#' lines and blank lines skipped. A payload starting with `esc:`
    has the rest decoded (\\n \\r \\t \\\\); every other payload is taken literally."""
    rows = []
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        if "\t" not in line:
            sys.exit(f"{path}:{n}: no TAB separator")
        label, payload = line.split("\t", 1)
        if payload.startswith("esc:"):
            payload = re.sub(r"\\[nrt\\]", lambda m: ESC[m.group(0)], payload[4:])
        rows.append((label.strip(), payload))
    return rows


def corpus_form(p):
    """A payload as the corpus files write it (the `esc:` form only when it has TAB/CR/LF)."""
    if not re.search(r"[\t\r\n]", p):
        return p
    return "esc:" + re.sub(r"[\\\t\r\n]", lambda m: UNESC[m.group(0)], p)


def wait_port(port, proc=None, secs=15):
    end = time.time() + secs
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def first_existing(*cands):
    for c in cands:
        hits = sorted(glob.glob(c))
        if hits:
            return hits[0]
    return None


def modsec_files(w, pl, audit):
    """Writes W/modsec/{modsecurity.conf,crs-setup.conf,main.conf}; returns main.conf."""
    rec = first_existing("/etc/modsecurity/modsecurity.conf-recommended",
                         "/usr/share/doc/modsecurity*/modsecurity.conf-recommended*",
                         "/etc/nginx/modsecurity.conf",
                         "/usr/share/nginx/docs/modsecurity/modsecurity.conf")
    setup = first_existing("/etc/modsecurity/crs/crs-setup.conf",
                           "/usr/share/modsecurity-crs/crs-setup.conf.example",
                           "/etc/modsecurity/crs-setup.conf")
    rules = first_existing("/usr/share/modsecurity-crs/rules")
    umap = first_existing("/etc/modsecurity/unicode.mapping", "/etc/nginx/unicode.mapping",
                          "/usr/share/nginx/docs/modsecurity/unicode.mapping")
    if not (rec and setup and rules):
        raise RuntimeError(f"ModSecurity/CRS files not found (recommended config: {rec}, "
                           f"crs-setup: {setup}, rules: {rules})")
    d = os.path.join(w, "modsec")
    os.makedirs(d, exist_ok=True)
    # The recommended config (it also enables the JSON body processor, rule 200001) with the
    # engine on, response bodies off, logs and temp files in W.
    text = open(rec).read()
    repl = {"SecRuleEngine": "On", "SecRequestBodyAccess": "On", "SecResponseBodyAccess": "Off",
            "SecAuditEngine": "RelevantOnly" if audit else "Off", "SecAuditLogParts": "ABHZ",
            "SecAuditLog": f"{d}/audit.log", "SecTmpDir": d, "SecDataDir": d,
            "SecStatusEngine": "Off", "SecDebugLog": f"{d}/debug.log", "SecDebugLogLevel": "0"}
    for key, val in repl.items():
        text, n = re.subn(rf"(?m)^\s*{key}\s.*$", f"{key} {val}", text)
        if n == 0:
            text += f"\n{key} {val}\n"
    text = re.sub(r"(?m)^\s*SecUnicodeMapFile\s+\S+(.*)$",
                  lambda m: f"SecUnicodeMapFile {umap}{m.group(1)}" if umap else "", text)
    open(f"{d}/modsecurity.conf", "w").write(text)
    shutil.copy(setup, f"{d}/crs-setup.conf")
    open(f"{d}/main.conf", "w").write(
        f"Include {d}/modsecurity.conf\nInclude {d}/crs-setup.conf\n"
        f'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={pl}"\n'
        f"Include {rules}/*.conf\n")
    return f"{d}/main.conf"


def start_nginx(w, pl, procs, audit):
    module = first_existing("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so",
                            "/usr/lib*/nginx/modules/ngx_http_modsecurity_module.so")
    if not shutil.which("nginx") or not module:
        raise RuntimeError("nginx or its ModSecurity module is not installed")
    main = modsec_files(w, pl, audit)
    ng = os.path.join(w, "ng")
    os.makedirs(ng, exist_ok=True)
    open(f"{ng}/nginx.conf", "w").write(f"""load_module {module};
daemon off; master_process off; worker_processes 1;
pid {ng}/nginx.pid; error_log {ng}/error.log error;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {ng}/body; proxy_temp_path {ng}/proxy; fastcgi_temp_path {ng}/fcgi;
  uwsgi_temp_path {ng}/uwsgi; scgi_temp_path {ng}/scgi;
  client_max_body_size 1m;
  upstream be {{ server 127.0.0.1:{PORT_UP}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{PORT_NG};
    modsecurity on;
    modsecurity_rules_file {main};
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    p = subprocess.Popen(["nginx", "-p", ng, "-c", f"{ng}/nginx.conf", "-e", f"{ng}/error.log"],
                         stdout=open(f"{ng}/stderr.log", "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    if not wait_port(PORT_NG, p, 60):  # loading the CRS takes a moment
        errs = open(f"{ng}/error.log").read()[-2000:] + open(f"{ng}/stderr.log").read()[-500:]
        raise RuntimeError(f"nginx did not start:\n{errs}")
    return PORT_NG


def start_coregate(w, pl, binary, procs):
    """Returns the port, or raises RuntimeError with the reason (reported as n/a)."""
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"{binary} not built")
    conf = os.path.join(w, "gw.toml")
    open(conf, "w").write(f"""[server]
listen = "127.0.0.1:{PORT_CG}"
workers = 1
[[upstream]]
name = "be"
endpoints = ["127.0.0.1:{PORT_UP}"]
[[route]]
path_prefix = "/"
upstream = "be"
waf = {{ mode = "block", paranoia = {pl} }}
""")
    chk = subprocess.run([binary, "check", "--no-bind-check", "--config", conf],
                         capture_output=True, text=True)
    if chk.returncode != 0:
        msg = (chk.stderr or chk.stdout).strip().splitlines()
        raise RuntimeError("config refused: " + (msg[0].replace(conf, "gw.toml") if msg
                                                 else f"rc {chk.returncode}"))
    logp = os.path.join(w, "gw.log")
    p = subprocess.Popen([binary, "run", "--config", conf, "--workers", "1", "--no-pin"],
                         stdout=open(logp, "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    end = time.time() + 15
    while time.time() < end and p.poll() is None and "coregate: ready" not in open(logp).read():
        time.sleep(0.1)
    if p.poll() is not None or not wait_port(PORT_CG, p, 5):
        raise RuntimeError("coregate did not start: " + open(logp).read()[-500:])
    return PORT_CG


def build_request(placement, payload):
    """-> (method, target, headers, body)"""
    hdrs = {"Host": HOST, "User-Agent": UA, "Accept": "application/json, text/plain, */*",
            "Accept-Language": "en-US,en;q=0.8"}
    enc = urllib.parse.quote_plus(payload, safe="")
    if placement == "query":
        return "GET", "/api/items?q=" + enc, hdrs, None
    if placement == "form":
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        return "POST", "/api/items", hdrs, ("q=" + enc).encode()
    if placement == "json":
        hdrs["Content-Type"] = "application/json"
        return "POST", "/api/items", hdrs, json.dumps({"q": payload}, ensure_ascii=False).encode()
    if placement == "path":
        raw = "".join(urllib.parse.quote(c, safe="") if ord(c) <= 0x20 or ord(c) >= 0x7f
                      or c in "#?" else c for c in payload)
        return "GET", "/static/" + raw, hdrs, None
    if placement == "ua":
        hdrs["User-Agent"] = payload
        return "GET", "/api/items", hdrs, None
    raise ValueError(placement)


class Client:
    """One keep-alive connection (http.client sends the target as given: no normalisation),
    reopened when the server closes it; a request is retried twice on a transport error."""
    def __init__(self, port):
        self.port, self.conn = port, None

    def send(self, method, target, hdrs, body):
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in hdrs.items():
                    self.conn.putheader(k, v.encode("utf-8"))
                if body is not None:
                    self.conn.putheader("Content-Length", str(len(body)))
                self.conn.endheaders(body)
                r = self.conn.getresponse()
                r.read()
                if r.will_close:
                    self.close()
                return r.status
            except (http.client.HTTPException, OSError) as e:
                self.close()
                if attempt == 2:
                    return f"error:{type(e).__name__}"

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def plan(attacks, benign, placements):
    """-> [(corpus, family or kind, placement, payload)]"""
    reqs = []
    for fam, p in attacks:
        pls = ["ua"] if fam == "scanner" else \
            [pl for pl in placements if pl != "path" or fam == "traversal"]
        reqs += [("attack", fam, pl, p) for pl in pls]
    for kind, p in benign:
        reqs += [("benign", kind, pl, p) for pl in placements if pl != "path"]
    return reqs


def replay(port, reqs):
    c = Client(port)
    out = [c.send(*build_request(pl, p)) for _, _, pl, p in reqs]
    c.close()
    return out


def cell(results, idx, want):
    """'blocked': share answered 403; 'other': any other non-2xx or a transport error."""
    if results is None:
        return "n/a"
    st = [results[i] for i in idx]
    hit = (lambda s: s == 403) if want == "blocked" else \
        (lambda s: not (isinstance(s, int) and (200 <= s < 300 or s == 403)))
    n = sum(1 for s in st if hit(s))
    return f"{100.0 * n / len(st):.1f}% ({n}/{len(st)})" if st else "-"


def report(args, reqs, res, notes, secs):
    eng, title = ("coregate", "modsec"), {"coregate": "coregate", "modsec": "ModSecurity+CRS"}
    L = [f"# WAF corpus: paranoia level {args.paranoia}, {datetime.date.today().isoformat()}", ""]
    L += [f"- {title[e]}: {notes.get(e, 'ok')}" + (f" ({secs[e]:.1f} s)" if e in secs else "")
          for e in eng]
    L += ["", "Blocked = answered 403. Other = any other non-2xx answer or a transport error "
          "(in the `path` placement nginx answers 400 itself, before ModSecurity runs, to a URI "
          "that climbs above the root). Payloads are URL-encoded once for query/form.", "",
          "| family | payloads | placements | requests | " +
          " | ".join(f"{title[e]} blocked | {title[e]} other" for e in eng) + " |",
          "|---" * (4 + 2 * len(eng)) + "|"]

    def groups(corpus, keyf):
        g = {}
        for i, r in enumerate(reqs):
            if r[0] == corpus:
                g.setdefault(keyf(r), []).append(i)
        return g

    def row(label, idx, bold=False):
        used = {reqs[i][2] for i in idx}
        pls = "" if bold else ",".join(p for p in ALL_PLACEMENTS + ["ua"] if p in used)
        b = "**" if bold else ""
        return (f"| {b}{label}{b} | {len({(reqs[i][1], reqs[i][3]) for i in idx})} | {pls} | "
                f"{len(idx)} | " + " | ".join(f"{b}{cell(res[e], idx, 'blocked')}{b} | "
                                               f"{cell(res[e], idx, 'other')}" for e in eng) + " |")
    for fam, idx in groups("attack", lambda r: r[1]).items():
        L.append(row(fam, idx))
    L.append(row("attacks blocked", [i for i, r in enumerate(reqs) if r[0] == "attack"], True))
    L.append(row("benign blocked (FP)", [i for i, r in enumerate(reqs) if r[0] == "benign"], True))
    L += ["", "Per placement (blocked %; for benign rows: false positives):", "",
          "| corpus | family / kind | placement | requests | " +
          " | ".join(title[e] for e in eng) + " |", "|---" * (4 + len(eng)) + "|"]
    for corpus in ("attack", "benign"):
        for (fam, pl), idx in groups(corpus, lambda r: (r[1], r[2])).items():
            L.append(f"| {corpus} | {fam} | {pl} | {len(idx)} | " +
                     " | ".join(cell(res[e], idx, "blocked") for e in eng) + " |")
    return "\n".join(L) + "\n"


def misses(reqs, res):
    out = []
    for e in ("coregate", "modsec"):
        for (corpus, fam, pl, p), st in zip(reqs, res[e] or []):
            if (corpus == "attack") == (st != 403):
                kind = "miss" if corpus == "attack" else "fp"
                out.append(f"{e}\t{kind}\t{fam}\t{pl}\t{st}\t{corpus_form(p)}\n")
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paranoia", type=int, default=1, choices=[1, 2, 3, 4])
    ap.add_argument("--only", choices=["modsec", "coregate"])
    ap.add_argument("--placements", default=",".join(ALL_PLACEMENTS),
                    help="of query,form,json,path (path: traversal only; scanner always uses ua)")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    ap.add_argument("--bin", default=os.path.join(target, "release/coregate"))
    ap.add_argument("--attacks", default=os.path.join(ROOT, "benches/waf/attacks.tsv"))
    ap.add_argument("--benign", default=os.path.join(ROOT, "benches/waf/benign.tsv"))
    ap.add_argument("--out", default=os.path.join(ROOT, "benches/results"))
    ap.add_argument("--workdir", help="work dir to use and keep (default: a temp dir, removed)")
    ap.add_argument("--modsec-audit", action="store_true",
                    help="write ModSecurity's audit log to WORKDIR/modsec/audit.log")
    args = ap.parse_args()
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    if not placements or any(p not in ALL_PLACEMENTS for p in placements):
        sys.exit(f"--placements: choose from {','.join(ALL_PLACEMENTS)}")
    reqs = plan(load_tsv(args.attacks), load_tsv(args.benign), placements)
    own_tmp = args.workdir is None
    w = tempfile.mkdtemp(prefix="waf-corpus-") if own_tmp else args.workdir
    procs = []
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        up = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(PORT_UP)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(up)
        if not wait_port(PORT_UP, up):
            sys.exit(f"upstream did not start (port {PORT_UP} busy?)")
        res, notes, secs = {"coregate": None, "modsec": None}, {}, {}
        starters = {"coregate": lambda: start_coregate(w, args.paranoia, args.bin, procs),
                    "modsec": lambda: start_nginx(w, args.paranoia, procs, args.modsec_audit)}
        for e in ("coregate", "modsec"):
            if args.only and args.only != e:
                notes[e] = "not run (--only)"
                continue
            try:
                port = starters[e]()
            except RuntimeError as err:
                notes[e] = f"n/a: {err}"
                print(f"{e}: n/a: {err}", file=sys.stderr)
                continue
            c = Client(port)  # sanity: a benign GET passes, a textbook SQLi is blocked
            ok = c.send(*build_request("query", "red shoes"))
            bad = c.send(*build_request("query", "' or 1=1--"))
            c.close()
            print(f"{e}: sanity: benign -> {ok}, ' or 1=1-- -> {bad}; replaying {len(reqs)} "
                  "requests", file=sys.stderr)
            if ok != 200:
                notes[e] = f"n/a: a benign request got {ok}"
                continue
            notes[e] = "ok" if bad == 403 else f"warning: ' or 1=1-- got {bad}"
            t = time.time()
            res[e] = replay(port, reqs)
            secs[e] = time.time() - t
        text = report(args, reqs, res, notes, secs)
        print(text)
        os.makedirs(args.out, exist_ok=True)
        suffix = "" if args.paranoia == 1 else f"-pl{args.paranoia}"
        path = os.path.join(args.out, f"waf-corpus-{datetime.date.today().isoformat()}{suffix}.md")
        open(path, "w").write(text)
        mpath = os.path.join(args.out, "waf-misses.txt")
        open(mpath, "w").write(f"# PL{args.paranoia}: engine, miss|fp, family/kind, placement, "
                               f"status, payload (as in the corpus files)\n{misses(reqs, res)}")
        print(f"wrote {path} and {mpath}", file=sys.stderr)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        if own_tmp:
            shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
