#!/usr/bin/env python3
"""The whole benchmark suite in one run, against nginx (and haproxy for the
proxy throughput, when installed): each script alternates the servers
itself and reports medians and ratios; this runs them in turn, saves their
full output under bench/results/DATE.txt and prints the summary lines. The
figures go to the table at the top of bench/README.md, with the date and
the machine.

    apt-get install -y nginx wrk haproxy redis-server
    cargo build --release --workspace
    python3 bench/suite.py [--quick]

--quick runs each part shorter (for a smoke check, not for the table).
"""
import argparse, datetime, os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")


def parts(quick):
    r, s = ("2", "3") if quick else ("5", "5")
    out = [
        ("proxy throughput, CPU/request, p99, upstream reuse",
         [sys.executable, f"{HERE}/proxy.py", "--rounds", r, "--secs", s], ("/nginx:", "nginx ", "waypost ", "haproxy ")),
        ("proxy req/s and CPU/request vs nginx, paired (every proxy at once)",
         [sys.executable, f"{HERE}/proxy.py", "--paired", "--rounds", "3" if quick else "7", "--secs", "4"],
         ("paired:",)),
        ("hash consistent over 1,000 servers vs round robin",
         [sys.executable, f"{HERE}/hash1000.py", "--rounds", "2" if quick else "3", "--secs", s], ("round robin",)),
        ("limit_req on 100,000 keys vs none",
         [sys.executable, f"{HERE}/limit_req.py"], ("limit_req/plain", "bytes per key")),
        ("limit_req on 100,000 keys vs none, paired (both configs at once)",
         [sys.executable, f"{HERE}/limit_req.py", "--paired", "--rounds", "3" if quick else "7", "--secs", "4"],
         ("paired:",)),
        ("slow clients", [sys.executable, f"{HERE}/slowloris.py", "--seconds", "4" if quick else "10"], ("2000",)),
        ("reload time", [sys.executable, f"{HERE}/reload.py"], ("SIGHUP", "waypost/nginx")),
    ]
    idle = os.path.join(SHARED, "idlemem.py")
    if os.path.exists(idle):
        n = "2000" if quick else "10000"
        out.append(("idle keep-alive connections, waypost", [sys.executable, idle, "waypost", n], ("bytes/conn",)))
        out.append(("idle keep-alive connections, nginx", [sys.executable, idle, "nginx", n], ("bytes/conn",)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    log_path = os.path.join(HERE, "results", f"{stamp}.txt")
    failed = []
    with open(log_path, "w") as log:
        for title, cmd, keys in parts(a.quick):
            print(f"== {title}", flush=True)
            log.write(f"== {title}\n$ {' '.join(cmd)}\n")
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            log.write(p.stdout + p.stderr + "\n")
            if p.returncode != 0:
                failed.append(title)
                print(f"   failed (exit {p.returncode}); see {log_path}")
                continue
            for line in p.stdout.splitlines():
                if any(k in line for k in keys):
                    print("   " + line)
    print(f"full output: {log_path}")
    if failed:
        print("failed: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
