#!/usr/bin/env python3
"""Slow clients (issue 9): 2,000 connections send a request head one byte a
second while a normal client sends requests one after another; reports the
normal client's latency (median, p99, max) with and without the slow
clients, for waypost and nginx on the same config, one worker each.
Target: the slow clients delay a normal request by at most 100 ms.

    apt-get install -y nginx
    cargo build --release --workspace
    python3 bench/slowloris.py [--slow 2000] [--seconds 10]
"""
import argparse, os, resource, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from common import wait_port, write  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 18700
HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n"


def start(d, nginx):
    conf = write(d, "s.conf", f"""daemon off; worker_processes 1; pid {d}/s.pid;
error_log {d}/error.log;
events {{ worker_connections 8192; }}
http {{ access_log off; client_header_timeout 60s;
  server {{ listen 127.0.0.1:{PORT} backlog=4096; location / {{ return 200 "ok\\n"; }} }} }}""")
    cmd = (["nginx", "-p", d + "/", "-c", conf] if nginx
           else [os.path.join(ROOT, "target/release/waypost"), "-p", d + "/", "-c", conf])
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_port(PORT), "server did not start"
    return p


def one_request():
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:40]
    return (time.perf_counter() - t) * 1000


def measure(seconds, slow_socks):
    lat, sent, start = [], 0, time.monotonic()
    while time.monotonic() - start < seconds:
        if slow_socks and time.monotonic() - start >= sent and sent < len(HEAD) - 1:
            for s in slow_socks:
                try:
                    s.send(HEAD[sent:sent + 1])
                except OSError:
                    pass
            sent += 1
        lat.append(one_request())
    lat.sort()
    return (statistics.median(lat), lat[int(len(lat) * 0.99)], lat[-1], len(lat))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    print(f"{'server':8} {'slow':>5} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} {'requests':>9}")
    for nginx in (False, True):
        name = "nginx" if nginx else "waypost"
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "logs"), exist_ok=True)
            p = start(d, nginx)
            try:
                base = measure(a.seconds / 2, [])
                socks = [socket.create_connection(("127.0.0.1", PORT)) for _ in range(a.slow)]
                for s in socks:
                    s.setblocking(False)
                loaded = measure(a.seconds, socks)
                for s in socks:
                    s.close()
            finally:
                p.terminate()
                p.wait()
            for slow, r in ((0, base), (a.slow, loaded)):
                print(f"{name:8} {slow:>5} {r[0]:>10.2f} {r[1]:>8.2f} {r[2]:>8.2f} {r[3]:>9}")


if __name__ == "__main__":
    main()
