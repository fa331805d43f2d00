//! dm-ulog-actors: the engine of dm-ulogd, the userspace dirty log for device-mapper mirrors.
//!
//! The kernel's mirror target asks its dirty log, for every write and every resync step,
//! which regions may differ between the mirror legs. With the `userspace` log type each such
//! call is a netlink-connector datagram; this crate answers them.
//!
//! Layers, lowest first (nothing points up):
//! - [`units`]: typed sectors, region sizes, indices and counts;
//! - [`wire`]: datagram bytes to typed requests and back, never panicking on any input;
//! - [`region`]: the dirty-log state machine, answering as the kernel's own logs do;
//! - [`store`]: the kernel's on-disk log format and its durable, block-granular commits;
//! - [`shadow`]: each log's sync state in a runtime directory, to outlive a daemon crash;
//! - [`transport`]: netlink connector, unix datagram socket or in-process channel;
//! - the actors: a socket actor routing to one log actor per log, each disk log with a
//!   flusher (its I/O thread); [`Engine`] starts them;
//! - [`cluster`]: the clustered log types, one state kept alike on several hosts over
//!   corosync CPG;
//! - [`metrics`]: what the actors count for operators (requests, errors, latencies).

pub mod cluster;
pub mod metrics;
pub mod region;
pub mod shadow;
pub mod store;
pub mod transport;
pub mod units;
pub mod wire;

mod engine;
mod fnv;
mod log_actor;
mod log_core;
mod log_messages;
mod registry;
mod reply_to;
mod services;
mod socket_actor;
mod status;

pub use engine::{Engine, EngineConfig, Observer};
pub use status::{ClusterStatus, LogStatus};

#[cfg(feature = "sim")]
pub mod sim;
