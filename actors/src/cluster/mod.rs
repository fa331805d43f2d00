//! Clustered logs: `clustered-core` and `clustered-disk` served by the daemons of several
//! hosts that agree on one log state through corosync CPG.
//!
//! - [`state`]: the log as a replicated state machine, with marks per member;
//! - [`message`]: what members multicast, and its bytes;
//! - [`replica`]: one member's protocol (state transfer to joiners, views), without I/O;
//! - `cpg` and `quorum`: corosync, as the actor uses it;
//! - `actor`: the clustered log actor, which answers the kernel.

pub mod message;
pub mod replica;
pub mod state;

mod actor;
mod cpg;
mod quorum;

pub use actor::ClusterLogActor;
pub use quorum::Quorum;
