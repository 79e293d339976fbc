#!/usr/bin/env python3
"""The training load of a profile-guided build (bench/pgo.sh): an
instrumented waypost, from the directory given, proxies with keep-alive,
rate-limits (limit_req), serves a static file, compresses (gzip), and
proxies over TLS and HTTP/2, each under load for a few seconds; then it
stops cleanly, which writes its profiles (and its modules').

Backend: one nginx worker (bench/common.py). Needs nginx, wrk, curl,
openssl. Not a benchmark: the figures it prints only show that each part
ran.
"""
import os, signal, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import backend, wait_port, write

BACK, PLAIN, TLS = 19401, 19480, 19443


def main():
    build = os.path.abspath(sys.argv[1])
    binary = os.path.join(build, "waypost")
    d = tempfile.mkdtemp(prefix="waypost-pgo-")
    os.makedirs(os.path.join(d, "files"))
    with open(os.path.join(d, "files", "index.html"), "w") as f:
        f.write("<p>static</p>\n" * 150)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem"],
                   check=True, capture_output=True)
    back = backend(d, BACK)
    proxied = 'proxy_http_version 1.1; proxy_set_header Connection "";'
    conf = write(d, "waypost.conf", f"""worker_processes 1; pid {d}/wp.pid; error_log {d}/wp.err;
events {{ worker_connections 4096; }}
http {{ access_log off;
  limit_req_zone $arg_k zone=z:16m rate=1000000r/s;
  upstream u {{ server 127.0.0.1:{BACK}; keepalive 128; }}
  server {{ listen 127.0.0.1:{PLAIN} backlog=4096; keepalive_requests 1000000;
    location / {{ proxy_pass http://u; {proxied} }}
    location /lim/ {{ limit_req zone=z burst=1000000 nodelay; proxy_pass http://u/; {proxied} }}
    location /files/ {{ root {d}; }}
    location /gz/ {{ gzip on; gzip_min_length 0; gzip_types *; alias {d}/files/; }}
  }}
  server {{ listen 127.0.0.1:{TLS} ssl http2; keepalive_requests 1000000;
    ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;
    location / {{ proxy_pass http://u; {proxied} }}
  }} }}""")
    p = subprocess.Popen(["taskset", "-c", "0", binary, "-p", d + "/", "-c", conf,
                          "--modules-dir", build])
    try:
        assert wait_port(PLAIN) and wait_port(TLS), "waypost did not listen"
        loads = [(f"http://127.0.0.1:{PLAIN}/", 8), (f"http://127.0.0.1:{PLAIN}/lim/?k=1", 3),
                 (f"http://127.0.0.1:{PLAIN}/files/index.html", 2),
                 (f"http://127.0.0.1:{PLAIN}/gz/index.html", 2),
                 (f"https://127.0.0.1:{TLS}/", 3)]
        for url, secs in loads:
            # (wrk asks for gzip so that the gzip location compresses.)
            out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{secs}s",
                                  "-H", "Accept-Encoding: gzip", url],
                                 capture_output=True, text=True, check=True).stdout
            rate = [l.split()[-1] for l in out.splitlines() if l.startswith("Requests/sec")]
            bad = [l for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
            assert rate and not bad, f"{url}: the load failed:\n{out}"
            print(f"{url}: {rate[0]} req/s")
        # HTTP/2: curl's requests one after the other on one connection.
        h2 = subprocess.run(["curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}\\n",
                             f"https://127.0.0.1:{TLS}/[1-3000]"], capture_output=True, text=True)
        answered = h2.stdout.splitlines().count("2 200")
        assert answered == 3000, f"HTTP/2: {answered} of 3000 answered"
        print(f"HTTP/2: {answered} requests")
    finally:
        back.send_signal(signal.SIGQUIT)
        back.wait()
        p.send_signal(signal.SIGQUIT)
        p.wait(timeout=60)
    assert p.returncode == 0, f"waypost exited with {p.returncode}"


if __name__ == "__main__":
    main()
