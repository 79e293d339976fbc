"""Helpers shared by the bench scripts: waiting for a port, CPU accounting,
and the one-worker nginx backend pinned to CPU 1."""
import os, socket, statistics, subprocess, time


def wait_port(port, timeout=10):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def write(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def cpu_seconds(pids):
    """User+system CPU of the processes (all their threads)."""
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        total += (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    return total


def proc_pids(p):
    """The process and its children (nginx's master forks its worker),
    whose CPU a run counts."""
    kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
    return [p.pid] + [int(k) for k in kids]


def user_system(pids):
    """User and system CPU seconds of the processes (all their threads)."""
    user = system = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        user += int(parts[11])
        system += int(parts[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def at_once(commands, pids):
    """The paired measures' round: every shell command of `commands`
    (name -> command, a load generator each) run at the same time. Returns,
    per name, its output and the user and system CPU seconds the processes
    `pids[name]` spent meanwhile."""
    clients = {k: subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, text=True)
               for k, cmd in commands.items()}
    before = {k: user_system(pids[k]) for k in commands}
    outs = {k: c.communicate()[0] for k, c in clients.items()}
    after = {k: user_system(pids[k]) for k in commands}
    return {k: (outs[k], after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in commands}


def spread(ratios):
    """Per-round ratios as the paired measures print them."""
    return f"{statistics.median(ratios):.3f} (per round {min(ratios):.3f}-{max(ratios):.3f})"


def backend(d, port, keepalive_requests=100000, status_port=None):
    """A one-worker nginx answering a small body on `port`, pinned to CPU 1;
    with `status_port`, nginx's stub_status there (see `accepts`)."""
    status = (f"server {{ listen 127.0.0.1:{status_port}; location / {{ stub_status; }} }}"
              if status_port else "")
    conf = write(d, "back.conf", f"""daemon off; worker_processes 1; pid {d}/back.pid; error_log {d}/back.err;
events {{ worker_connections 4096; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests {keepalive_requests};
    location / {{ return 200 "hello from backend\\n"; }} }}
  {status} }}""")
    p = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", d + "/", "-c", conf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_port(port), "backend did not start"
    return p


def accepts(status_port):
    """Connections the backend has accepted so far (stub_status), so a run
    can count the new upstream connections a proxy opened."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{status_port}/", timeout=5).read().decode()
    # "server accepts handled requests\n A H R"
    return int(text.splitlines()[2].split()[0])


def stop(p, wait=5):
    """SIGTERM, then SIGKILL if the process is still there after `wait` s;
    a short pause so its port is free for the next run."""
    import signal
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(wait)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    time.sleep(0.3)
