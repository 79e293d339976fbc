//! Module libraries: loading (content-addressed private copies, ABI checks).
//! Which module owns which directive is decided in `conf::interp`.

pub mod loader;
pub mod host;
