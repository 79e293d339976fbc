//! The request path: accept, choose server and location, answer or proxy.
//!
//! - `server`: accept loops, connections, server and location choice
//! - `h1`: the client connection loop (HTTP/1.x on httparse, pooled buffers)
//! - `h2`: HTTP/2 streams (hyper's server) turned into the same requests
//! - `tls`: the TLS handshake, and TLS as the h1 loop's transport
//! - `proxy_protocol`: the PROXY protocol header before a connection's
//!   bytes (`listen ... proxy_protocol`)
//! - `head`: the request head as nginx checks it (normalized URI, host)
//! - `refused`: what is logged of a head refused or cleaned while read
//! - `realip`: the client address from trusted proxies' headers
//! - `limit_conn`: requests in progress per key (`limit_conn`)
//! - `allow`: `allow`/`deny` rules on the client address, and the access
//!   phase with `satisfy`
//! - `auth_basic`: `auth_basic` and its user file
//! - `auth_request`: the access check by a subrequest (`auth_request`,
//!   `auth_request_set`)
//! - `mirror`: copies of a request sent by subrequests whose answers are
//!   dropped (`mirror`, `mirror_request_body`)
//! - `referer`: `valid_referers` and `$invalid_referer`
//! - `proxy`: the try loop (balancer hooks, retries)
//! - `pool`: upstream connections (plain or TLS) and per-worker keepalive
//! - `upstream_h1`: the upstream client (HTTP/1.x on httparse)
//! - `upstream_log`: the error line of an upstream body cut short, with
//!   the request's context kept for it
//! - `tunnel`: upgraded connections (WebSocket) after a 101
//! - `body`: the response body passed to the client
//! - `response`: `return` and error pages
//! - `error_page`: `error_page` (internal redirects, named locations)
//! - `rewrite`: `rewrite`, `return` and `break` in order (nginx's rewrite
//!   phases)
//! - `static_files`: `root`/`alias`, `index`, `try_files`: files, their
//!   conditional and range requests
//! - `autoindex`: a directory's listing where it has no index file
//! - `outbound`: an answer's header filters, in nginx's order (expires,
//!   add_header, gunzip, msie_padding, sub_filter, charset, gzip)
//! - `charset`: `charset NAME` added to Content-Type
//! - `cookie`: `proxy_cookie_domain` and `proxy_cookie_path`
//! - `expires`: `expires`, Expires and Cache-Control
//! - `gzip`: `gzip on`, responses compressed as they stream
//! - `symlinks`: `disable_symlinks`, files opened component by component
//! - `gunzip`: `gunzip on`, gzip-encoded answers decompressed as they
//!   stream for clients that do not take gzip
//! - `access`: access log lines

pub mod access;
pub mod allow;
pub mod auth_basic;
pub mod auth_request;
pub mod autoindex;
pub mod body;
pub mod cache;
pub mod charset;
pub mod client_cert;
pub mod cookie;
pub mod error_page;
pub mod expires;
pub mod fastcgi;
pub mod gunzip;
pub mod gzip;
pub mod h1;
pub mod h2;
pub mod head;
pub mod limit_conn;
pub mod mirror;
pub mod outbound;
pub mod pool;
pub mod proxy;
pub mod proxy_protocol;
pub mod realip;
pub mod referer;
pub mod refused;
pub mod response;
pub mod rewrite;
pub mod secure_link;
pub mod server;
pub mod static_files;
pub mod stats;
pub mod sub_filter;
pub mod symlinks;
pub mod timer;
pub mod tls;
pub mod tunnel;
pub mod upstream_h1;
pub mod upstream_log;

/// Appends `src` to `out` with each byte that `escaped` picks (by its
/// index and value) as `%XX` in nginx's upper-case hex (`ngx_escape_uri`).
pub fn escape_into(src: &[u8], out: &mut Vec<u8>, escaped: impl Fn(usize, u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, &c) in src.iter().enumerate() {
        if escaped(i, c) {
            out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
        } else {
            out.push(c);
        }
    }
}
