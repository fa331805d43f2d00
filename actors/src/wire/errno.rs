//! Positive errno values, as the protocol carries them.

use std::fmt;

/// An errno. The full reply carries it negated in `dm_ulog_request.error`; the zero-length ack
/// carries it positive in `cn_msg.ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ESRCH: Errno = Errno(libc::ESRCH);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const ENODEV: Errno = Errno(libc::ENODEV);

    /// The value of `dm_ulog_request.error` for this errno.
    pub fn negative(self) -> i32 {
        -self.0
    }

    /// The errno of an I/O error, EIO when it has none.
    pub fn from_io(err: &std::io::Error) -> Errno {
        Errno(err.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The symbolic name (`EINVAL`) of the errnos this daemon sends: its own, and those
    /// opening, reading or writing a log device can fail with; `None` for any other.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [(i32, &str); 20] = [
            (libc::EPERM, "EPERM"),
            (libc::ENOENT, "ENOENT"),
            (libc::ESRCH, "ESRCH"),
            (libc::EIO, "EIO"),
            (libc::ENXIO, "ENXIO"),
            (libc::EAGAIN, "EAGAIN"),
            (libc::ENOMEM, "ENOMEM"),
            (libc::EACCES, "EACCES"),
            (libc::ENOTBLK, "ENOTBLK"),
            (libc::EBUSY, "EBUSY"),
            (libc::ENODEV, "ENODEV"),
            (libc::ENOTDIR, "ENOTDIR"),
            (libc::EISDIR, "EISDIR"),
            (libc::EINVAL, "EINVAL"),
            (libc::ENFILE, "ENFILE"),
            (libc::EMFILE, "EMFILE"),
            (libc::ENOSPC, "ENOSPC"),
            (libc::EROFS, "EROFS"),
            (libc::ELOOP, "ELOOP"),
            (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        ];
        NAMES.iter().find(|(value, _)| *value == self.0).map(|(_, name)| *name)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.0);
        write!(f, "-{} ({})", self.0, text.kind())
    }
}
