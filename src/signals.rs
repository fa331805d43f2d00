//! The signals the daemon answers, and what each means.
//!
//! A signal whose default action would end the process must never end it without the commit
//! that SIGTERM does (the kernel's mirrors wait on this daemon, and a disk log's last clears
//! would be lost), so every catchable terminating signal stops the daemon the same way.
//! SIGHUP reloads what can change live; SIGUSR1 writes every log's state to the log, as
//! cmirrord's users expect.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a signal asks of the daemon.
pub enum Asked {
    /// Stop as SIGTERM does; the signal's name.
    Stop(&'static str),
    /// SIGHUP: read the configuration again and apply what can change live.
    Reload,
    /// SIGUSR1: write every log's state to the log.
    Dump,
}

/// Signals whose default action ends the process.
const STOPPING: [(libc::c_int, &str); 11] = [
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
];

/// The daemon's signal handlers, installed for its whole life.
pub struct Signals {
    stopping: Vec<(Signal, &'static str)>,
    hangup: Signal,
    user1: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        let stopping = STOPPING
            .iter()
            .map(|(number, name)| Ok((signal(SignalKind::from_raw(*number))?, *name)))
            .collect::<std::io::Result<_>>()?;
        Ok(Signals {
            stopping,
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
        })
    }

    /// The next signal's request.
    pub async fn next(&mut self) -> Asked {
        let stop = std::future::poll_fn(|cx| {
            for (signal, name) in &mut self.stopping {
                if signal.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*name);
                }
            }
            std::task::Poll::Pending
        });
        tokio::select! {
            name = stop => Asked::Stop(name),
            _ = self.hangup.recv() => Asked::Reload,
            _ = self.user1.recv() => Asked::Dump,
        }
    }
}
