//! One daemon per state directory: a second one started on the same sockets and state_dir
//! would replace the first one's sockets and leave it running, unreachable, beside it.
//!
//! The lock is an `flock` on `dm-ulogd.lock` in the state directory, holding the owner's pid
//! so that the second daemon can name it. The kernel drops the lock with the process, so a
//! daemon killed with -9 leaves nothing that blocks its successor.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Held for the daemon's life.
pub struct InstanceLock {
    _file: File,
}

/// Why the lock was not taken.
pub enum NotLocked {
    /// Another daemon holds it: its pid, as it wrote it.
    Held(String),
    /// The lock file could not be used.
    Io(io::Error),
}

impl InstanceLock {
    /// Takes the lock in `state_dir` (created 0700 if missing).
    pub fn take(state_dir: &Path) -> Result<InstanceLock, NotLocked> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(NotLocked::Io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(state_dir.join("dm-ulogd.lock"))
            .map_err(NotLocked::Io)?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(NotLocked::Io(error));
            }
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(NotLocked::Held(pid.trim().to_owned()));
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        written.map_err(NotLocked::Io)?;
        Ok(InstanceLock { _file: file })
    }
}
