#!/usr/bin/env python3
"""p2c_ewma against round robin, on backends of unequal speed.

    apt-get install -y wrk
    cargo build --release --workspace
    python3 bench/p2c.py [--secs 15]

Three asyncio backends (this script), each answering a small body; one can
be told to answer 50 ms later than the others (POST /slow, POST /fast).
waypost runs with one worker and `keepalive 64` to them.

1. One backend 50 ms slower: p99 through round_robin and through p2c_ewma
   (wrk --latency, 16 connections). Target: p2c_ewma's p99 at most one
   fifth of round robin's.
2. Three equal backends through p2c_ewma: each one's share of the tries
   (from `metrics;`). Target: each at least 25%.
3. Recovery: p2c_ewma with decay=2s; backend 3 slow for 10 s, then fast:
   the time until its share over a 1 s window is back to 25%. Target:
   within two decay periods.
"""
import argparse, asyncio, os, re, subprocess, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from common import wait_port, write  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY, B1 = 18400, 18401
BACKENDS = [B1, B1 + 1, B1 + 2]


class Backend:
    """A keep-alive HTTP/1.1 server; `slow` adds 50 ms to every answer."""

    def __init__(self, port):
        self.port, self.slow = port, False

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                line = head.split(b"\r\n", 1)[0]
                if line.startswith(b"POST /slow"):
                    self.slow = True
                elif line.startswith(b"POST /fast"):
                    self.slow = False
                elif self.slow:
                    await asyncio.sleep(0.05)
                body = b"backend %d\n" % self.port
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve(self):
        server = await asyncio.start_server(self.handle, "127.0.0.1", self.port, backlog=1024)
        async with server:
            await server.serve_forever()


def start_backends():
    backends = [Backend(p) for p in BACKENDS]

    def run():
        loop = asyncio.new_event_loop()
        for b in backends:
            loop.create_task(b.serve())
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    for p in BACKENDS:
        assert wait_port(p), f"backend {p} did not start"
    return backends


def waypost(d, balancer):
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in BACKENDS)
    conf = write(d, "waypost.conf", f"""worker_processes 1; pid {d}/wp.pid; error_log {d}/wp.err;
events {{ worker_connections 4096; }}
http {{ access_log off;
    upstream app {{ {balancer}
{servers}
        keepalive 64; }}
    server {{ listen 127.0.0.1:{PROXY} backlog=4096;
        location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }}
        location = /metrics {{ metrics; }} }} }}""")
    bin_dir = os.path.join(ROOT, "target/release")
    p = subprocess.Popen([os.path.join(bin_dir, "waypost"), "-p", d + "/", "-c", conf,
                          "--modules-dir", bin_dir],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_port(PROXY), "waypost did not start"
    return p


def tries():
    text = urllib.request.urlopen(f"http://127.0.0.1:{PROXY}/metrics").read().decode()
    out = {}
    for port in BACKENDS:
        m = re.search(r'waypost_upstream_peer_requests_total\{upstream="app",peer="127\.0\.0\.1:%d"\} (\d+)' % port, text)
        out[port] = int(m.group(1)) if m else 0
    return out


def wrk(secs, conns=16):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency",
                          f"http://127.0.0.1:{PROXY}/"], capture_output=True, text=True).stdout
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    value, unit = float(p99.group(1)), p99.group(2)
    ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return ms, rps


def post(port, path):
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST")).read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=15)
    args = ap.parse_args()
    backends = start_backends()
    with tempfile.TemporaryDirectory() as d:
        # 1. one slow backend
        post(BACKENDS[2], "/slow")
        p99 = {}
        for name, balancer in [("round_robin", ""), ("p2c_ewma", "p2c_ewma;")]:
            wp = waypost(d, balancer)
            try:
                wrk(2)  # warm-up: connections and estimates
                p99[name], rps = wrk(args.secs)
                print(f"slow backend, {name}: p99 {p99[name]:.2f} ms, {rps:.0f} req/s")
            finally:
                wp.terminate(); wp.wait()
        print(f"p99 ratio p2c_ewma / round_robin: {p99['p2c_ewma'] / p99['round_robin']:.3f} (target <= 0.2)")

        # 2. three equal backends
        post(BACKENDS[2], "/fast")
        wp = waypost(d, "p2c_ewma;")
        try:
            before = tries()
            wrk(args.secs)
            after = tries()
            total = sum(after[p] - before[p] for p in BACKENDS)
            shares = [(after[p] - before[p]) / total for p in BACKENDS]
            print("equal backends, p2c_ewma shares: " + ", ".join(f"{s:.1%}" for s in shares)
                  + " (target: each >= 25%)")
        finally:
            wp.terminate(); wp.wait()

        # 3. recovery with decay=2s
        post(BACKENDS[2], "/slow")
        wp = waypost(d, "p2c_ewma decay=2s;")
        try:
            load = subprocess.Popen(["wrk", "-t1", "-c16", "-d60s", f"http://127.0.0.1:{PROXY}/"],
                                    stdout=subprocess.DEVNULL)
            time.sleep(10)
            post(BACKENDS[2], "/fast")
            t0 = time.time()
            prev = tries()
            recovered = None
            while time.time() - t0 < 30:
                time.sleep(1)
                cur = tries()
                window = {p: cur[p] - prev[p] for p in BACKENDS}
                prev = cur
                share = window[BACKENDS[2]] / max(1, sum(window.values()))
                print(f"  t+{time.time() - t0:4.1f}s share of the recovered backend: {share:.1%}")
                if share >= 0.25:
                    recovered = time.time() - t0
                    break
            load.terminate(); load.wait()
            if recovered is None:
                print("recovery: share not back to 25% within 30 s")
            else:
                print(f"recovery: share back to >= 25% {recovered:.1f} s after the backend recovered "
                      f"(decay 2 s; target <= 4 s; resolution 1 s)")
        finally:
            wp.terminate(); wp.wait()


if __name__ == "__main__":
    main()
