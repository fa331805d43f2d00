//! Whether this node's partition has quorum, as corosync's quorum service says.
//!
//! CPG does not stop a partition without quorum from multicasting and delivering among
//! itself, so a daemon that changed log state there would diverge from the majority. A
//! thread keeps [`Quorum::is_quorate`] current from the service's notifications (and
//! reconnects when corosync restarts); log actors read it before sending any change.
//!
//! The flag belongs to the engine that started the watcher, lent to corosync as the
//! connection's context (its callback takes no other), so engines in one process keep their
//! own. The thread ends once the last [`Quorum`] is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rust_corosync::{quorum, DispatchFlags, NodeId, TrackFlags};

/// How long the watcher waits between attempts to reach corosync.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// How often a watcher with nothing to dispatch checks that its engine still wants it.
const OWNER_CHECK: Duration = Duration::from_secs(1);

/// The node's quorum, kept current by a watcher thread: whether this node's partition has
/// quorum, read by every clustered log of one engine. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Quorum(Arc<AtomicBool>);

impl Quorum {
    /// Starts the watcher. Until corosync answers, the node counts as without quorum.
    pub(crate) fn watch() -> Quorum {
        let quorate = Arc::new(AtomicBool::new(false));
        let owner = Arc::downgrade(&quorate);
        std::thread::Builder::new()
            .name("quorum".into())
            .spawn(move || {
                // Said once per outage, not at every attempt.
                let mut outage_reported = false;
                while let Some(quorate) = owner.upgrade() {
                    let Err(error) = follow(&quorate, &owner, &mut outage_reported) else {
                        return;
                    };
                    if !outage_reported {
                        tracing::warn!(
                            ?error,
                            "corosync's quorum service unreachable (is corosync running?): \
                             clustered logs hold their requests until it is"
                        );
                        outage_reported = true;
                    }
                    set_quorate(&quorate, false);
                    drop(quorate);
                    std::thread::sleep(RECONNECT_DELAY);
                }
            })
            .expect("spawning the quorum watcher");
        Quorum(quorate)
    }

    pub(crate) fn is_quorate(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Follows the quorum service: `Ok` once the engine has dropped its [`Quorum`], `Err` (why)
/// when corosync went away.
fn follow(
    quorate: &Arc<AtomicBool>,
    owner: &Weak<AtomicBool>,
    outage_reported: &mut bool,
) -> Result<(), rust_corosync::CsError> {
    let model = quorum::ModelData::ModelV1(quorum::Model1Data {
        flags: quorum::Model1Flags::None,
        quorum_notification_fn: Some(on_quorum),
        nodelist_notification_fn: None,
    });
    // The context is the flag; `quorate` keeps it alive for as long as the handle can
    // dispatch (the handle is dropped, and finalized, before this function returns).
    // (Set after initialize: rust-corosync 3.2's initialize passes the address of its
    // argument, not the value, as the context.)
    let (handle, _) = quorum::initialize(&model, 0)?;
    quorum::context_set(&handle, Arc::as_ptr(quorate) as u64)?;
    *outage_reported = false;
    let fd = quorum::fd_get(&handle)?;
    quorum::trackstart(&handle, TrackFlags::Changes)?;
    set_quorate(quorate, quorum::getquorate(&handle)?);
    let timeout = OWNER_CHECK.as_millis() as libc::c_int;
    // Our own `quorate` counts one: the engine's are the others.
    while owner.strong_count() > 1 {
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call. A corosync that goes away
        // hangs the socket up, which ends the wait as an event would.
        if unsafe { libc::poll(&mut poll, 1, timeout) } > 0 {
            quorum::dispatch(&handle, DispatchFlags::All)?;
        }
    }
    Ok(())
}

fn on_quorum(handle: &quorum::Handle, quorate: bool, _: quorum::RingId, _: Vec<NodeId>) {
    let Ok(context) = quorum::context_get(handle) else { return };
    // SAFETY: the context is the flag `follow` lent at initialize and keeps alive while
    // it dispatches, and only its dispatch calls this.
    let flag = unsafe { &*(context as *const AtomicBool) };
    set_quorate(flag, quorate);
}

fn set_quorate(flag: &AtomicBool, quorate: bool) {
    if flag.swap(quorate, Ordering::SeqCst) != quorate {
        tracing::info!(quorate, "cluster quorum");
    }
}
