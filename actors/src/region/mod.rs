//! The dirty-log state machine: what the kernel's own `core` and `disk` logs (dm-log.c)
//! answer, over roaring bitmaps instead of plain bit arrays.
//!
//! [`LogArgs`] is the CTR string, parsed; [`RegionLog`] is one log's state with one method per
//! request type. Both are synchronous and pure: persistence is [`crate::store`]'s job.

mod args;
mod change;
mod error;
mod log;
mod observer;

pub use args::{ArgsError, LogArgs, LogKind, SyncMode};
pub use change::Change;
pub use error::LogError;
pub use log::{RegionLog, ResumeFrom, ShadowSets};
pub use observer::RegionObserver;

/// The one rule of cleanliness, for every log type, single-host or clustered: a region is
/// clean when nobody holds a mark on it and it is in sync. A region out of sync is never
/// clean, so that no resume or reboot takes it for in sync ([`RegionLog`]'s header, finding C).
pub fn is_clean(marked: bool, in_sync: bool) -> bool {
    !marked && in_sync
}
