//! Whether this node's partition has quorum, as corosync's quorum service says.
//!
//! CPG does not stop a partition without quorum from multicasting and delivering among
//! itself, so a daemon that changed log state there would diverge from the majority. A
//! thread keeps [`Quorum::is_quorate`] current from the service's notifications (and
//! reconnects when corosync restarts); log actors read it before sending any change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rust_corosync::{quorum, DispatchFlags, NodeId, TrackFlags};

/// How long the watcher waits between attempts to reach corosync.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Whether this node's partition has quorum: written by the watcher thread (through
/// corosync's callback, which takes no context), read by every clustered log.
static QUORATE: AtomicBool = AtomicBool::new(false);

/// The node's quorum, kept current by a watcher thread. Cheap to clone.
#[derive(Clone)]
pub struct Quorum(());

impl Quorum {
    /// Starts the watcher. Until corosync answers, the node counts as without quorum.
    pub fn watch() -> Quorum {
        std::thread::Builder::new()
            .name("quorum".into())
            .spawn(|| {
                // Said once per outage, not at every attempt.
                let mut outage_reported = false;
                loop {
                    let error = follow(&mut outage_reported);
                    if !outage_reported {
                        tracing::warn!(
                            ?error,
                            "corosync's quorum service unreachable (is corosync running?): \
                             clustered logs hold their requests until it is"
                        );
                        outage_reported = true;
                    }
                    set_quorate(false);
                    std::thread::sleep(RECONNECT_DELAY);
                }
            })
            .expect("spawning the quorum watcher");
        Quorum(())
    }

    pub fn is_quorate(&self) -> bool {
        QUORATE.load(Ordering::SeqCst)
    }
}

/// Follows the quorum service until it goes away, and says why.
fn follow(outage_reported: &mut bool) -> rust_corosync::CsError {
    match try_follow(outage_reported) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

fn try_follow(
    outage_reported: &mut bool,
) -> Result<std::convert::Infallible, rust_corosync::CsError> {
    let model = quorum::ModelData::ModelV1(quorum::Model1Data {
        flags: quorum::Model1Flags::None,
        quorum_notification_fn: Some(on_quorum),
        nodelist_notification_fn: None,
    });
    let (handle, _) = quorum::initialize(&model, 0)?;
    *outage_reported = false;
    let fd = quorum::fd_get(&handle)?;
    quorum::trackstart(&handle, TrackFlags::Changes)?;
    set_quorate(quorum::getquorate(&handle)?);
    loop {
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call. A corosync that goes away
        // hangs the socket up, which ends the wait as an event would.
        if unsafe { libc::poll(&mut poll, 1, -1) } > 0 {
            quorum::dispatch(&handle, DispatchFlags::All)?;
        }
    }
}

fn on_quorum(_: &quorum::Handle, quorate: bool, _: quorum::RingId, _: Vec<NodeId>) {
    set_quorate(quorate);
}

fn set_quorate(quorate: bool) {
    if QUORATE.swap(quorate, Ordering::SeqCst) != quorate {
        tracing::info!(quorate, "cluster quorum");
    }
}
