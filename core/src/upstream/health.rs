//! Active health checks (`health_check` in an upstream block): each peer is
//! probed on its own timer by a task on the master thread's runtime, off
//! the request path. `fails` failed probes in a row mark the peer down for
//! every balancer (`PeerStats::health`, and the core skips it before asking
//! the module); `passes` passed probes in a row bring it back.
//!
//! A probe is `GET uri HTTP/1.1` with `Host: <server as written>` and
//! `Connection: close` to the peer's address (or `port=`); it passes when
//! the status is in `status=` within `timeout`, connect included.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::conf::model::HealthCheck;
use crate::log::{self, Level};
use crate::runtime::Runtime;
use crate::upstream::addr::PeerAddr;
use crate::upstream::Upstream;

/// The probe tasks of one configuration. Dropping it stops them (at their
/// next await), so a reload replaces the set by replacing this value.
pub struct Checks {
    stop: watch::Sender<bool>,
}

impl Drop for Checks {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Checks {
    /// Spawns one task per checked peer on the current tokio runtime (the
    /// master loop's).
    pub fn start(runtime: &Runtime) -> Checks {
        let (stop, stopped) = watch::channel(false);
        for up in &runtime.upstreams {
            let Some(check) = up.health.clone() else {
                continue;
            };
            let check = Arc::new(check);
            for i in 0..up.configs.len() {
                if up.configs[i].down {
                    continue;
                }
                tokio::spawn(probe_loop(
                    Arc::clone(up),
                    i,
                    Arc::clone(&check),
                    stopped.clone(),
                ));
            }
        }
        Checks { stop }
    }
}

async fn probe_loop(
    up: Arc<Upstream>,
    i: usize,
    check: Arc<HealthCheck>,
    mut stopped: watch::Receiver<bool>,
) {
    // Counts in a row: probes that agree with each other, not yet with the
    // peer's state.
    let (mut failed, mut passed) = (0u32, 0u32);
    loop {
        let result = tokio::select! {
            r = probe(&up, i, &check) => r,
            _ = stopped.changed() => return,
        };
        let down = up.stats[i].health.load(Relaxed) != 0;
        match result {
            Ok(()) => {
                up.probes[i].passed.fetch_add(1, Relaxed);
                failed = 0;
                passed += 1;
                if down && passed >= check.passes {
                    up.stats[i]
                        .recovered_ns
                        .store(crate::modules::host::now_ns().max(1), Relaxed);
                    up.stats[i].health.store(0, Relaxed);
                    up.unhealthy.fetch_sub(1, Relaxed);
                    log::write(
                        Level::Notice,
                        None,
                        &format!("peer {} of upstream \"{}\" is up", up.addrs[i], up.name),
                    );
                }
            }
            Err(why) => {
                up.probes[i].failed.fetch_add(1, Relaxed);
                passed = 0;
                failed += 1;
                if !down && failed >= check.fails {
                    up.stats[i].health.store(1, Relaxed);
                    up.unhealthy.fetch_add(1, Relaxed);
                    log::write(
                        Level::Warn,
                        None,
                        &format!(
                            "peer {} of upstream \"{}\" is down: {why}",
                            up.addrs[i], up.name
                        ),
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(check.interval) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// One probe; the error says why it failed, in nginx's words where nginx
/// has some.
async fn probe(up: &Upstream, i: usize, check: &HealthCheck) -> Result<(), String> {
    let host = up.configs[i].server.as_str();
    let failed = |e: std::io::Error| {
        format!(
            "connect() failed ({}: {})",
            e.raw_os_error().unwrap_or(0),
            crate::http::proxy::strerror(&e)
        )
    };
    let exchange = async {
        match &up.addrs[i] {
            PeerAddr::Inet(addr) => {
                let mut addr = *addr;
                if let Some(port) = check.port {
                    addr.set_port(port);
                }
                let stream = TcpStream::connect(addr).await.map_err(failed)?;
                let _ = stream.set_nodelay(true);
                ask(stream, host, check).await
            }
            PeerAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(failed)?;
                ask(stream, host, check).await
            }
        }
    };
    match tokio::time::timeout(check.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "health check timed out after {}",
            human(check.timeout)
        )),
    }
}

/// The check's request on a connection, and whether its answer passes.
async fn ask<I>(io: I, host: &str, check: &HealthCheck) -> Result<(), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("health check failed: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::get(check.uri.as_str())
        .header(header::HOST, host)
        .header(header::CONNECTION, "close")
        .header(header::USER_AGENT, "waypost-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("health check request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("health check failed: {e}"))?;
    let status = response.status().as_u16();
    if check.passes_status(status) {
        Ok(())
    } else {
        Err(format!("health check answered {status}"))
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
