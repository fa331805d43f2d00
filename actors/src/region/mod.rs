//! The dirty-log state machine: what the kernel's own `core` and `disk` logs (dm-log.c)
//! answer, over roaring bitmaps instead of plain bit arrays.
//!
//! [`LogArgs`] is the CTR string, parsed; [`RegionLog`] is one log's state with one method per
//! request type. Both are synchronous and pure: persistence is [`crate::store`]'s job.

mod args;
mod change;
mod error;
mod log;

pub use args::{ArgsError, LogArgs, LogKind, SyncMode};
pub use change::Change;
pub use error::LogError;
pub use log::{RegionLog, ShadowSets};
