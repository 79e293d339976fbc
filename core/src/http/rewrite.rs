//! nginx's rewrite module: a server's and a location's `rewrite`,
//! `return` and `break` lines, run in the order written (its server
//! rewrite and rewrite phases). A `rewrite` whose regex matches `$uri`
//! replaces it (and maybe the arguments): `last` finds the location again,
//! no flag runs the level's next lines first, `break` stays in the
//! location, `redirect` and `permanent` (or a replacement that is a URL)
//! answer with a redirect. Only levels with a `rewrite` or `break` come
//! here; a lone `return` is its location's action.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use http::header::{HeaderValue, LOCATION};
use http::request::Parts;
use http::Response;

use crate::conf::model::{IfCond, IfHeaders, RewriteConf, RewriteFlag, RewriteOp};
use crate::conf::ConfError;
use crate::http::body::RespBody;
use crate::http::h1::ClientBody;
use crate::http::head::ParsedHead;
use crate::http::response::{absolute_url, finalized};
use crate::http::server::{at_location, Req};
use crate::http::static_files::{uri_of, AnsweredAt, Final};
use crate::log::Level;
use crate::map::MapNames;
use crate::runtime::{Action, Location};
use crate::vars::Template;
use crate::vars::{Captured, UserVars};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// A level's rewrite lines, compiled.
pub struct Script {
    ops: Box<[Op]>,
    /// `rewrite_log on`: each regex's match and each rewrite, at notice.
    log: bool,
    /// How a redirect's Location that is a path is made absolute.
    style: crate::conf::model::RedirectStyle,
}

enum Op {
    Rewrite(Box<Rewrite>),
    /// `return`, as a location's action would answer it.
    Return(Box<Action>),
    Break,
    /// `set`: the variable's index, its value.
    Set(u32, Template),
    /// `set $args`: the request's arguments from now on.
    SetArgs(Template),
    /// `if`: when the condition does not hold, the next `skip` lines
    /// (its block's) do not run.
    If(Box<Cond>, usize),
    /// A location `if` block's `add_header` and `expires`: the answer's
    /// header filters from then on.
    Outbound(Arc<crate::http::outbound::Outbound>),
    /// A location `if` block's `proxy_pass`: the answer's handler.
    Handler(Arc<Action>),
    /// A location `if` block's `access_log` lines: the request's logs.
    AccessLog(IfAccessLog),
    /// A location `if` block's `root`: where its files are.
    Statics(IfStatics),
}

/// An `if`'s condition.
enum Cond {
    /// True unless empty or `0`.
    Var(Template),
    /// Equal (or not, when `negate`).
    Equal(Template, Template, bool),
    /// Matches (or not); its named groups set these variables (group,
    /// index).
    Regex(
        Template,
        crate::pattern::Regex,
        bool,
        Box<[(u8, u32)]>,
        Box<str>,
    ),
    /// `-f`, `-d`, `-e` or `-x` (its letter) holds for the path (or not).
    File(Template, u8, bool),
}

struct Rewrite {
    pattern: String,
    regex: crate::pattern::Regex,
    /// The replacement up to its first `?`, and what follows it.
    uri: Template,
    args: Option<Template>,
    /// The request's arguments are kept (the replacement does not end
    /// with `?`).
    add_args: bool,
    flag: RewriteFlag,
    /// The regex's named groups and the variables they set.
    named: crate::vars::GroupVars,
}

/// A request going to another location (or level) leaves the marks of
/// the one it was at: its `if`'s settings, a `break`'s invalid location.
pub(crate) fn new_level(extensions: &mut http::Extensions) {
    extensions.remove::<InIf>();
    extensions.remove::<Broken>();
    extensions.remove::<IfOutbound>();
    extensions.remove::<IfHandler>();
    extensions.remove::<IfAccessLog>();
    extensions.remove::<IfStatics>();
}

/// The handler (`proxy_pass`) of a location's `if` that held: nginx
/// answers with the `if` block's, which takes the location's place.
#[derive(Clone)]
pub(crate) struct IfHandler(pub(crate) Arc<Action>);

/// What a location `if` block sets besides its rewrite lines.
pub struct IfLevel {
    /// Its header filters over the location's, when it has any.
    pub outbound: Option<crate::http::outbound::Outbound>,
    /// Its `proxy_pass`.
    pub handler: Option<Action>,
    /// Its `access_log` lines, when it has any (`Some(None)`: `off`).
    pub access_log: Option<Option<Arc<crate::http::access::AccessLogs>>>,
    /// The location's static settings with its `root`, when it has one.
    pub statics: Option<crate::http::static_files::Static>,
}

/// The static settings of a location's `if` that held with a `root`:
/// nginx serves files (and `$document_root`) from the `if` block's.
#[derive(Clone)]
pub(crate) struct IfStatics(pub(crate) Arc<crate::http::static_files::Static>);

/// The access logs of a location's `if` that held: nginx logs the
/// request with the `if` block's (`None`: none).
#[derive(Clone)]
pub(crate) struct IfAccessLog(pub(crate) Option<Arc<crate::http::access::AccessLogs>>);

/// The header filters (`add_header`, `expires`) of a location's `if`
/// that held: nginx answers with the `if` block's settings.
#[derive(Clone)]
pub(crate) struct IfOutbound(pub(crate) Arc<crate::http::outbound::Outbound>);

/// Marks a request a location's `if` matched for: nginx serves it with
/// the `if` block's own location, to which `try_files` is not inherited.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InIf;

/// Marks a request a `rewrite ... break` changed: `proxy_pass` with a URI
/// then puts the whole URI after it (nginx's `valid_location = 0`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Broken;

impl Script {
    /// The script of `ops`, `None` when there is none; a `return` is
    /// compiled as the level's `return` would be (`reply`).
    pub fn new(
        ops: &[RewriteOp],
        log: bool,
        style: crate::conf::model::RedirectStyle,
        maps: &MapNames,
        reply: &dyn Fn(&crate::conf::model::Return) -> Result<Action, ConfError>,
        if_level: &dyn Fn(&IfHeaders) -> Result<IfLevel, ConfError>,
    ) -> Result<Option<Box<Script>>, ConfError> {
        if ops.is_empty() {
            return Ok(None);
        }
        let mut flat = Vec::new();
        flatten(ops, &mut flat, maps, reply, if_level)?;
        let ops = flat;
        Ok(Some(Box::new(Script {
            ops: ops.into(),
            log,
            style,
        })))
    }
}

/// `ops` in order into `out`, an `if`'s block after it.
fn flatten(
    ops: &[RewriteOp],
    out: &mut Vec<Op>,
    maps: &MapNames,
    reply: &dyn Fn(&crate::conf::model::Return) -> Result<Action, ConfError>,
    if_level: &dyn Fn(&IfHeaders) -> Result<IfLevel, ConfError>,
) -> Result<(), ConfError> {
    let compile = |t: &str| {
        Template::compile_with(t, &|n| maps.var(n)).map_err(|e| ConfError::bare(e.to_string()))
    };
    for op in ops {
        match op {
            RewriteOp::Break => out.push(Op::Break),
            RewriteOp::Return(r) => out.push(Op::Return(Box::new(reply(r)?))),
            RewriteOp::Rewrite(r) => out.push(Op::Rewrite(Box::new(Rewrite::new(r, maps)?))),
            RewriteOp::Set(i, value) => out.push(Op::Set(*i as u32, compile(value)?)),
            RewriteOp::SetArgs(value) => out.push(Op::SetArgs(compile(value)?)),
            RewriteOp::Headers(h) => {
                let level = if_level(h)?;
                if let Some(o) = level.outbound {
                    out.push(Op::Outbound(Arc::new(o)));
                }
                if let Some(action) = level.handler {
                    out.push(Op::Handler(Arc::new(action)));
                }
                if let Some(logs) = level.access_log {
                    out.push(Op::AccessLog(IfAccessLog(logs)));
                }
                if let Some(statics) = level.statics {
                    out.push(Op::Statics(IfStatics(Arc::new(statics))));
                }
            }
            RewriteOp::If(cond, block) => {
                let cond = match cond {
                    IfCond::Var(v) => Cond::Var(compile(v)?),
                    IfCond::Equal { var, value, negate } => {
                        Cond::Equal(compile(var)?, compile(value)?, *negate)
                    }
                    IfCond::Regex {
                        var,
                        pattern,
                        caseless,
                        negate,
                    } => {
                        let regex = crate::vars::regex(pattern, *caseless)
                            .map_err(|e| ConfError::bare(e.to_string()))?;
                        // nginx makes a named group a variable.
                        let named = crate::runtime::build::named_vars(&regex, maps);
                        Cond::Regex(
                            compile(var)?,
                            regex,
                            *negate,
                            named,
                            pattern.as_str().into(),
                        )
                    }
                    IfCond::File { path, test, negate } => {
                        Cond::File(compile(path)?, *test, *negate)
                    }
                };
                let at = out.len();
                out.push(Op::If(Box::new(cond), 0));
                flatten(block, out, maps, reply, if_level)?;
                let skip = out.len() - at - 1;
                out[at] = match std::mem::replace(&mut out[at], Op::Break) {
                    Op::If(cond, _) => Op::If(cond, skip),
                    other => other,
                };
            }
        }
    }
    Ok(())
}

impl Rewrite {
    fn new(r: &RewriteConf, maps: &MapNames) -> Result<Rewrite, ConfError> {
        let regex = crate::vars::regex(&r.pattern, false).map_err(|e| {
            ConfError::bare(format!(
                "regular expression \"{}\" is not valid or not supported: {e}",
                r.pattern
            ))
        })?;
        let (text, add_args) = match r.replacement.strip_suffix('?') {
            Some(text) => (text, false),
            None => (r.replacement.as_str(), true),
        };
        let groups = named_groups(&regex);
        let scope = |n: &str| {
            groups
                .iter()
                .find(|(name, _)| name == n)
                .map(|&(_, g)| crate::vars::Var::Capture(g))
                .or_else(|| maps.var(n))
        };
        let compile =
            |t: &str| Template::compile_with(t, &scope).map_err(|e| ConfError::bare(e.to_string()));
        let (uri, args) = match text.split_once('?') {
            Some((uri, args)) => (compile(uri)?, Some(compile(args)?)),
            None => (compile(text)?, None),
        };
        Ok(Rewrite {
            pattern: r.pattern.clone(),
            named: crate::runtime::build::named_vars(&regex, maps),
            regex,
            uri,
            args,
            add_args,
            flag: r.flag,
        })
    }
}

/// A regex's named groups, lowercase, and their numbers: variables of
/// its `rewrite`'s replacement.
pub(crate) fn named_groups(regex: &crate::pattern::Regex) -> Vec<(String, u8)> {
    regex
        .capture_names()
        .into_iter()
        .enumerate()
        .filter_map(|(g, n)| Some((n?.to_ascii_lowercase(), u8::try_from(g).ok()?)))
        .collect()
}

/// What a level's script did.
enum Ran<'s> {
    /// It ran to its end, or to a `break` (`broken` if the URI had
    /// changed then); `state` is the request as `rewrite`s without flag
    /// and `set`s left it.
    End {
        state: Option<Current>,
        broken: bool,
    },
    /// A `rewrite ... last`, or the end after one without flag: the
    /// location is found again.
    Again(Current),
    /// A `rewrite ... break`: the location stays.
    Stay(Current),
    /// A `return`, for the request as it is then.
    Return(&'s Action, Option<Current>),
    /// An answer of its own (a redirect, a 500).
    Answer(Response<RespBody>),
}

/// A URI and its arguments.
type Target = (Vec<u8>, Option<Vec<u8>>);

/// The request as the rewrite lines so far left it: its head (a new URI,
/// `set`'s values and the last regex's groups in its extensions), and
/// whether its URI changed.
struct Current {
    parts: Parts,
    head: ParsedHead,
    moved: bool,
}

impl Current {
    /// `base` with the URI and arguments of `target` (`broken`: by a
    /// `rewrite ... break`).
    fn new(base: &Req<'_>, (uri, args): &Target, broken: bool) -> Option<Current> {
        let mut c = Current::copy(base, uri_of(uri, args.as_deref())?, uri)?;
        if broken {
            c.parts.extensions.insert(Broken);
        }
        c.moved = true;
        Some(c)
    }

    /// `base` with the URI `uri`; `raw`: the URI as `$uri` shows it (a
    /// rewrite's is taken as it is).
    fn copy(base: &Req<'_>, uri: http::Uri, raw: &[u8]) -> Option<Current> {
        let from = base.parts;
        let mut next = http::Request::new(());
        *next.version_mut() = from.version;
        *next.headers_mut() = from.headers.clone();
        *next.extensions_mut() = from.extensions.clone();
        *next.method_mut() = from.method.clone();
        *next.uri_mut() = uri;
        let parts = next.into_parts().0;
        let head = ParsedHead::redirected(base.head, from, raw);
        Some(Current {
            parts,
            head,
            moved: false,
        })
    }
}

/// The request `own` holds, made from `base` (the script's request)
/// first if need be: `set` and
/// an `if`'s regex change it.
fn owned<'c>(own: &'c mut Option<Current>, base: &Req<'_>) -> Option<&'c mut Current> {
    if own.is_none() {
        let uri = base.head.uri(&base.parts.uri);
        *own = Some(Current::copy(base, base.parts.uri.clone(), uri)?);
    }
    own.as_mut()
}

/// Runs `script` for `req`.
async fn run<'s>(script: &'s Script, req: &Req<'_>, client: SocketAddr) -> Ran<'s> {
    let mut own: Option<Current> = None;
    let mut i = 0;
    while let Some(op) = script.ops.get(i) {
        i += 1;
        // (`redirected` keeps the client's request as the original, for
        // the log lines.)
        let now = match &own {
            Some(c) => state_req(req, c, req.changes),
            None => req.redirected(req.parts, req.head, None, req.err_status, req.changes),
        };
        let rewrite = match op {
            // nginx's break code: a changed URI stays, in this location.
            Op::Break => {
                let broken = own.as_ref().is_some_and(|c| c.moved);
                return Ran::End { state: own, broken };
            }
            Op::Return(action) => return Ran::Return(action, own),
            Op::Set(index, value) => {
                let value = bytes::Bytes::from(value.eval(&now.vars(
                    client,
                    0,
                    &crate::vars::ProxyName::NONE,
                )));
                let Some(c) = owned(&mut own, req) else {
                    return Ran::Answer(finalized(500));
                };
                let vars = c.parts.extensions.get_or_insert_default::<UserVars>();
                vars.set(*index, value);
                continue;
            }
            Op::SetArgs(value) => {
                // The path stays as it came (or as a rewrite made it), and
                // the location too; `$request_uri` stays the client's.
                let args = value.eval(&now.vars(client, 0, &crate::vars::ProxyName::NONE));
                let Some(c) = owned(&mut own, req) else {
                    return Ran::Answer(finalized(500));
                };
                match crate::http::static_files::with_args(c.parts.uri.path(), &args) {
                    Some(uri) => c.parts.uri = uri,
                    None => return Ran::Answer(finalized(500)),
                }
                c.parts.extensions.insert(crate::vars::ArgsSet);
                continue;
            }
            Op::If(cond, skip) => {
                let (held, regex) = holds(cond, &now, client, script.log).await;
                // A regex's groups are `$1`..`$9` from now on (none when
                // it did not match, which only matters where there were).
                let hides =
                    now.captures.is_some() || now.parts.extensions.get::<Captured>().is_some();
                if let Some((captured, named)) = regex.filter(|(c, _)| !c.is_empty() || hides) {
                    let Some(c) = owned(&mut own, req) else {
                        return Ran::Answer(finalized(500));
                    };
                    let vars = c.parts.extensions.get_or_insert_default::<UserVars>();
                    for (index, value) in named {
                        vars.set(index, value);
                    }
                    c.parts.extensions.insert(captured);
                }
                if held {
                    let Some(c) = owned(&mut own, req) else {
                        return Ran::Answer(finalized(500));
                    };
                    // The request takes this block's settings, over the
                    // location's, not an earlier `if`'s (nginx's
                    // `r->loc_conf` of the last `if` that held).
                    c.parts.extensions.remove::<IfHandler>();
                    c.parts.extensions.remove::<IfOutbound>();
                    c.parts.extensions.remove::<IfAccessLog>();
                    c.parts.extensions.remove::<IfStatics>();
                    c.parts.extensions.insert(InIf);
                } else {
                    i += skip;
                }
                continue;
            }
            Op::Outbound(o) => {
                let Some(c) = owned(&mut own, req) else {
                    return Ran::Answer(finalized(500));
                };
                c.parts.extensions.insert(IfOutbound(Arc::clone(o)));
                continue;
            }
            Op::Handler(action) => {
                let Some(c) = owned(&mut own, req) else {
                    return Ran::Answer(finalized(500));
                };
                c.parts.extensions.insert(IfHandler(Arc::clone(action)));
                continue;
            }
            Op::AccessLog(logs) => {
                let Some(c) = owned(&mut own, req) else {
                    return Ran::Answer(finalized(500));
                };
                c.parts.extensions.insert(logs.clone());
                continue;
            }
            Op::Statics(statics) => {
                let Some(c) = owned(&mut own, req) else {
                    return Ran::Answer(finalized(500));
                };
                c.parts.extensions.insert(statics.clone());
                continue;
            }
            Op::Rewrite(r) => r,
        };
        let uri = now.head.uri(&now.parts.uri);
        let caps = rewrite.regex.captures(uri);
        if script.log {
            let line = format!(
                "\"{}\" {} \"{}\"",
                rewrite.pattern,
                if caps.is_some() {
                    "matches"
                } else {
                    "does not match"
                },
                String::from_utf8_lossy(uri)
            );
            now.log_line(client, Level::Notice, line);
        }
        let Some(caps) = caps else {
            // nginx empties the groups a regex location gave.
            if now.captures.is_some() || now.parts.extensions.get::<Captured>().is_some() {
                let Some(c) = owned(&mut own, req) else {
                    return Ran::Answer(finalized(500));
                };
                c.parts.extensions.insert(Captured::none());
            }
            continue;
        };
        let mut vars = now.vars(client, 0, &crate::vars::ProxyName::NONE);
        vars.captures = Some(&caps);
        // nginx escapes the groups (as arguments) in the arguments and in
        // a redirect, when the request's path had `%` or `+`.
        let client_path = now.original.unwrap_or(now.parts).uri.path();
        let escape = now.head.quoted || client_path.contains('+');
        let redirect_to = matches!(rewrite.flag, RewriteFlag::Redirect(_));
        let plain = |group: &[u8], out: &mut Vec<u8>| out.extend_from_slice(group);
        let escaped = |group: &[u8], out: &mut Vec<u8>| escape_args(group, out);
        let mut new_uri = Vec::new();
        rewrite.uri.eval_capturing(
            &vars,
            &mut new_uri,
            if escape && redirect_to {
                &escaped
            } else {
                &plain
            },
        );
        let new_args = rewrite.args.as_ref().map(|a| {
            let mut out = Vec::new();
            a.eval_capturing(&vars, &mut out, if escape { &escaped } else { &plain });
            out
        });
        let old_args = now.parts.uri.query().filter(|q| !q.is_empty());
        let args = match (new_args, rewrite.add_args.then_some(old_args).flatten()) {
            (Some(mut new), Some(old)) => {
                new.push(b'&');
                new.extend_from_slice(old.as_bytes());
                Some(new)
            }
            (Some(new), None) => Some(new),
            (None, Some(old)) => Some(old.as_bytes().to_vec()),
            (None, None) => None,
        };
        if let RewriteFlag::Redirect(status) = rewrite.flag {
            let mut resp = redirect(&now, status, new_uri, args, client, script);
            // Logged with the lines of the `if` that held, if any.
            if let Some(logs) = own
                .as_ref()
                .and_then(|c| c.parts.extensions.get::<IfAccessLog>())
            {
                resp.extensions_mut().insert(logs.clone());
            }
            return Ran::Answer(resp);
        }
        if script.log {
            let line = format!(
                "rewritten data: \"{}\", args: \"{}\"",
                String::from_utf8_lossy(&new_uri),
                String::from_utf8_lossy(args.as_deref().unwrap_or_default())
            );
            now.log_line(client, Level::Notice, line);
        }
        if new_uri.is_empty() {
            now.log_line(
                client,
                Level::Error,
                "the rewritten URI has a zero length".into(),
            );
            return Ran::Answer(finalized(500));
        }
        let target = (new_uri, args);
        let broken = rewrite.flag == RewriteFlag::Break;
        let Some(mut next) = Current::new(&now, &target, broken) else {
            return Ran::Answer(finalized(500));
        };
        // This regex's groups are `$1`..`$9` from now on, its named ones
        // variables.
        if !rewrite.named.is_empty() {
            let vars = next.parts.extensions.get_or_insert_default::<UserVars>();
            vars.set_groups(&rewrite.named, &caps);
        }
        next.parts.extensions.insert(Captured::new(uri, &caps));
        match rewrite.flag {
            RewriteFlag::Last => return Ran::Again(next),
            RewriteFlag::Break => return Ran::Stay(next),
            _ => {}
        }
        own = Some(next);
    }
    match own {
        Some(c) if c.moved => Ran::Again(c),
        state => Ran::End {
            state,
            broken: false,
        },
    }
}

/// Whether an `if`'s condition holds, and for a regex its groups (none
/// when it did not match) and its named groups' values (variable index,
/// value).
async fn holds(
    cond: &Cond,
    req: &Req<'_>,
    client: SocketAddr,
    log: bool,
) -> (bool, Option<(Captured, Vec<(u32, bytes::Bytes)>)>) {
    let vars = req.vars(client, 0, &crate::vars::ProxyName::NONE);
    match cond {
        Cond::Var(v) => {
            let value = v.eval(&vars);
            (!value.is_empty() && value != b"0", None)
        }
        Cond::Equal(var, value, negate) => {
            ((var.eval(&vars) == value.eval(&vars)) != *negate, None)
        }
        Cond::Regex(var, regex, negate, named, pattern) => {
            let subject = var.eval(&vars);
            let caps = regex.captures(&subject);
            if log {
                let line = format!(
                    "\"{pattern}\" {} \"{}\"",
                    if caps.is_some() {
                        "matches"
                    } else {
                        "does not match"
                    },
                    String::from_utf8_lossy(&subject)
                );
                req.log_line(client, Level::Notice, line);
            }
            match caps {
                Some(caps) => {
                    let values = named
                        .iter()
                        .map(|&(g, i)| {
                            let value = caps.get(usize::from(g)).map_or(&b""[..], |m| m.as_bytes());
                            (i, bytes::Bytes::copy_from_slice(value))
                        })
                        .collect();
                    (!*negate, Some((Captured::new(&subject, &caps), values)))
                }
                None => (*negate, Some((Captured::none(), Vec::new()))),
            }
        }
        Cond::File(path, test, negate) => {
            let path = path.eval(&vars);
            let test = *test;
            let found = crate::http::static_files::blocking(move || {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(std::ffi::OsStr::from_bytes(&path))?;
                Ok(match test {
                    b'f' => meta.is_file(),
                    b'd' => meta.is_dir(),
                    b'x' => meta.permissions().mode() & 0o100 != 0,
                    _ => true,
                })
            })
            .await
            .unwrap_or(false);
            (found != *negate, None)
        }
    }
}

/// A `rewrite ... redirect|permanent`: the replacement (and arguments) as
/// Location, made absolute when it is a path.
fn redirect(
    req: &Req<'_>,
    status: u16,
    uri: Vec<u8>,
    args: Option<Vec<u8>>,
    client: SocketAddr,
    script: &Script,
) -> Response<RespBody> {
    let mut location = unescape_redirect(&uri);
    if let Some(args) = args {
        location.push(b'?');
        location.extend_from_slice(&args);
    }
    if script.log {
        let line = format!(
            "rewritten redirect: \"{}\"",
            String::from_utf8_lossy(&location)
        );
        req.log_line(client, Level::Notice, line);
    }
    let made = location.first() == Some(&b'/') && script.style.absolute;
    if made {
        let host = req.head.host(&req.parts.uri, &req.parts.headers);
        location = absolute_url(
            &location,
            host,
            req.parts,
            req.local,
            script.style,
            &req.server.name,
        );
    }
    let mut resp = finalized(status);
    if let Ok(v) = HeaderValue::from_bytes(&location) {
        resp.headers_mut().insert(LOCATION, v);
        resp.extensions_mut()
            .insert(crate::http::response::OwnLocation);
    }
    if made {
        resp.extensions_mut()
            .insert(crate::http::response::MadeAbsolute);
    }
    resp
}

/// nginx 1.22's `ngx_escape_uri` with `NGX_ESCAPE_ARGS`: controls,
/// space, the characters of `"#%&+;<>?\^`{|}`, DEL and bytes past it.
fn escape_args(src: &[u8], out: &mut Vec<u8>) {
    crate::http::escape_into(src, out, |_, c| {
        c <= b' ' || c >= 0x7f || b"\"#%&+;<>?\\^`{|}".contains(&c)
    });
}

/// nginx's `ngx_unescape_uri` with `NGX_UNESCAPE_REDIRECT`, on a
/// redirect's path: `%XX` of a character past `%` and before DEL is
/// decoded, any other kept; nothing after a `?`.
fn unescape_redirect(src: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        if c == b'?' {
            out.extend_from_slice(&src[i..]);
            break;
        }
        if let (b'%', Some(&h), Some(&l)) = (c, src.get(i + 1), src.get(i + 2)) {
            if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                let ch = h << 4 | l;
                if ch > b'%' && ch < 0x7f {
                    out.push(ch);
                } else {
                    out.extend_from_slice(&src[i..i + 3]);
                }
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// A request whose server or first location has rewrite lines, or an
/// internal redirect's (`error_page`, `index`, `try_files`): the
/// server's lines run (unless `named`), then the location's, the location
/// found again as they say (at most 10 times in all), then the location
/// answers. `first` is the location found for the request's URI;
/// `realip`: whether the location's realip settings may apply; `started`:
/// when a redirected request started.
pub(crate) fn serve<'a>(
    req: &'a Req<'a>,
    body: ClientBody,
    first: Option<&'a Location>,
    client: SocketAddr,
    realip: bool,
    started: Option<std::time::Instant>,
    named: bool,
) -> Pin<Box<dyn Future<Output = Response<RespBody>> + Send + 'a>> {
    Box::pin(async move {
        let server = req.server;
        let mut current: Option<Current> = None;
        let mut location = first;
        // The server's rewrite phase, before any location is found.
        if let (Some(script), false) = (&server.script, named) {
            // The server's level: its root, no location's groups yet.
            let at_server = Req {
                statics: Some(&server.statics),
                captures: None,
                ..*req
            };
            let state = match run(script, &at_server, client).await {
                Ran::Return(action, state) => {
                    let now = at_current(&at_server, state.as_ref(), req.changes);
                    let resp = match action {
                        Action::Reply(r) => crate::http::response::reply(
                            r,
                            &now.vars(client, r.status, &crate::vars::ProxyName::NONE),
                        ),
                        _ => finalized(500),
                    };
                    let resp = logged(&now, client, server.access_log.as_ref(), resp, started);
                    // The server level's header filters and pages apply.
                    return answered_at(resp, server, None, state.as_ref(), req.changes);
                }
                Ran::Answer(resp) => {
                    let resp = logged(
                        &at_server,
                        client,
                        server.access_log.as_ref(),
                        resp,
                        started,
                    );
                    return answered_at(resp, server, None, None, req.changes);
                }
                Ran::End { state, .. } => state,
                Ran::Again(state) | Ran::Stay(state) => Some(state),
            };
            if let Some(mut c) = state {
                // The location is found (again) for the URI (a regex
                // location's groups then being `$1`..`$9`); a server's
                // `if` leaves the location's settings alone.
                new_level(&mut c.parts.extensions);
                location = find(server, &mut c);
                current = Some(c);
            }
        }
        let mut changes = req.changes;
        let mut body = body;
        loop {
            let now = at_current(req, current.as_ref(), changes);
            // nginx's find-config phase: a client's own request for an
            // `internal` location is 404, before anything else there.
            let rewritten = current.as_ref().is_some_and(|c| c.moved) || req.original.is_some();
            if let (Some(at), false) = (location, rewritten) {
                if matches!(at.action, Action::Internal(_)) {
                    let resp = crate::http::response::error_page(404);
                    let resp = logged(&now, client, at.access_log.as_ref(), resp, started);
                    return answered_at(resp, server, Some(at), current.as_ref(), changes);
                }
            }
            // nginx's find-config phase: the body's limits are the level's
            // the request is at (a Content-Length past them is 413).
            let limits = location.map_or(&server.client, |l| &l.client);
            if too_large(&mut body, limits) {
                let mut resp = crate::http::response::error_page(413);
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                let logs = location.map_or(server.access_log.as_ref(), |l| {
                    l.logs_for(&now.parts.method)
                });
                let resp = logged(&now, client, logs, resp, started);
                return answered_at(resp, server, location, current.as_ref(), changes);
            }
            let Some(at) = location else {
                // No location takes the URI: the server level's access
                // phase and files.
                let resp = crate::http::server::server_level(&now, body, client, started).await;
                return answered_at(resp, server, None, current.as_ref(), changes);
            };
            // The location's root for `$document_root` and kin.
            let now = Req {
                statics: Some(&at.statics),
                ..now
            };
            let moved = current.as_ref().is_some_and(|c| c.moved);
            let rewritten = moved || req.original.is_some();
            let ran = match at.script_for(&now.parts.method) {
                Some(script) => run(script, &now, client).await,
                None => Ran::End {
                    state: None,
                    broken: false,
                },
            };
            let (next, again) = match ran {
                Ran::End { state: None, .. } => {
                    let action = reached(at.action_for(&now.parts.method), rewritten);
                    let answer = at_location(&now, body, at, action, client, realip, started);
                    let resp = Box::pin(answer).await;
                    return answered_at(resp, server, Some(at), current.as_ref(), changes);
                }
                Ran::Return(action, state) => {
                    let now = at_current(&now, state.as_ref(), changes);
                    let answer = at_location(&now, body, at, action, client, realip, started);
                    let resp = Box::pin(answer).await;
                    return answered_at(
                        resp,
                        server,
                        Some(at),
                        state.as_ref().or(current.as_ref()),
                        changes,
                    );
                }
                Ran::Answer(resp) => {
                    let logs = match resp.extensions().get::<IfAccessLog>() {
                        Some(l) => l.0.clone(),
                        None => at.logs_for(&now.parts.method).cloned(),
                    };
                    let resp = logged(&now, client, logs.as_ref(), resp, started);
                    return answered_at(resp, server, Some(at), current.as_ref(), changes);
                }
                Ran::End {
                    state: Some(mut state),
                    broken,
                } => {
                    // A `break` after a rewrite without flag stays, as
                    // one with `break` does.
                    if broken {
                        state.parts.extensions.insert(Broken);
                    }
                    state.moved |= moved;
                    (state, false)
                }
                Ran::Again(state) => (state, true),
                Ran::Stay(mut state) => {
                    state.moved = true;
                    (state, false)
                }
            };
            if !again {
                // The location answers with the request as it is now (by
                // its `if`'s handler if one held).
                let rewritten = rewritten || next.moved;
                let now = at_current(req, Some(&next), changes);
                let action = match next.parts.extensions.get::<IfHandler>() {
                    Some(handler) => &*handler.0,
                    None => reached(at.action_for(&now.parts.method), rewritten),
                };
                let answer = at_location(&now, body, at, action, client, realip, started);
                let resp = Box::pin(answer).await;
                return answered_at(resp, server, Some(at), Some(&next), changes);
            }
            changes = changes.saturating_sub(1);
            if changes == 0 {
                let line = format!(
                    "rewrite or internal redirection cycle while processing \"{}\"",
                    String::from_utf8_lossy(next.head.uri(&next.parts.uri))
                );
                now.log_line(client, Level::Error, line);
                let mut out = finalized(500);
                out.extensions_mut()
                    .insert(crate::http::error_page::OutOfRedirects);
                // (With the lines of the `if` that held, if any.)
                let logs = at.access_log_for(&next.parts);
                let resp = logged(&now, client, logs, out, started);
                return answered_at(resp, server, Some(at), None, 0);
            }
            // The new location's own settings apply.
            let mut next = next;
            new_level(&mut next.parts.extensions);
            location = find(server, &mut next);
            current = Some(next);
        }
    })
}

/// The named groups of the regex location the URI of `head` finds, as
/// variables of `parts`: an internal redirect's new location sets them,
/// over what was set before (nginx matches it after the first's lines).
pub(crate) fn set_location_groups(
    server: &crate::runtime::Server,
    head: &crate::http::head::ParsedHead,
    parts: &mut http::request::Parts,
) {
    let uri = head.uri(&parts.uri);
    if let Some((location, Some(groups))) = server.locations.find(uri) {
        set_named_groups(server, location, &groups, uri, &mut parts.extensions);
    }
}

/// The named groups of the regex location `location`, which `groups`
/// matched, as variables of the request, and those of the regex locations
/// it is nested in (outermost first: a nearer match's group of the same
/// name is set after).
fn set_named_groups(
    server: &crate::runtime::Server,
    location: &Location,
    groups: &crate::pattern::Captures<'_>,
    uri: &[u8],
    extensions: &mut http::Extensions,
) {
    if location.named.is_empty() && location.outer_named.is_empty() {
        return;
    }
    let outer = server.locations.outer_groups(location, uri);
    let vars = extensions.get_or_insert_default::<UserVars>();
    for (caps, named) in outer.iter().rev() {
        vars.set_groups(named, caps);
    }
    vars.set_groups(&location.named, groups);
}

/// The location for `c`'s URI; a regex location's groups become `c`'s
/// `$1`..`$9`.
fn find<'s>(server: &'s crate::runtime::Server, c: &mut Current) -> Option<&'s Location> {
    let uri = c.head.uri(&c.parts.uri);
    let (location, groups) = server.locations.find(uri)?;
    if let Some(groups) = groups {
        // Its named groups are variables from now on.
        set_named_groups(server, location, &groups, uri, &mut c.parts.extensions);
        let captured = Captured::new(uri, &groups);
        c.parts.extensions.insert(captured);
    }
    Some(location)
}

/// Sets `body`'s limits to `limits`; whether its announced length is
/// past them.
fn too_large(body: &mut ClientBody, limits: &crate::conf::model::ClientLimits) -> bool {
    body.set_limits(limits.max_body, limits.body_timeout);
    limits.max_body != 0
        && http_body::Body::size_hint(body)
            .exact()
            .is_some_and(|n| n > limits.max_body)
}

/// `req` as the rewrites left it (`current`), the client's request kept
/// as the original once it changed; the pre-access phase still to come
/// unless it ran before the rewrites.
fn at_current<'r>(req: &'r Req<'r>, current: Option<&'r Current>, changes: u8) -> Req<'r> {
    match current {
        Some(c) => Req {
            pre_access: req.pre_access,
            ..state_req(req, c, changes)
        },
        None => Req {
            original: req.original,
            pre_access: req.pre_access,
            ..req.redirected(req.parts, req.head, req.captures, req.err_status, changes)
        },
    }
}

/// `req` as `c` left it: once a rewrite-phase regex ran, its groups
/// (in `c`) are `$1`..`$9`, not the location's.
fn state_req<'r>(req: &'r Req<'r>, c: &'r Current, changes: u8) -> Req<'r> {
    let next = req.redirected(&c.parts, &c.head, None, req.err_status, changes);
    match c.parts.extensions.get::<Captured>() {
        Some(_) => Req {
            captures: None,
            ..next
        },
        None => next,
    }
}

/// A location's action for a request that reached it: a rewritten one
/// may be served by an `internal` location.
fn reached(action: &Action, rewritten: bool) -> &Action {
    match action {
        Action::Internal(inner) if rewritten => inner,
        action => action,
    }
}

/// `resp` with the location that answered it, for its header filters and
/// `error_page`s, unless a later redirect said another.
fn answered_at(
    mut resp: Response<RespBody>,
    server: &crate::runtime::Server,
    at: Option<&Location>,
    state: Option<&Current>,
    changes: u8,
) -> Response<RespBody> {
    if resp.extensions().get::<AnsweredAt>().is_none() {
        let index = at.and_then(|at| {
            server
                .locations
                .list
                .iter()
                .position(|l| std::ptr::eq(l, at))
        });
        let state = state.map(|c| {
            std::sync::Arc::new(Final {
                parts: c.parts.clone(),
                head: c.head.clone(),
            })
        });
        resp.extensions_mut()
            .insert(AnsweredAt(index, state, changes));
    }
    resp
}

/// `resp`, an answer the rewrite phase made, with its access log record
/// (of `logs`, the level's).
fn logged(
    req: &Req<'_>,
    client: SocketAddr,
    logs: Option<&std::sync::Arc<crate::http::access::AccessLogs>>,
    mut resp: Response<RespBody>,
    started: Option<std::time::Instant>,
) -> Response<RespBody> {
    if let Some(logs) = logs {
        let status = resp.status().as_u16();
        let started = started.unwrap_or_else(crate::clock::now);
        let mut record = logs.start(
            &req.vars(client, status, &crate::vars::ProxyName::NONE),
            started,
        );
        record.status = status;
        resp.body_mut().set_record(Some(record));
    }
    resp
}
