//! systemd's readiness protocol: `READY=1`, `STOPPING=1` and `FDSTORE=1` (with the descriptor
//! to store) to `$NOTIFY_SOCKET`, when the service runs as Type=notify. Without that
//! variable (not under systemd) it does nothing.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

/// Sends one state line to systemd, if systemd is listening.
pub fn notify(state: &str) {
    send(state, None);
}

/// Sends one state line with a descriptor attached; false when not under systemd or the
/// message did not go.
pub fn notify_with_fd(state: &str, fd: RawFd) -> bool {
    send(state, Some(fd))
}

fn send(state: &str, fd: Option<RawFd>) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    match send_to(path.as_bytes(), state.as_bytes(), fd) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, state, "systemd notification not sent");
            false
        }
    }
}

/// One datagram to the socket at `path` (a leading '@' names one in the abstract namespace),
/// with `fd` passed as SCM_RIGHTS.
fn send_to(path: &[u8], message: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    // SAFETY: sockaddr_un is plain bytes, for which zeroes are valid.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.is_empty() || path.len() >= address.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET too long or empty"));
    }
    for (to, from) in address.sun_path.iter_mut().zip(path) {
        *to = *from as libc::c_char;
    }
    if path[0] == b'@' {
        address.sun_path[0] = 0;
    }
    let address_len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + path.len();
    // Room for one descriptor's control message, aligned as cmsghdr wants.
    let mut control = [0u64; 4];
    let mut iov = libc::iovec { iov_base: message.as_ptr() as *mut _, iov_len: message.len() };
    // SAFETY: msghdr is plain fields, for which zeroes are valid; every pointer set below
    // points at a live local of the right size, and the CMSG macros stay inside `control`.
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_name = std::ptr::from_mut(&mut address).cast();
        header.msg_namelen = address_len as libc::socklen_t;
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        if let Some(fd) = fd {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
        let socket = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err(io::Error::last_os_error());
        }
        let sent = libc::sendmsg(socket, &header, libc::MSG_NOSIGNAL);
        let error = io::Error::last_os_error();
        libc::close(socket);
        if sent < 0 {
            return Err(error);
        }
    }
    Ok(())
}
