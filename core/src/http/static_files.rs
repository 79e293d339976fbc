//! nginx's static, index and try_files modules: what a location (or a
//! server, for requests no location takes) without another content
//! handler answers. The URI maps to a path under `root` (or `alias`);
//! a file is sent with its length, Last-Modified and ETag, a directory
//! without its `/` is redirected to it, and a URI ending in `/` is served
//! by its `index` file through an internal redirect. `try_files` checks
//! files first and falls back to a URI, a named location or a code.
//! Conditional requests (nginx's not_modified filter) and byte ranges
//! (its range filter) are answered here too.
//!
//! File system calls run on tokio's blocking pool, never on a worker.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    LOCATION, RANGE,
};
use http::{Method, Response, StatusCode};
use tokio::task::JoinHandle;

use crate::conf::model::{
    AutoindexConf, ContentTypes, IfModifiedSince, RedirectStyle, StaticConf, ALIAS_WHOLE,
};
use crate::conf::ConfError;
use crate::http::body::RespBody;
use crate::http::h1::body::BodyError;
use crate::http::h1::ClientBody;
use crate::http::head::ParsedHead;
use crate::http::proxy::strerror;
use crate::http::response::{absolute_url, error_page, finalized, ReplyTypes};
use crate::http::server::Req;
use crate::http::symlinks::{Check, Failed, Symlinks};
use crate::log::Level;
use crate::map::MapNames;
use crate::vars::{Template, VarCtx};

/// Files up to this size are read whole with their opening; larger ones
/// (and their ranges) are read piece by piece as they are sent.
const READ_WHOLE: u64 = 64 * 1024;

/// A piece read from a large file at a time.
const PIECE: u64 = 64 * 1024;

/// A location's (or server's) static settings, compiled.
pub struct Static {
    root: Text,
    /// Where a relative root made of variables starts.
    prefix: PathBuf,
    alias: Option<usize>,
    /// The location's name, for the alert of an alias after a rewrite.
    location: Box<str>,
    index: Box<[Text]>,
    try_files: Option<TryFiles>,
    log_not_found: bool,
    etag: bool,
    pub(crate) if_modified_since: IfModifiedSince,
    pub(crate) max_ranges: u32,
    autoindex: Option<AutoindexConf>,
    /// `random_index on`.
    random_index: bool,
    /// `disable_symlinks`, where it is not off.
    symlinks: Option<Symlinks>,
    /// `valid_referers` (`$invalid_referer`).
    referers: Option<crate::http::referer::Referers>,
    /// `$secure_link`'s settings.
    secure_link: Option<crate::http::secure_link::SecureLink>,
    /// `gzip_static on|always` (`true`: always).
    gzip_static: Option<(bool, crate::http::gzip::Gzip)>,
    /// The types `sub_filter` changes here (`None` inside: any).
    sub_types: Option<Option<Box<[String]>>>,
    types: Arc<ReplyTypes>,
    style: RedirectStyle,
    /// `$fastcgi_script_name`'s and `$fastcgi_path_info`'s settings.
    fastcgi: Option<Box<crate::http::fastcgi::Names>>,
}

/// `try_files`: the paths to check (a trailing `/` checks a directory),
/// then the fallback.
struct TryFiles {
    tries: Box<[(Text, bool)]>,
    last: Last,
}

enum Last {
    /// `=CODE`
    Code(u16),
    /// A URI (with arguments after `?`), or `@name`.
    Uri(Text),
}

/// A value that may have variables.
enum Text {
    Fixed(Box<[u8]>),
    Template(Template),
}

impl Text {
    fn compile(text: &str, maps: &MapNames) -> Result<Text, ConfError> {
        let template = Template::compile_with(text, &|n| maps.var(n))
            .map_err(|e| ConfError::bare(e.to_string()))?;
        Ok(match template.as_literal() {
            Some(fixed) => Text::Fixed(fixed.as_bytes().into()),
            None => Text::Template(template),
        })
    }

    fn eval(&self, vars: &VarCtx<'_>) -> Cow<'_, [u8]> {
        match self {
            Text::Fixed(b) => Cow::Borrowed(b),
            Text::Template(t) => Cow::Owned(t.eval(vars)),
        }
    }
}

/// The `types` tables made for a configuration's levels, by the table
/// they are made of: every location keeps its static settings, and most
/// share one (`include mime.types` at `http`).
#[derive(Default)]
pub struct TypesCache(std::collections::HashMap<(usize, String), Arc<ReplyTypes>>);

impl TypesCache {
    pub fn get(&mut self, types: &ContentTypes) -> Arc<ReplyTypes> {
        let key = (Arc::as_ptr(&types.by_ext) as usize, types.default.clone());
        Arc::clone(
            self.0
                .entry(key)
                .or_insert_with(|| Arc::new(ReplyTypes::new(types))),
        )
    }
}

/// The location whose handlers made an answer, when an internal redirect
/// (`index`, `try_files`) took the request elsewhere: its header filters
/// and `error_page`s apply. An index in the server's locations; `None`:
/// the server level.
#[derive(Clone, Debug)]
pub(crate) struct AnsweredAt(
    pub(crate) Option<usize>,
    pub(crate) Option<Arc<Final>>,
    /// Internal redirects left (nginx's `uri_changes`), for `error_page`.
    pub(crate) u8,
);

/// The request as an internal redirect or the rewrite lines left it, when
/// it changed: the final level's header filters read its variables.
#[derive(Debug)]
pub(crate) struct Final {
    pub(crate) parts: http::request::Parts,
    pub(crate) head: ParsedHead,
}

impl Static {
    /// How `path` is opened here (`disable_symlinks`).
    fn check(&self, path: &[u8], vars: &VarCtx<'_>) -> Option<Check> {
        self.symlinks.as_ref()?.check(path, vars)
    }

    /// `try_files` is set here (it runs before `mirror`).
    pub(crate) fn has_try_files(&self) -> bool {
        self.try_files.is_some()
    }

    /// `types` are the level's, made once for the levels that share them
    /// ([`TypesCache`]).
    pub fn new(
        conf: &StaticConf,
        types: Arc<ReplyTypes>,
        style: RedirectStyle,
        maps: &MapNames,
    ) -> Result<Static, ConfError> {
        let try_files = match &conf.try_files {
            None => None,
            Some(args) => {
                let (last, tries) = args
                    .split_last()
                    .ok_or_else(|| ConfError::bare("try_files without arguments".to_owned()))?;
                let tries = tries
                    .iter()
                    .map(|t| {
                        let (t, dir) = match t.strip_suffix('/') {
                            Some(t) => (t, true),
                            None => (t.as_str(), false),
                        };
                        Ok((Text::compile(t, maps)?, dir))
                    })
                    .collect::<Result<Vec<_>, ConfError>>()?;
                let last = match last.strip_prefix('=') {
                    // Checked at load: at most 999.
                    Some(code) => Last::Code(code.parse().unwrap_or(404)),
                    None => Last::Uri(Text::compile(last, maps)?),
                };
                Some(TryFiles {
                    tries: tries.into(),
                    last,
                })
            }
        };
        Ok(Static {
            root: Text::compile(&conf.root, maps)?,
            prefix: conf.prefix.clone(),
            alias: conf.alias,
            location: conf.location.as_str().into(),
            index: conf
                .index
                .iter()
                .map(|i| Text::compile(i, maps))
                .collect::<Result<Vec<_>, _>>()?
                .into(),
            try_files,
            log_not_found: conf.log_not_found,
            etag: conf.etag,
            if_modified_since: conf.if_modified_since,
            max_ranges: conf.max_ranges,
            autoindex: conf.autoindex,
            random_index: conf.random_index,
            symlinks: conf
                .disable_symlinks
                .as_ref()
                .map(|c| Symlinks::new(c, maps))
                .transpose()?,
            referers: conf
                .referers
                .as_ref()
                .map(|(words, names)| {
                    let r = crate::http::referer::Referers::new(words, names)?;
                    if r.lacks_names() {
                        return Err("the \"none\" or \"blocked\" referers are specified in the \"valid_referers\" directive without any valid referer".to_owned());
                    }
                    Ok(r)
                })
                .transpose()
                .map_err(ConfError::bare)?,
            secure_link: match &conf.secure_link {
                None => None,
                Some(crate::conf::model::SecureLinkConf::Secret(s)) => Some(
                    crate::http::secure_link::SecureLink::Secret(s.as_bytes().into()),
                ),
                Some(crate::conf::model::SecureLinkConf::Md5 { link, md5 }) => {
                    let compile = |t: &Option<String>| {
                        t.as_deref()
                            .map(|t| {
                                Template::compile_with(t, &|n| maps.var(n))
                                    .map_err(|e| ConfError::bare(e.to_string()))
                            })
                            .transpose()
                    };
                    Some(crate::http::secure_link::SecureLink::Md5 {
                        link: compile(link)?,
                        md5: compile(md5)?,
                    })
                }
            },
            gzip_static: conf
                .gzip_static
                .as_ref()
                .map(|(always, gzip)| Ok::<_, ConfError>((*always, crate::http::gzip::Gzip::build(gzip)?)))
                .transpose()?,
            sub_types: conf.sub_filter_types.as_ref().map(|types| {
                (!types.iter().any(|t| t == "*")).then(|| types.clone().into())
            }),
            types,
            style,
            fastcgi: conf
                .fastcgi_names
                .as_ref()
                .map(|(split, index)| {
                    let split = split
                        .as_deref()
                        .map(|re| crate::pattern::Regex::new(re, false).map_err(ConfError::bare))
                        .transpose()?;
                    Ok::<_, ConfError>(Box::new(crate::http::fastcgi::Names {
                        split,
                        index: index.as_str().into(),
                    }))
                })
                .transpose()?,
        })
    }

    /// The level's `fastcgi_split_path_info` and `fastcgi_index`, if it
    /// has either.
    pub fn fastcgi(&self) -> Option<&crate::http::fastcgi::Names> {
        self.fastcgi.as_deref()
    }

    /// Whether `sub_filter` changes a file of `content_type` here.
    fn substituted(&self, content_type: &HeaderValue) -> bool {
        match &self.sub_types {
            None => false,
            Some(None) => true,
            Some(Some(types)) => {
                let mime = crate::http::body::type_of(content_type.as_bytes())
                    .0
                    .to_ascii_lowercase();
                types.iter().any(|t| t.as_bytes() == mime)
            }
        }
    }

    /// The level's secure_link settings, if it has any.
    pub fn secure_link(&self) -> Option<&crate::http::secure_link::SecureLink> {
        self.secure_link.as_ref()
    }

    /// The level's `valid_referers`, if it has any.
    pub fn referers(&self) -> Option<&crate::http::referer::Referers> {
        self.referers.as_ref()
    }

    /// The path `uri` maps to and the length of its root part
    /// (`$request_filename`, `$document_root`); `None` where nginx maps
    /// none (an alias after `rewrite ... break`).
    pub fn path(&self, uri: &[u8], vars: &VarCtx<'_>) -> Option<(Vec<u8>, usize)> {
        (!self.alias_broken(vars.req)).then(|| self.map(uri, vars, false))
    }

    /// Whether this is an alias and `req`'s URI a `rewrite ... break` made.
    fn alias_broken(&self, req: &http::request::Parts) -> bool {
        self.alias.is_some()
            && req
                .extensions
                .get::<crate::http::rewrite::Broken>()
                .is_some()
    }

    /// nginx's `ngx_http_map_uri_to_path`: the root (or alias) and the
    /// URI (an alias's location name taken off it), and the root's length.
    fn map(&self, uri: &[u8], vars: &VarCtx<'_>, add_uri: bool) -> (Vec<u8>, usize) {
        let root = self.root.eval(vars);
        let mut path = Vec::with_capacity(root.len() + uri.len() + 16);
        // A root made of variables is made absolute as it is used.
        if matches!(self.root, Text::Template(_)) && root.first() != Some(&b'/') {
            path.extend_from_slice(self.prefix.as_os_str().as_bytes());
            if path.last() != Some(&b'/') {
                path.push(b'/');
            }
        }
        path.extend_from_slice(&root);
        let root_len = path.len();
        match self.alias {
            None => path.extend_from_slice(uri),
            Some(ALIAS_WHOLE) if !add_uri => {}
            Some(ALIAS_WHOLE) => path.extend_from_slice(uri),
            Some(n) => path.extend_from_slice(uri.get(n..).unwrap_or_default()),
        }
        (path, root_len)
    }
}

/// What a request gets from the static handlers of `st` (the level
/// `location` is, `None` for the server's).
pub(crate) fn serve<'a>(
    req: &'a Req<'a>,
    body: ClientBody,
    st: &'a Static,
    client: SocketAddr,
    started: Option<std::time::Instant>,
) -> Pin<Box<dyn Future<Output = Response<RespBody>> + Send + 'a>> {
    Box::pin(async move {
        // nginx's `ngx_http_map_uri_to_path`: an alias does not map a URI
        // a `rewrite ... break` made.
        if st.alias_broken(req.parts) {
            let line = format!(
                "\"alias\" cannot be used in location \"{}\" where URI was rewritten",
                st.location
            );
            req.log_line(client, Level::Alert, line);
            return finalized(500);
        }
        let vars = req.vars(client, 0, &crate::vars::ProxyName::NONE);
        let mut uri: Cow<'_, [u8]> = Cow::Borrowed(req.head.uri(&req.parts.uri));
        let mut add_uri = false;
        let in_if = req
            .parts
            .extensions
            .get::<crate::http::rewrite::InIf>()
            .is_some();
        let mut body = body;
        let mut mirrored = None;
        if let Some(tf) = st.try_files.as_ref().filter(|_| !in_if) {
            match try_files(req, st, tf, &vars, client, &uri).await {
                Tried::Found(found, add) => {
                    uri = Cow::Owned(found);
                    add_uri = add;
                }
                Tried::Answer(resp) => return *resp,
                Tried::Redirect(target) => {
                    return redirect(req, body, target, client, started).await;
                }
            }
        }
        // nginx's pre-content phase: the mirrors, once `try_files` let the
        // request stay here.
        if let Some(m) = req.mirror_after_try {
            match crate::http::mirror::start(req, m, &mut body, client).await {
                Ok(m) => mirrored = m,
                Err(()) => return error_page(400),
            }
        }
        let tried = matches!(uri, Cow::Owned(_));
        let resp = found(req, body, st, &vars, client, started, &uri, tried, add_uri).await;
        crate::http::mirror::attach(resp, mirrored)
    })
}

/// The static handlers once `try_files` is done: `uri` the path it found
/// (with whether an alias adds the URI to it).
#[allow(clippy::too_many_arguments)]
async fn found(
    req: &Req<'_>,
    body: ClientBody,
    st: &Static,
    vars: &VarCtx<'_>,
    client: SocketAddr,
    started: Option<std::time::Instant>,
    uri: &[u8],
    tried: bool,
    add_uri: bool,
) -> Response<RespBody> {
    let method = &req.parts.method;
    let readable = *method == Method::GET || *method == Method::HEAD || *method == Method::POST;
    if uri.last() == Some(&b'/') {
        if readable && st.random_index {
            match random_index(req, st, vars, client, uri).await {
                Indexed::Declined => {}
                Indexed::Answer(resp) => return *resp,
                Indexed::Redirect(target) => {
                    return redirect(req, body, target, client, started).await;
                }
            }
        }
        if readable {
            match index(req, st, vars, client, uri).await {
                Indexed::Declined => {}
                Indexed::Answer(resp) => return *resp,
                Indexed::Redirect(target) => {
                    return redirect(req, body, target, client, started).await;
                }
            }
        } else {
            return error_page(405);
        }
        let (path, _) = st.map(uri, vars, add_uri);
        // nginx's autoindex handler (GET and HEAD).
        if let (Some(conf), true) = (st.autoindex, *method != Method::POST) {
            return listing(req, client, conf, &path, uri).await;
        }
        // nginx's content phase with no handler for a directory.
        let line = format!(
            "directory index of \"{}\" is forbidden",
            String::from_utf8_lossy(&path)
        );
        req.log_line(client, Level::Error, line);
        return finalized(403);
    }
    if !readable {
        return error_page(405);
    }
    let mut resp = file(req, st, vars, client, uri, add_uri).await;
    // `try_files` found another path: nginx's `$uri` is it from now
    // on (the access log shows it).
    if tried && st.alias.is_none() {
        resp.extensions_mut()
            .insert(TriedUri(Bytes::copy_from_slice(uri)));
    }
    resp
}

/// `autoindex on`: the listing of the directory at `path` (its URI
/// `uri`), read on the blocking pool; nginx's lines for what it cannot
/// read.
async fn listing(
    req: &Req<'_>,
    client: SocketAddr,
    conf: AutoindexConf,
    path: &[u8],
    uri: &[u8],
) -> Response<RespBody> {
    let dir = match path.strip_suffix(b"/") {
        Some(dir) if !dir.is_empty() => dir.to_vec(),
        _ => path.to_vec(),
    };
    let owned = dir.clone();
    match blocking(move || crate::http::autoindex::list(&owned)).await {
        Ok(listed) => {
            for (entry, e) in &listed.unreadable {
                failed(req, client, Level::Crit, "stat()", entry, e);
            }
            let query = req.parts.uri.query().unwrap_or("");
            let (page, content_type) =
                match crate::http::autoindex::render(uri, &listed.entries, conf, query) {
                    Ok(rendered) => rendered,
                    Err(callback) => {
                        let line = format!("client sent invalid callback \"{callback}\"");
                        req.log_line(client, Level::Info, line);
                        return finalized(400);
                    }
                };
            // nginx sets no length on the listing it writes as it goes.
            let mut resp = Response::new(RespBody::without_length(page));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        Err(e) => {
            let (level, status) = match errno(&e) {
                libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG => (Level::Error, 404),
                libc::EACCES => (Level::Error, 403),
                _ => (Level::Crit, 500),
            };
            failed(req, client, level, "opendir()", &dir, &e);
            finalized(status)
        }
    }
}

/// The URI `try_files` found a file at, on the answer it made: `$uri`
/// in the access log line.
#[derive(Clone)]
pub(crate) struct TriedUri(pub(crate) Bytes);

/// Where an internal redirect goes: a URI and its arguments, or a named
/// location.
pub(crate) enum Target {
    Uri(Vec<u8>, Option<Vec<u8>>),
    Named(String),
}

enum Tried {
    /// A file (or directory) was there: the URI becomes this one.
    Found(Vec<u8>, bool),
    Answer(Box<Response<RespBody>>),
    Redirect(Target),
}

/// What `try_files` does where a proxy (`proxy_pass`, `fastcgi_pass`) is
/// the content handler: nginx's pre-content phase runs it all the same.
pub(crate) enum BeforeProxy {
    /// The request stays: the path found, the new `$uri` (`None`: no
    /// `try_files` here).
    Stay(Option<Vec<u8>>),
    Answer(Box<Response<RespBody>>),
    /// An internal redirect, to be made with the body.
    Redirect(Target),
}

/// [`BeforeProxy`] for the request at level `st`.
pub(crate) async fn try_before_proxy(
    req: &Req<'_>,
    st: &Static,
    client: SocketAddr,
) -> BeforeProxy {
    let Some(tf) = st.try_files.as_ref() else {
        return BeforeProxy::Stay(None);
    };
    if req
        .parts
        .extensions
        .get::<crate::http::rewrite::InIf>()
        .is_some()
    {
        return BeforeProxy::Stay(None);
    }
    let vars = req.vars(client, 0, &crate::vars::ProxyName::NONE);
    let uri = req.head.uri(&req.parts.uri);
    match try_files(req, st, tf, &vars, client, uri).await {
        Tried::Found(found, _) => BeforeProxy::Stay(Some(found)),
        Tried::Answer(resp) => BeforeProxy::Answer(resp),
        Tried::Redirect(target) => BeforeProxy::Redirect(target),
    }
}

/// nginx's `ngx_http_core_try_files_phase`.
async fn try_files(
    req: &Req<'_>,
    st: &Static,
    tf: &TryFiles,
    vars: &VarCtx<'_>,
    client: SocketAddr,
    uri: &[u8],
) -> Tried {
    for (text, dir) in tf.tries.iter() {
        let value = text.eval(vars);
        let (mut path, root_len) = st.map(b"", vars, false);
        // The location's name at the start of an alias's value is what
        // the alias replaces.
        let mut value: &[u8] = &value;
        if let Some(n) = st.alias.filter(|&n| n != ALIAS_WHOLE) {
            if value.len() >= n && uri.len() >= n && value[..n] == uri[..n] {
                value = &value[n..];
            }
        }
        path.truncate(root_len);
        path.extend_from_slice(value);
        let tested = stat(path.clone(), st.check(&path, vars)).await;
        let meta = match tested {
            Ok(meta) => meta,
            Err(f) => {
                if !matches!(
                    errno(&f.err),
                    libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG
                ) {
                    failed(req, client, Level::Crit, f.call, &path, &f.err);
                }
                continue;
            }
        };
        if meta.is_dir() != *dir {
            continue;
        }
        let found = match st.alias {
            None => value.to_vec(),
            Some(ALIAS_WHOLE) if *dir => uri.to_vec(),
            Some(ALIAS_WHOLE) => return Tried::Found(value.to_vec(), true),
            Some(n) => [uri.get(..n).unwrap_or(uri), value].concat(),
        };
        return Tried::Found(found, false);
    }
    match &tf.last {
        Last::Code(code) => Tried::Answer(Box::new(finalized(*code))),
        Last::Uri(text) => {
            let value = text.eval(vars);
            if let Some(name) = value.strip_prefix(b"@") {
                let _ = name;
                return Tried::Redirect(Target::Named(String::from_utf8_lossy(&value).into()));
            }
            // nginx's `ngx_http_split_args`: the arguments are the ones
            // after `?`, none without.
            let (path, args) = match value.iter().position(|&c| c == b'?') {
                Some(q) => (value[..q].to_vec(), Some(value[q + 1..].to_vec())),
                None => (value.to_vec(), None),
            };
            Tried::Redirect(Target::Uri(path, args))
        }
    }
}

enum Indexed {
    Declined,
    Answer(Box<Response<RespBody>>),
    Redirect(Target),
}

/// nginx's `ngx_http_random_index_handler`: a file of the directory, at
/// random (regular files whose names do not start with `.`), served
/// through an internal redirect with the request's arguments; declined
/// for a directory without any.
async fn random_index(
    req: &Req<'_>,
    st: &Static,
    vars: &VarCtx<'_>,
    client: SocketAddr,
    uri: &[u8],
) -> Indexed {
    let (mut path, _) = st.map(uri, vars, false);
    if path.last() == Some(&b'/') {
        path.pop();
    }
    let owned = path.clone();
    let listed = blocking(move || -> std::io::Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(OsStr::from_bytes(&owned))? {
            let entry = entry?;
            let name = std::os::unix::ffi::OsStringExt::into_vec(entry.file_name());
            // The entry's own type, as nginx's `ngx_de_is_file` reads it
            // (`d_type`: a link is not a file).
            if name.first() != Some(&b'.') && entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(name);
            }
        }
        Ok(names)
    })
    .await;
    let names = match listed {
        Ok(names) => names,
        Err(e) => {
            let code = errno(&e);
            let (level, status) = match code {
                libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG => (Level::Error, 404),
                libc::EACCES => (Level::Error, 403),
                _ => (Level::Crit, 500),
            };
            failed(req, client, level, "opendir()", &path, &e);
            return Indexed::Answer(Box::new(finalized(status)));
        }
    };
    if names.is_empty() {
        return Indexed::Declined;
    }
    let pick = (crate::modules::host::random_u64() % names.len() as u64) as usize;
    let args = req.parts.uri.query().map(|q| q.as_bytes().to_vec());
    Indexed::Redirect(Target::Uri([uri, &names[pick][..]].concat(), args))
}

/// nginx's `ngx_http_index_handler`: the first `index` file that opens
/// is served through an internal redirect.
async fn index(
    req: &Req<'_>,
    st: &Static,
    vars: &VarCtx<'_>,
    client: SocketAddr,
    uri: &[u8],
) -> Indexed {
    let args = req.parts.uri.query().map(|q| q.as_bytes().to_vec());
    let mut dir_tested = false;
    for text in st.index.iter() {
        let name = text.eval(vars);
        if name.first() == Some(&b'/') {
            return Indexed::Redirect(Target::Uri(name.to_vec(), args));
        }
        let (mut path, root_len) = st.map(uri, vars, false);
        let dir_end = path.len();
        path.extend_from_slice(&name);
        // Tested as nginx's index module does (a `stat()`, not an open).
        let check = st.check(&path, vars);
        let Err(Failed { call, err: e }) = stat(path.clone(), check).await else {
            return Indexed::Redirect(Target::Uri([uri, &name[..]].concat(), args));
        };
        let code = errno(&e);
        if matches!(code, libc::ELOOP | libc::EMLINK) {
            return Indexed::Answer(Box::new(finalized(403)));
        }
        if matches!(code, libc::ENOTDIR | libc::ENAMETOOLONG | libc::EACCES) {
            return Indexed::Answer(Box::new(index_error(req, st, client, &path, &e)));
        }
        if !dir_tested {
            // The directory itself, without its last `/` (an alias
            // without one keeps its last byte).
            let mut dir = path[..dir_end].to_vec();
            if dir.len() > root_len.max(1) && dir.last() == Some(&b'/') {
                dir.pop();
            }
            match stat(dir.clone(), st.check(&dir, vars)).await {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    let line = format!("\"{}\" is not a directory", String::from_utf8_lossy(&dir));
                    req.log_line(client, Level::Alert, line);
                    return Indexed::Answer(Box::new(finalized(500)));
                }
                Err(f) if errno(&f.err) == libc::ENOENT => {
                    return Indexed::Answer(Box::new(index_error(req, st, client, &path, &f.err)));
                }
                Err(f) if errno(&f.err) == libc::EACCES => {}
                Err(f) => {
                    failed(req, client, Level::Crit, f.call, &dir, &f.err);
                    return Indexed::Answer(Box::new(finalized(500)));
                }
            }
            dir_tested = true;
        }
        if code == libc::ENOENT {
            continue;
        }
        let call = if check.is_some() { call } else { "open()" };
        failed(req, client, Level::Crit, call, &path, &e);
        return Indexed::Answer(Box::new(finalized(500)));
    }
    Indexed::Declined
}

/// nginx's `ngx_http_index_error`.
fn index_error(
    req: &Req<'_>,
    st: &Static,
    client: SocketAddr,
    path: &[u8],
    e: &io::Error,
) -> Response<RespBody> {
    let path = String::from_utf8_lossy(path);
    if errno(e) == libc::EACCES {
        let line = format!("\"{path}\" is forbidden ({}: {})", errno(e), strerror(e));
        req.log_line(client, Level::Error, line);
        return finalized(403);
    }
    if st.log_not_found {
        let line = format!("\"{path}\" is not found ({}: {})", errno(e), strerror(e));
        req.log_line(client, Level::Error, line);
    }
    finalized(404)
}

/// What opening a path gave.
struct Opened {
    file: std::fs::File,
    size: u64,
    mtime: i64,
    dir: bool,
    regular: bool,
    /// The whole file, when it was small enough and wanted.
    bytes: Option<Bytes>,
}

/// `open()` as nginx's static module: read only, non-blocking (a FIFO
/// does not hang the open), then `fstat()`; under `disable_symlinks`
/// component by component.
fn open(path: &[u8], check: Option<Check>) -> Result<Opened, Failed> {
    let file = crate::http::symlinks::open(path, check)?;
    let meta = file.metadata().map_err(|err| Failed {
        call: "fstat()",
        err,
    })?;
    Ok(Opened {
        size: meta.len(),
        mtime: meta.mtime(),
        dir: meta.is_dir(),
        regular: meta.is_file(),
        file,
        bytes: None,
    })
}

/// nginx's `ngx_http_static_handler` for a URI not ending in `/`.
async fn file(
    req: &Req<'_>,
    st: &Static,
    vars: &VarCtx<'_>,
    client: SocketAddr,
    uri: &[u8],
    add_uri: bool,
) -> Response<RespBody> {
    let (path, _) = st.map(uri, vars, add_uri);
    let head = req.parts.method == Method::HEAD;
    // nginx's gzip_static handler comes first in the content phase.
    let mut vary = (false, None);
    if let (Some((always, gzip)), true) = (&st.gzip_static, head || req.parts.method == Method::GET)
    {
        match gzip_static(req, st, vars, (*always, gzip), &path, uri, client).await {
            GzipStatic::Served(resp) => return *resp,
            GzipStatic::Declined(marks) => vary = marks,
        }
    }
    let check = st.check(&path, vars);
    let mut resp = plain_file(req, st, client, uri, (path, check), head).await;
    mark(&mut resp, vary);
    resp
}

/// What gzip_static decided, for the gzip filter: whether the request
/// takes gzip (nginx keeps `ngx_http_gzip_ok`'s first answer), and
/// whether the answer says it could have been another (`r->gzip_vary`:
/// one `Vary` line, whoever asks for it).
fn mark(resp: &mut Response<RespBody>, (vary, tested): (bool, Option<bool>)) {
    if vary {
        resp.extensions_mut().insert(crate::http::gzip::GzipVary);
    }
    if let Some(ok) = tested {
        resp.extensions_mut()
            .insert(crate::http::gzip::GzipTested(ok));
    }
}

/// What nginx's gzip_static handler did.
enum GzipStatic {
    Served(Box<Response<RespBody>>),
    /// Declined: the static handler answers, marked (see [`mark`]): with
    /// `Vary` when a `.gz` was there for a client that did not take it
    /// (`gzip_vary on`).
    Declined((bool, Option<bool>)),
}

/// nginx's `ngx_http_gzip_static_handler`: `PATH.gz`, as it is, with
/// `Content-Encoding: gzip`, to a request that takes gzip (`on`) or to
/// any (`always`); the type is the URI's, the length, time and ETag the
/// `.gz` file's.
async fn gzip_static(
    req: &Req<'_>,
    st: &Static,
    vars: &VarCtx<'_>,
    (always, gzip): (bool, &crate::http::gzip::Gzip),
    path: &[u8],
    uri: &[u8],
    client: SocketAddr,
) -> GzipStatic {
    let tested = (!always).then(|| gzip.takes_gzip(req.parts));
    let ok = always || tested == Some(true);
    if !ok && !gzip.vary() {
        return GzipStatic::Declined((false, tested));
    }
    let mut gz = Vec::with_capacity(path.len() + 3);
    gz.extend_from_slice(path);
    gz.extend_from_slice(b".gz");
    let check = st.check(&gz, vars);
    let opened = match read_file(gz.clone(), check, req.parts.method == Method::HEAD || !ok).await {
        Ok(opened) => opened,
        Err(Failed { call, err: e }) => {
            match errno(&e) {
                libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG => {}
                libc::EACCES | libc::ELOOP | libc::EMLINK => {
                    failed(req, client, Level::Error, call, &gz, &e);
                }
                _ => failed(req, client, Level::Crit, call, &gz, &e),
            }
            return GzipStatic::Declined((false, tested));
        }
    };
    let vary = !always && gzip.vary();
    if !ok || opened.dir {
        return GzipStatic::Declined((vary, tested));
    }
    if !opened.regular {
        let line = format!("\"{}\" is not a regular file", String::from_utf8_lossy(&gz));
        req.log_line(client, Level::Crit, line);
        return GzipStatic::Served(Box::new(finalized(404)));
    }
    // (nginx's gzip_static leaves ranges off.)
    let mut resp = respond(req, st, uri, opened, false);
    // (nginx's not_modified filter takes it off a 304; a 412 is a page.)
    if !matches!(resp.status().as_u16(), 304 | 412) {
        resp.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    mark(&mut resp, (vary, tested));
    GzipStatic::Served(Box::new(resp))
}

/// Opens `path` on the blocking pool, reading a small regular file whole
/// unless `head`.
async fn read_file(path: Vec<u8>, check: Option<Check>, head: bool) -> Result<Opened, Failed> {
    let read = blocking(move || {
        let mut opened = match open(&path, check) {
            Ok(opened) => opened,
            Err(failed) => return Ok(Err(failed)),
        };
        if opened.regular && !head && opened.size <= READ_WHOLE {
            let mut buf = vec![0; opened.size as usize];
            let mut at = 0;
            while at < buf.len() {
                match opened.file.read_at(&mut buf[at..], at as u64)? {
                    0 => break,
                    n => at += n,
                }
            }
            // A file shorter than it said (rewritten meanwhile, or of
            // /sys) is read piece by piece, and its body ends early.
            if at == buf.len() {
                opened.bytes = Some(Bytes::from(buf));
            }
        }
        Ok(Ok(opened))
    })
    .await;
    read.unwrap_or_else(|err| {
        Err(Failed {
            call: "open()",
            err,
        })
    })
}

/// `stat()` of `path`, as the index and try_files tests are made; under
/// `disable_symlinks` its open and `fstat()`, as nginx's
/// `ngx_file_info_wrapper` then.
async fn stat(path: Vec<u8>, check: Option<Check>) -> Result<std::fs::Metadata, Failed> {
    let tested = blocking(move || {
        Ok(match check {
            None => std::fs::metadata(OsStr::from_bytes(&path)).map_err(|err| Failed {
                call: "stat()",
                err,
            }),
            Some(_) => crate::http::symlinks::open(&path, check).and_then(|file| {
                file.metadata().map_err(|err| Failed {
                    call: "fstat()",
                    err,
                })
            }),
        })
    })
    .await;
    tested.unwrap_or_else(|err| {
        Err(Failed {
            call: "stat()",
            err,
        })
    })
}

/// nginx's `ngx_http_static_handler` proper, for the file at `path`.
async fn plain_file(
    req: &Req<'_>,
    st: &Static,
    client: SocketAddr,
    uri: &[u8],
    (path, check): (Vec<u8>, Option<Check>),
    head: bool,
) -> Response<RespBody> {
    let opened = read_file(path.clone(), check, head).await;
    let opened = match opened {
        Ok(opened) => opened,
        Err(Failed { call, err: e }) => {
            let (level, status) = match errno(&e) {
                libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG => (Level::Error, 404),
                libc::EACCES | libc::ELOOP | libc::EMLINK => (Level::Error, 403),
                _ => (Level::Crit, 500),
            };
            if status != 404 || st.log_not_found {
                failed(req, client, level, call, &path, &e);
            }
            return finalized(status);
        }
    };
    if opened.dir {
        return moved(req, st, uri);
    }
    if !opened.regular {
        let line = format!(
            "\"{}\" is not a regular file",
            String::from_utf8_lossy(&path)
        );
        req.log_line(client, Level::Crit, line);
        return finalized(404);
    }
    if req.parts.method == Method::POST {
        return error_page(405);
    }
    respond(req, st, uri, opened, true)
}

/// A directory asked for without its `/`: 301 to it, with the arguments.
fn moved(req: &Req<'_>, st: &Static, uri: &[u8]) -> Response<RespBody> {
    // nginx's NGX_ESCAPE_URI: controls, space, the characters of
    // `"#%<>?\^`{|}` and bytes past ASCII.
    let mut location = Vec::with_capacity(uri.len() + 2);
    for &c in uri {
        if c <= b' ' || c >= 0x7f || b"\"#%<>?\\^`{|}".contains(&c) {
            location.extend_from_slice(format!("%{c:02X}").as_bytes());
        } else {
            location.push(c);
        }
    }
    location.push(b'/');
    if let Some(args) = req.parts.uri.query().filter(|a| !a.is_empty()) {
        location.push(b'?');
        location.extend_from_slice(args.as_bytes());
    }
    let host = req.head.host(&req.parts.uri, &req.parts.headers);
    let location = absolute_url(
        &location,
        host,
        req.parts,
        req.local,
        st.style,
        &req.server.name,
    );
    let mut resp = finalized(301);
    if let Ok(v) = HeaderValue::from_bytes(&location) {
        resp.headers_mut().insert(LOCATION, v);
        resp.extensions_mut()
            .insert(crate::http::response::OwnLocation);
    }
    if st.style.absolute {
        resp.extensions_mut()
            .insert(crate::http::response::MadeAbsolute);
    }
    resp
}

/// The file's answer, through nginx's not_modified and range filters
/// (`allow_ranges`: the range filter's say).
fn respond(
    req: &Req<'_>,
    st: &Static,
    uri: &[u8],
    opened: Opened,
    allow_ranges: bool,
) -> Response<RespBody> {
    let headers = &req.parts.headers;
    let mtime = opened.mtime;
    let size = opened.size;
    let etag = st
        .etag
        .then(|| format!("\"{:x}-{:x}\"", mtime.max(0), size));
    let last_modified =
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64));
    let content_type = st.types.for_uri(uri);
    // (nginx's range filter, after the sub filter, finds no length.)
    let allow_ranges = allow_ranges && !st.substituted(&content_type);
    let mut resp = Response::new(RespBody::empty());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, content_type.clone());
    h.insert(CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        h.insert(LAST_MODIFIED, v);
    }
    if let Some(Ok(v)) = etag.as_deref().map(HeaderValue::from_str) {
        h.insert(ETAG, v);
    }

    // An `error_page` target goes out with the error's status (nginx's
    // `err_status`): no conditional or range answer then, and
    // Last-Modified only with 200, 206 and 304 (its header filter).
    match req.err_status {
        0 | 200 => {}
        status => {
            if !matches!(status, 206 | 304) {
                crate::http::response::remove_in_order(resp.headers_mut(), &LAST_MODIFIED);
            }
            if req.parts.method != Method::HEAD {
                *resp.body_mut() = match opened.bytes {
                    Some(bytes) => RespBody::full(bytes),
                    None => RespBody::file(FileBody::new(
                        Arc::new(opened.file),
                        vec![Piece::Range(0, size)],
                    )),
                };
            }
            return resp;
        }
    }

    if let Some(answer) = conditional(headers, st, mtime, etag.as_deref(), &mut resp) {
        return answer;
    }

    // nginx's range filter.
    let ranges = match headers.get(RANGE) {
        Some(range) if allow_ranges && if_range(headers.get(IF_RANGE), etag.as_deref(), mtime) => {
            parse_ranges(range.as_bytes(), size, st.max_ranges)
        }
        _ => Ranges::None,
    };
    let head = req.parts.method == Method::HEAD;
    let file = Arc::new(opened.file);
    match ranges {
        Ranges::None => {
            // (`max_ranges 0` turns ranges off, the header with them.)
            if st.max_ranges != 0 && allow_ranges {
                resp.headers_mut()
                    .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            }
            if !head {
                *resp.body_mut() = match opened.bytes {
                    Some(bytes) => RespBody::full(bytes),
                    None => RespBody::file(FileBody::new(file, vec![Piece::Range(0, size)])),
                };
            }
            resp
        }
        Ranges::Unsatisfiable => {
            let mut resp = finalized(416);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(CONTENT_RANGE, v);
            }
            resp
        }
        Ranges::Some(list) if list.len() == 1 => {
            let body = Ranged {
                bytes: opened.bytes,
                file,
                base: 0,
            };
            single_range(resp, list[0], size, body, head)
        }
        Ranges::Some(list) => {
            let body = Ranged {
                bytes: opened.bytes,
                file,
                base: 0,
            };
            multipart(resp, &content_type, &list, size, body, head)
        }
    }
}

/// nginx's `ngx_http_range_singlepart_header`: `[start, end)` of `size`
/// bytes, as a 206 with its Content-Range.
pub(crate) fn single_range(
    mut resp: Response<RespBody>,
    (start, end): (u64, u64),
    size: u64,
    body: Ranged,
    head: bool,
) -> Response<RespBody> {
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
        h.insert(CONTENT_RANGE, v);
    }
    let Ranged { bytes, file, base } = body;
    *resp.body_mut() = match bytes {
        _ if head => RespBody::empty(),
        Some(bytes) => RespBody::full(bytes.slice(start as usize..end as usize)),
        None => RespBody::file(FileBody::range(file, base + start, end - start)),
    };
    resp
}

/// Counts multipart boundaries, as nginx's `ngx_next_temp_number(0)`.
static BOUNDARY: AtomicU64 = AtomicU64::new(0);

/// What ranges are cut from: a file (its bytes when read whole), from
/// an offset in it (a cached answer's body starts after its head).
pub(crate) struct Ranged {
    pub bytes: Option<Bytes>,
    pub file: Arc<std::fs::File>,
    pub base: u64,
}

/// nginx's `ngx_http_range_multipart_header`: each range after its
/// boundary, type and Content-Range lines.
pub(crate) fn multipart(
    mut resp: Response<RespBody>,
    content_type: &HeaderValue,
    list: &[(u64, u64)],
    size: u64,
    body: Ranged,
    head: bool,
) -> Response<RespBody> {
    let Ranged { bytes, file, base } = body;
    let boundary = BOUNDARY.fetch_add(1, Ordering::Relaxed) + 1;
    let part_type = if content_type.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: {}\r\n",
            String::from_utf8_lossy(content_type.as_bytes())
        )
    };
    let mut pieces = Vec::with_capacity(list.len() * 2 + 1);
    let mut length = 0;
    for &(start, end) in list {
        let header = format!(
            "\r\n--{boundary:020}\r\n{part_type}Content-Range: bytes {start}-{}/{size}\r\n\r\n",
            end - 1
        );
        length += header.len() as u64 + (end - start);
        pieces.push(Piece::Bytes(Bytes::from(header)));
        pieces.push(match &bytes {
            Some(b) => Piece::Bytes(b.slice(start as usize..end as usize)),
            None => Piece::Range(base + start, end - start),
        });
    }
    let last = format!("\r\n--{boundary:020}--\r\n");
    length += last.len() as u64;
    pieces.push(Piece::Bytes(Bytes::from(last)));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary:020}"))
    {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if !head {
        *resp.body_mut() = RespBody::file(FileBody::new(file, pieces));
    }
    resp
}

/// What nginx's not_modified filter makes of a request's conditions.
pub(crate) enum Conditional {
    /// 412: `If-Unmodified-Since` or `If-Match` failed.
    Failed,
    /// 304.
    NotModified,
}

/// nginx's not_modified filter for an answer last modified at `mtime`
/// (with `etag`, if any); `None`: the answer goes out as it is.
fn not_modified(
    headers: &http::HeaderMap,
    mode: IfModifiedSince,
    mtime: i64,
    etag: Option<&str>,
) -> Option<Conditional> {
    answer_not_modified(headers, mode, Some(mtime), etag)
}

/// [`not_modified`] for an answer that may have no Last-Modified (an
/// upstream's, from the cache): `If-Modified-Since` then says it changed,
/// and `If-Unmodified-Since` fails, as nginx's filter has it.
pub(crate) fn answer_not_modified(
    headers: &http::HeaderMap,
    mode: IfModifiedSince,
    mtime: Option<i64>,
    etag: Option<&str>,
) -> Option<Conditional> {
    if let Some(iums) = headers.get(IF_UNMODIFIED_SINCE) {
        let unmodified = mtime.is_some_and(|m| http_time(iums.as_bytes()).is_some_and(|t| t >= m));
        if !unmodified {
            return Some(Conditional::Failed);
        }
    }
    if let Some(im) = headers.get(IF_MATCH) {
        if !matches(im.as_bytes(), etag, false) {
            return Some(Conditional::Failed);
        }
    }
    let ims = headers.get(IF_MODIFIED_SINCE);
    let inm = headers.get(IF_NONE_MATCH);
    if ims.is_some() || inm.is_some() {
        let modified = ims
            .is_some_and(|v| mtime.is_none_or(|mtime| modified_since(mode, v.as_bytes(), mtime)));
        let changed = inm.is_some_and(|v| !matches(v.as_bytes(), etag, true));
        if !modified && !changed {
            return Some(Conditional::NotModified);
        }
    }
    None
}

/// [`not_modified`]'s answer in place of `resp` (its headers kept for a
/// 304, without its type and length), if any.
fn conditional(
    headers: &http::HeaderMap,
    st: &Static,
    mtime: i64,
    etag: Option<&str>,
    resp: &mut Response<RespBody>,
) -> Option<Response<RespBody>> {
    match not_modified(headers, st.if_modified_since, mtime, etag)? {
        Conditional::Failed => Some(finalized(412)),
        Conditional::NotModified => {
            let mut answer = std::mem::replace(resp, Response::new(RespBody::empty()));
            *answer.status_mut() = StatusCode::NOT_MODIFIED;
            crate::http::response::remove_in_order(answer.headers_mut(), &CONTENT_TYPE);
            crate::http::response::remove_in_order(answer.headers_mut(), &CONTENT_LENGTH);
            Some(answer)
        }
    }
}

/// `empty_gif`: nginx's 43-byte transparent GIF, last modified in 1970,
/// for GET and HEAD (405 otherwise); its conditions as nginx's
/// not_modified filter takes them.
pub(crate) fn empty_gif(req: &Req<'_>, st: &Static) -> Response<RespBody> {
    const GIF: &[u8; 43] = b"GIF89a\x01\x00\x01\x00\x80\x01\x00\x00\x00\x00\xff\xff\xff\
        \x21\xf9\x04\x01\x00\x00\x01\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\
        \x02\x02\x4c\x01\x00\x3b";
    /// nginx's `last_modified_time` for it.
    const MTIME: i64 = 23_349_600;
    let method = &req.parts.method;
    if *method != Method::GET && *method != Method::HEAD {
        return error_page(405);
    }
    let mut resp = Response::new(RespBody::empty());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(GIF.len()));
    h.insert(
        LAST_MODIFIED,
        HeaderValue::from_static("Mon, 28 Sep 1970 06:00:00 GMT"),
    );
    // As a file answered for an `error_page`: conditions only with 200,
    // and Last-Modified only with 200, 206 and 304.
    match req.err_status {
        0 | 200 => {
            if let Some(answer) = conditional(&req.parts.headers, st, MTIME, None, &mut resp) {
                return answer;
            }
        }
        206 | 304 => {}
        _ => {
            crate::http::response::remove_in_order(resp.headers_mut(), &LAST_MODIFIED);
        }
    }
    if *method != Method::HEAD {
        *resp.body_mut() = RespBody::full(Bytes::from_static(GIF));
    }
    resp
}

/// nginx's `ngx_http_test_if_modified`: whether `If-Modified-Since`
/// says the file changed.
fn modified_since(mode: IfModifiedSince, value: &[u8], mtime: i64) -> bool {
    if mode == IfModifiedSince::Off {
        return true;
    }
    let ims = http_time(value);
    if ims == Some(mtime) {
        return false;
    }
    mode == IfModifiedSince::Exact || ims.is_none_or(|t| t < mtime)
}

/// nginx's `ngx_http_test_if_match`: whether the list of entity tags
/// `value` has `etag` (`*` matches any file; `weak`: `W/` prefixes are
/// skipped, for If-None-Match).
fn matches(value: &[u8], etag: Option<&str>, weak: bool) -> bool {
    if value == b"*" {
        return true;
    }
    let Some(etag) = etag.map(str::as_bytes) else {
        return false;
    };
    let mut rest = value;
    loop {
        while let Some((&c, tail)) = rest.split_first() {
            if c == b' ' || c == b',' {
                rest = tail;
            } else {
                break;
            }
        }
        if rest.is_empty() {
            return false;
        }
        if weak && rest.len() > 2 && rest.starts_with(b"W/") {
            rest = &rest[2..];
        }
        if etag.len() > rest.len() {
            return false;
        }
        if rest.starts_with(etag) {
            let mut after = &rest[etag.len()..];
            while let Some((&c, tail)) = after.split_first() {
                if c == b' ' || c == b'\t' {
                    after = tail;
                } else {
                    break;
                }
            }
            if after.is_empty() || after[0] == b',' {
                return true;
            }
        }
        match rest.iter().position(|&c| c == b',') {
            Some(i) => rest = &rest[i + 1..],
            None => return false,
        }
    }
}

/// nginx's If-Range check: an entity tag (ending in `"`) must be the
/// file's, a date its Last-Modified.
pub(crate) fn if_range(value: Option<&HeaderValue>, etag: Option<&str>, mtime: i64) -> bool {
    let Some(value) = value.map(HeaderValue::as_bytes) else {
        return true;
    };
    if value.len() >= 2 && value.last() == Some(&b'"') {
        return etag.is_some_and(|e| e.as_bytes() == value);
    }
    http_time(value) == Some(mtime)
}

/// An HTTP date in seconds since the epoch (nginx's `ngx_parse_http_time`
/// takes the same three formats).
pub(crate) fn http_time(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    time.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// The byte at the start of `p` (nginx's strings end in a NUL).
fn at(p: &[u8]) -> u8 {
    p.first().copied().unwrap_or(0)
}

fn skip_spaces(mut p: &[u8]) -> &[u8] {
    while at(p) == b' ' {
        p = &p[1..];
    }
    p
}

/// Digits at the start of `p`, and what follows; `None` past `off_t`.
fn number(mut p: &[u8]) -> Option<(u64, &[u8])> {
    let mut n: u64 = 0;
    while at(p).is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add(u64::from(at(p) - b'0'))?;
        if n > i64::MAX as u64 {
            return None;
        }
        p = &p[1..];
    }
    Some((n, p))
}

pub(crate) enum Ranges {
    /// No Range to honour: the whole file.
    None,
    Unsatisfiable,
    /// `[start, end)` of each.
    Some(Vec<(u64, u64)>),
}

/// nginx's `ngx_http_range_parse`, on the header `value` for a file of
/// `size` bytes: more than `max` satisfiable ranges (`max_ranges`) get
/// the whole file.
pub(crate) fn parse_ranges(value: &[u8], size: u64, max: u32) -> Ranges {
    if max == 0 {
        return Ranges::None;
    }
    let mut left = max;
    if value.len() < 7 || !value[..6].eq_ignore_ascii_case(b"bytes=") {
        return Ranges::None;
    }
    let mut p = &value[6..];
    let mut list = Vec::new();
    let mut total: u64 = 0;
    loop {
        p = skip_spaces(p);
        // `[start, end)`, an end past the file cut to it.
        let (start, end, rest) = if at(p) == b'-' {
            let Some((n, rest)) = last_number(&p[1..]) else {
                return Ranges::Unsatisfiable;
            };
            (size.saturating_sub(n), size, rest)
        } else {
            let Some((start, rest)) = at(p).is_ascii_digit().then(|| number(p)).flatten() else {
                return Ranges::Unsatisfiable;
            };
            p = skip_spaces(rest);
            if at(p) != b'-' {
                return Ranges::Unsatisfiable;
            }
            p = skip_spaces(&p[1..]);
            if at(p) == b',' || p.is_empty() {
                (start, size, p)
            } else {
                let Some((n, rest)) = last_number(p) else {
                    return Ranges::Unsatisfiable;
                };
                (start, n.saturating_add(1).min(size), rest)
            }
        };
        p = rest;
        if start < end {
            if left == 0 {
                return Ranges::None;
            }
            left -= 1;
            list.push((start, end));
            total += end - start;
        } else if start == 0 {
            return Ranges::None;
        }
        if at(p) != b',' {
            break;
        }
        p = &p[1..];
    }
    if list.is_empty() {
        return Ranges::Unsatisfiable;
    }
    if total > size {
        return Ranges::None;
    }
    Ranges::Some(list)
}

/// A range's last number: digits, spaces, then `,` or the end.
fn last_number(p: &[u8]) -> Option<(u64, &[u8])> {
    if !at(p).is_ascii_digit() {
        return None;
    }
    let (n, rest) = number(p)?;
    let rest = skip_spaces(rest);
    (at(rest) == b',' || rest.is_empty()).then_some((n, rest))
}

/// A piece of a file body: bytes made here, or `(offset, length)` of the
/// file.
pub enum Piece {
    Bytes(Bytes),
    Range(u64, u64),
}

/// A file body read as it is sent: each piece of the file with `pread()`
/// on the blocking pool.
pub struct FileBody {
    file: Arc<std::fs::File>,
    pieces: VecDeque<Piece>,
    reading: Option<JoinHandle<io::Result<Vec<u8>>>>,
    left: u64,
}

impl FileBody {
    /// `len` bytes of `file` from `offset` (a cached answer's body).
    pub(crate) fn range(file: Arc<std::fs::File>, offset: u64, len: u64) -> FileBody {
        FileBody::new(file, vec![Piece::Range(offset, len)])
    }

    fn new(file: Arc<std::fs::File>, pieces: Vec<Piece>) -> FileBody {
        let left = pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len() as u64,
                Piece::Range(_, len) => *len,
            })
            .sum();
        FileBody {
            file,
            pieces: pieces.into(),
            reading: None,
            left,
        }
    }

    /// Bytes still to send.
    pub fn left(&self) -> u64 {
        self.left
    }

    pub fn is_end(&self) -> bool {
        self.left == 0
    }

    /// The next piece; an error if the file got shorter meanwhile.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        loop {
            if let Some(reading) = &mut self.reading {
                let read = match Pin::new(reading).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r,
                };
                self.reading = None;
                let data = match read {
                    Ok(Ok(data)) if !data.is_empty() => data,
                    _ => return Poll::Ready(Some(Err(BodyError::new("file was truncated")))),
                };
                if let Some(Piece::Range(offset, len)) = self.pieces.front_mut() {
                    let n = data.len() as u64;
                    *offset += n;
                    *len = len.saturating_sub(n);
                    if *len == 0 {
                        self.pieces.pop_front();
                    }
                }
                self.left = self.left.saturating_sub(data.len() as u64);
                return Poll::Ready(Some(Ok(Bytes::from(data))));
            }
            match self.pieces.front() {
                None => return Poll::Ready(None),
                Some(Piece::Bytes(_)) => {
                    let Some(Piece::Bytes(b)) = self.pieces.pop_front() else {
                        return Poll::Ready(None);
                    };
                    self.left = self.left.saturating_sub(b.len() as u64);
                    return Poll::Ready(Some(Ok(b)));
                }
                Some(&Piece::Range(offset, len)) => {
                    if len == 0 {
                        self.pieces.pop_front();
                        continue;
                    }
                    let file = Arc::clone(&self.file);
                    let want = len.min(PIECE) as usize;
                    self.reading = Some(tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0; want];
                        let n = file.read_at(&mut buf, offset)?;
                        buf.truncate(n);
                        Ok(buf)
                    }));
                }
            }
        }
    }
}

/// An internal redirect (nginx's `ngx_http_internal_redirect` and
/// `ngx_http_named_location`): the request starts over at the location
/// the target finds, with its body.
pub(crate) fn redirect<'a>(
    req: &'a Req<'a>,
    body: ClientBody,
    target: Target,
    client: SocketAddr,
    started: Option<std::time::Instant>,
) -> Pin<Box<dyn Future<Output = Response<RespBody>> + Send + 'a>> {
    Box::pin(async move {
        let changes = req.changes.saturating_sub(1);
        if changes == 0 {
            let what = match &target {
                Target::Uri(path, _) => format!(
                    "while internally redirecting to \"{}\"",
                    String::from_utf8_lossy(path)
                ),
                Target::Named(name) => format!("while redirect to named location \"{name}\""),
            };
            req.log_line(
                client,
                Level::Error,
                format!("rewrite or internal redirection cycle {what}"),
            );
            let mut resp = finalized(500);
            resp.extensions_mut()
                .insert(crate::http::error_page::OutOfRedirects);
            return resp;
        }
        let mut next = http::Request::new(());
        *next.version_mut() = req.parts.version;
        *next.headers_mut() = req.parts.headers.clone();
        *next.extensions_mut() = req.parts.extensions.clone();
        // A new location, valid for it (no `break` mark), its own settings.
        crate::http::rewrite::new_level(next.extensions_mut());
        *next.method_mut() = req.parts.method.clone();
        match &target {
            Target::Uri(path, args) => match uri_of(path, args.as_deref()) {
                Some(uri) => {
                    *next.uri_mut() = uri;
                    // The new URI's arguments, not a `set $args`'s.
                    next.extensions_mut().remove::<crate::vars::ArgsSet>();
                }
                None => return finalized(500),
            },
            Target::Named(_) => *next.uri_mut() = req.parts.uri.clone(),
        }
        let mut parts = next.into_parts().0;
        let head = match &target {
            Target::Uri(path, _) => ParsedHead::redirected(req.head, req.parts, path),
            Target::Named(_) => ParsedHead::parse(&parts).unwrap_or_default(),
        };
        if let Target::Uri(..) = target {
            crate::http::rewrite::set_location_groups(req.server, &head, &mut parts);
        }
        let found = match &target {
            Target::Named(name) => match req.server.locations.named(name) {
                Some(location) => Some((location, None)),
                None => {
                    let line = format!("could not find named location \"{name}\"");
                    req.log_line(client, Level::Error, line);
                    return finalized(500);
                }
            },
            Target::Uri(..) => req.server.locations.find(head.uri(&parts.uri)),
        };
        let groups = found.as_ref().and_then(|(_, groups)| groups.as_ref());
        let next_req = req.redirected(&parts, &head, groups, req.err_status, changes);
        let named = matches!(target, Target::Named(_));
        crate::http::rewrite::serve(
            &next_req,
            body,
            found.as_ref().map(|(location, _)| *location),
            client,
            false,
            started,
            named,
        )
        .await
    })
}

/// The request target of an internal redirect: nginx keeps the URI as
/// bytes; here it is percent-encoded where a request line could not carry
/// it, so that parsing it again gives the same `$uri`.
pub(crate) fn uri_of(path: &[u8], args: Option<&[u8]>) -> Option<http::Uri> {
    let mut text = Vec::with_capacity(path.len() + args.map_or(0, |a| a.len() + 2));
    // Always a path (`http://host/x` as a URI would name another host):
    // a URI not starting with `/` keeps its text in the head only.
    if path.first() != Some(&b'/') {
        text.push(b'/');
    }
    crate::http::escape_into(path, &mut text, |_, c| {
        !(c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&c))
    });
    // Arguments as given (none when empty: no bare `?` upstream), but
    // what a request line cannot carry.
    if let Some(args) = args.filter(|a| !a.is_empty()) {
        text.push(b'?');
        crate::http::escape_into(args, &mut text, |_, c| {
            !c.is_ascii_graphic() || b"\"#<>\\^`{|}".contains(&c)
        });
    }
    http::Uri::from_maybe_shared(Bytes::from(text)).ok()
}

/// `path` (a URI's path, valid as it is) with the arguments `args`
/// (`set $args`): as they are, but the bytes the `http` crate's URI
/// refuses in a query (space, controls, `"`, `#`, `<`, `>`, bytes from
/// 0x80 when not UTF-8), percent-encoded.
pub(crate) fn with_args(path: &str, args: &[u8]) -> Option<http::Uri> {
    let mut text = Vec::with_capacity(path.len() + args.len() + 1);
    text.extend_from_slice(path.as_bytes());
    if !args.is_empty() {
        text.push(b'?');
        let utf8 = std::str::from_utf8(args).is_ok();
        crate::http::escape_into(args, &mut text, |_, c| {
            c <= b' ' || c == 0x7f || b"\"#<>".contains(&c) || (c >= 0x80 && !utf8)
        });
    }
    http::Uri::from_maybe_shared(Bytes::from(text)).ok()
}

/// Runs `f` (file system calls) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// nginx's `CALL "PATH" failed (ERRNO: TEXT)` line.
fn failed(req: &Req<'_>, client: SocketAddr, level: Level, call: &str, path: &[u8], e: &io::Error) {
    let line = format!(
        "{call} \"{}\" failed ({}: {})",
        String::from_utf8_lossy(path),
        errno(e),
        strerror(e)
    );
    req.log_line(client, level, line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(value: &str, size: u64) -> Option<Vec<(u64, u64)>> {
        match parse_ranges(value.as_bytes(), size, crate::conf::model::MAX_RANGES) {
            Ranges::Some(list) => Some(list),
            Ranges::None => Some(Vec::new()),
            Ranges::Unsatisfiable => None,
        }
    }

    #[test]
    fn ranges_as_nginx_parses_them() {
        assert_eq!(ranges("bytes=0-3", 10), Some(vec![(0, 4)]));
        assert_eq!(ranges("bytes=-3", 10), Some(vec![(7, 10)]));
        assert_eq!(ranges("bytes=4-", 10), Some(vec![(4, 10)]));
        assert_eq!(ranges("bytes=4-100", 10), Some(vec![(4, 10)]));
        assert_eq!(ranges("bytes=0-1, 4-5", 10), Some(vec![(0, 2), (4, 6)]));
        assert_eq!(ranges("bytes=-20", 10), Some(vec![(0, 10)]));
        assert_eq!(ranges("bytes=10-", 10), None);
        assert_eq!(ranges("bytes=x", 10), None);
        // Overlapping ranges longer than the file: the whole file.
        assert_eq!(ranges("bytes=0-9,0-9", 10), Some(Vec::new()));
        assert_eq!(ranges("items=0-3", 10), Some(Vec::new()));
    }

    #[test]
    fn entity_tags_as_nginx_matches_them() {
        let tag = Some("\"5f-a\"");
        assert!(matches(b"\"5f-a\"", tag, false));
        assert!(matches(b"\"x\", \"5f-a\"", tag, false));
        assert!(matches(b"*", tag, false));
        assert!(!matches(b"\"5f-b\"", tag, false));
        assert!(matches(b"W/\"5f-a\"", tag, true));
        assert!(!matches(b"W/\"5f-a\"", tag, false));
        assert!(!matches(b"\"5f-a\"", None, false));
    }

    #[test]
    fn redirect_targets_keep_their_bytes() {
        let uri = uri_of(b"/a b/%x?y", Some(b"k=v w")).map(|u| u.to_string());
        assert_eq!(uri.as_deref(), Some("/a%20b/%25x%3Fy?k=v%20w"));
    }
}
