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
//! since the kernel still holds the mirrors.

pub mod format;

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::fnv::fnv1a;
use crate::region::{Change, RegionLog};
use crate::wire::LogKey;
pub use format::{Owner, Replayed, Unusable};

/// The journal is compacted once it is this much larger than its snapshot, and never below
/// [`MIN_COMPACT_BYTES`]: a resync of a million regions then costs a rewrite per many
/// thousand changes.
const COMPACT_FACTOR: u64 = 4;
const MIN_COMPACT_BYTES: u64 = 64 * 1024;

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
    path: PathBuf,
    /// The file as last written, kept open so that a journal record costs one write(2), not
    /// an open, a write and a close; `None` before the first snapshot.
    file: Option<std::fs::File>,
    /// Bytes in the file since its snapshot was written.
    written: u64,
    /// The size past which the next append compacts.
    compact_at: u64,
}

impl Shadow {
    /// The shadow of `key` in `dir`. The file is named after the luid and a hash of the uuid
    /// (a uuid may hold any byte and be 128 long); the snapshot holds both in full.
    pub fn new(dir: &Path, key: &LogKey) -> Shadow {
        let name = format!("{:016x}-{:016x}.shadow", key.luid, fnv1a(key.uuid.as_bytes()));
        Shadow { path: dir.join(name), file: None, written: 0, compact_at: MIN_COMPACT_BYTES }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the shadow holds for `owner`; `Ok(None)` when there is none.
    pub fn load(&self, owner: Owner<'_>, region_count: u32) -> Result<Option<Replayed>, LoadError> {
        let path = self.path.display().to_string();
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LoadError::Io { path, source }),
        };
        format::replay(&bytes, owner, region_count)
            .map(Some)
            .map_err(|why| LoadError::Unusable { path, why })
    }

    /// Writes the log's whole kept state as a new file (written aside, then renamed over).
    pub fn save(&mut self, owner: Owner<'_>, log: &RegionLog) -> io::Result<()> {
        let bytes = format::snapshot(owner, &log.shadow_sets());
        let aside = self.path.with_extension("new");
        let mut file = create(&aside)?;
        file.write_all(&bytes)?;
        std::fs::rename(&aside, &self.path)?;
        // The open file follows the rename: later records land in the file now in place.
        self.file = Some(file);
        self.written = bytes.len() as u64;
        self.compact_at = MIN_COMPACT_BYTES.max(COMPACT_FACTOR * bytes.len() as u64);
        Ok(())
    }

    /// Journals `changes`; starts a new file instead when there is none yet or the journal
    /// has grown past its bound.
    pub fn append(
        &mut self,
        owner: Owner<'_>,
        log: &RegionLog,
        changes: &[Change],
    ) -> io::Result<()> {
        let records = format::changes(changes);
        match &mut self.file {
            Some(file) if self.written + (records.len() as u64) <= self.compact_at => {
                file.write_all(&records)?;
                self.written += records.len() as u64;
                Ok(())
            }
            _ => self.save(owner, log),
        }
    }

    /// Removes the file: DTR, or a new table that must not inherit a stale one.
    pub fn discard(&mut self) -> io::Result<()> {
        self.file = None;
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Creates a file afresh; root only, like the rest of /run/dm-ulogd.
fn create(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests;
