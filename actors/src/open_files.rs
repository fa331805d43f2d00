//! The process's limit of open file descriptors (RLIMIT_NOFILE), read and raised in one
//! place: the daemon raises it to the hard limit at start, the engine sizes its cache of
//! open shadow journals by it, and the metrics report it.

use std::io;

fn read() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) fills the rlimit it is given.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => Ok(limit),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The soft limit: how many descriptors this process may have open now.
pub fn soft_limit() -> io::Result<u64> {
    read().map(|limit| limit.rlim_cur)
}

/// Raises the soft limit to the hard one (thousands of logs take a descriptor or two each).
pub fn raise_to_hard_limit() -> io::Result<()> {
    let mut limit = read()?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit(2) reads the rlimit it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
