//! The `p2c_ewma` module through the real binary: two fast peers (`return
//! 200` servers of the same waypost) and a third, a backend thread of this
//! test that answers 50 ms late until the test makes it fast. The slow peer
//! must get few requests once its latency is measured, where round robin
//! gives it a third; once fast, it must get requests again (the module
//! measures a peer again when its sample is older than `decay`); and the
//! core's metrics must count every try.
//!
//! nginx OSS has no such balancer, so nothing runs side by side.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waypost_tests::{free_ports, get, read_head, Server};

/// How much later than the others the third peer answers while slow.
const DELAY: Duration = Duration::from_millis(50);

/// The third peer: answers `third`, after [`DELAY`] while `slow` is set.
struct Third {
    port: u16,
    slow: Arc<AtomicBool>,
}

impl Third {
    fn start() -> Third {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let slow = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&slow);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || serve(stream, &flag));
            }
        });
        Third { port, slow }
    }
}

/// One request per connection.
fn serve(mut stream: TcpStream, slow: &AtomicBool) {
    if read_head(&mut stream).is_none() {
        return;
    }
    if slow.load(Ordering::SeqCst) {
        // This is what makes the peer slow, not a synchronisation.
        std::thread::sleep(DELAY);
    }
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nthird",
    );
}

/// A running setup: waypost on `proxy` balancing `upstream u` over two
/// `return 200 "fast"` servers and the third peer, with `/metrics`.
struct Setup {
    server: Server,
    proxy: u16,
    third: Third,
}

/// `method` is the balancing line of the upstream ("" for round robin).
fn start(method: &str) -> Setup {
    let third = Third::start();
    let [proxy, a, b] = free_ports(3)[..] else {
        unreachable!()
    };
    let conf = format!(
        "error_log logs/error.log;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   upstream u {{\n\
         \x20       {method}\n\
         \x20       server 127.0.0.1:{a};\n\
         \x20       server 127.0.0.1:{b};\n\
         \x20       server 127.0.0.1:{c};\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{proxy};\n\
         \x20       location / {{ proxy_pass http://u; }}\n\
         \x20       location /metrics {{ metrics; }}\n\
         \x20   }}\n\
         \x20   server {{ listen 127.0.0.1:{a}; location / {{ return 200 \"fast\"; }} }}\n\
         \x20   server {{ listen 127.0.0.1:{b}; location / {{ return 200 \"fast\"; }} }}\n\
         }}\n",
        c = third.port
    );
    let server = Server::waypost(&conf, &[proxy, a, b]);
    Setup {
        server,
        proxy,
        third,
    }
}

impl Setup {
    /// One request; whether the third peer answered it.
    fn third_answered(&self) -> bool {
        let r = get(self.proxy, "/");
        assert_eq!(
            r.status,
            200,
            "{}\nerror log:\n{}",
            r.body,
            self.server.read("logs/error.log")
        );
        assert!(r.body == "fast" || r.body == "third", "{}", r.body);
        r.body == "third"
    }

    /// `n` requests one after another: how many the third peer answered.
    fn third_of(&self, n: usize) -> usize {
        (0..n).filter(|_| self.third_answered()).count()
    }

    /// The values of the metric lines that start with `prefix`.
    fn metric(&self, prefix: &str) -> Vec<u64> {
        let r = get(self.proxy, "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| {
                let value = l.rsplit(' ').next().unwrap_or("");
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("metric line {l:?}"))
            })
            .collect()
    }
}

#[test]
fn the_slow_peer_gets_few_requests_once_measured() {
    let setup = start("p2c_ewma;");
    let warm_up = setup.third_of(50);
    let third = setup.third_of(200);
    // Round robin would give it 67; once its 50 ms are measured it is
    // chosen only when its sample is older than decay (10 s).
    assert!(third <= 10, "the slow peer got {third} of 200");

    // Every try is counted, per peer, by the core.
    let peers = setup.metric("waypost_upstream_peer_requests_total{upstream=\"u\",");
    assert_eq!(peers.len(), 3, "one series per peer");
    assert_eq!(peers.iter().sum::<u64>(), 250);
    let third_peer = format!(
        "waypost_upstream_peer_requests_total{{upstream=\"u\",peer=\"127.0.0.1:{}\"}}",
        setup.third.port
    );
    assert_eq!(
        setup.metric(&third_peer),
        [(warm_up + third) as u64],
        "the third peer's count"
    );
    // The module's counter: at least the first try of each peer measured it.
    let probes =
        setup.metric("waypost_module_p2c_ewma_probes_total{module=\"p2c_ewma\",upstream=\"u\"}");
    assert!(probes.len() == 1 && probes[0] >= 3, "{probes:?}");
}

#[test]
fn round_robin_gives_the_slow_peer_a_third() {
    // The same setup without p2c_ewma, to show what the test above avoids.
    let setup = start("");
    assert_eq!(setup.third_of(30), 10);
}

#[test]
fn a_recovered_peer_gets_requests_again() {
    let setup = start("p2c_ewma decay=1s;");
    setup.third_of(50);
    setup.third.slow.store(false, Ordering::SeqCst);
    // A condition wait, not a timed assertion: its sample goes stale after
    // 1 s, and the next request that draws it measures it again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !setup.third_answered() {
        assert!(
            Instant::now() < deadline,
            "the recovered peer got no request in 20 s"
        );
    }
}
