//! nginx's `resolver`: the names a `proxy_pass` with variables gives are
//! asked of the configured name servers (not the system's, nor
//! `/etc/hosts`), A and, with `ipv6=on`, AAAA records, kept for their TTL
//! or `valid=`; a failure is nginx's `could not be resolved` line.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
    ServerOrderingStrategy,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::TokioResolver;

use crate::conf::model::ResolverConf;

/// How often nginx's resolver sends a question again (`resend_timeout`).
const RESEND: Duration = Duration::from_secs(5);

/// How long an empty answer of one record type is kept without `valid=`
/// (the servers give it no TTL of its own without an SOA).
const EMPTY_TTL: Duration = Duration::from_secs(30);

/// The resolver of a `resolver` line (with its `resolver_timeout`).
pub struct Resolver {
    conf: ResolverConf,
    timeout: Duration,
    /// One per worker, made there: a lookup's sockets and timers belong to
    /// the runtime that made the resolver, and each worker keeps its own
    /// answers, as each nginx worker does.
    workers: Box<[OnceLock<Option<TokioResolver>>]>,
}

impl Resolver {
    pub fn new(conf: ResolverConf, timeout: Duration, workers: usize) -> Resolver {
        Resolver {
            conf,
            timeout,
            workers: (0..workers.max(1)).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The addresses of `host`, or nginx's reason they are not known:
    /// `(3: Host not found)`, `(110: Operation timed out)`, ...
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let slot = &self.workers[crate::worker::index() as usize % self.workers.len()];
        let Some(resolver) = slot.get_or_init(|| self.build()) else {
            return Err("(2: Server failure)".to_owned());
        };
        // A name, never an address (nginx asks for it as written).
        let name = format!("{}.", host.trim_end_matches('.'));
        match tokio::time::timeout(self.timeout, resolver.lookup_ip(name.as_str())).await {
            Err(_) => Err("(110: Operation timed out)".to_owned()),
            Ok(Err(e)) => {
                // nginx asks again for a name that does not exist (an empty
                // answer of one type is kept with the other's, below).
                if e.is_nx_domain() {
                    resolver.clear_lookup_cache(name.as_str(), RecordType::A);
                    resolver.clear_lookup_cache(name.as_str(), RecordType::AAAA);
                }
                Err(reason(&e).to_owned())
            }
            Ok(Ok(found)) => {
                let addrs: Vec<IpAddr> = found.iter().collect();
                match addrs.is_empty() {
                    true => Err("(3: Host not found)".to_owned()),
                    false => Ok(addrs),
                }
            }
        }
    }

    fn build(&self) -> Option<TokioResolver> {
        let servers = self
            .conf
            .servers
            .iter()
            .map(|addr| {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                server
            })
            .collect();
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
        let mut opts = ResolverOpts::default();
        // nginx sends the question again, to the next server, every 5 s
        // until `resolver_timeout` (the bound around the whole lookup).
        opts.timeout = self.timeout.min(RESEND);
        opts.attempts = (self.timeout.as_secs() / RESEND.as_secs()) as usize + 1;
        opts.num_concurrent_reqs = 1;
        opts.server_ordering_strategy = ServerOrderingStrategy::RoundRobin;
        opts.edns0 = false;
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ip_strategy = match self.conf.ipv6 {
            true => LookupIpStrategy::Ipv4AndIpv6,
            false => LookupIpStrategy::Ipv4Only,
        };
        if let Some(valid) = self.conf.valid {
            opts.positive_min_ttl = Some(valid);
            opts.positive_max_ttl = Some(valid);
        }
        // An empty answer (no AAAA record beside the A ones) is kept as
        // long as an answer; a name that does not exist is asked again.
        opts.negative_min_ttl = Some(self.conf.valid.unwrap_or(EMPTY_TTL));
        opts.negative_max_ttl = Some(self.conf.valid.unwrap_or(EMPTY_TTL));
        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| {
                crate::log::write(
                    crate::log::Level::Error,
                    None,
                    &format!("resolver could not be made: {e}"),
                )
            })
            .ok()
    }
}

/// nginx's `ngx_resolver_strerror` for what the servers answered.
fn reason(e: &NetError) -> &'static str {
    let code = match e {
        NetError::Dns(DnsError::NoRecordsFound(_)) => return "(3: Host not found)",
        NetError::Dns(DnsError::ResponseCode(code)) => *code,
        NetError::Timeout => return "(110: Operation timed out)",
        _ => return "(2: Server failure)",
    };
    match code {
        ResponseCode::FormErr => "(1: Format error)",
        ResponseCode::NXDomain => "(3: Host not found)",
        ResponseCode::NotImp => "(4: Unimplemented)",
        ResponseCode::Refused => "(5: Operation refused)",
        _ => "(2: Server failure)",
    }
}
