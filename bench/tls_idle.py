#!/usr/bin/env python3
"""Memory per idle keep-alive TLS connection, waypost against nginx.

As ../shared/bench/idlemem.py for cleartext: each proxy (one worker)
answers `return 200` on a TLS address with the same certificate (RSA
2048, made here with openssl); N clients each make a TLS connection, ask
one request and stay connected; the growth of the proxy's resident memory
over N is the cost of one idle TLS connection.

Needs nginx, openssl and a release build:
    cargo build --release --workspace && python3 bench/tls_idle.py [N]
"""
import os, resource, signal, socket, ssl, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from common import wait_port, write  # noqa: E402

PORT = 19497


def rss_kib(pid):
    total = 0
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    for p in [pid] + [int(c) for c in children]:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def measure(name, cmd, n):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port(PORT), f"{name} did not start"
        time.sleep(0.3)
        before = rss_kib(p.pid)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conns = []
        for _ in range(n):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", PORT)))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(4096)
            conns.append(s)
        time.sleep(0.5)
        return (rss_kib(p.pid) - before) * 1024 / n
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = tempfile.mkdtemp(prefix="tls-idle")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/k.pem",
                    "-out", f"{d}/c.pem", "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    conf = write(d, "c.conf", f"""daemon off; worker_processes 1; pid {d}/p.pid; error_log {d}/e.log;
worker_rlimit_nofile 65536;
events {{ worker_connections 30000; }}
http {{ access_log off; keepalive_timeout 300s;
  server {{ listen 127.0.0.1:{PORT} ssl; ssl_certificate {d}/c.pem; ssl_certificate_key {d}/k.pem;
    location / {{ return 200 "ok"; }} }} }}""")
    binary = os.path.join(ROOT, "target/release/waypost")
    results = {}
    for name, cmd in (("nginx", ["nginx", "-p", d + "/", "-c", conf]), ("waypost", [binary, "-p", d + "/", "-c", conf])):
        results[name] = measure(name, cmd, n)
        print(f"{name}: {results[name]:.0f} bytes per idle TLS connection ({n} connections)")
    print(f"waypost/nginx: {results['waypost'] / results['nginx']:.2f}x")


if __name__ == "__main__":
    main()
