#!/usr/bin/env python3
"""Long run: 1,000,000 requests through waypost with 500 reloads in between
and one of two backends killed and restarted, then the checks of issue 9:

- no failed request that the retry rules could have saved (one backend is
  always up and `proxy_next_upstream error timeout` is on, so every failure
  counts: wrk's non-2xx responses and socket errors must be 0);
- resident memory at the end within 10% of the level after the first
  100,000 requests;
- as many open file descriptors at the end as at the start (counted with
  the load stopped and idle upstream connections closed).

    apt-get install -y nginx wrk
    cargo build --release --workspace
    python3 bench/soak.py [--requests 1000000] [--reloads 500]
"""
import argparse, os, re, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from common import wait_port, write  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY, B1, B2 = 18600, 18601, 18602


def backend(d, port):
    sub = os.path.join(d, f"b{port}")
    os.makedirs(sub, exist_ok=True)
    # master_process off: a kill takes the whole server down, no orphaned
    # worker keeps answering.
    conf = write(sub, "back.conf", f"""daemon off; master_process off; worker_processes 1; pid {sub}/back.pid; error_log {sub}/back.err;
events {{ worker_connections 4096; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 100000;
    location / {{ return 200 "hello from {port}\\n"; }} }} }}""")
    p = subprocess.Popen(["nginx", "-p", sub + "/", "-c", conf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_port(B1 if port == B1 else port), f"backend {port} did not start"
    return p


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid):
    """What the open descriptors are, for a report when the counts differ."""
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":")[0] if ":" in target else "file"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def wrk(secs, conns=16):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", f"http://127.0.0.1:{PROXY}/"],
                         capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = (int(non2xx.group(1)) if non2xx else 0)
    sock = sum(int(x) for x in errors.groups()) if errors else 0
    return requests, bad, sock, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--reloads", type=int, default=500)
    ap.add_argument("--chunk", type=int, default=2, help="seconds of load per wrk run")
    ap.add_argument("--access-log", action="store_true",
                    help="log every request to a file; at the end, a line per answered request")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        b1 = backend(d, B1)
        b2 = backend(d, B2)
        log = f"{d}/access.log" if args.access_log else "off"
        conf = write(d, "waypost.conf", f"""worker_processes 1; pid {d}/wp.pid; error_log {d}/wp.err notice;
events {{ worker_connections 4096; }}
http {{ access_log {log};
    upstream app {{ server 127.0.0.1:{B1} max_fails=1 fail_timeout=1s; server 127.0.0.1:{B2} max_fails=1 fail_timeout=1s; keepalive 32; }}
    server {{ listen 127.0.0.1:{PROXY} backlog=4096;
        location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
                      proxy_next_upstream error timeout; }} }} }}""")
        bin_dir = os.path.join(ROOT, "target/release")
        wp = subprocess.Popen([os.path.join(bin_dir, "waypost"), "-p", d + "/", "-c", conf,
                               "--modules-dir", bin_dir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_port(PROXY), "waypost did not start"
        fds_start = fds(wp.pid)
        kinds_start = fd_kinds(wp.pid)
        # With --access-log, the log file opens at the first line and
        # stays open: one more at the end.

        stop = threading.Event()
        reloads = [0]
        total = [0]

        def reloader():
            # Spread the reloads over the expected run: one every
            # interval, adjusted to the requests seen so far.
            while not stop.is_set() and reloads[0] < args.reloads:
                done = total[0] / args.requests
                due = int(done * args.reloads) + 1
                if reloads[0] < min(due, args.reloads):
                    os.kill(wp.pid, signal.SIGHUP)
                    reloads[0] += 1
                time.sleep(0.02)

        def killer():
            # Backend 2 dies and comes back, over and over; backend 1 stays.
            nonlocal b2
            while not stop.is_set():
                time.sleep(3)
                b2.kill(); b2.wait()
                time.sleep(2)
                b2 = backend(d, B2)

        threads = [threading.Thread(target=reloader, daemon=True),
                   threading.Thread(target=killer, daemon=True)]
        for t in threads:
            t.start()
        bad = sock = 0
        rss_100k = None
        t0 = time.time()
        while total[0] < args.requests:
            n, b, s, out = wrk(args.chunk)
            total[0] += n
            bad += b
            sock += s
            if b or s:
                print(out)
            if rss_100k is None and total[0] >= 100_000:
                rss_100k = rss_kb(wp.pid)
            print(f"  {total[0]:>9} requests, {reloads[0]:>3} reloads, failures {bad} non-2xx + {sock} socket errors, "
                  f"RSS {rss_kb(wp.pid)} KB", flush=True)
        # The remaining reloads, if the load ran out first.
        while reloads[0] < args.reloads:
            os.kill(wp.pid, signal.SIGHUP)
            reloads[0] += 1
            time.sleep(0.02)
        stop.set()
        elapsed = time.time() - t0
        rss_end = rss_kb(wp.pid)
        # Idle upstream connections belong to the pool, not to a leak: let
        # keepalive_timeout (60 s default) close... instead compare with the
        # backends' connections closed: kill both backends, make one request
        # per pooled connection fail over nothing, then count.
        b1.kill(); b1.wait()
        try:
            b2.kill(); b2.wait()
        except Exception:
            pass
        time.sleep(1)
        fds_end = fds(wp.pid)
        kinds_end = fd_kinds(wp.pid)
        if fds_end != fds_start:
            subprocess.run(["ss", "-tanp"], check=False)
        with open(os.path.join(d, "wp.err")) as f:
            reloaded = f.read().count("configuration reloaded")
        wp.send_signal(signal.SIGQUIT); wp.wait()
        print(f"requests {total[0]} in {elapsed:.0f} s, reloads {reloads[0]} sent / {reloaded} done")
        print(f"failed requests: {bad} non-2xx, {sock} socket errors (target 0)")
        print(f"RSS after 100k: {rss_100k} KB, at the end: {rss_end} KB, "
              f"ratio {rss_end / rss_100k:.3f} (target <= 1.10)")
        print(f"open fds at start {fds_start} {kinds_start}, at the end {fds_end} {kinds_end} (target equal{', plus the access log file' if args.access_log else ''})")
        if args.access_log:
            with open(log, "rb") as f:
                lines = sum(1 for _ in f)
            answered = total[0]
            print(f"access log: {lines} lines for {answered} answered requests "
                  f"(target: at least one each; wrk's unfinished requests at each run's end add lines)")


if __name__ == "__main__":
    main()
