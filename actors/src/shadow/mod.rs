//! A log's shadow: its sync state, kept in a runtime directory so that it outlives a crash
//! of the daemon but not a reboot, exactly as long as the kernel that relies on it.
//!
//! Why: after a daemon restart the kernel replays CTR and RESUME, but it keeps its own idea
//! of the log. Kernel 6.1 sets `in_sync_hint = region_count` once the sync count reaches the
//! region count and then asks for no resync work until a real resume; so a new daemon that
//! starts a core log all out of sync, or a disk log from its dirty bits, leaves the mirror
//! stalled below N/N with writes to one leg only (tests/kernel/README.md, finding B). The
//! kernel survives a daemon crash, so the daemon's state must survive it too.
//!
//! How: one file per log in the state directory (`state_dir`, default `/run/dm-ulogd/state`,
//! a tmpfs): a snapshot, then a journal of changes appended before the reply that makes the
//! kernel rely on each (no fsync: tmpfs, and only a daemon crash is covered). I/O follows the
//! changes: a healthy mirror's writes to an in-sync core log change nothing kept. The file
//! is rewritten as one snapshot at every RESUME and when the journal outgrows the snapshot.
//! On a CTR that the kernel sends to reconnect (its string ends with a NUL) the log takes the
//! shadow back if the uuid, luid and CTR string match. DTR removes it; a SIGTERM does not,
//! since the kernel still holds the mirrors. A write that fails (state_dir full, no
//! descriptor left) removes the file, so that no stale shadow is ever taken back, and the
//! next change writes it afresh. The directory is checked and used as [`dir`] says.

pub mod dir;
pub mod format;

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::fnv::fnv1a;
use crate::region::{Change, RegionLog, ShadowSets};
use crate::wire::LogKey;
use dir::{c_path, OpenSlot};
pub use dir::{StateDir, StateDirError};
pub use format::{Owner, Replayed, Unusable};

/// The journal is compacted once it is this much larger than its snapshot, and never below
/// [`MIN_COMPACT_BYTES`]: a resync of a million regions then costs a rewrite per many
/// thousand changes.
const COMPACT_FACTOR: u64 = 4;
const MIN_COMPACT_BYTES: u64 = 64 * 1024;

/// The shadow file's name of `key`, without its extension.
fn file_stem(key: &LogKey) -> String {
    format!("{:016x}-{:016x}", key.luid, fnv1a(key.uuid.as_bytes()))
}

/// How many shadows in `dir` belong to none of `served`: logs the kernel has not reconnected
/// since the last daemon stopped (or crashed), or whose tables went while no daemon ran.
pub fn waiting(dir: &std::path::Path, served: &[LogKey]) -> usize {
    let served: std::collections::HashSet<String> =
        served.iter().map(|key| format!("{}.shadow", file_stem(key))).collect();
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".shadow") && !served.contains(name))
        .count()
}

/// Why the shadow found at a reconnect was not taken back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("shadow {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("shadow {path}: {why}")]
    Unusable { path: String, why: Unusable },
}

/// One log's shadow file.
#[derive(Debug)]
pub struct Shadow {
    dir: Arc<StateDir>,
    name: CString,
    /// The name a new snapshot is written under before it is renamed over `name`.
    aside: CString,
    journal: Journal,
    /// Bytes in the file since its snapshot was written.
    written: u64,
    /// The size past which the next append compacts.
    compact_at: u64,
    /// What the log reported since the last write: the next record's changes.
    pending: Vec<Change>,
}

/// Where the next journal record goes.
#[derive(Debug)]
enum Journal {
    /// No file (none yet, or removed after a failed write): the next change writes a snapshot.
    Missing,
    /// The file, kept open so that a record costs one write(2).
    Open(std::fs::File, OpenSlot),
    /// The file, opened for each record: the descriptor budget is spent on other logs.
    Closed,
}

impl Shadow {
    /// The shadow of `key` in `dir`. The file is named after the luid and a hash of the uuid
    /// (a uuid may hold any byte and be 128 long); the snapshot holds both in full.
    pub fn new(dir: Arc<StateDir>, key: &LogKey) -> Shadow {
        let stem = file_stem(key);
        let name = |ext: &str| c_path(format!("{stem}.{ext}").as_bytes()).expect("no NUL");
        Shadow {
            dir,
            name: name("shadow"),
            aside: name("new"),
            journal: Journal::Missing,
            written: 0,
            compact_at: MIN_COMPACT_BYTES,
            pending: Vec::new(),
        }
    }

    /// Where the file is, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(self.name.to_string_lossy().as_ref())
    }

    /// What the shadow holds for `owner`; `Ok(None)` when there is none.
    pub fn load(&self, owner: Owner<'_>, region_count: u32) -> Result<Option<Replayed>, LoadError> {
        let path = self.path().display().to_string();
        let mut bytes = Vec::new();
        match self.dir.open_read(&self.name).and_then(|mut f| f.read_to_end(&mut bytes)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LoadError::Io { path, source }),
        }
        format::replay(&bytes, owner, region_count)
            .map(Some)
            .map_err(|why| LoadError::Unusable { path, why })
    }

    /// Writes the log's whole kept state as a new file (written aside, then renamed over).
    /// On failure the file is removed: a stale shadow must not be found by the next daemon.
    pub fn save(&mut self, owner: Owner<'_>, log: &RegionLog) -> io::Result<()> {
        self.save_sets(owner, &log.shadow_sets())
    }

    /// As [`Shadow::save`], with a core log's marks too: for the next daemon of a handover
    /// ([`crate::handover`]), whom the kernel will ask about them without a reconnect.
    pub fn save_carried(&mut self, owner: Owner<'_>, log: &RegionLog) -> io::Result<()> {
        self.save_sets(owner, &log.carried_sets())
    }

    fn save_sets(&mut self, owner: Owner<'_>, sets: &ShadowSets) -> io::Result<()> {
        self.pending.clear();
        self.write_snapshot(owner, sets).inspect_err(|_| self.remove_after_failure())
    }

    /// Where the log reports the changes this shadow is to journal (its
    /// [`RegionObserver`](crate::region::RegionObserver)).
    pub(crate) fn pending(&mut self) -> &mut Vec<Change> {
        &mut self.pending
    }

    /// Whether the log reported anything since the last write.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Journals what the log reported since the last write.
    pub fn journal(&mut self, owner: Owner<'_>, log: &RegionLog) -> io::Result<()> {
        let changes = std::mem::take(&mut self.pending);
        self.append(owner, log, &changes)
    }

    fn write_snapshot(&mut self, owner: Owner<'_>, sets: &ShadowSets) -> io::Result<()> {
        let bytes = format::snapshot(owner, sets);
        // The open journal's descriptor goes first: it may be the one the new file needs.
        let slot = match std::mem::replace(&mut self.journal, Journal::Missing) {
            Journal::Open(_, slot) => Some(slot),
            _ => self.dir.open_slot(),
        };
        self.dir.remove(&self.aside)?;
        let mut file = self.dir.create_new(&self.aside)?;
        file.write_all(&bytes)?;
        self.dir.rename(&self.aside, &self.name)?;
        // The open file follows the rename: later records land in the file now in place.
        self.journal = match slot {
            Some(slot) => Journal::Open(file, slot),
            None => Journal::Closed,
        };
        self.written = bytes.len() as u64;
        self.compact_at = MIN_COMPACT_BYTES.max(COMPACT_FACTOR * bytes.len() as u64);
        Ok(())
    }

    /// Journals `changes`; starts a new file instead when there is none or the journal has
    /// grown past its bound. On failure the file is removed, as [`Shadow::save`] says.
    pub fn append(
        &mut self,
        owner: Owner<'_>,
        log: &RegionLog,
        changes: &[Change],
    ) -> io::Result<()> {
        let records = format::changes(changes);
        if matches!(self.journal, Journal::Missing)
            || self.written + records.len() as u64 > self.compact_at
        {
            return self.save(owner, log);
        }
        let appended = match &mut self.journal {
            Journal::Open(file, _) => file.write_all(&records),
            _ => self.dir.open_append(&self.name).and_then(|mut file| file.write_all(&records)),
        };
        match appended {
            Ok(()) => {
                self.written += records.len() as u64;
                Ok(())
            }
            Err(error) => {
                self.remove_after_failure();
                Err(error)
            }
        }
    }

    /// Removes the file: DTR, or a new table that must not inherit a stale one.
    pub fn discard(&mut self) -> io::Result<()> {
        self.journal = Journal::Missing;
        self.dir.remove(&self.name)
    }

    fn remove_after_failure(&mut self) {
        // Whatever is left of it is not current; if even removing fails, the uuid, luid and
        // CTR string still keep it from any other log, and a real RESUME rewrites it.
        let _ = self.discard();
        let _ = self.dir.remove(&self.aside);
    }
}

#[cfg(test)]
mod tests;
