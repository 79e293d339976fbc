#!/usr/bin/env python3
"""waypost against nginx terminating TLS, side by side in one run.

Two figures, each proxy with the same config and the same certificate
(ECDSA P-256, made here with openssl):

- TLS handshakes per second: `h2load --h1` against a server with
  `keepalive_timeout 0`, so every request is a new connection and a full
  handshake (h2load reconnects after each `Connection: close`).
- HTTP/2 requests per second over TLS: h2load with a few connections and
  several streams each.

Requests are proxied to a one-worker nginx backend (bench/common.py). Each
proxy runs one worker pinned to CPU 0; the backend and h2load share CPU 1,
so the proxy is the bottleneck. Runs alternate nginx, waypost, nginx, ...
and the medians are reported with the waypost/nginx ratios.

Needs nginx, h2load (apt-get install -y nginx nghttp2-client), openssl and
a release build:
    cargo build --release && python3 bench/tls.py [--rounds 5] [--handshakes 6000] [--requests 200000]

Both get `ssl_protocols TLSv1.2 TLSv1.3` (nginx 1.22's default has no
TLSv1.3), so both negotiate TLSv1.3 with X25519 and AES-128-GCM.
"""
import argparse, os, re, shutil, signal, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACK, HANDSHAKE, H2 = 19291, 19493, 19494

from common import backend, cpu_seconds, proc_pids, stop, wait_port, write


def http_block(d):
    return f"""events {{ worker_connections 4096; }}
http {{ access_log off;
  upstream u {{ server 127.0.0.1:{BACK}; keepalive 128; }}
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate {d}/cert.pem;
  ssl_certificate_key {d}/key.pem;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {{ listen 127.0.0.1:{HANDSHAKE} ssl backlog=4096; keepalive_timeout 0;
    location / {{ proxy_pass http://u; }} }}
  server {{ listen 127.0.0.1:{H2} ssl http2 backlog=4096; keepalive_requests 1000000;
    location / {{ proxy_pass http://u; }} }} }}"""


def proxies(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-subj", "/CN=bench.test",
                    "-days", "2"], check=True, capture_output=True)
    nginx = write(d, "nginx.conf", f"daemon off; worker_processes 1; pid {d}/nx.pid; error_log {d}/nx.err;\n" + http_block(d))
    waypost = write(d, "waypost.conf", f"worker_processes 1; pid {d}/wp.pid; error_log {d}/wp.err;\n" + http_block(d))
    binary = os.path.join(ROOT, "target/release/waypost")
    assert os.path.exists(binary), "build first: cargo build --release"
    return {
        "nginx": ["nginx", "-p", d + "/", "-c", nginx],
        "waypost": [binary, "-p", d + "/", "-c", waypost],
    }


def h2load(args):
    out = subprocess.run("taskset -c 1 h2load " + args, shell=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    total, ok = int(m.group(1)), int(m.group(2))
    return rps, ok, total - ok


def measure(cmd, a):
    p = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(HANDSHAKE) and wait_port(H2), f"{cmd[0]} did not listen"
        # Warm-up.
        h2load(f"-n 2000 -c 10 -m 10 https://127.0.0.1:{H2}/")
        pids = proc_pids(p)
        out = {}
        c0 = cpu_seconds(pids)
        out["hs"], ok, bad = h2load(f"--h1 -n {a.handshakes} -c {a.clients} https://127.0.0.1:{HANDSHAKE}/")
        c1 = cpu_seconds(pids)
        out["hs_cpu"] = (c1 - c0) * 1e6 / max(ok, 1)
        out["bad"] = bad
        out["h2"], ok, bad = h2load(f"-n {a.requests} -c {a.clients} -m {a.streams} https://127.0.0.1:{H2}/")
        c2 = cpu_seconds(pids)
        out["h2_cpu"] = (c2 - c1) * 1e6 / max(ok, 1)
        out["bad"] += bad
        return out
    finally:
        stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--handshakes", type=int, default=6000)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--streams", type=int, default=10)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="waypost-bench")
    back = backend(d, BACK)
    try:
        cands = proxies(d)
        runs = {k: [] for k in cands}
        for _ in range(a.rounds):
            for name, cmd in cands.items():
                runs[name].append(measure(cmd, a))
        fields = ("hs", "hs_cpu", "h2", "h2_cpu")
        med = {k: {f: statistics.median(r[f] for r in rs) for f in fields} for k, rs in runs.items()}
        bad = {k: sum(r["bad"] for r in rs) for k, rs in runs.items()}
        print(f"{'':8} {'handshakes/s':>13} {'CPU us/hs':>10} {'h2 req/s':>10} {'CPU us/req':>11} {'errors':>7}")
        for k, m in med.items():
            print(f"{k:8} {m['hs']:13.0f} {m['hs_cpu']:10.1f} {m['h2']:10.0f} {m['h2_cpu']:11.2f} {bad[k]:7d}")
        n, w = med["nginx"], med["waypost"]
        print(f"waypost/nginx: handshakes/s {w['hs'] / n['hs']:.3f}, CPU/handshake {w['hs_cpu'] / n['hs_cpu']:.3f}, "
              f"h2 req/s {w['h2'] / n['h2']:.3f}, CPU/req {w['h2_cpu'] / n['h2_cpu']:.3f}  "
              f"({a.rounds} rounds; {a.handshakes} handshakes and {a.requests} h2 requests, "
              f"{a.clients} clients, {a.streams} streams each)")
    finally:
        back.send_signal(signal.SIGQUIT)
        back.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
