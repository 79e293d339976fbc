//! Module libraries: loading (content-addressed private copies, ABI checks)
//! and the services the core lends them (host.rs).
//! Which module owns which directive is decided in `conf::interp`.

pub mod host;
pub mod loader;
