#!/usr/bin/env python3
"""Gateway RSS per idle client connection, HTTP/1.1 keep-alive (after one request) and h2c (after
the SETTINGS exchange, no stream open). Each mode runs in a fresh one-worker gateway: 50 warm-up
connections, then N connections held open; the RSS growth divided by N is printed.

Usage: benches/e2e/idle_memory.py [N=1000] [binary=target/release/coregate]
"""
import os, resource, socket, subprocess, sys, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/release/coregate")
resource.setrlimit(resource.RLIMIT_NOFILE, (N * 2 + 256, N * 2 + 256))
UP = 18091
backend = subprocess.Popen([sys.executable, "-m", "http.server", str(UP), "--bind", "127.0.0.1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def config(port):
    path = f"/tmp/coregate-idle-memory-{port}.toml"
    open(path, "w").write(f'[server]\nlisten = "127.0.0.1:{port}"\nkeepalive_timeout = "600s"\n'
                          f'[[upstream]]\nname = "be"\nendpoints = ["127.0.0.1:{UP}"]\n[[route]]\nupstream = "be"\n')
    return path
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

def open_conns(GW, n, h2):
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", GW))
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SETTINGS if h2 else b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        out.append(s)
    time.sleep(1.0)
    for s in out:
        s.settimeout(2)
        try:
            s.recv(65536)
        except OSError:
            pass
    return out

try:
    time.sleep(0.5)
    for GW, label, h2 in [(18092, "HTTP/1.1 keep-alive, idle after one request", False), (18093, "h2c, idle after SETTINGS", True)]:
        gw = subprocess.Popen([BIN, "run", "--config", config(GW), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=open("/tmp/coregate-idle-memory.log", "a"))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", GW)).close()
                break
            except OSError:
                time.sleep(0.1)
        for s in open_conns(GW, 50, h2):
            s.close()
        time.sleep(0.5)
        base = rss(gw.pid)
        conns = open_conns(GW, N, h2)
        time.sleep(0.5)
        grown = rss(gw.pid) - base
        print(f"{label}: {grown} KiB for {N} connections, {grown * 1024 / N:.0f} bytes each")
        for s in conns:
            s.close()
        gw.kill()
        gw.wait()
finally:
    backend.kill()
