//! [`StateDir`]: the directory the shadows live in, trusted only after it is checked, and
//! touched only through its file descriptor.
//!
//! A shadow steers what the next daemon tells the kernel, so nobody but the daemon's user may
//! be able to write one: the directory must belong to that user, must not be writable by
//! group or others, and must not be a symlink. Every file in it is opened relative to the
//! directory's descriptor with `O_NOFOLLOW`, and a file written aside is created with
//! `O_EXCL`, so a link planted in the directory is never followed.
//!
//! It also keeps the shadows' descriptor budget: a journal kept open makes a record one
//! `write(2)`, but a host with thousands of disk logs needs its descriptors for the log
//! devices. So only so many journals stay open; the others are opened for each record.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Why a state directory is not used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state directory {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("state directory {path} is a symlink")]
    Symlink { path: String },
    #[error("state directory {path} belongs to uid {owner}, not to this daemon's uid {euid}")]
    Owner { path: String, owner: u32, euid: u32 },
    #[error("state directory {path} has mode {mode:o}: group or others may write it")]
    Writable { path: String, mode: u32 },
}

/// The checked state directory, open.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    fd: OwnedFd,
    /// Journals that may be kept open at once, and how many are.
    open_budget: usize,
    open_journals: AtomicUsize,
}

/// A journal's place in the open-descriptor budget; given back when dropped.
#[derive(Debug)]
pub(crate) struct OpenSlot(Arc<StateDir>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open_journals.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StateDir {
    /// Opens `path` (created mode 0700 if missing) after checking owner, mode and type.
    /// At most `open_budget` journals are kept open at once.
    pub fn open(path: &Path, open_budget: usize) -> Result<StateDir, StateDirError> {
        let shown = || path.display().to_string();
        let io_error = |source| StateDirError::Io { path: shown(), source };
        match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path) {
            Ok(()) => {}
            // A symlink to a directory "exists"; the open below tells it apart.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(e)),
        }
        let name = c_path(path.as_os_str().as_encoded_bytes()).map_err(io_error)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: open(2) on a NUL-terminated path; the descriptor is owned at once.
        let fd = unsafe { libc::open(name.as_ptr(), flags) };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) if is_symlink(path) => {
                    StateDirError::Symlink { path: shown() }
                }
                _ => io_error(error),
            });
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let meta = File::from(fd.try_clone().map_err(io_error)?).metadata().map_err(io_error)?;
        // SAFETY: geteuid(2) cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(StateDirError::Owner { path: shown(), owner: meta.uid(), euid });
        }
        if meta.mode() & 0o022 != 0 {
            return Err(StateDirError::Writable { path: shown(), mode: meta.mode() & 0o7777 });
        }
        Ok(StateDir { path: path.to_owned(), fd, open_budget, open_journals: AtomicUsize::new(0) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A place for one more open journal, if the budget has one.
    pub(crate) fn open_slot(self: &Arc<Self>) -> Option<OpenSlot> {
        let taken = self.open_journals.fetch_add(1, Ordering::Relaxed);
        let slot = OpenSlot(self.clone());
        (taken < self.open_budget).then_some(slot)
    }

    /// Creates `name` afresh for writing; fails if anything, a link included, is there.
    pub(crate) fn create_new(&self, name: &CStr) -> io::Result<File> {
        self.open_at(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
    }

    /// Opens `name` to append to it.
    pub(crate) fn open_append(&self, name: &CStr) -> io::Result<File> {
        self.open_at(name, libc::O_WRONLY | libc::O_APPEND)
    }

    /// Opens `name` to read it; only a regular file is read (never a FIFO or a device).
    pub(crate) fn open_read(&self, name: &CStr) -> io::Result<File> {
        let file = self.open_at(name, libc::O_RDONLY | libc::O_NONBLOCK)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
        }
        Ok(file)
    }

    fn open_at(&self, name: &CStr, flags: libc::c_int) -> io::Result<File> {
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: openat(2) relative to our directory, on a NUL-terminated name.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), name.as_ptr(), flags, 0o600) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Renames `from` over `to`, both in this directory.
    pub(crate) fn rename(&self, from: &CStr, to: &CStr) -> io::Result<()> {
        let dir = self.fd.as_raw_fd();
        // SAFETY: renameat(2) within our directory, on NUL-terminated names.
        check(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) })
    }

    /// Removes `name` (a link itself, never what it points to); absent is fine.
    pub fn remove(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: unlinkat(2) within our directory, on a NUL-terminated name.
        match check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) }) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A file name or path as the C calls take it.
pub(crate) fn c_path(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_a_directory_of_our_own_that_nobody_else_writes_is_used() {
        let top = tempfile::tempdir().unwrap();
        let made = top.path().join("made/state");
        let dir = StateDir::open(&made, 4).expect("created when missing");
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let open = top.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(StateDir::open(&open, 4), Err(StateDirError::Writable { .. })));

        let link = top.path().join("link");
        std::os::unix::fs::symlink(&made, &link).unwrap();
        assert!(matches!(StateDir::open(&link, 4), Err(StateDirError::Symlink { .. })));

        let file = top.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(StateDir::open(&file, 4).is_err());
    }

    #[test]
    fn a_planted_link_is_never_followed() {
        let top = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&top.path().join("state"), 4).unwrap();
        let victim = top.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("planted")).unwrap();
        let name = c_path(b"planted").unwrap();
        assert!(dir.create_new(&name).is_err());
        assert!(dir.open_append(&name).is_err());
        assert!(dir.open_read(&name).is_err());
        dir.remove(&name).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn the_open_budget_is_given_back() {
        let top = tempfile::tempdir().unwrap();
        let dir = Arc::new(StateDir::open(&top.path().join("state"), 2).unwrap());
        let (a, b) = (dir.open_slot(), dir.open_slot());
        assert!(a.is_some() && b.is_some());
        assert!(dir.open_slot().is_none());
        drop(a);
        assert!(dir.open_slot().is_some());
    }
}
