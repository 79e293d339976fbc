//! `geo`: nginx's `ngx_http_geo_module`. A variable whose value depends
//! on the client address: the value of the most specific network (`CIDR
//! VALUE;`) that holds it, else `default`'s, else the empty value; or with
//! `ranges`, of the IPv4 range (`A-B VALUE;`) that holds it, found by
//! binary search. Values are literal text.
//!
//! The address is the client's after realip (`$remote_addr`), then, when
//! it is one of the block's `proxy` addresses, the one X-Forwarded-For
//! gives (`proxy_recursive` walks past trusted proxies), as nginx's
//! `ngx_http_geo_real_addr`; or, with `geo $address $var`, the variable's
//! value (through the `proxy` addresses as well), and 255.255.255.255
//! when that is no address. An IPv4-mapped IPv6
//! address is looked up among the IPv4 networks.
//!
//! Built at config load into one hash table per prefix length, searched
//! from the longest: a handful of lookups for the usual few lengths.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::conf::model::GeoConf;
use crate::http::realip::{self, Cidr, RealIp, Source};
use crate::vars::VarCtx;

/// One compiled `geo` block's networks.
#[derive(Debug)]
pub struct Geo {
    /// `geo $address $var`: the address comes from the map's source.
    pub has_source: bool,
    proxies: Option<RealIp>,
    /// (mask, network -> value index), longest prefix first.
    v4: Box<[(u32, HashMap<u32, u32>)]>,
    v6: Box<[(u128, HashMap<u128, u32>)]>,
    values: Box<[Box<[u8]>]>,
    ranges: Option<Ranges>,
}

/// One IPv4 range: its first and last address, and its value.
type Range = (u32, u32, Box<[u8]>);

/// `ranges`: in order, and the default value.
#[derive(Debug)]
struct Ranges {
    list: Box<[Range]>,
    default: Box<[u8]>,
}

impl Geo {
    pub fn build(conf: &GeoConf) -> Geo {
        // Each value text once.
        let mut values: Vec<Box<[u8]>> = Vec::new();
        let mut index: HashMap<&str, u32> = HashMap::new();
        for (_, text) in &conf.networks {
            index.entry(text.as_str()).or_insert_with(|| {
                values.push(text.as_bytes().into());
                (values.len() - 1) as u32
            });
        }
        let mut v4: HashMap<u32, HashMap<u32, u32>> = HashMap::new();
        let mut v6: HashMap<u128, HashMap<u128, u32>> = HashMap::new();
        for (net, value) in &conf.networks {
            let Some(&i) = index.get(value.as_str()) else {
                continue;
            };
            match *net {
                Cidr::V4 { addr, mask } => {
                    v4.entry(mask).or_default().insert(addr, i);
                }
                Cidr::V6 { addr, mask } => {
                    let (addr, mask) = (u128::from_be_bytes(addr), u128::from_be_bytes(mask));
                    v6.entry(mask).or_default().insert(addr, i);
                }
                Cidr::Unix => {}
            }
        }
        let mut v4: Vec<_> = v4.into_iter().collect();
        v4.sort_by_key(|(mask, _)| std::cmp::Reverse(mask.count_ones()));
        let mut v6: Vec<_> = v6.into_iter().collect();
        v6.sort_by_key(|(mask, _)| std::cmp::Reverse(mask.count_ones()));
        Geo {
            has_source: conf.has_source,
            proxies: (!conf.proxies.is_empty()).then(|| RealIp {
                from: conf.proxies.clone(),
                source: Source::XForwardedFor,
                recursive: conf.proxy_recursive,
            }),
            v4: v4.into_boxed_slice(),
            v6: v6.into_boxed_slice(),
            values: values.into_boxed_slice(),
            ranges: conf.ranges.as_ref().map(|r| {
                let list = r
                    .list
                    .iter()
                    .map(|(s, e, v)| (*s, *e, v.as_bytes().into()))
                    .collect();
                let default = r.default.as_deref().unwrap_or("").as_bytes().into();
                Ranges { list, default }
            }),
        }
    }

    /// The address of the request, when the block has no `$address`.
    pub fn client(&self, cx: &VarCtx<'_>) -> IpAddr {
        self.forwarded(cx.client, cx)
    }

    /// The address `$address` gave (from a `proxy`, the one
    /// X-Forwarded-For gives, as for the client's); nginx's INADDR_NONE
    /// when it is none.
    pub fn address(&self, text: &[u8], cx: &VarCtx<'_>) -> IpAddr {
        match realip::parse_addr(text) {
            Some(ip) => self.forwarded(std::net::SocketAddr::new(ip, 0), cx),
            None => IpAddr::V4(Ipv4Addr::BROADCAST),
        }
    }

    fn forwarded(&self, from: std::net::SocketAddr, cx: &VarCtx<'_>) -> IpAddr {
        match &self.proxies {
            Some(proxies) => proxies
                .apply(from, &cx.req.headers, &cx.req.extensions)
                .unwrap_or(from)
                .ip(),
            None => from.ip(),
        }
    }

    /// The value for `ip`.
    pub fn find(&self, ip: IpAddr) -> &[u8] {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if let Some(Ranges {
            list: ranges,
            default,
        }) = &self.ranges
        {
            // IPv4 only, as nginx's ranges.
            let IpAddr::V4(v4) = ip else {
                return default;
            };
            let a = u32::from(v4);
            let at = ranges.partition_point(|r| r.1 < a);
            return match ranges.get(at) {
                Some((s, _, value)) if *s <= a => value,
                _ => default,
            };
        }
        let found = match ip {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4
                    .iter()
                    .find_map(|(mask, nets)| nets.get(&(a & mask)))
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6
                    .iter()
                    .find_map(|(mask, nets)| nets.get(&(a & mask)))
            }
        };
        found.map_or(&[], |&i| &self.values[i as usize])
    }
}
