//! Module libraries: loading (content-addressed private copies, ABI checks)
//! the services the core lends them (host.rs) and hook timing (watch.rs).
//! Which module owns which directive is decided in `conf::interp`.

pub mod host;
pub mod loader;
pub mod watch;
