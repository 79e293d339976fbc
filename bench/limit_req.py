#!/usr/bin/env python3
"""limit_req's cost: requests/s through a proxy with `limit_req` on 100,000
distinct keys against the same proxy without it, and memory per key.

Backend: one nginx worker answering a small body (CPU 1, shared with wrk).
The proxy under test runs one worker pinned to CPU 0, so it is the
bottleneck. wrk (1 thread, 50 connections) runs a Lua script that sends
`GET /?app_id=appN` with N cycling through the keys, for both configs, so
the client does the same work either way. The limit is high enough that
nothing is rejected or delayed (every response must be 200):

    limit_req_zone $arg_app_id zone=apps:16m rate=100r/s;   # 131,072 keys
    limit_req zone=apps;

Runs alternate nginx plain, waypost plain, nginx limit_req, waypost
limit_req, ... and medians are reported with the ratios, for req/s and for
the proxy's CPU time per request (user + system over the run, less
sensitive to other load on the machine). nginx runs the same two configs
for reference.

`--paired` measures the ratio another way, for both proxies: the plain
and the limit_req config run at the same time, both pinned to CPU 0 (the
scheduler shares it), one wrk each on CPU 1, for `--rounds` rounds after a
warm-up that sends every key to both. On this shared machine one config's req/s swings by tens of
percent from round to round, but whatever slows a round slows both
configs alike, so the per-round ratios of req/s and of CPU time per
request (user + system, read from /proc) hold within a few percent. The
two processes also share the core's caches; if anything that counts
against limit_req, whose 100,000 keys are the larger working set.

`--paired --modules-b DIR` is an A/B of the module itself: two waypost
processes with the limit_req config, one loading this build's modules
(target/release), the other DIR's (another build's target/release),
paired as above; the ratios are this build's over DIR's.

Memory per key: a fresh proxy with limit_req gets 1 s of traffic on one
key (connections and buffers warmed), VmRSS, then the 100,000 keys (every
key at least once, checked), VmRSS again; the same for the plain config,
whose growth is subtracted.

Instructions per request (`--callgrind`, needs valgrind): on a shared
machine req/s and even CPU time swing by tens of percent from one run to
the next, so the script also counts waypost's instructions under callgrind
(deterministic): the zone is filled first with instrumentation off, then
5 s of traffic are counted, for each config.

Needs nginx and wrk (apt-get install -y nginx wrk) and a release build:
    cargo build --release && python3 bench/limit_req.py [--rounds 5] [--secs 5] [--callgrind | --paired]

`--cluster --paired` runs the two configs of the cluster throughput
measure (below) at once instead, both on CPU 0 with redis-server on
`--redis-cpu` (by default 1, the load generator's, the fair place: on 0 its work,
which only the cluster config causes, would slow both alike).

`--cluster` (needs redis-server too: apt-get install -y redis-server)
measures `cluster=` instead, for `--cluster-mode window`, `leaky` or
`both` (the default):

- throughput: the setup above, waypost only, with
  `limit_req_zone $arg_app_id zone=apps:16m rate=100r/s mode=MODE;`
  against the same line with `cluster=redis://127.0.0.1:PORT sync=100ms`.
  redis-server is pinned to `--redis-cpu` (default 0: the proxy's CPU,
  not wrk's and the backend's, CPU 1; `--redis-cpu 1` puts it with the
  load generator instead); the sync thread runs in the proxy, on CPU 0.
  With the 100,000 keys every request is a key to exchange (a key in a
  window of its own, or a bucket touched once per interval): the worst
  case. `--cluster-keys N` cycles through N keys instead (`--no-sharing`
  skips the sharing measure). With `--callgrind`, waypost's instructions
  per request (every thread: the sync thread's exchanges included) with
  and without `cluster=`, on the same traffic.
- sharing: three waypost instances (one worker each) with
  `limit_req_zone $arg_k zone=c:1m rate=100r/s mode=MODE cluster=...`
  (leaky: `limit_req zone=c burst=5 nodelay`), one wrk per instance
  (10 connections each) on `GET /?k=one` from half a second before a
  wall-clock second for `--cluster-secs` + 1 s; each instance logs
  `$msec $status`, and the 200s are counted per wall-clock second over
  the `--cluster-secs` whole windows: expected 100 each. For a bucket,
  also every 200 of the run against one nginx's `rate × duration +
  burst` (duration: the first answer to the last).
"""
import argparse, os, re, shutil, signal, socket, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACK, PROXY = 19201, 19280
KEYS = 100_000

from common import at_once, backend, cpu_seconds, proc_pids, spread, stop, wait_port, write


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def http_conf(limit, port=None):
    port = port or PROXY
    zone = "  limit_req_zone $arg_app_id zone=apps:16m rate=100r/s;\n" if limit else ""
    lim = "limit_req zone=apps; " if limit else ""
    return f"""events {{ worker_connections 4096; }}
http {{ access_log off;
{zone}  upstream u {{ server 127.0.0.1:{BACK}; keepalive 128; }}
  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 1000000;
    location / {{ {lim}proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}"""


def commands(d, ports=None):
    """Each proxy with each config; `ports` gives each config's port (by
    default both listen on PROXY)."""
    binary = os.path.join(ROOT, "target/release/waypost")
    assert os.path.exists(binary), "build first: cargo build --release"
    modules = os.path.join(ROOT, "target/release")
    ports = ports or {}
    cmds = {}
    for limit in (False, True):
        tag = "limit" if limit else "plain"
        conf = http_conf(limit, ports.get(tag))
        nx = write(d, f"nginx-{tag}.conf",
                   f"daemon off; worker_processes 1; pid {d}/nx-{tag}.pid; error_log {d}/nx-{tag}.err;\n" + conf)
        wp = write(d, f"waypost-{tag}.conf",
                   f"worker_processes 1; pid {d}/wp-{tag}.pid; error_log {d}/wp-{tag}.err;\n" + conf)
        cmds[("nginx", tag)] = ["nginx", "-p", d + "/", "-c", nx]
        cmds[("waypost", tag)] = [binary, "-p", d + "/", "-c", wp, "--modules-dir", modules]
    return cmds


def script(d, keys):
    return write(d, f"keys{keys}.lua", f"""
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/?app_id=app" .. (n % {keys}))
end
""")


def wrk_command(d, secs, conns, keys, port=None):
    return f"taskset -c 1 wrk -t1 -c{conns} -d{secs}s -s {script(d, keys)} http://127.0.0.1:{port or PROXY}/"


def wrk(d, secs, conns, keys, port=None):
    out = subprocess.run(wrk_command(d, secs, conns, keys, port),
                         shell=True, capture_output=True, text=True).stdout
    return wrk_result(out)


def wrk_result(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    return rps, reqs, bad


def start(cmd, port=None):
    p = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_port(port or PROXY), f"{cmd[0]} did not listen"
    return p


def run_paired(d, label, cmds, ports, base, rounds, secs, conns, keys, check=None, measured=None):
    """Two configs at once, both on CPU 0, one wrk each on CPU 1, for
    `rounds` rounds after a warm-up that sends every key to both:
    whatever slows the machine during a round slows both alike, so the
    per-round ratios hold steady where alternating runs swing. `base` is
    the config the other is compared with. Prints each round and the
    medians; `measured` runs when the warm-up is over, `check` after the
    last round, the proxies still up."""
    other = next(t for t in ports if t != base)
    procs = {}
    try:
        for tag, port in ports.items():
            procs[tag] = start(cmds[tag], port)
        pids = {tag: proc_pids(p) for tag, p in procs.items()}
        # Warm-up: every key at least once on each side (the zone full).
        sent = dict.fromkeys(ports, 0)
        while min(sent.values()) < keys:
            warm = at_once({tag: wrk_command(d, 2, conns, keys, port) for tag, port in ports.items()}, pids)
            for tag, (out, _, _) in warm.items():
                sent[tag] += wrk_result(out)[1]
        if measured:
            measured()
        ratios, cpu_ratios = [], []
        for r in range(1, rounds + 1):
            ran = at_once({tag: wrk_command(d, secs, conns, keys, port) for tag, port in ports.items()}, pids)
            res = {}
            for tag, (out, user, system) in ran.items():
                _, reqs, bad = wrk_result(out)
                assert bad == 0, f"{label} {tag}: {bad} errors"
                res[tag] = (reqs / secs, user * 1e6 / max(reqs, 1), system * 1e6 / max(reqs, 1))
            ratios.append(res[other][0] / res[base][0])
            cpu_ratios.append(sum(res[base][1:]) / sum(res[other][1:]))
            print(f"  {label} round {r}: " + "; ".join(
                f"{tag} {v[0]:.0f} req/s, {v[1]:.2f} + {v[2]:.2f} us/req" for tag, v in res.items())
                + f"; req/s {ratios[-1]:.3f}, CPU {cpu_ratios[-1]:.3f}", flush=True)
        if check:
            check()
        print(f"{label} paired: {other}/{base} req/s {spread(ratios)}, "
              f"{base}/{other} CPU per request {spread(cpu_ratios)}", flush=True)
    finally:
        for p in procs.values():
            stop(p)


def paired(d, rounds, secs, conns):
    """limit_req against none, for each proxy, paired (`run_paired`)."""
    ports = {"plain": PROXY, "limit": PROXY + 1}
    cmds = commands(d, ports)
    print("paired: plain and limit_req at once, both on CPU 0 (req/s and CPU us/req, user + system)")
    for proxy in ("waypost", "nginx"):
        run_paired(d, proxy, {tag: cmds[(proxy, tag)] for tag in ports}, ports, "plain",
                   rounds, secs, conns, KEYS)


def paired_ab(d, rounds, secs, conns, modules_b):
    """The limit_req config with this build's modules against the same
    config with those of `modules_b` (another build's target/release),
    paired (`run_paired`): what a change to the module is worth."""
    binary = os.path.join(ROOT, "target/release/waypost")
    ports = {"b": PROXY, "now": PROXY + 1}
    dirs = {"b": modules_b, "now": os.path.join(ROOT, "target/release")}
    cmds = {}
    for tag, port in ports.items():
        conf = write(d, f"waypost-ab-{tag}.conf",
                     f"worker_processes 1; pid {d}/wp-ab-{tag}.pid; error_log {d}/wp-ab-{tag}.err;\n"
                     + http_conf(True, port))
        cmds[tag] = [binary, "-p", d + "/", "-c", conf, "--modules-dir", dirs[tag]]
    print(f"paired A/B: limit_req with this build's module (now) and with {modules_b}'s (b), both on CPU 0")
    run_paired(d, "waypost limit_req", cmds, ports, "b", rounds, secs, conns, KEYS)


def measure(d, cmd, secs, conns):
    p = start(cmd)
    try:
        wrk(d, 2, conns, KEYS)  # warm up, and fill the zone
        pids = proc_pids(p)
        c0 = cpu_seconds(pids)
        rps, reqs, bad = wrk(d, secs, conns, KEYS)
        c1 = cpu_seconds(pids)
        return dict(rps=rps, cpu_us=(c1 - c0) * 1e6 / max(reqs, 1), bad=bad)
    finally:
        stop(p)


def memory(d, cmd, conns):
    """VmRSS growth (KiB) from one key to KEYS keys."""
    p = start(cmd)
    try:
        wrk(d, 1, conns, 1)
        before = rss_kib(p.pid)
        _, reqs, bad = wrk(d, 4, conns, KEYS)
        assert reqs >= KEYS and bad == 0, f"{reqs} requests, {bad} errors"
        return rss_kib(p.pid) - before, before
    finally:
        stop(p)


def callgrind(d, cmd, tag, keys=KEYS, check=None):
    """waypost's instructions per request over 5 s of traffic on a full zone."""
    out = os.path.join(d, f"cg-{tag}.%p")
    p = subprocess.Popen(["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--instr-atstart=no",
                          f"--callgrind-out-file={out}"] + cmd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(PROXY, 60), "waypost did not listen under valgrind"
        # Every key at least once, uninstrumented.
        filled = 0
        while filled < keys:
            filled += wrk(d, 5, 8, keys)[1]
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], capture_output=True, check=True)
        _, reqs, bad = wrk(d, 5, 8, keys)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, check=True)
        assert bad == 0, f"{bad} errors"
        if check:
            check()
        dump = out.replace("%p", str(p.pid)) + ".1"
        with open(dump) as f:
            ir = next(int(l.split()[1]) for l in f if l.startswith("summary:"))
        return ir / reqs
    finally:
        stop(p)


REDIS = 19270


def redis_start(cpu="0"):
    port = REDIS
    p = subprocess.Popen(["taskset", "-c", cpu, "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_port(port), "redis-server did not start"
    return p


def cluster_commands(d, mode, ports=None):
    binary = os.path.join(ROOT, "target/release/waypost")
    assert os.path.exists(binary), "build first: cargo build --release"
    ports = ports or {}
    cmds = {}
    for tag, extra in (("local", ""), ("cluster", f" cluster=redis://127.0.0.1:{REDIS} sync=100ms")):
        port = ports.get(tag, PROXY)
        conf = f"""worker_processes 1; pid {d}/wp-{tag}.pid; error_log {d}/wp-{mode}-{tag}.err;
events {{ worker_connections 4096; }}
http {{ access_log off;
  limit_req_zone $arg_app_id zone=apps:16m rate=100r/s mode={mode}{extra};
  upstream u {{ server 127.0.0.1:{BACK}; keepalive 128; }}
  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 1000000;
    location / {{ limit_req zone=apps; proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location = /metrics {{ metrics; }} }} }}"""
        cmds[tag] = [binary, "-p", d + "/", "-c", write(d, f"waypost-{mode}-{tag}.conf", conf),
                     "--modules-dir", os.path.join(ROOT, "target/release")]
    return cmds


def metric(port, name):
    """A metric's value from the proxy's `metrics;` (the first series)."""
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def cluster_up(errlog, secs=3, port=None):
    """The zone exchanges: its `cluster_up` gauge is 1, or back to 1 within
    `secs` (an exchange that timed out while the machine was saturated is
    retried at the next interval; the run prints how many failed)."""
    deadline = time.time() + secs
    while (up := metric(port or PROXY, "waypost_module_limit_req_cluster_up")) != 1 and time.time() < deadline:
        time.sleep(0.05)
    if up != 1:
        with open(errlog) as f:
            tail = f.read()[-2000:]
        raise AssertionError(f"the cluster zone is not exchanging:\n{tail}")


def cluster_throughput(d, a, mode):
    cmds = cluster_commands(d, mode)
    redis = redis_start(cpu=a.redis_cpu or "0")
    try:
        runs = {k: [] for k in cmds}
        keys = {k: [] for k in cmds}
        redis_us = []
        sync_errors = 0
        errors_metric = "waypost_module_limit_req_cluster_sync_errors_total"
        for _ in range(a.rounds):
            for k, cmd in cmds.items():
                p = start(cmd)
                try:
                    wrk(d, 2, a.conns, a.cluster_keys)  # warm up, and fill the zone
                    c0, r0 = cpu_seconds([p.pid]), cpu_seconds([redis.pid])
                    k0 = metric(PROXY, "waypost_module_limit_req_cluster_synced_keys_total") or 0
                    e0 = metric(PROXY, errors_metric) or 0
                    rps, reqs, bad = wrk(d, a.secs, a.conns, a.cluster_keys)
                    c1, r1 = cpu_seconds([p.pid]), cpu_seconds([redis.pid])
                    k1 = metric(PROXY, "waypost_module_limit_req_cluster_synced_keys_total") or 0
                    sync_errors += int((metric(PROXY, errors_metric) or 0) - e0)
                    if k1 > k0:
                        redis_us.append((r1 - r0) * 1e6 / (k1 - k0))
                    if k == "cluster":
                        cluster_up(f"{d}/wp-{mode}-cluster.err")
                    runs[k].append(dict(rps=rps, cpu_us=(c1 - c0) * 1e6 / max(reqs, 1), bad=bad))
                    keys[k].append((k1 - k0) / a.secs)
                finally:
                    stop(p)
        med = {k: statistics.median(r["rps"] for r in rs) for k, rs in runs.items()}
        cpu = {k: statistics.median(r["cpu_us"] for r in rs) for k, rs in runs.items()}
        bad = {k: sum(r["bad"] for r in rs) for k, rs in runs.items()}
        print(f"mode={mode}, {a.cluster_keys} keys, redis-server on CPU {a.redis_cpu or '0'}")
        print(f"{'waypost':18} {'req/s':>10} {'CPU us/req':>11} {'errors':>7} {'keys exchanged/s':>17}")
        for k in cmds:
            print(f"{k:18} {med[k]:10.0f} {cpu[k]:11.2f} {bad[k]:7d} {statistics.median(keys[k]):17.0f}")
        per_round = [c["rps"] / w["rps"] for c, w in zip(runs["cluster"], runs["local"])]
        print(f"cluster/local req/s {med['cluster'] / med['local']:.3f} "
              f"(per round: {' '.join(f'{r:.3f}' for r in per_round)}), "
              f"CPU/req {cpu['cluster'] / cpu['local']:.3f}; "
              f"redis-server CPU per key exchanged {statistics.median(redis_us or [0]):.1f} us; "
              f"failed exchanges {sync_errors}", flush=True)
        if a.callgrind:
            # Off the valgrind'ed proxy's CPU, which it keeps busy: the
            # count does not depend on where Redis runs, the exchanges'
            # timeouts do.
            redis.send_signal(signal.SIGKILL)
            redis.wait()
            redis = redis_start(cpu="1")
            local = callgrind(d, cmds["local"], f"{mode}-local", a.cluster_keys)
            cluster = callgrind(d, cmds["cluster"], f"{mode}-cluster", a.cluster_keys,
                                lambda: cluster_up(f"{d}/wp-{mode}-cluster.err"))
            print(f"waypost instructions per request, mode={mode}: {local:.0f} local, {cluster:.0f} cluster "
                  f"(+{cluster - local:.0f}): local/cluster {local / cluster:.3f}", flush=True)
    finally:
        redis.send_signal(signal.SIGKILL)
        redis.wait()


def cluster_paired(d, a, mode):
    """`cluster=` against the same zone without it, paired (`run_paired`):
    both proxies on CPU 0, redis-server on `--redis-cpu`. Redis's own
    work is not the proxy's: the CPU ratio is what `cluster=` costs the
    proxy (its sync thread included)."""
    ports = {"local": PROXY, "cluster": PROXY + 1}
    cmds = cluster_commands(d, mode, ports)
    cpu = a.redis_cpu or "1"
    redis = redis_start(cpu=cpu)
    try:
        print(f"paired: mode={mode}, {a.cluster_keys} keys, local and cluster= at once on CPU 0, "
              f"redis-server on CPU {cpu}", flush=True)
        synced_metric = "waypost_module_limit_req_cluster_synced_keys_total"
        start_at = {}

        def measured():
            start_at["t"] = time.time()
            start_at["synced"] = metric(ports["cluster"], synced_metric) or 0

        def check():
            cluster_up(f"{d}/wp-{mode}-cluster.err", port=ports["cluster"])
            synced = (metric(ports["cluster"], synced_metric) or 0) - start_at["synced"]
            failed = metric(ports["cluster"], "waypost_module_limit_req_cluster_sync_errors_total") or 0
            print(f"  keys exchanged with redis over the rounds: {synced:.0f} "
                  f"({synced / (time.time() - start_at['t']):.0f}/s), failed exchanges {failed:.0f}", flush=True)

        run_paired(d, f"cluster mode={mode}", cmds, ports, "local", a.rounds, a.secs, a.conns,
                   a.cluster_keys, check, measured)
    finally:
        redis.send_signal(signal.SIGKILL)
        redis.wait()


def cluster_sharing(d, a, mode):
    """Three instances, one key, 100 r/s: admissions per wall-clock second."""
    binary = os.path.join(ROOT, "target/release/waypost")
    redis = redis_start(cpu="0,1")
    burst = 5 if mode == "leaky" else 0
    lim = f"limit_req zone=c burst={burst} nodelay;" if burst else "limit_req zone=c;"
    procs, ports = [], []
    try:
        for i in range(3):
            port, back = PROXY + 10 + 2 * i, PROXY + 11 + 2 * i
            sub = os.path.join(d, f"{mode}-i{i}")
            os.makedirs(os.path.join(sub, "logs"), exist_ok=True)
            conf = write(sub, "waypost.conf", f"""worker_processes 1; pid {sub}/wp.pid; error_log {sub}/err.log;
events {{ worker_connections 1024; }}
http {{ log_format ms '$msec $status';
  limit_req_zone $arg_k zone=c:1m rate=100r/s mode={mode} cluster=redis://127.0.0.1:{REDIS} sync=100ms;
  server {{ listen 127.0.0.1:{back}; access_log off; location / {{ return 200 "ok"; }} }}
  server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000; access_log {sub}/a.log ms;
    location / {{ {lim} proxy_pass http://127.0.0.1:{back}; }}
    location = /metrics {{ access_log off; metrics; }} }} }}""")
            procs.append(subprocess.Popen([binary, "-p", sub + "/", "-c", conf, "--modules-dir",
                                           os.path.join(ROOT, "target/release")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            assert wait_port(port), "waypost did not listen"
            ports.append(port)
        time.sleep(1)  # a few exchanges: the instances know each other
        first = int(time.time()) + 2
        time.sleep(first - 0.5 - time.time())
        lua = write(d, "one.lua", 'request = function() return wrk.format("GET", "/?k=one") end')
        wrks = [subprocess.Popen(f"wrk -t1 -c10 -d{a.cluster_secs + 1}s -s {lua} http://127.0.0.1:{p}/",
                                 shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                for p in ports]
        outs = [w.communicate()[0] for w in wrks]
        time.sleep(0.5)  # the access logs are written by a background thread
        per = [[0] * a.cluster_secs for _ in ports]
        answers = other = admitted = 0
        t_first, t_last = float("inf"), 0.0
        for i in range(len(ports)):
            with open(os.path.join(d, f"{mode}-i{i}", "a.log")) as f:
                for line in f:
                    ms, status = line.split()
                    answers += 1
                    t_first, t_last = min(t_first, float(ms)), max(t_last, float(ms))
                    if status not in ("200", "429"):
                        other += 1
                    if status == "200":
                        admitted += 1
                    w = int(float(ms)) - first
                    if status == "200" and 0 <= w < a.cluster_secs:
                        per[i][w] += 1
        sent = sum(int(re.search(r"(\d+) requests in", o).group(1)) for o in outs)
        windows = [sum(p[w] for p in per) for w in range(a.cluster_secs)]
        total = sum(windows)
        expected = 100 * a.cluster_secs
        print(f"sharing, mode={mode}: {sent} requests ({answers} answers logged, {other} other than 200/429), "
              f"admitted per second {windows}")
        print(f"  per instance {[sum(p) for p in per]}; total {total} of {expected} "
              f"({(total - expected) * 100 / expected:+.1f}%), largest second {max(windows)}")
        if burst:
            nginx = 100 * (t_last - t_first) + burst
            print(f"  whole run: {admitted} admitted in {t_last - t_first:.3f} s; one nginx "
                  f"{nginx:.0f} ({(admitted - nginx) * 100 / nginx:+.1f}%)", flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait()
        redis.send_signal(signal.SIGKILL)
        redis.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--callgrind", action="store_true", help="also count instructions per request")
    ap.add_argument("--paired", action="store_true",
                    help="only the paired measure: plain and limit_req at once on one CPU")
    ap.add_argument("--modules-b", metavar="DIR",
                    help="with --paired: limit_req with this build's module against DIR's (an A/B)")
    ap.add_argument("--cluster", action="store_true", help="measure cluster= (needs redis-server)")
    ap.add_argument("--cluster-secs", type=int, default=10, help="windows of the sharing measure")
    ap.add_argument("--cluster-keys", type=int, default=KEYS, help="keys of the cluster throughput measure")
    ap.add_argument("--no-sharing", action="store_true", help="cluster throughput only")
    ap.add_argument("--no-throughput", action="store_true", help="cluster sharing only")
    ap.add_argument("--cluster-mode", choices=["window", "leaky", "both"], default="both")
    ap.add_argument("--redis-cpu", default=None,
                    help="CPU list redis-server is pinned to (wrk is on 1); default 0, with --paired 1")
    ap.add_argument("--port-offset", type=int, default=0, help="added to every port (another program on one)")
    a = ap.parse_args()
    global BACK, PROXY, REDIS
    BACK, PROXY, REDIS = BACK + a.port_offset, PROXY + a.port_offset, REDIS + a.port_offset
    d = tempfile.mkdtemp(prefix="waypost-bench")
    back = backend(d, BACK, keepalive_requests=1000000)
    try:
        if a.cluster:
            modes = ["window", "leaky"] if a.cluster_mode == "both" else [a.cluster_mode]
            for mode in modes:
                if a.paired and not a.no_throughput:
                    cluster_paired(d, a, mode)
                elif not a.no_throughput:
                    cluster_throughput(d, a, mode)
                if not a.no_sharing:
                    cluster_sharing(d, a, mode)
            return
        if a.paired and a.modules_b:
            paired_ab(d, a.rounds, a.secs, a.conns, a.modules_b)
            return
        if a.paired:
            paired(d, a.rounds, a.secs, a.conns)
            return
        cmds = commands(d)
        runs = {k: [] for k in cmds}
        for _ in range(a.rounds):
            for k, cmd in cmds.items():
                runs[k].append(measure(d, cmd, a.secs, a.conns))
        med = {k: statistics.median(r["rps"] for r in rs) for k, rs in runs.items()}
        cpu = {k: statistics.median(r["cpu_us"] for r in rs) for k, rs in runs.items()}
        bad = {k: sum(r["bad"] for r in rs) for k, rs in runs.items()}
        print(f"{'':18} {'req/s':>10} {'CPU us/req':>11} {'errors':>7}")
        for k in cmds:
            print(f"{k[0] + ' ' + k[1]:18} {med[k]:10.0f} {cpu[k]:11.2f} {bad[k]:7d}")
        for proxy in ("waypost", "nginx"):
            lim, plain = (proxy, "limit"), (proxy, "plain")
            # Per round too: the two runs of a round are seconds apart.
            per_round = [l["rps"] / p["rps"] for l, p in zip(runs[lim], runs[plain])]
            print(f"{proxy}: limit_req/plain req/s {med[lim] / med[plain]:.3f} "
                  f"(per round: {' '.join(f'{r:.3f}' for r in per_round)}), "
                  f"CPU/req {cpu[lim] / cpu[plain]:.3f}")
        grow_limit, base = memory(d, cmds[("waypost", "limit")], a.conns)
        grow_plain, _ = memory(d, cmds[("waypost", "plain")], a.conns)
        per_key = (grow_limit - grow_plain) * 1024 / KEYS
        print(f"waypost VmRSS growth for {KEYS} keys: {grow_limit} KiB with limit_req, "
              f"{grow_plain} KiB without (from {base} KiB): {per_key:.0f} bytes per key")
        if a.callgrind:
            plain = callgrind(d, cmds[("waypost", "plain")], "plain")
            limit = callgrind(d, cmds[("waypost", "limit")], "limit")
            print(f"waypost instructions per request: {plain:.0f} plain, {limit:.0f} with limit_req "
                  f"(+{limit - plain:.0f}): plain/limit_req {plain / limit:.3f}")
    finally:
        back.send_signal(signal.SIGQUIT)
        back.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
