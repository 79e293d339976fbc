//! The request path: accept, choose server and location, answer or proxy.
//!
//! - `server`: accept loops, connections, server and location choice
//! - `head`: the request head as nginx checks it (normalized URI, host)
//! - `realip`: the client address from trusted proxies' headers
//! - `proxy`: the try loop (balancer hooks, retries)
//! - `pool`: upstream connections and per-worker keepalive
//! - `body`: streaming bodies
//! - `response`: `return` and error pages
//! - `access`: access log lines

pub mod access;
pub mod body;
pub mod head;
pub mod pool;
pub mod proxy;
pub mod realip;
pub mod response;
pub mod server;
