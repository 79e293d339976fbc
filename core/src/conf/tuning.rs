//! nginx directives that tune machinery waypost does not have or does its
//! own way (memory pools, asynchronous file I/O, HTTP/2 buffers, lingering
//! close, header processing of X-Accel-*): accepted so that nginx files
//! load, their values checked as nginx checks them, with nginx's
//! messages. A value that asks for behaviour waypost lacks (a client
//! certificate, early data) is refused as not supported,
//! never silently ignored.

use crate::conf::interp::{err, number_arg, size_arg, time_arg};
use crate::conf::syntax::Directive;
use crate::conf::ConfError;

/// The directives [`check`] takes (their contexts and argument counts are
/// in the directive table).
pub(super) const TUNING: &[&str] = &[
    "connection_pool_size",
    "request_pool_size",
    "client_body_in_file_only",
    "client_body_in_single_buffer",
    "uninitialized_variable_warn",
    "aio",
    "aio_write",
    "proxy_limit_rate",
    "proxy_force_ranges",
    "subrequest_output_buffer_size",
    "msie_refresh",
    "reset_timedout_connection",
    "keepalive_disable",
    "lingering_close",
    "lingering_time",
    "lingering_timeout",
    "http2_max_concurrent_streams",
    "http2_max_concurrent_pushes",
    "http2_recv_buffer_size",
    "http2_body_preread_size",
    "http2_chunk_size",
    "http2_streams_index_size",
    "http2_push",
    "http2_push_preload",
    "http2_idle_timeout",
    "http2_max_requests",
    "http2_max_field_size",
    "http2_max_header_size",
    "http2_recv_timeout",
    "ssl_buffer_size",
    "ssl_early_data",
    "proxy_ssl_verify_depth",
];

/// nginx's `NGX_MIN_POOL_SIZE` on 64-bit Linux and its alignment.
const MIN_POOL: u64 = 112;
const POOL_ALIGNMENT: u64 = 16;

/// HTTP/2 directives nginx 1.19.7 made obsolete, and what replaced them.
const OBSOLETE_HTTP2: &[(&str, &str)] = &[
    ("http2_idle_timeout", "keepalive_timeout"),
    ("http2_max_requests", "keepalive_requests"),
    ("http2_max_field_size", "large_client_header_buffers"),
    ("http2_max_header_size", "large_client_header_buffers"),
    ("http2_recv_timeout", "client_header_timeout"),
];

/// Checks one of [`TUNING`]'s directives (flags were checked as flags
/// already).
pub(super) fn check(d: &Directive) -> Result<(), ConfError> {
    let arg = d.args[0].as_str();
    let unsupported = || err(format!("\"{} {arg}\" is not supported", d.name), d);
    let invalid = |v: &str| err(format!("invalid value \"{v}\""), d);
    let is_on = arg.eq_ignore_ascii_case("on");
    // nginx's enum and bitmask slots compare without case.
    let lower = arg.to_ascii_lowercase();
    match d.name.as_str() {
        "connection_pool_size" | "request_pool_size" => {
            let size = size_arg(d, 0)?;
            if size < MIN_POOL {
                return err(format!("the pool size must be no less than {MIN_POOL}"), d);
            }
            if size % POOL_ALIGNMENT != 0 {
                return err(
                    format!("the pool size must be a multiple of {POOL_ALIGNMENT}"),
                    d,
                );
            }
        }
        "client_body_in_file_only" => match lower.as_str() {
            "off" => {}
            "on" | "clean" => return unsupported(),
            v => return invalid(v),
        },
        "lingering_close" => {
            if !matches!(lower.as_str(), "off" | "on" | "always") {
                return invalid(arg);
            }
        }
        "keepalive_disable" => {
            if let Some(v) = d.args.iter().find(|v| {
                let v = v.to_ascii_lowercase();
                !matches!(v.as_str(), "none" | "msie6" | "safari")
            }) {
                return invalid(v);
            }
        }
        "aio" => match arg {
            "off" => {}
            // Debian's nginx is built without file AIO and says so.
            "on" => return err("\"aio on\" is unsupported on this platform", d),
            // Files are read on a blocking pool already. nginx's own pool
            // is `default` (waypost reads no `thread_pool` lines).
            "threads" | "threads=default" => {}
            v if v.starts_with("threads=") => {
                return err(
                    format!("unknown thread pool \"{}\"", &v["threads=".len()..]),
                    d,
                )
            }
            _ => return err(format!("\"{}\" directive invalid value", d.name), d),
        },
        "lingering_time" | "lingering_timeout" => {
            time_arg(d, 0)?;
        }
        "proxy_limit_rate" => {
            if size_arg(d, 0)? != 0 {
                return unsupported();
            }
        }
        "http2_recv_buffer_size" => {
            // nginx's floor: more than two of its 16-byte state buffers.
            if size_arg(d, 0)? <= 32 {
                return err(format!("\"{}\" directive value is too small", d.name), d);
            }
        }
        "http2_chunk_size" => {
            if size_arg(d, 0)? == 0 {
                return err("the http2 chunk size cannot be zero", d);
            }
        }
        "http2_streams_index_size" => {
            if !number_arg(d, 0)?.is_power_of_two() {
                return err(
                    format!("\"{}\" directive must be a power of two", d.name),
                    d,
                );
            }
        }
        "http2_push" if arg != "off" => return unsupported(),
        "http2_push" => {}
        "subrequest_output_buffer_size" | "ssl_buffer_size" | "http2_body_preread_size" => {
            size_arg(d, 0)?;
        }
        "http2_max_concurrent_streams"
        | "http2_max_concurrent_pushes"
        | "ssl_verify_depth"
        | "proxy_ssl_verify_depth" => {
            number_arg(d, 0)?;
        }
        // Flags whose `on` asks for what waypost does not do.
        "proxy_force_ranges" | "ssl_early_data" | "http2_push_preload" if is_on => {
            return unsupported()
        }
        name => {
            if let Some((_, instead)) = OBSOLETE_HTTP2.iter().find(|(n, _)| *n == name) {
                tracing::warn!(
                    "the \"{name}\" directive is obsolete, use the \"{instead}\" directive instead in {}",
                    d.loc
                );
            }
        }
    }
    Ok(())
}
