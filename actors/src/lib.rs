//! dm-ulog-actors: the engine of dm-ulogd, the userspace dirty log for device-mapper mirrors.
//!
//! The kernel's mirror target asks its dirty log, for every write and every resync step,
//! which regions may differ between the mirror legs. With the `userspace` log type each such
//! call is a netlink-connector datagram; this crate answers them.
//!
//! Layers, lowest first (nothing points up):
//! - [`units`]: typed sectors, region sizes, indices and counts;
//! - [`wire`]: datagram bytes to typed requests and back, never panicking on any input;
//! - [`region`]: the dirty-log state machine, answering as the kernel's own logs do, and
//!   telling its observers (the committer, the shadow) what changed;
//! - [`store`]: the kernel's on-disk log format, the log device and its I/O thread, and the
//!   commit rules every disk log follows;
//! - [`shadow`]: each log's sync state in a runtime directory, to outlive a daemon crash;
//! - [`handover`]: what one engine leaves the next for a restart the kernel does not notice;
//! - [`transport`]: netlink connector, unix datagram socket or in-process channel;
//! - [`cluster`]: the clustered log's replicated state and messages and, with the `cluster`
//!   feature, corosync and the clustered log actor;
//! - the actors: one message for every log actor (`log_messages`), the routing table
//!   (`registry`), the core both log actors embed (`log_core`), the single-host log actor
//!   (`log_actor`), the socket actor routing to them; [`Engine`] starts them;
//! - [`metrics`]: what the actors count for operators (requests, errors, latencies);
//! - [`open_files`]: the process's descriptor limit, read and raised.

pub mod cluster;
pub mod handover;
pub mod metrics;
pub mod open_files;
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

pub use engine::{Engine, EngineConfig, HandOverError, Observer};
pub use status::{ClusterStatus, LogStatus};

#[cfg(feature = "sim")]
pub mod sim;
