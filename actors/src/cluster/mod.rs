//! Clustered logs: `clustered-core` and `clustered-disk` served by the daemons of several
//! hosts that agree on one log state through corosync CPG.
//!
//! - [`state`]: the log as a replicated state machine, with marks per member;
//! - [`message`]: what members multicast, and its bytes;
//! - `replica`: one member's protocol (state transfer to joiners, views), without I/O;
//! - `cpg` and `quorum`: corosync, as the actor uses it;
//! - `actor`: the clustered log actor, which answers the kernel.
//!
//! The last four, and with them libcpg and libquorum, come with the `cluster` feature; the
//! state and the messages build (and are fuzzed) without them.

pub mod message;
pub mod state;

#[cfg(feature = "cluster")]
mod replica;

#[cfg(feature = "cluster")]
mod actor;
#[cfg(feature = "cluster")]
mod cpg;
#[cfg(feature = "cluster")]
mod quorum;

#[cfg(feature = "cluster")]
pub(crate) use actor::ClusterLogActor;
#[cfg(feature = "cluster")]
pub(crate) use quorum::Quorum;

/// What an engine serving clustered logs across hosts holds: corosync's quorum.
#[cfg(feature = "cluster")]
pub(crate) type Corosync = Quorum;

/// Without the `cluster` feature there is no corosync to hold: no value of this type exists.
#[cfg(not(feature = "cluster"))]
#[derive(Clone)]
pub(crate) enum Corosync {}

/// Corosync, if the engine is to serve clustered logs through it.
#[cfg(feature = "cluster")]
pub(crate) fn connect(wanted: bool) -> Option<Corosync> {
    wanted.then(Quorum::watch)
}

/// Corosync, if the engine is to serve clustered logs through it: never, in this build.
#[cfg(not(feature = "cluster"))]
pub(crate) fn connect(wanted: bool) -> Option<Corosync> {
    if wanted {
        tracing::error!(
            "corosync is set, but this build has no cluster feature: clustered logs are refused"
        );
    }
    None
}
