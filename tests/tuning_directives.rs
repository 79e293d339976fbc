//! nginx's tuning directives (memory pools, asynchronous I/O, HTTP/2
//! buffers, lingering close, cache predicates without a cache, TLS
//! verification depths), side by side with nginx under `-t`: the lines
//! common configs carry load as in nginx, bad values get nginx's
//! messages, and a value asking for what waypost lacks is refused by name
//! (README) where nginx takes it.

use waypost_tests::{assert_t_cases, emerg, in_location, Waypost};

/// A line at the http level: it is line 5.
fn in_http(line: &str) -> String {
    format!("http {{\n    {line}\n}}\n")
}

const OK: &str = "ok (exit Some(0))";

/// nginx takes it; waypost refuses it as not supported.
fn unsupported(what: &str, line: u32) -> Waypost {
    Waypost::Exactly(emerg(&format!("\"{what}\" is not supported"), line))
}

#[test]
fn tuning_directives_load_and_are_checked_as_nginx_checks_them() {
    let cases: Vec<(String, String, Waypost)> = vec![
        // Every one, where common configs put them.
        (
            "http {\n\
             \x20   map_hash_max_size 4096;\n\
             \x20   map_hash_bucket_size 128;\n\
             \x20   connection_pool_size 512;\n\
             \x20   request_pool_size 4k;\n\
             \x20   http2_recv_buffer_size 256k;\n\
             \x20   http2_max_concurrent_streams 128;\n\
             \x20   http2_body_preread_size 64k;\n\
             \x20   http2_streams_index_size 32;\n\
             \x20   http2_max_concurrent_pushes 10;\n\
             \x20   ssl_buffer_size 4k;\n\
             \x20   ssl_early_data off;\n\
             \x20   ssl_verify_client off;\n\
             \x20   ssl_verify_depth 2;\n\
             \x20   reset_timedout_connection on;\n\
             \x20   keepalive_disable msie6 safari;\n\
             \x20   lingering_close on;\n\
             \x20   lingering_time 30s;\n\
             \x20   lingering_timeout 5s;\n\
             \x20   client_body_in_file_only off;\n\
             \x20   client_body_in_single_buffer on;\n\
             \x20   uninitialized_variable_warn off;\n\
             \x20   aio threads;\n\
             \x20   aio_write on;\n\
             \x20   msie_refresh off;\n\
             \x20   disable_symlinks off;\n\
             \x20   subrequest_output_buffer_size 8k;\n\
             \x20   server {\n\
             \x20       keepalive_disable none;\n\
             \x20       http2_chunk_size 8k;\n\
             \x20       http2_push off;\n\
             \x20       http2_push_preload off;\n\
             \x20       location / {\n\
             \x20           proxy_pass http://127.0.0.1:1;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Upgrade $http_upgrade;\n\
             \x20           proxy_cache_bypass $http_upgrade;\n\
             \x20           proxy_no_cache $http_pragma $arg_nocache;\n\
             \x20           proxy_ignore_headers X-Accel-Expires Cache-Control set-cookie;\n\
             \x20           proxy_limit_rate 0;\n\
             \x20           proxy_force_ranges off;\n\
             \x20           proxy_ssl_verify_depth 3;\n\
             \x20           lingering_close always;\n\
             \x20           aio threads=default;\n\
             \x20       }\n\
             \x20   }\n\
             }\n"
            .into(),
            OK.into(),
            Waypost::Same,
        ),
        // Enum and bitmask values in any case, as nginx's slots read them.
        (
            in_http("client_body_in_file_only OFF; lingering_close ON; keepalive_disable MSIE6; ssl_verify_client OFF;"),
            OK.into(),
            Waypost::Same,
        ),
        // nginx's checks of the values.
        (
            in_http("map_hash_max_size x;"),
            emerg("\"map_hash_max_size\" directive invalid number", 5),
            Waypost::Same,
        ),
        (
            in_http("connection_pool_size 100;"),
            emerg("the pool size must be no less than 112", 5),
            Waypost::Same,
        ),
        (
            in_http("request_pool_size 120;"),
            emerg("the pool size must be a multiple of 16", 5),
            Waypost::Same,
        ),
        (
            in_http("client_body_in_file_only sometimes;"),
            emerg("invalid value \"sometimes\"", 5),
            Waypost::Same,
        ),
        (
            in_http("aio maybe;"),
            emerg("\"aio\" directive invalid value", 5),
            Waypost::Same,
        ),
        (
            in_http("aio on;"),
            emerg("\"aio on\" is unsupported on this platform", 5),
            Waypost::Same,
        ),
        (
            in_http("aio threads=pool1;"),
            emerg("unknown thread pool \"pool1\"", 5),
            Waypost::Same,
        ),
        (
            in_http("keepalive_disable opera;"),
            emerg("invalid value \"opera\"", 5),
            Waypost::Same,
        ),
        (
            in_http("lingering_close sometimes;"),
            emerg("invalid value \"sometimes\"", 5),
            Waypost::Same,
        ),
        (
            in_http("lingering_timeout soon;"),
            emerg("\"lingering_timeout\" directive invalid value", 5),
            Waypost::Same,
        ),
        (
            in_http("reset_timedout_connection yes;"),
            emerg(
                "invalid value \"yes\" in \"reset_timedout_connection\" directive, it must be \"on\" or \"off\"",
                5,
            ),
            Waypost::Same,
        ),
        (
            in_http("disable_symlinks off from=$document_root;"),
            emerg("\"from=\" cannot be used with \"off\" parameter", 5),
            Waypost::Same,
        ),
        (
            in_http("disable_symlinks sometimes;"),
            emerg("invalid parameter \"sometimes\"", 5),
            Waypost::Same,
        ),
        (
            in_http("http2_recv_buffer_size 16;"),
            emerg("\"http2_recv_buffer_size\" directive value is too small", 5),
            Waypost::Same,
        ),
        (
            in_http("http2_chunk_size 0;"),
            emerg("the http2 chunk size cannot be zero", 5),
            Waypost::Same,
        ),
        (
            in_http("http2_streams_index_size 30;"),
            emerg("\"http2_streams_index_size\" directive must be a power of two", 5),
            Waypost::Same,
        ),
        (
            in_http("ssl_verify_client sometimes;"),
            emerg("invalid value \"sometimes\"", 5),
            Waypost::Same,
        ),
        (
            in_location("proxy_ignore_headers X-Powered-By;"),
            emerg("invalid value \"X-Powered-By\"", 7),
            Waypost::Same,
        ),
        (
            in_location("proxy_no_cache $a$;"),
            emerg("invalid variable name", 7),
            Waypost::Same,
        ),
        (
            in_location("proxy_limit_rate fast;"),
            emerg("\"proxy_limit_rate\" directive invalid value", 7),
            Waypost::Same,
        ),
        (
            in_location("request_pool_size 4k;"),
            emerg("\"request_pool_size\" directive is not allowed here", 7),
            Waypost::Same,
        ),
        (
            in_location("map_hash_max_size 1024;"),
            emerg("\"map_hash_max_size\" directive is not allowed here", 7),
            Waypost::Same,
        ),
        (
            in_location("max_ranges many;"),
            emerg("\"max_ranges\" directive invalid number", 7),
            Waypost::Same,
        ),
        // What waypost does not do is refused by name, not ignored.
        // (A server without certificates does no TLS: no CA needed.)
        (in_http("ssl_verify_client on;"), OK.into(), Waypost::Same),
        (
            in_http("ssl_early_data on;"),
            OK.into(),
            unsupported("ssl_early_data on", 5),
        ),
        (
            in_http("disable_symlinks if_not_owner from=$document_root;"),
            OK.into(),
            Waypost::Same,
        ),
        (
            in_http("client_body_in_file_only clean;"),
            OK.into(),
            unsupported("client_body_in_file_only clean", 5),
        ),
        (
            in_location("proxy_limit_rate 1m;"),
            OK.into(),
            unsupported("proxy_limit_rate 1m", 7),
        ),
        (
            in_location("proxy_force_ranges on;"),
            OK.into(),
            unsupported("proxy_force_ranges on", 7),
        ),
        (
            in_location("http2_push /style.css;"),
            OK.into(),
            unsupported("http2_push /style.css", 7),
        ),
        (
            in_http("ssl_client_certificate /etc/ssl/certs/ca-certificates.crt;"),
            OK.into(),
            Waypost::Same,
        ),
    ];
    assert_t_cases("tuning", &cases);
}
