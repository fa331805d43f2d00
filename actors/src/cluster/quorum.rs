//! Whether this node's partition has quorum, as corosync's quorum service says.
//!
//! CPG does not stop a partition without quorum from multicasting and delivering among
//! itself, so a daemon that changed log state there would diverge from the majority. A
//! thread keeps [`Quorum::is_quorate`] current from the service's notifications (and
//! reconnects when corosync restarts); log actors read it before sending any change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rust_corosync::{quorum, DispatchFlags, NodeId, TrackFlags};

/// How long the watcher waits between attempts to reach corosync.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The node's quorum, kept current by a watcher thread. Cheap to clone.
#[derive(Clone)]
pub struct Quorum {
    quorate: Arc<AtomicBool>,
}

static QUORATE: AtomicBool = AtomicBool::new(false);

impl Quorum {
    /// Starts the watcher. Until corosync answers, the node counts as without quorum.
    pub fn watch() -> Quorum {
        let quorate = Arc::new(AtomicBool::new(false));
        let shared = quorate.clone();
        std::thread::Builder::new()
            .name("quorum".into())
            .spawn(move || {
                // Said once per outage, not at every attempt.
                let mut outage_reported = false;
                loop {
                    let error = follow(&shared, &mut outage_reported);
                    if !outage_reported {
                        tracing::warn!(
                            ?error,
                            "corosync's quorum service unreachable (is corosync running?): \
                             clustered logs hold their requests until it is"
                        );
                        outage_reported = true;
                    }
                    shared.store(false, Ordering::SeqCst);
                    std::thread::sleep(RECONNECT_DELAY);
                }
            })
            .expect("spawning the quorum watcher");
        Quorum { quorate }
    }

    pub fn is_quorate(&self) -> bool {
        self.quorate.load(Ordering::SeqCst)
    }
}

/// Follows the quorum service until it goes away, and says why.
fn follow(quorate: &AtomicBool, outage_reported: &mut bool) -> rust_corosync::CsError {
    match try_follow(quorate, outage_reported) {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

fn try_follow(
    quorate: &AtomicBool,
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
    let now = quorum::getquorate(&handle)?;
    QUORATE.store(now, Ordering::SeqCst);
    let mut reported = None;
    loop {
        let current = QUORATE.load(Ordering::SeqCst);
        quorate.store(current, Ordering::SeqCst);
        if reported != Some(current) {
            tracing::info!(quorate = current, "cluster quorum");
            reported = Some(current);
        }
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, 1000) };
        if ready > 0 {
            quorum::dispatch(&handle, DispatchFlags::All)?;
        }
    }
}

fn on_quorum(_: &quorum::Handle, quorate: bool, _: quorum::RingId, _: Vec<NodeId>) {
    QUORATE.store(quorate, Ordering::SeqCst);
}
