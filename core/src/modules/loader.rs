//! Loads module libraries (`cdylib`s built with `waypost_module_api`).
//!
//! Three facts about dynamic loading shape this file:
//!
//! - `dlopen` of a path that is already loaded returns the old code, even if
//!   the file was recompiled since. Every distinct content is therefore
//!   copied to its own content-addressed path, `<stem>-<sha256>.so` in a
//!   private directory, and that copy is what gets opened.
//! - `dlclose` of a Rust cdylib is unsound (thread-local destructors point
//!   into it), so a library, once opened, is never closed: the loader caches
//!   by content hash so that reloading an unchanged file costs nothing and
//!   leaks nothing.
//! - abi_stable's own checks dump a page-long report on a mismatch. The
//!   `waypost_abi_version` symbol is read first so that the common case, a
//!   module built for another major ABI, gets a one-line message; abi_stable's
//!   report is kept for a debug-level log line ([`LoadError::detail`]).
//! - `RootModule::load_from*` keeps one module per root type for the whole
//!   process, so the second balancer loaded would be the first one again.
//!   Each library goes through `lib_header_from_raw_library` and
//!   `init_root_module` instead, which holds no such global.
//!
//! A module runs with the proxy's privileges, so a module file that other
//! users could change is refused before it is read, as sshd refuses an
//! `authorized_keys` file others can write (see `writable_by_others`).
//! The private directory of copies must be a real directory of this user
//! that no one else can write (`Loader::check_private_dir`).
//!
//! This is the config-load path, never the request path: one mutex around
//! the whole load is fine.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use abi_stable::library::{
    lib_header_from_raw_library, AbiHeader, LibraryError, RawLibrary, RootModuleError,
};
use sha2::{Digest, Sha256};
use waypost_module_api::abi::v1_0;
use waypost_module_api::{DirectiveSpec, ModuleRef, ABI_VERSION, ABI_VERSION_SYMBOL};

/// A module library that passed every check, ready for `init_upstream`.
pub struct LoadedModule {
    /// The module's own name (`ModuleInfo::name`).
    pub name: String,
    /// The path the user gave, or the file found in the modules directory
    /// (not the private copy actually opened).
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// The abi_stable root module. Valid for the rest of the process: the
    /// library is never unloaded.
    pub module: ModuleRef,
    /// The directives the module owns (`ModuleInfo::directives`).
    pub directives: Vec<DirectiveSpec>,
    /// Hooks of this library that panicked, over the process's life.
    pub panics: std::sync::atomic::AtomicU64,
    /// Hook calls slower than `watch::SLOW_HOOK`, over the process's life.
    pub slow_hooks: std::sync::atomic::AtomicU64,
    /// The second (on the host clock, plus one) of the last slow-hook log
    /// line, so a slow module logs at most once a second.
    pub slow_logged: std::sync::atomic::AtomicU64,
    /// Variables a filter module sets per request (`ModuleInfo::variables`).
    pub variables: Vec<String>,
}

impl LoadedModule {
    /// A module linked into this binary rather than loaded from a library
    /// (its SDK root module, `waypost_module_api::sdk::Shims::<M>::root_module()`).
    /// For the fuzz targets (`crate::fuzzing`), which load no library: their
    /// default balancer is round robin linked in.
    #[doc(hidden)]
    pub fn linked(module: ModuleRef) -> LoadedModule {
        LoadedModule::new(
            Library::of(module),
            PathBuf::from("(linked)"),
            String::new(),
        )
    }

    fn new(library: Library, path: PathBuf, sha256: String) -> LoadedModule {
        LoadedModule {
            name: library.name,
            path,
            sha256,
            module: library.module,
            directives: library.directives,
            variables: library.variables,
            panics: std::sync::atomic::AtomicU64::new(0),
            slow_hooks: std::sync::atomic::AtomicU64::new(0),
            slow_logged: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl fmt::Debug for LoadedModule {
    // ModuleRef is a table of function pointers; nothing useful to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("directives", &self.directives)
            .finish_non_exhaustive()
    }
}

/// Why a module could not be loaded. `Display` is one line, fit for an
/// `[emerg]` message; [`LoadError::detail`] has abi_stable's full report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A system call on the module file or the private directory failed.
    /// `op` is the call as nginx names it: `open`, `read`, `mkdir`, ...
    #[error("{op}() \"{}\" failed ({})", path.display(), os_error(*errno, message))]
    Io {
        /// The failing call.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// `errno`, when the failure came from the OS.
        errno: Option<i32>,
        /// `strerror` text.
        message: String,
    },
    /// `dlopen` refused the file: not a shared object, missing dependency...
    #[error("module \"{}\" failed to load: {message}", path.display())]
    Open {
        /// The module's path as given.
        path: PathBuf,
        /// `dlerror()`, without the private copy's path.
        message: String,
    },
    /// The module file, or the directory holding it (`dir`), is writable by
    /// users other than its owner: see `writable_by_others`.
    #[error("{}", insecure_message(path, dir.as_deref(), *mode))]
    Insecure {
        /// The module's path as given.
        path: PathBuf,
        /// The directory at fault, or `None` for the file itself.
        dir: Option<PathBuf>,
        /// The file's or directory's permission bits.
        mode: u32,
    },
    /// The private directory of copies exists but could be changed by
    /// someone else: a symbolic link, another owner, or writable by others.
    #[error("private module directory \"{}\" {problem}, refused: remove it and waypost recreates it", path.display())]
    PrivateDir {
        /// The private directory.
        path: PathBuf,
        /// What is wrong with it, e.g. `is writable by other users (mode 0777)`.
        problem: String,
    },
    /// The library has no `waypost_abi_version` symbol.
    #[error("module \"{}\" is not a waypost module: no waypost_abi_version symbol", path.display())]
    NotAModule {
        /// The module's path as given.
        path: PathBuf,
    },
    /// The library was built for another major version of the module ABI.
    #[error("module \"{}\" speaks ABI {found}, this waypost speaks ABI {ABI_VERSION}", path.display())]
    AbiVersion {
        /// The module's path as given.
        path: PathBuf,
        /// The library's `waypost_abi_version`.
        found: u32,
    },
    /// The version tag matched but abi_stable's checks (or ours on the root
    /// module) did not.
    #[error("module \"{}\" is not binary compatible with this waypost: {summary}", path.display())]
    Incompatible {
        /// The module's path as given.
        path: PathBuf,
        /// One line: the layout mismatch, version numbers, ...
        summary: String,
        /// abi_stable's full report, when it made one.
        detail: Option<String>,
    },
}

impl LoadError {
    /// abi_stable's full, multi-line report, for a debug-level log line.
    pub fn detail(&self) -> Option<&str> {
        match self {
            LoadError::Incompatible { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// The file the error is about (the private directory for a failure to
    /// create it).
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Io { path, .. }
            | LoadError::Insecure { path, .. }
            | LoadError::PrivateDir { path, .. }
            | LoadError::Open { path, .. }
            | LoadError::NotAModule { path }
            | LoadError::AbiVersion { path, .. }
            | LoadError::Incompatible { path, .. } => path,
        }
    }

    fn io(op: &'static str, path: &Path, err: &io::Error) -> LoadError {
        let mut message = err.to_string();
        // std appends " (os error N)"; the errno is printed nginx-style in
        // front instead.
        if let Some(errno) = err.raw_os_error() {
            let suffix = format!(" (os error {errno})");
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        LoadError::Io {
            op,
            path: path.to_owned(),
            errno: err.raw_os_error(),
            message,
        }
    }
}

fn os_error(errno: Option<i32>, message: &str) -> String {
    match errno {
        Some(errno) => format!("{errno}: {message}"),
        None => message.to_owned(),
    }
}

fn insecure_message(path: &Path, dir: Option<&Path>, mode: u32) -> String {
    let (what, fix) = match dir {
        None => ("is".to_owned(), path),
        Some(dir) => (format!("is in directory \"{}\",", dir.display()), dir),
    };
    format!(
        "module \"{}\" {what} writable by other users (mode {mode:04o}), \
         refused as sshd refuses insecure files (chmod go-w \"{}\" to allow it)",
        path.display(),
        fix.display()
    )
}

/// The rule for module files and the directories holding them: only the
/// owner may write. A group or other write bit (`mode & 0o022`) refuses
/// the file, as sshd's `StrictModes` refuses `authorized_keys`; a directory
/// with one is refused too, unless it is sticky (like `/tmp`: there only a
/// file's owner may rename or remove it). Only the directory directly
/// holding the file is checked (and the real file's, when the path is a
/// symbolic link), not every ancestor; owners are not checked.
fn writable_by_others(mode: u32, is_dir: bool) -> bool {
    const STICKY: u32 = 0o1000;
    mode & 0o022 != 0 && !(is_dir && mode & STICKY != 0)
}

/// `path`'s directory (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A failure after `dlopen` succeeded, remembered per content so that the
/// same bad file is not opened (and leaked) again. It carries no path: the
/// same content may come back under another name.
#[derive(Clone)]
enum Refused {
    NotAModule,
    AbiVersion(u32),
    Incompatible {
        summary: String,
        detail: Option<String>,
    },
}

impl Refused {
    fn for_path(&self, path: &Path) -> LoadError {
        let path = path.to_owned();
        match self.clone() {
            Refused::NotAModule => LoadError::NotAModule { path },
            Refused::AbiVersion(found) => LoadError::AbiVersion { path, found },
            Refused::Incompatible { summary, detail } => LoadError::Incompatible {
                path,
                summary,
                detail,
            },
        }
    }
}

/// What one opened library yielded; shared by every path with that content.
#[derive(Clone)]
struct Library {
    name: String,
    module: ModuleRef,
    directives: Vec<DirectiveSpec>,
    variables: Vec<String>,
}

impl Library {
    /// What a checked root module declares (`ModuleInfo`), owned.
    fn of(module: ModuleRef) -> Library {
        let info = (module.info())();
        Library {
            name: info.name.as_str().to_owned(),
            module,
            directives: info.directives.as_slice().to_vec(),
            variables: info
                .variables
                .as_slice()
                .iter()
                .map(|v| v.as_str().to_owned())
                .collect(),
        }
    }
}

#[derive(Default)]
struct Cache {
    /// By SHA-256: every library ever opened by this loader, or why it was
    /// refused. Bounded by the number of distinct contents, which is also
    /// the number of libraries leaked in memory anyway.
    libraries: HashMap<String, Result<Library, Refused>>,
    /// By SHA-256 and path given, so that an unchanged reload returns the
    /// very same `Arc`.
    modules: HashMap<(String, PathBuf), Arc<LoadedModule>>,
}

/// Loads module libraries through content-addressed private copies.
pub struct Loader {
    private_dir: PathBuf,
    cache: Mutex<Cache>,
}

/// Makes temporary file names unique between loaders of one process sharing
/// a private directory; the pid does it between processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Loader {
    /// A loader copying libraries into `private_dir`, which is created (mode
    /// 0700) on the first load of new content.
    pub fn new(private_dir: PathBuf) -> Loader {
        Loader {
            private_dir,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Loads the module library at `path`. Unchanged content returns the
    /// same `Arc` as before without touching the dynamic loader.
    pub fn load(&self, path: &Path) -> Result<Arc<LoadedModule>, LoadError> {
        // Checked on every load, cached or not: a file made writable since
        // the last reload is refused now.
        let bytes = read_module(path)?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));

        // A panic while holding the lock leaves the maps consistent (entries
        // are inserted whole), so a poisoned lock is still usable.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let key = (sha256, path.to_owned());
        if let Some(module) = cache.modules.get(&key) {
            return Ok(Arc::clone(module));
        }
        let (sha256, path_buf) = key;

        let library = match cache.libraries.get(&sha256) {
            Some(Ok(library)) => library.clone(),
            Some(Err(refused)) => return Err(refused.for_path(path)),
            None => match self.open(path, &sha256, &bytes)? {
                Ok(library) => {
                    cache.libraries.insert(sha256.clone(), Ok(library.clone()));
                    library
                }
                Err(refused) => {
                    let err = refused.for_path(path);
                    cache.libraries.insert(sha256, Err(refused));
                    return Err(err);
                }
            },
        };

        let module = Arc::new(LoadedModule::new(library, path_buf.clone(), sha256.clone()));
        cache
            .modules
            .insert((sha256, path_buf), Arc::clone(&module));
        Ok(module)
    }

    /// Loads every file named `libwaypost_*.so` in `dir`, in name order.
    /// A directory that cannot be read gives a single error.
    pub fn scan_dir(&self, dir: &Path) -> Vec<Result<Arc<LoadedModule>, LoadError>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => return vec![Err(LoadError::io("opendir", dir, &err))],
        };
        let mut names = Vec::new();
        let mut results = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let name = entry.file_name();
                    let bytes = name.as_bytes();
                    let prefix = b"libwaypost_";
                    let suffix = b".so";
                    if bytes.len() > prefix.len() + suffix.len()
                        && bytes.starts_with(prefix)
                        && bytes.ends_with(suffix)
                    {
                        names.push(name);
                    }
                }
                Err(err) => results.push(Err(LoadError::io("readdir", dir, &err))),
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(name);
            // A directory with a module's name is not a module; anything
            // else (even a dangling symlink) is tried, so the user hears why
            // it failed.
            if fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            results.push(self.load(&path));
        }
        results
    }

    /// Copies new content to its private path and opens it. The outer error
    /// is one not worth remembering (I/O, `dlopen`: a missing dependency can
    /// be installed without changing the file); the inner one is remembered
    /// for this content.
    fn open(
        &self,
        path: &Path,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Result<Library, Refused>, LoadError> {
        let copy = self.write_copy(path, sha256, bytes)?;
        let opened = open_library(path, &copy);
        if !matches!(opened, Ok(Ok(_))) {
            // The copy is of no further use. Unlinking it is safe even if
            // the library stays mapped.
            let _ = fs::remove_file(&copy);
        }
        opened
    }

    /// Writes `bytes` to `<private_dir>/<stem>-<sha256>.so` through a
    /// temporary file and a rename, so that no one ever opens a partial
    /// file. An existing copy is replaced rather than trusted: it may be a
    /// leftover of a crash. Replacing is safe for processes that have the
    /// old one mapped.
    fn write_copy(&self, path: &Path, sha256: &str, bytes: &[u8]) -> Result<PathBuf, LoadError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.private_dir)
            .map_err(|e| LoadError::io("mkdir", &self.private_dir, &e))?;
        self.check_private_dir()?;

        let mut stem = path
            .file_stem()
            .map(|s| s.to_owned())
            .unwrap_or_else(|| "module".into());
        stem.push(format!("-{sha256}"));
        let mut file_name = stem.clone();
        file_name.push(".so");
        let copy = self.private_dir.join(file_name);

        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(&stem);
        temp_name.push(format!(
            ".tmp{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = self.private_dir.join(temp_name);

        let written = write_file(&temp, bytes).and_then(|()| {
            fs::rename(&temp, &copy).map_err(|e| LoadError::io("rename", &temp, &e))
        });
        if let Err(err) = written {
            let _ = fs::remove_file(&temp);
            return Err(err);
        }
        Ok(copy)
    }

    /// The private directory, created 0700 by this loader or found existing,
    /// must be a real directory of this user that no one else can write:
    /// it lives in a shared `$TMPDIR`, where someone else could have made
    /// it first, and what is in it gets loaded.
    fn check_private_dir(&self) -> Result<(), LoadError> {
        let dir = &self.private_dir;
        let meta = fs::symlink_metadata(dir).map_err(|e| LoadError::io("lstat", dir, &e))?;
        // SAFETY: geteuid has no failure mode and no memory effects.
        let euid = unsafe { libc::geteuid() };
        let mode = meta.mode() & 0o7777;
        let problem = if !meta.is_dir() {
            "is not a directory".to_owned()
        } else if meta.uid() != euid {
            format!(
                "is owned by uid {}, not by this process (uid {euid})",
                meta.uid()
            )
        } else if mode & 0o022 != 0 {
            format!("is writable by other users (mode {mode:04o})")
        } else {
            return Ok(());
        };
        Err(LoadError::PrivateDir {
            path: dir.clone(),
            problem,
        })
    }
}

/// Reads a module file, refusing it first if other users could change it
/// (see `writable_by_others`). The file's mode is that of the file
/// opened, the one read.
fn read_module(path: &Path) -> Result<Vec<u8>, LoadError> {
    let mut file = fs::File::open(path).map_err(|e| LoadError::io("open", path, &e))?;
    let meta = file
        .metadata()
        .map_err(|e| LoadError::io("fstat", path, &e))?;
    let mode = meta.mode() & 0o7777;
    if writable_by_others(mode, false) {
        return Err(LoadError::Insecure {
            path: path.to_owned(),
            dir: None,
            mode,
        });
    }
    // The directory holding the name given, and the one holding the real
    // file when that name is a symbolic link (the same directory under two
    // names is checked twice: a stat is cheap).
    let real = fs::canonicalize(path).map_err(|e| LoadError::io("realpath", path, &e))?;
    let given_dir = parent_dir(path);
    let real_dir = parent_dir(&real);
    let dirs = if real_dir == given_dir {
        &[given_dir][..]
    } else {
        &[given_dir, real_dir][..]
    };
    for &dir in dirs {
        let meta = fs::metadata(dir).map_err(|e| LoadError::io("stat", dir, &e))?;
        let mode = meta.mode() & 0o7777;
        if writable_by_others(mode, true) {
            return Err(LoadError::Insecure {
                path: path.to_owned(),
                dir: Some(dir.to_owned()),
                mode,
            });
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| LoadError::io("read", path, &e))?;
    Ok(bytes)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    // No fsync: the copy is rewritten whenever content is first seen by a
    // process, so a copy torn by a crash is never opened.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(path)
        .map_err(|e| LoadError::io("open", path, &e))?;
    file.write_all(bytes)
        .map_err(|e| LoadError::io("write", path, &e))
}

/// Opens the private copy and runs the checks, cheapest and clearest first.
/// `path` is the user's path, for messages.
fn open_library(path: &Path, copy: &Path) -> Result<Result<Library, Refused>, LoadError> {
    // Never dropped, on any path out of here: dlclose of a Rust cdylib is
    // unsound, and anything handed out below points into the library.
    let raw = ManuallyDrop::new(RawLibrary::load_at(copy).map_err(|err| LoadError::Open {
        path: path.to_owned(),
        message: dlopen_message(&err, copy),
    })?);

    // SAFETY: the symbol is declared as a `u32` static by the SDK's
    // `export_module!`. `get::<*const u32>` yields the symbol's address; an
    // unaligned read keeps a bogus symbol of that name from being UB through
    // alignment.
    let version = unsafe {
        match raw.get::<*const u32>(ABI_VERSION_SYMBOL) {
            Ok(symbol) if !(*symbol).is_null() => Some((*symbol).read_unaligned()),
            _ => None,
        }
    };
    match version {
        None => return Ok(Err(Refused::NotAModule)),
        // abi_stable is not asked: its report for a library of another major
        // version would be a page of layout differences.
        Some(found) if found != ABI_VERSION => return Ok(Err(Refused::AbiVersion(found))),
        Some(_) => {}
    }

    // SAFETY: the returned header borrows the library for 'static, which
    // holds because the library is never unloaded.
    let module = unsafe { lib_header_from_raw_library(&raw) }.and_then(|header| {
        header.init_root_module::<ModuleRef>().or_else(|newest| {
            // Built against an older minor: its root module has fewer
            // fields, which abi_stable's check refuses. Check it against
            // the frozen 1.0 layout, then read it as the current type,
            // whose accessors default the fields it lacks.
            match header.init_root_module::<v1_0::ModuleRef>() {
                // SAFETY: the layout was just checked against 1.0, a prefix
                // of the current one; the library's prefix metadata bounds
                // which fields the accessors read.
                Ok(_) => match unsafe { header.unchecked_layout::<ModuleRef>() } {
                    // Only a library without the 1.1 field: one that has it
                    // failed the check above on its 1.1 types, unchecked.
                    Ok(module) if module.init_upstream_ext().is_none() => Ok(module),
                    Ok(_) => Err(newest),
                    Err(e) => Err(e.into_library_error::<ModuleRef>()),
                },
                Err(_) => Err(newest),
            }
        })
    });
    let module = match module {
        Ok(module) => module,
        Err(err) => {
            return Ok(Err(Refused::Incompatible {
                summary: summarize(&err),
                detail: Some(err.to_string().trim().to_owned()),
            }))
        }
    };

    // The symbol and the root module are written by the same macro; a
    // disagreement means a hand-made or corrupted library.
    let root_version = module.abi_version();
    if root_version != ABI_VERSION {
        return Ok(Err(Refused::Incompatible {
            summary: format!(
                "its root module speaks ABI {root_version} but its waypost_abi_version symbol says {ABI_VERSION}"
            ),
            detail: None,
        }));
    }

    Ok(Ok(Library::of(module)))
}

/// The `dlerror()` text, without the private copy's path it starts with:
/// the message names the user's path already.
fn dlopen_message(err: &LibraryError, copy: &Path) -> String {
    let message = match err {
        LibraryError::OpenError { err, .. } => err.to_string(),
        other => one_line(&other.to_string()),
    };
    let prefix = format!("{}: ", copy.display());
    match message.strip_prefix(&prefix) {
        Some(rest) => rest.to_owned(),
        None => message,
    }
}

/// One line out of abi_stable's multi-line report.
fn summarize(err: &LibraryError) -> String {
    match err {
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!("module API version {actual_version}, this waypost has {expected_version}"),
        LibraryError::InvalidAbiHeader(found) => {
            let ours = AbiHeader::VALUE;
            if found.magic_string != ours.magic_string {
                "not built with abi_stable".to_owned()
            } else {
                format!(
                    "built with abi_stable ABI {}.{}, this waypost uses {}.{}",
                    found.abi_major, found.abi_minor, ours.abi_major, ours.abi_minor
                )
            }
        }
        LibraryError::GetSymbolError { symbol, .. } => format!(
            "no abi_stable root module (symbol {})",
            String::from_utf8_lossy(symbol).trim_end_matches('\0')
        ),
        LibraryError::RootModule {
            err: RootModuleError::Unwound,
            ..
        } => "its root module loader panicked".to_owned(),
        LibraryError::Many(errors) if !errors.is_empty() => summarize(&errors[0]),
        LibraryError::AbiInstability(_) => layout_summary(&err.to_string()),
        other => one_line(&other.to_string()),
    }
}

/// The mismatch at the end of abi_stable's layout report (an opaque,
/// formatted error: text is all there is), e.g. `mismatched type Expected:
/// u32 Found: u64 (in field abi_version)`. The report reads:
///
/// ```text
/// 1 error(s)inside:
///     <other>
///     field_name:abi_version
///     ...
/// Layout of expected type:
///     ...
/// Error:mismatched type
/// Expected:
///     u32
/// Found:
///     u64
/// ```
fn layout_summary(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let Some(error) = lines.iter().rposition(|l| l.starts_with("Error:")) else {
        return one_line(report);
    };
    let mismatch = lines[error..].join(" ");
    let mismatch = mismatch["Error:".len()..].split_whitespace();
    let mut summary = mismatch.collect::<Vec<_>>().join(" ");
    // The stack of the failing check names the fields leading to it; the
    // numeric ones are abi_stable's own wrappers.
    let stack = lines[..error]
        .iter()
        .rposition(|l| l.ends_with("error(s)inside:"))
        .map(|start| &lines[start..error])
        .unwrap_or_default();
    let fields: Vec<&str> = stack
        .iter()
        .take_while(|l| !l.starts_with("Layout of "))
        .filter_map(|l| l.strip_prefix("field_name:"))
        .filter(|name| !name.is_empty() && !name.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    if !fields.is_empty() {
        summary.push_str(&format!(" (in field {})", fields.join(".")));
    }
    summary
}

/// The last non-blank line of `text`, whitespace collapsed.
fn one_line(text: &str) -> String {
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("unknown error");
    last.split_whitespace().collect::<Vec<_>>().join(" ")
}

// The loader is shared by the config-reload task and whatever holds loaded
// modules across threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Loader>();
    assert_send_sync::<LoadedModule>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The round_robin module, built by `cargo build -p waypost-round-robin`.
    fn rr_so() -> PathBuf {
        let path = match std::env::var_os("WAYPOST_TEST_RR_SO") {
            Some(path) => PathBuf::from(path),
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/debug/libwaypost_round_robin.so"),
        };
        assert!(
            path.is_file(),
            "{} is missing: run `cargo build -p waypost-round-robin` first, \
             or point WAYPOST_TEST_RR_SO at the module",
            path.display()
        );
        path
    }

    /// The fixture library claiming ABI 2 (`tests/fixtures/abi2_module`, a
    /// workspace member), built by `cargo build --workspace`.
    fn abi2_so() -> PathBuf {
        let path = match std::env::var_os("WAYPOST_TEST_ABI2_SO") {
            Some(path) => PathBuf::from(path),
            None => {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/libabi2_fixture.so")
            }
        };
        assert!(
            path.is_file(),
            "{} is missing: run `cargo build --workspace` first, \
             or point WAYPOST_TEST_ABI2_SO at the fixture",
            path.display()
        );
        path
    }

    /// An empty scratch directory for one test.
    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("waypost-loader-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| {
                    e.expect("readdir")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    #[test]
    fn same_content_is_opened_once() {
        let scratch = scratch("same");
        let private = scratch.join("private");
        let loader = Loader::new(private.clone());
        let rr = rr_so();

        let first = loader.load(&rr).expect("load round_robin");
        let second = loader.load(&rr).expect("load round_robin again");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.name, "round_robin");
        assert_eq!(first.path, rr);
        assert_eq!(first.sha256.len(), 64);
        assert_eq!(first.module.abi_version(), ABI_VERSION);
        assert_eq!(
            files_in(&private),
            [format!("libwaypost_round_robin-{}.so", first.sha256)]
        );
        let mode = fs::metadata(&private)
            .expect("private dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn copied_module_is_cached_and_changed_content_is_reopened() {
        let scratch = scratch("copy");
        let private = scratch.join("private");
        let loader = Loader::new(private.clone());
        let copy = scratch.join("libwaypost_copy.so");
        fs::copy(rr_so(), &copy).expect("copy module");

        let first = loader.load(&copy).expect("load copy");
        let again = loader.load(&copy).expect("load copy again");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.path, copy);
        assert_eq!(files_in(&private).len(), 1);

        // A "recompiled" module at the same path: trailing bytes change the
        // hash but not what the dynamic loader maps.
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&copy)
            .expect("open copy");
        file.write_all(b"rebuilt").expect("append");
        drop(file);
        let rebuilt = loader.load(&copy).expect("load rebuilt copy");
        assert!(!Arc::ptr_eq(&first, &rebuilt));
        assert_ne!(first.sha256, rebuilt.sha256);
        assert_eq!(rebuilt.name, "round_robin");
        assert_eq!(files_in(&private).len(), 2);
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn non_elf_file_fails_to_load() {
        let scratch = scratch("nonelf");
        let private = scratch.join("private");
        let loader = Loader::new(private.clone());
        let bad = scratch.join("libwaypost_bad.so");
        fs::write(&bad, "not a shared object, just text\n".repeat(100)).expect("write");

        let err = loader.load(&bad).expect_err("text is not a library");
        let message = err.to_string();
        let prefix = format!("module \"{}\" failed to load: ", bad.display());
        assert!(message.starts_with(&prefix), "{message}");
        assert!(message.len() > prefix.len(), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(err.detail().is_none());
        // Neither the temporary file nor the copy stays behind.
        assert_eq!(files_in(&private), Vec::<String>::new());
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn library_without_version_symbol_is_not_a_module() {
        let scratch = scratch("libm");
        let private = scratch.join("private");
        let loader = Loader::new(private.clone());
        let libm = [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/lib/aarch64-linux-gnu/libm.so.6",
            "/usr/lib64/libm.so.6",
            "/lib64/libm.so.6",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("no libm.so.6 found to test with");
        let copy = scratch.join("libwaypost_m.so");
        fs::copy(libm, &copy).expect("copy libm");

        let expected = format!(
            "module \"{}\" is not a waypost module: no waypost_abi_version symbol",
            copy.display()
        );
        let err = loader.load(&copy).expect_err("libm is not a module");
        assert_eq!(err.to_string(), expected);
        assert_eq!(files_in(&private), Vec::<String>::new());
        // Remembered: the second attempt does not open the library again
        // (the copy would reappear in the private dir if it did).
        fs::remove_dir_all(&private).expect("remove private dir");
        let err = loader.load(&copy).expect_err("still not a module");
        assert_eq!(err.to_string(), expected);
        assert!(!private.exists());
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn other_major_abi_is_refused_before_abi_stable() {
        let scratch = scratch("abi2");
        let loader = Loader::new(scratch.join("private"));
        let so = abi2_so();
        let err = loader.load(&so).expect_err("ABI 2 must be refused");
        assert_eq!(
            err.to_string(),
            format!(
                "module \"{}\" speaks ABI 2, this waypost speaks ABI 1",
                so.display()
            )
        );
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn missing_file_is_an_open_error() {
        let scratch = scratch("missing");
        let loader = Loader::new(scratch.join("private"));
        let missing = scratch.join("libwaypost_nothere.so");
        let err = loader.load(&missing).expect_err("no such file");
        assert_eq!(
            err.to_string(),
            format!(
                "open() \"{}\" failed (2: No such file or directory)",
                missing.display()
            )
        );
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn scan_dir_loads_module_files_in_name_order() {
        let scratch = scratch("scan");
        let modules = scratch.join("modules");
        fs::create_dir(&modules).expect("mkdir modules");
        fs::copy(rr_so(), modules.join("libwaypost_b.so")).expect("copy module");
        fs::write(modules.join("libwaypost_a.so"), "text").expect("write");
        fs::write(modules.join("other.so"), "ignored").expect("write");
        fs::create_dir(modules.join("libwaypost_dir.so")).expect("mkdir");
        let loader = Loader::new(scratch.join("private"));

        let results = loader.scan_dir(&modules);
        assert_eq!(results.len(), 2);
        match &results[0] {
            Err(err @ LoadError::Open { .. }) => {
                assert_eq!(err.path(), modules.join("libwaypost_a.so"))
            }
            other => panic!("expected a dlopen failure, got {other:?}"),
        }
        match &results[1] {
            Ok(module) => {
                assert_eq!(module.name, "round_robin");
                assert_eq!(module.path, modules.join("libwaypost_b.so"));
            }
            Err(err) => panic!("{err}"),
        }

        let missing = loader.scan_dir(&scratch.join("nothere"));
        assert_eq!(missing.len(), 1);
        assert!(matches!(
            &missing[0],
            Err(LoadError::Io { op: "opendir", .. })
        ));
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn module_writable_by_others_is_refused() {
        let scratch = scratch("insecure");
        let modules = scratch.join("modules");
        fs::create_dir(&modules).expect("mkdir modules");
        let so = modules.join("libwaypost_rr.so");
        fs::copy(rr_so(), &so).expect("copy module");
        let chmod = |path: &Path, mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod")
        };
        chmod(&modules, 0o755);
        let loader = Loader::new(scratch.join("private"));

        for mode in [0o666, 0o646, 0o664, 0o775] {
            chmod(&so, mode);
            let err = loader.load(&so).expect_err("writable by others");
            assert_eq!(
                err.to_string(),
                format!(
                    "module \"{0}\" is writable by other users (mode {mode:04o}), \
                     refused as sshd refuses insecure files (chmod go-w \"{0}\" to allow it)",
                    so.display()
                )
            );
            assert_eq!(err.path(), so);
        }
        chmod(&so, 0o755);
        let loaded = loader.load(&so).expect("0755 is fine");
        // Checked again when the content is cached: a file made writable
        // since is refused.
        chmod(&so, 0o666);
        assert!(matches!(
            loader.load(&so),
            Err(LoadError::Insecure { dir: None, .. })
        ));
        chmod(&so, 0o644);

        for mode in [0o777, 0o775, 0o757] {
            chmod(&modules, mode);
            let err = loader.load(&so).expect_err("directory writable by others");
            assert_eq!(
                err.to_string(),
                format!(
                    "module \"{}\" is in directory \"{1}\", writable by other users \
                     (mode {mode:04o}), refused as sshd refuses insecure files \
                     (chmod go-w \"{1}\" to allow it)",
                    so.display(),
                    modules.display()
                )
            );
        }
        // Sticky, as /tmp: only the file's owner may replace it.
        chmod(&modules, 0o1777);
        let again = loader.load(&so).expect("a sticky directory is fine");
        assert!(Arc::ptr_eq(&loaded, &again));

        // Through a symbolic link, the real file's directory counts too.
        chmod(&modules, 0o777);
        let links = scratch.join("links");
        fs::create_dir(&links).expect("mkdir links");
        chmod(&links, 0o755);
        let link = links.join("libwaypost_rr.so");
        std::os::unix::fs::symlink(&so, &link).expect("symlink");
        match loader.load(&link) {
            Err(LoadError::Insecure {
                path,
                dir: Some(dir),
                mode: 0o777,
            }) => assert_eq!((path, dir), (link.clone(), modules.clone())),
            other => panic!("expected the link's target directory refused, got {other:?}"),
        }
        chmod(&modules, 0o755);
        loader.load(&link).expect("both directories are fine");

        // The modules directory scan skips such a file with the same error.
        chmod(&so, 0o666);
        let results = loader.scan_dir(&modules);
        assert!(
            matches!(&results[..], [Err(LoadError::Insecure { dir: None, .. })]),
            "{results:?}"
        );
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn private_dir_others_could_change_is_refused() {
        let scratch = scratch("private");
        let private = scratch.join("private");
        fs::create_dir(&private).expect("mkdir private");
        fs::set_permissions(&private, fs::Permissions::from_mode(0o777)).expect("chmod");
        let loader = Loader::new(private.clone());
        let err = loader
            .load(&rr_so())
            .expect_err("world-writable private dir");
        assert_eq!(
            err.to_string(),
            format!(
                "private module directory \"{}\" is writable by other users (mode 0777), \
                 refused: remove it and waypost recreates it",
                private.display()
            )
        );
        assert_eq!(files_in(&private), Vec::<String>::new());

        // A symbolic link where the directory should be.
        fs::remove_dir(&private).expect("rmdir private");
        let elsewhere = scratch.join("elsewhere");
        fs::create_dir(&elsewhere).expect("mkdir elsewhere");
        std::os::unix::fs::symlink(&elsewhere, &private).expect("symlink");
        let err = loader.load(&rr_so()).expect_err("symlinked private dir");
        assert_eq!(
            err.to_string(),
            format!(
                "private module directory \"{}\" is not a directory, \
                 refused: remove it and waypost recreates it",
                private.display()
            )
        );
        assert_eq!(files_in(&elsewhere), Vec::<String>::new());

        // As the message says.
        fs::remove_file(&private).expect("remove link");
        loader.load(&rr_so()).expect("recreated");
        let _ = fs::remove_dir_all(&scratch);
    }

    #[test]
    fn writable_by_others_rule() {
        assert!(!writable_by_others(0o755, false));
        assert!(!writable_by_others(0o4755, false));
        assert!(writable_by_others(0o775, false));
        assert!(writable_by_others(0o757, false));
        // The sticky bit only means something on a directory.
        assert!(writable_by_others(0o1777, false));
        assert!(!writable_by_others(0o1777, true));
        assert!(!writable_by_others(0o1775, true));
        assert!(writable_by_others(0o777, true));
        assert!(!writable_by_others(0o700, true));
    }

    #[test]
    fn summary_is_the_last_line() {
        assert_eq!(
            one_line("\n'waypost_module' mismatch:\n  user:0.1.0\n\n"),
            "user:0.1.0"
        );
    }

    #[test]
    fn layout_summary_names_the_mismatch_and_field() {
        // The end of a real report, for a module whose root `abi_version`
        // field became a u64.
        let report = "\nCompared <this>:\n    --- Type Layout ---\n0 error(s).\n\
            1 error(s)inside:\n    <other>\n    field_name:0\n    type:Module\n\
            \x20   field_name:abi_version\n    type:u64\n\
            Layout of expected type:\n    --- Type Layout ---\n    type:u32\n\
            Layout of found type:\n    --- Type Layout ---\n    type:u64\n\n\
            Error:mismatched type\nExpected:\n    u32\nFound:\n    u64\n\n";
        assert_eq!(
            layout_summary(report),
            "mismatched type Expected: u32 Found: u64 (in field abi_version)"
        );
        assert_eq!(layout_summary("odd\nreport\n"), "report");
    }
}
