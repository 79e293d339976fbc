//! `disable_symlinks on|if_not_owner [from=PART]`: a file is opened as
//! nginx's `ngx_open_file_wrapper` opens it then, one component at a time
//! with `openat()`: each directory with `O_NOFOLLOW` (a link there fails
//! as the kernel says, ENOTDIR), the file itself too (ELOOP: 403). Under
//! `if_not_owner` links are followed, and one whose owner is not its
//! target's fails with ELOOP. The first `from=` bytes of the path are
//! opened as they are. A failed call is named as nginx names it in the
//! error log (`openat()`).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use crate::conf::model::SymlinksConf;
use crate::conf::ConfError;
use crate::map::MapNames;
use crate::vars::{Template, VarCtx};

/// A level's `disable_symlinks`, its `from=` compiled.
pub struct Symlinks {
    if_not_owner: bool,
    from: Option<Template>,
}

/// How one path is opened under it.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// The bytes at the start of the path that are not checked (up to,
    /// not with, a `/`); 0: all are.
    from: usize,
    if_not_owner: bool,
}

/// An open that failed, and the call nginx's error line names.
pub struct Failed {
    pub call: &'static str,
    pub err: io::Error,
}

impl Symlinks {
    pub fn new(conf: &SymlinksConf, maps: &MapNames) -> Result<Symlinks, ConfError> {
        let from = conf
            .from
            .as_deref()
            .map(|f| {
                Template::compile_with(f, &|n| maps.var(n))
                    .map_err(|e| ConfError::bare(e.to_string()))
            })
            .transpose()?;
        Ok(Symlinks {
            if_not_owner: conf.if_not_owner,
            from,
        })
    }

    /// nginx's `ngx_http_set_disable_symlinks` for `path`: `from=`
    /// applies where the path starts with it at a `/` (a path that is
    /// `from=` itself is not checked at all).
    pub fn check(&self, path: &[u8], vars: &VarCtx<'_>) -> Option<Check> {
        let mut check = Check {
            from: 0,
            if_not_owner: self.if_not_owner,
        };
        let Some(from) = self.from.as_ref().map(|f| f.eval(vars)) else {
            return Some(check);
        };
        if from.is_empty() || from.len() > path.len() || path[..from.len()] != from[..] {
            return Some(check);
        }
        if from.len() == path.len() {
            return None;
        }
        if path[from.len()] == b'/' {
            check.from = from.len();
        } else if path[from.len() - 1] == b'/' {
            check.from = from.len() - 1;
        }
        Some(check)
    }
}

/// `path` opened read only and non-blocking, as the static module opens
/// a file; under `check`, component by component.
pub fn open(path: &[u8], check: Option<Check>) -> Result<File, Failed> {
    let Some(check) = check else {
        return std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(OsStr::from_bytes(path))
            .map_err(|err| Failed {
                call: "open()",
                err,
            });
    };
    const SEARCH: libc::c_int = libc::O_PATH | libc::O_RDONLY | libc::O_DIRECTORY;
    const FILE: libc::c_int = libc::O_RDONLY;
    let openat_failed = |err| Failed {
        call: "openat()",
        err,
    };
    let mut at: Option<OwnedFd> = None;
    let mut rest = path;
    if check.from > 0 {
        let dir = open_at(None, &path[..check.from], SEARCH).map_err(|err| Failed {
            call: "open()",
            err,
        })?;
        at = Some(dir);
        rest = &path[check.from + 1..];
    } else if let Some(after) = path.strip_prefix(b"/") {
        at = Some(open_at(None, b"/", SEARCH).map_err(openat_failed)?);
        rest = after;
    }
    while let Some(slash) = rest.iter().position(|&c| c == b'/') {
        if slash == 0 {
            rest = &rest[1..];
            continue;
        }
        let name = &rest[..slash];
        let fd = match check.if_not_owner {
            true => open_owner(at.as_ref(), name, SEARCH),
            false => open_at(at.as_ref(), name, SEARCH | libc::O_NOFOLLOW),
        }
        .map_err(openat_failed)?;
        at = Some(fd);
        rest = &rest[slash + 1..];
    }
    let fd = if rest.is_empty() {
        open_at(at.as_ref(), b".", FILE)
    } else if check.if_not_owner {
        open_owner(at.as_ref(), rest, FILE)
    } else {
        open_at(at.as_ref(), rest, FILE | libc::O_NOFOLLOW)
    }
    .map_err(openat_failed)?;
    Ok(File::from(fd))
}

/// `openat()` of `name` in `dir` (the working directory for `None`),
/// non-blocking.
fn open_at(dir: Option<&OwnedFd>, name: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let dir: RawFd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a NUL-terminated name and a descriptor we hold; the new
    // descriptor is owned from here.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// nginx's `ngx_openat_file_owner`: `name` opened following a link, then
/// refused (ELOOP) where the link's owner is not what it leads to's.
fn open_owner(dir: Option<&OwnedFd>, name: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let fd = open_at(dir, name, flags)?;
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let raw_dir: RawFd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: stat buffers we own, a NUL-terminated name, descriptors we
    // hold.
    let (link, target) = unsafe {
        let mut link: libc::stat = std::mem::zeroed();
        if libc::fstatat(
            raw_dir,
            cname.as_ptr(),
            &mut link,
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut target: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut target) != 0 {
            return Err(io::Error::last_os_error());
        }
        (link, target)
    };
    if link.st_uid != target.st_uid {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(fd)
}
