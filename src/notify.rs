//! systemd's notification protocol (sd_notify(3), through the sd-notify crate): READY,
//! STOPPING, STATUS, WATCHDOG and FDSTORE to `$NOTIFY_SOCKET` when the service runs as
//! Type=notify. Without that variable (not under systemd) nothing is sent.

use std::os::fd::BorrowedFd;

pub use sd_notify::NotifyState;

/// Sends `states` to systemd, if systemd is listening; a failure is said, not fatal.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, states = ?states, "systemd notification not sent");
    }
}

/// Sends `states` with `fd` attached; false when not under systemd or the message did not go.
pub fn notify_with_fd(states: &[NotifyState<'_>], fd: BorrowedFd<'_>) -> bool {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return false;
    }
    match sd_notify::notify_with_fds(states, &[fd]) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, states = ?states, "systemd notification not sent");
            false
        }
    }
}
