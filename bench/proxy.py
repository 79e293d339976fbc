#!/usr/bin/env python3
"""waypost against nginx (and haproxy, when installed) as a reverse proxy,
side by side in one run.

Backend: one nginx worker answering a small body. Each proxy runs with one
worker (haproxy: one thread), pinned to CPU 0; the backend and wrk share
CPU 1, so the proxy is the bottleneck. Runs alternate nginx, waypost,
haproxy, nginx, ... and the medians are reported with the ratios to nginx.
Upstream connection reuse: the backend's stub_status counts the
connections each proxy opened during a run, reported per 1,000 requests.

With `--paired`, `WAYPOST_B=/path/to/other/waypost` runs another build
beside the first (an A/B of two builds in the same rounds).

Needs nginx and wrk (apt-get install -y nginx wrk [haproxy]) and a release build:
    cargo build --release && python3 bench/proxy.py [--rounds 5] [--secs 5] [--conns 50] [--paired]

`--paired` runs every proxy at the same time instead, all on CPU 0, one
wrk each on CPU 1, and reports the per-round ratios to nginx of req/s and
of CPU time per request: on a shared machine whose speed swings from one
round to the next, they hold within a few percent (see `paired`).

`--latency` measures latency at the same moderate load for every proxy
instead of at saturation (see `latency`): `--latency-conns` connections,
each waiting `--delay-ms` after every response before its next request.
"""
import argparse, os, re, shutil, signal, socket, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACK, PROXY, STATUS = 19101, 19180, 19102

from common import accepts, at_once, backend, proc_pids, spread, stop, user_system, wait_port, write


def proxy_http(port):
    return f"""events {{ worker_connections 4096; }}
http {{ access_log off;
  upstream u {{ server 127.0.0.1:{BACK}; keepalive 128; }}
  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 100000;
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}"""


def proxies(d, access_log=False, ports=None):
    """The proxies' commands; `ports` gives each its port (by default all
    listen on PROXY, one at a time)."""
    ports = ports or {"nginx": PROXY, "waypost": PROXY, "haproxy": PROXY}

    def http(name):
        text = proxy_http(ports[name])
        if access_log:
            # nginx's default: the combined format, unbuffered, one file each.
            text = text.replace("access_log off;", f"access_log {d}/{name}-access.log;")
        return text

    nginx = write(d, "nginx.conf", f"daemon off; worker_processes 1; pid {d}/nx.pid; error_log {d}/nx.err;\n"
                  + http("nginx"))
    waypost = write(d, "waypost.conf", f"worker_processes 1; pid {d}/wp.pid; error_log {d}/wp.err;\n"
                    + http("waypost"))
    binary = os.path.join(ROOT, "target/release/waypost")
    assert os.path.exists(binary), "build first: cargo build --release"
    cands = {
        "nginx": ["nginx", "-p", d + "/", "-c", nginx],
        "waypost": [binary, "-p", d + "/", "-c", waypost],
    }
    if shutil.which("haproxy"):
        # The same job: keep-alive both sides, idle upstream connections
        # shared between client connections.
        cfg = write(d, "haproxy.cfg", f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend f
  bind 127.0.0.1:{ports["haproxy"]}
  default_backend b
backend b
  server s1 127.0.0.1:{BACK}
""")
        cands["haproxy"] = ["haproxy", "-db", "-f", cfg]
    # `WAYPOST_B=/path/to/waypost`: another build beside the first (a
    # paired A/B; its modules come from its own directory).
    other = os.environ.get("WAYPOST_B")
    if other and "waypost_b" in ports:
        conf_b = write(d, "waypost-b.conf", f"worker_processes 1; pid {d}/wpb.pid; error_log {d}/wpb.err;\n"
                       + proxy_http(ports["waypost_b"]))
        cands["waypost_b"] = [other, "-p", d + "/", "-c", conf_b,
                              "--modules-dir", os.path.dirname(other)]
    return cands


def wrk_command(secs, conns, port=None):
    return f"taskset -c 1 wrk -t1 -c{conns} -d{secs}s --latency http://127.0.0.1:{port or PROXY}/"


def wrk(secs, conns):
    out = subprocess.run(wrk_command(secs, conns), shell=True, capture_output=True, text=True).stdout
    return wrk_result(out)


def wrk_result(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    return rps, p99, reqs, bad


def measure(cmd, secs, conns):
    p = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(PROXY), f"{cmd[0]} did not listen"
        subprocess.run(f"wrk -t1 -c{conns} -d1s http://127.0.0.1:{PROXY}/", shell=True, capture_output=True)
        pids = proc_pids(p)
        a0 = accepts(STATUS)
        u0, s0 = user_system(pids)
        rps, p99, reqs, bad = wrk(secs, conns)
        u1, s1 = user_system(pids)
        new = accepts(STATUS) - a0
        return dict(rps=rps, p99=p99, cpu_us=(u1 - u0 + s1 - s0) * 1e6 / max(reqs, 1),
                    user_us=(u1 - u0) * 1e6 / max(reqs, 1), bad=bad, new_per_1k=new * 1000 / max(reqs, 1))
    finally:
        stop(p)


def paired(d, a):
    """Every proxy at once, all pinned to CPU 0 (the scheduler shares it),
    one wrk each on CPU 1: whatever slows the shared machine during a
    round slows them alike, so the per-round ratios to nginx hold steady
    where alternating runs swing by tens of percent. Latency here includes
    waiting for the other proxies' turns on the CPU, so p99 is left to the
    alternating runs."""
    ports = {"nginx": PROXY, "waypost": PROXY + 1, "haproxy": PROXY + 2, "waypost_b": PROXY + 3}
    cands = proxies(d, a.access_log, ports)
    procs = {}
    try:
        for name, cmd in cands.items():
            procs[name] = subprocess.Popen(["taskset", "-c", "0"] + cmd,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert wait_port(ports[name]), f"{name} did not listen"
        pids = {name: proc_pids(p) for name, p in procs.items()}
        ratios = {k: [] for k in cands if k != "nginx"}
        cpu_ratios = {k: [] for k in cands if k != "nginx"}
        split = {k: [] for k in cands}
        print(f"paired: {', '.join(cands)} at once on CPU 0, {a.rounds} rounds of {a.secs}s after 1 s of warm-up")
        for r in range(a.rounds + 1):
            secs = 1 if r == 0 else a.secs
            ran = at_once({k: wrk_command(secs, a.conns, ports[k]) for k in cands}, pids)
            if r == 0:
                continue
            res = {}
            for k, (out, user, system) in ran.items():
                rps, _, reqs, bad = wrk_result(out)
                assert bad == 0, f"{k}: {bad} errors"
                res[k] = (rps, (user + system) * 1e6 / max(reqs, 1), user * 1e6 / max(reqs, 1))
                split[k].append(res[k][1:])
            for k in ratios:
                ratios[k].append(res[k][0] / res["nginx"][0])
                cpu_ratios[k].append(res[k][1] / res["nginx"][1])
            print("  round", r, "  ".join(f"{k} {v[0]:.0f} req/s {v[1]:.2f} us/req (user {v[2]:.2f})"
                                          for k, v in res.items()), flush=True)
        for k in ratios:
            print(f"{k}/nginx paired: req/s {spread(ratios[k])}, CPU/req {spread(cpu_ratios[k])}")
        # Where each proxy's time goes: the kernel's share (the same
        # loopback TCP work for every proxy) bounds what user-space work
        # can win.
        for k, rounds in split.items():
            cpu = statistics.median(c for c, _ in rounds)
            user = statistics.median(u for _, u in rounds)
            print(f"{k}: CPU per request {cpu:.2f} us, user {user:.2f} us, system {cpu - user:.2f} us (medians)")
    finally:
        for p in procs.values():
            stop(p)


def latency(d, a):
    """Latency at one offered load below saturation, the same for every
    proxy: wrk's connections each wait `--delay-ms` after a response before
    the next request, so the proxy is never the bottleneck and a request's
    latency is its own path through the proxy (and the kernel), not a queue
    behind the others. At saturation p99 is mostly queueing, and moves with
    whatever else the shared machine runs that round. Rounds alternate
    nginx, waypost, haproxy, ...; each proxy's percentile is compared with
    nginx's in the same round (seconds apart), and the medians of those
    ratios are reported. A proxy that answered fewer requests than nginx
    in a round (more than 2% fewer) would have been slower to answer: it
    is reported too."""
    script = write(d, "delay.lua", f"""function delay() return {a.delay_ms} end
function done(summary, latency, requests)
  for _, p in ipairs({{50, 90, 99, 99.9}}) do
    io.write(string.format("latency p%g %d\\n", p, latency:percentile(p)))
  end
end
""")
    cands = proxies(d)
    names = list(cands)
    cols = ("p50", "p90", "p99", "p99.9")
    ratios = {k: {c: [] for c in cols} for k in names if k != "nginx"}
    rates = {k: [] for k in names}
    print(f"latency: {a.latency_conns} connections, {a.delay_ms} ms between a response and the next "
          f"request, {a.rounds} rounds of {a.secs}s per proxy, alternating")
    for r in range(a.rounds):
        res = {}
        for name in names:
            p = subprocess.Popen(["taskset", "-c", "0"] + cands[name],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                assert wait_port(PROXY), f"{name} did not listen"
                warm = f"taskset -c 1 wrk -t1 -c{a.latency_conns} -d1s -s {script} http://127.0.0.1:{PROXY}/"
                subprocess.run(warm, shell=True, capture_output=True)
                out = subprocess.run(warm.replace("-d1s", f"-d{a.secs}s --latency"), shell=True,
                                     capture_output=True, text=True).stdout
            finally:
                stop(p)
            rps, _, _, bad = wrk_result(out)
            assert bad == 0, f"{name}: {bad} errors"
            res[name] = dict(rps=rps, **percentiles(out))
            rates[name].append(rps)
        for k in ratios:
            for c in cols:
                ratios[k][c].append(res[k][c] / res["nginx"][c])
        print(f"  round {r + 1}", "  ".join(
            f"{k} {v['rps']:.0f} req/s p50 {v['p50'] * 1000:.0f} p99 {v['p99'] * 1000:.0f} "
            f"p99.9 {v['p99.9'] * 1000:.0f} us" for k, v in res.items()), flush=True)
    for k, rs in rates.items():
        print(f"{k}: {statistics.median(rs):.0f} req/s (median)")
    for k in ratios:
        print(f"{k}/nginx at the same load: " + ", ".join(f"{c} {spread(ratios[k][c])}" for c in cols))


def percentiles(out):
    """The percentiles the latency script prints (wrk's histogram, in us),
    in ms."""
    got = dict(re.findall(r"^latency (p[\d.]+) ([\d.]+)$", out, re.M))
    return {c: float(v) / 1000 for c, v in got.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--access-log", action="store_true",
                    help="nginx and waypost log every request (combined format); haproxy runs without")
    ap.add_argument("--paired", action="store_true",
                    help="only the paired measure: every proxy at once on one CPU")
    ap.add_argument("--latency", action="store_true",
                    help="only the latency measure, at one load below saturation")
    ap.add_argument("--latency-conns", type=int, default=32)
    ap.add_argument("--delay-ms", type=int, default=1,
                    help="each connection's wait between a response and its next request")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="waypost-bench")
    back = backend(d, BACK, status_port=STATUS)
    try:
        if a.paired:
            paired(d, a)
            return
        if a.latency:
            latency(d, a)
            return
        cands = proxies(d, a.access_log)
        runs = {k: [] for k in cands}
        for _ in range(a.rounds):
            for name, cmd in cands.items():
                runs[name].append(measure(cmd, a.secs, a.conns))
        fields = ("rps", "p99", "cpu_us", "user_us", "new_per_1k")
        med = {k: {f: statistics.median(r[f] for r in rs) for f in fields} for k, rs in runs.items()}
        bad = {k: sum(r["bad"] for r in rs) for k, rs in runs.items()}
        print(f"{'':8} {'req/s':>10} {'p99 ms':>8} {'CPU us/req':>11} {'of it user':>11} "
              f"{'new upstream conns/1k req':>26} {'errors':>7}")
        for k, m in med.items():
            print(f"{k:8} {m['rps']:10.0f} {m['p99']:8.2f} {m['cpu_us']:11.2f} {m['user_us']:11.2f} "
                  f"{m['new_per_1k']:26.3f} {bad[k]:7d}")
        n = med["nginx"]
        for k, m in med.items():
            if k != "nginx":
                print(f"{k}/nginx: req/s {m['rps'] / n['rps']:.3f}, p99 {m['p99'] / n['p99']:.3f}, "
                      f"CPU/req {m['cpu_us'] / n['cpu_us']:.3f}  ({a.rounds} rounds of {a.secs}s, {a.conns} connections)")
    finally:
        back.send_signal(signal.SIGQUIT)
        back.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
