//! [`Change`]: one change to the state a log's shadow keeps (see [`crate::shadow`]).
//!
//! A daemon killed under a live mirror must come back with the sync state the kernel believes
//! it has, because the kernel does not ask again (tests/kernel/README.md, finding B). So the
//! log reports each change of its sync and recovering sets, and of a disk log's dirty set, for
//! the log actor to journal before the reply that makes the kernel rely on it.

/// A change to the state a shadow keeps; regions are bitmap indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// SET_REGION_SYNC(1): in sync, no longer recovering.
    InSync(u32),
    /// SET_REGION_SYNC(0): out of sync, no longer recovering.
    OutOfSync(u32),
    /// GET_RESYNC_WORK handed the region out.
    Recovering(u32),
    /// A disk log's regions newly marked: their mark may not be on the device yet, and the
    /// kernel, which already has the MARK reply, retries only the FLUSH after a reconnect.
    Marked(Vec<u32>),
    /// A disk log's regions newly cleared. Kept so that the shadow's dirty set is exact: a
    /// region dirty in the shadow but long cleared would be written dirty at the reconnect
    /// and resynced, needlessly, at the next resume.
    Cleared(Vec<u32>),
}
