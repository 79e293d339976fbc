#!/usr/bin/env python3
"""Reload cost: waypost against nginx, side by side in one run.

1. Time from SIGHUP to the new configuration serving, for a config of
   U upstreams with 4 servers each (one location per upstream) and a
   location `= /v` whose answer changes with every reload: the clock runs
   from the signal until `GET /v` returns the new text (polled every ms).
2. Memory after N reloads of an unchanged config against after the first:
   RSS of the process (nginx: master plus its workers, once the old
   workers are gone). A reload is counted done from the error log
   (waypost: `configuration reloaded`; nginx: `start worker processes`).

Needs nginx (apt-get install -y nginx) and a release build:
    cargo build --release && python3 bench/reload.py [--upstreams 1000] [--rounds 9] [--reloads 1000]
"""
import argparse, http.client, os, shutil, signal, socket, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 19397


def wait_port(port, timeout=30.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.01)
    return False


def get(path="/v"):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.read().decode(errors="replace")
    except OSError:
        return None
    finally:
        c.close()


def conf(kind, d, upstreams, version):
    ups = "\n".join(
        f"  upstream u{i} {{ server 127.0.0.{1 + i % 200}:{10000 + i}; server 127.0.1.{1 + i % 200}:{10000 + i}; "
        f"server 127.0.2.{1 + i % 200}:{10000 + i} weight=2; server 127.0.3.{1 + i % 200}:{10000 + i} backup; }}"
        for i in range(upstreams))
    locs = "\n".join(f"    location /u{i} {{ proxy_pass http://u{i}; }}" for i in range(upstreams))
    head = "daemon off; " if kind == "nginx" else ""
    return f"""{head}worker_processes 1; pid {d}/p.pid; error_log {d}/e.log notice;
events {{ }}
http {{ access_log off;
{ups}
  server {{ listen 127.0.0.1:{PORT};
    location = /v {{ return 200 "{version}"; }}
{locs}
  }}
}}
"""


def write(path, text):
    with open(path + ".t", "w") as f:
        f.write(text)
    os.replace(path + ".t", path)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def total_rss(pid, kind):
    """RSS of the process, and for nginx of its one worker once the old
    ones have exited."""
    if kind == "nginx":
        deadline = time.time() + 30
        while len(children(pid)) > 1 and time.time() < deadline:
            time.sleep(0.01)
        return rss_kb(pid) + sum(rss_kb(k) for k in children(pid))
    return rss_kb(pid)


def log_count(d, text):
    try:
        with open(f"{d}/e.log") as f:
            return f.read().count(text)
    except OSError:
        return 0


def run(kind, upstreams, rounds, reloads):
    d = tempfile.mkdtemp(prefix=f"reload-{kind}-")
    cf = f"{d}/c.conf"
    write(cf, conf(kind, d, upstreams, 0))
    binary = "nginx" if kind == "nginx" else os.path.join(ROOT, "target/release/waypost")
    done_line = "start worker processes" if kind == "nginx" else "configuration reloaded"
    p = subprocess.Popen([binary, "-p", d + "/", "-c", cf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(PORT), f"{kind} did not start"
        times = []
        for r in range(1, rounds + 1):
            write(cf, conf(kind, d, upstreams, r))
            time.sleep(0.3)  # let the previous round's old workers go (nginx)
            t0 = time.perf_counter()
            p.send_signal(signal.SIGHUP)
            while get() != str(r):
                if time.perf_counter() - t0 > 30:
                    raise SystemExit(f"{kind}: reload {r} never took effect")
                time.sleep(0.001)
            times.append((time.perf_counter() - t0) * 1000)

        # Memory: the config stays the same from here on.
        base = log_count(d, done_line)
        p.send_signal(signal.SIGHUP)
        while log_count(d, done_line) < base + 1:
            time.sleep(0.001)
        assert get() == str(rounds)
        first = total_rss(p.pid, kind)
        t0 = time.perf_counter()
        for n in range(2, reloads + 1):
            p.send_signal(signal.SIGHUP)
            while log_count(d, done_line) < base + n:
                time.sleep(0.0005)
        elapsed = time.perf_counter() - t0
        assert get() == str(rounds)
        last = total_rss(p.pid, kind)
        return dict(median=statistics.median(times), times=times, first=first, last=last,
                    per_reload=elapsed * 1000 / max(reloads - 1, 1))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstreams", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=9, help="timed reloads with a changed config")
    ap.add_argument("--reloads", type=int, default=1000, help="reloads of an unchanged config for memory")
    ap.add_argument("--only", default="nginx,waypost")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, "target/release/waypost")):
        raise SystemExit("build first: cargo build --release")
    results = {k: run(k, a.upstreams, a.rounds, a.reloads) for k in a.only.split(",")}
    print(f"{a.upstreams} upstreams x 4 servers; {a.rounds} timed reloads; {a.reloads} unchanged reloads")
    for k, r in results.items():
        print(f"{k:8} SIGHUP -> new config serving: median {r['median']:.0f} ms "
              f"(runs {[round(t) for t in r['times']]}); "
              f"RSS after reload 1: {r['first'] / 1024:.1f} MiB, after {a.reloads}: {r['last'] / 1024:.1f} MiB "
              f"({(r['last'] - r['first']) / 1024:+.1f} MiB); {r['per_reload']:.1f} ms per unchanged reload")
    if "nginx" in results and "waypost" in results:
        n, w = results["nginx"], results["waypost"]
        print(f"waypost/nginx: reload time {w['median'] / n['median']:.2f}x")


if __name__ == "__main__":
    main()
