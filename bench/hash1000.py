#!/usr/bin/env python3
"""`hash $request_uri consistent` over 1,000 servers against round robin
over the same 1,000 servers (issue 8: at least 0.98x), for waypost and, for
reference, nginx; alternating runs, medians.

The 1,000 servers are 127.0.x.y on one port of a one-worker nginx backend
(pinned to CPU 1), so every balancer choice reaches a real peer; wrk (CPU 1)
asks for random URIs so the hash spreads like round robin does; the proxy
has one worker on CPU 0 and `keepalive 2048`, so both keep a connection per
peer.

    apt-get install -y nginx wrk
    cargo build --release --workspace
    python3 bench/hash1000.py [--rounds 3] [--secs 5]
"""
import argparse, os, re, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu_seconds, wait_port, write  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACK, PROXY = 19301, 19380
SERVERS = 1000


def conf(d, name, balancer, nginx):
    servers = "".join(f"    server 127.0.{i // 250}.{i % 250 + 1}:{BACK};\n" for i in range(SERVERS))
    head = (f"daemon off; master_process off; worker_processes 1; pid {d}/{name}.pid; error_log {d}/{name}.err;\n"
            if nginx else f"worker_processes 1; pid {d}/{name}.pid; error_log {d}/{name}.err;\n")
    return write(d, name + ".conf", head + f"""events {{ worker_connections 8192; }}
http {{ access_log off;
  upstream u {{
{balancer}
{servers}    keepalive 2048;
  }}
  server {{ listen 127.0.0.1:{PROXY} backlog=4096; keepalive_requests 100000;
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}""")


def run(cmd, secs, script):
    p = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(PROXY), f"{cmd} did not listen"
        # Warm-up: a connection to most peers.
        subprocess.run(f"taskset -c 1 wrk -t1 -c50 -d2s -s {script} http://127.0.0.1:{PROXY}/",
                       shell=True, capture_output=True)
        c0 = cpu_seconds([p.pid])
        out = subprocess.run(f"taskset -c 1 wrk -t1 -c50 -d{secs}s -s {script} http://127.0.0.1:{PROXY}/",
                             shell=True, capture_output=True, text=True).stdout
        c1 = cpu_seconds([p.pid])
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        reqs = int(re.search(r"(\d+) requests in", out).group(1))
        assert "Non-2xx" not in out, out
        return rps, (c1 - c0) * 1e6 / reqs
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait()
        time.sleep(0.3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    a = ap.parse_args()
    binary = os.path.join(ROOT, "target/release/waypost")
    with tempfile.TemporaryDirectory() as d:
        back_conf = write(d, "back.conf", f"""daemon off; worker_processes 1; pid {d}/back.pid; error_log {d}/back.err;
events {{ worker_connections 8192; }}
http {{ access_log off;
  server {{ listen {BACK} backlog=4096; keepalive_requests 100000; location / {{ return 200 "hello\\n"; }} }} }}""")
        back = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", d + "/", "-c", back_conf],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        script = write(d, "random.lua", 'request = function() return wrk.format(nil, "/k" .. math.random(1, 1000000)) end\n')
        try:
            assert wait_port(BACK)
            cands = {}
            for server, nginx in (("waypost", False), ("nginx", True)):
                for bal, line in (("rr", ""), ("hash", "    hash $request_uri consistent;")):
                    c = conf(d, f"{server}-{bal}", line, nginx)
                    cands[(server, bal)] = (["nginx", "-p", d + "/", "-c", c] if nginx
                                            else [binary, "-p", d + "/", "-c", c])
            runs = {k: [] for k in cands}
            for _ in range(a.rounds):
                for k, cmd in cands.items():
                    runs[k].append(run(cmd, a.secs, script))
            print(f"{'':18} {'req/s':>9} {'CPU us/req':>11}")
            med = {}
            for k, rs in runs.items():
                med[k] = (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
                print(f"{k[0] + ' ' + k[1]:18} {med[k][0]:9.0f} {med[k][1]:11.2f}")
            for server in ("waypost", "nginx"):
                h, r = med[(server, "hash")], med[(server, "rr")]
                print(f"{server}: hash consistent / round robin over {SERVERS} servers: req/s {h[0] / r[0]:.3f}, "
                      f"CPU/req {h[1] / r[1]:.3f}  ({a.rounds} rounds of {a.secs}s)")
        finally:
            back.send_signal(signal.SIGQUIT)
            back.wait()


if __name__ == "__main__":
    main()
