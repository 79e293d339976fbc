//! waypost: a reverse proxy that reads nginx configuration and loads its
//! load balancers as modules.
//!
//! Two flows, one module each:
//! - a config's life: [`conf`] (text to checked model) → [`runtime::build`]
//!   (modules' `init_upstream`, listeners) → published by [`control`];
//! - a request's life: [`http::server`] (accept, server and location) →
//!   [`http::proxy`] (balancer hooks, tries) → [`http::pool`] (upstream
//!   connections).

pub mod cache;
pub mod cli;
pub mod clock;
pub mod conf;
pub mod control;
#[doc(hidden)]
pub mod fuzzing;
pub mod geo;
pub mod http;
pub mod log;
pub mod map;
pub mod metrics;
pub mod modules;
pub mod pattern;
pub mod runtime;
pub mod upstream;
pub mod vars;
pub mod worker;
