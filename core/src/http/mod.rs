//! The request path: accept, choose server and location, answer or proxy.
//!
//! - `server`: accept loops, connections, server and location choice
//! - `proxy`: the try loop (balancer hooks, retries)
//! - `pool`: upstream connections and per-worker keepalive
//! - `body`: streaming bodies
//! - `response`: `return` and error pages
//! - `access`: access log lines

pub mod access;
pub mod body;
pub mod pool;
pub mod proxy;
pub mod response;
pub mod server;
