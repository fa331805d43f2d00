//! Keeping the transport's socket across a planned restart or an upgrade, so that the kernel
//! never finds the daemon gone ([`dm_ulog_actors::handover`] says what the engine carries).
//!
//! The socket reaches the next daemon by the protocol systemd uses for socket activation:
//! descriptor 3 on, `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`, the socket named
//! [`FD_NAME`]. Two ways lead there:
//! - under systemd (`$NOTIFY_SOCKET`), a stopping daemon stores the socket in the service's
//!   file-descriptor store (`FDSTORE=1`, the unit's `FileDescriptorStoreMax=`), and systemd
//!   hands it to the instance it starts next; a stop that is no restart flushes the store;
//! - `dm-ulogd upgrade` (any supervisor, or none): the daemon executes its binary again (the
//!   path it was started from, so a new version installed there) in the same process, the
//!   socket inherited. If that exec fails, the daemon takes its own handover back and serves on.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The name the socket goes by in `LISTEN_FDNAMES` and in the fd store.
pub const FD_NAME: &str = "transport";
/// The first descriptor passed, as sd_listen_fds(3) says.
const FIRST_FD: RawFd = 3;

/// The socket a previous daemon (through systemd, or by exec) passed to this process, taken
/// out of the environment's `LISTEN_*` variables when they are meant for this process.
/// Every passed descriptor is made close-on-exec, so that none leaks further.
pub fn inherited_socket() -> Result<Option<OwnedFd>, String> {
    let passed =
        sd_notify::listen_fds_with_names().map_err(|e| format!("passed descriptors: {e}"))?;
    let mut socket = None;
    for (fd, name) in passed {
        if name == FD_NAME && socket.is_none() {
            // SAFETY: the descriptor was passed to this process and nothing else here owns it.
            socket = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        } else {
            tracing::warn!(fd, name, "a passed descriptor not named {FD_NAME:?} is left alone");
        }
    }
    Ok(socket)
}

/// Stores `socket` in systemd's fd store of this service; false when not under systemd.
pub fn store_with_systemd(socket: &OwnedFd) -> bool {
    use crate::notify::NotifyState;
    let states = [NotifyState::FdStore, NotifyState::FdName(FD_NAME)];
    crate::notify::notify_with_fd(&states, socket.as_fd())
}

/// The binary and arguments this daemon was started with, for the exec of an upgrade.
pub struct Invocation {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Invocation {
    /// Taken at the start: the path then names the binary, and later names whatever an
    /// upgrade installed there (`/proc/self/exe` would name the old, deleted one).
    pub fn current() -> io::Result<Invocation> {
        Ok(Invocation { program: std::env::current_exe()?, args: std::env::args_os().collect() })
    }

    /// Whether the binary may be executed as the daemon: a regular file, executable, owned by
    /// root or by this daemon's user, and writable by no one else. Checked before anything
    /// is handed over, so that a refusal leaves the daemon serving as it was.
    pub fn check(&self) -> Result<(), String> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = self.program.display();
        let meta = std::fs::metadata(&self.program).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: geteuid(2) cannot fail.
        let euid = unsafe { libc::geteuid() };
        let mode = meta.permissions().mode();
        if !meta.is_file() {
            Err(format!("{path} is not a regular file"))
        } else if meta.uid() != 0 && meta.uid() != euid {
            Err(format!(
                "{path} belongs to uid {}, neither root nor this daemon's uid {euid}",
                meta.uid()
            ))
        } else if mode & 0o022 != 0 {
            Err(format!("{path} has mode {:o}: group or others may write it", mode & 0o7777))
        } else if mode & 0o100 == 0 {
            Err(format!("{path} is not executable by its owner"))
        } else {
            Ok(())
        }
    }

    /// Executes the binary again, `socket` passed as descriptor 3; returns only if the exec
    /// failed, with descriptor 3 as it was.
    pub fn exec(&self, socket: &OwnedFd) -> io::Error {
        let c = |bytes: &[u8]| CString::new(bytes).map_err(io::Error::other);
        let built = (|| {
            let program = c(self.program.as_os_str().as_bytes())?;
            let args = self.args.iter().map(|a| c(a.as_bytes())).collect::<io::Result<Vec<_>>>()?;
            let mut env = std::env::vars_os()
                .filter(|(name, _)| !name.as_bytes().starts_with(b"LISTEN_"))
                .map(|(name, value)| c(&[name.as_bytes(), b"=", value.as_bytes()].concat()))
                .collect::<io::Result<Vec<_>>>()?;
            env.push(c(format!("LISTEN_PID={}", std::process::id()).as_bytes())?);
            env.push(c(b"LISTEN_FDS=1")?);
            env.push(c(format!("LISTEN_FDNAMES={FD_NAME}").as_bytes())?);
            Ok::<_, io::Error>((program, args, env))
        })();
        let (program, args, env) = match built {
            Ok(built) => built,
            Err(error) => return error,
        };
        let pointers = |strings: &[CString]| {
            let mut p: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        let (argv, envp) = (pointers(&args), pointers(&env));
        let moved = match Fd3::take(socket.as_raw_fd()) {
            Ok(moved) => moved,
            Err(error) => return error,
        };
        // SAFETY: NUL-terminated strings and NULL-terminated arrays, alive across the call.
        unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let error = io::Error::last_os_error();
        moved.restore();
        error
    }
}

/// Descriptor 3 given to the socket (not close-on-exec) for an exec, and what it was before,
/// to put back if the exec fails.
struct Fd3 {
    /// A close-on-exec copy of what descriptor 3 was, if it was open and not the socket.
    saved: Option<RawFd>,
    socket: RawFd,
}

impl Fd3 {
    fn take(socket: RawFd) -> io::Result<Fd3> {
        let check = |rc: libc::c_int| if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) };
        // SAFETY: fcntl(2) and dup2(2) on descriptor numbers; a closed one fails with EBADF.
        unsafe {
            let saved = match socket == FIRST_FD {
                true => None,
                false => match libc::fcntl(FIRST_FD, libc::F_DUPFD_CLOEXEC, 10) {
                    -1 => None,
                    saved => Some(saved),
                },
            };
            if socket == FIRST_FD {
                check(libc::fcntl(FIRST_FD, libc::F_SETFD, 0))?;
            } else {
                check(libc::dup2(socket, FIRST_FD))?;
            }
            Ok(Fd3 { saved, socket })
        }
    }

    fn restore(self) {
        // SAFETY: as in `take`, on the descriptors it made.
        unsafe {
            match self.saved {
                Some(saved) => {
                    libc::dup2(saved, FIRST_FD);
                    libc::close(saved);
                }
                None if self.socket == FIRST_FD => {
                    libc::fcntl(FIRST_FD, libc::F_SETFD, libc::FD_CLOEXEC);
                }
                None => {
                    libc::close(FIRST_FD);
                }
            }
        }
    }
}
