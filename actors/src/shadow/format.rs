//! The bytes of a shadow file: one snapshot record, then one record per change.
//!
//! ```text
//! record   = le32 payload length | le64 FNV-1a of the payload | payload
//! snapshot = "DMULSHD1" | le64 luid | le16 n | uuid (n bytes) | le32 n | CTR string (n bytes)
//!            | 3 × (le32 n | roaring bitmap, portable format): out of sync, recovering, dirty
//! change   = 1 | le32 region            SET_REGION_SYNC(1)
//!          | 2 | le32 region            SET_REGION_SYNC(0)
//!          | 3 | le32 region            handed out by GET_RESYNC_WORK
//!          | 4 | le32 n | n × le32      a disk log's newly marked regions
//!          | 5 | le32 n | n × le32      a disk log's newly cleared regions
//! ```
//!
//! Each record is appended before the reply that depends on it, so a record cut short by a
//! crash belongs to a request the kernel never saw answered and will send again: replay
//! stops there and keeps what came before. A first record that does not read, or that names
//! another log, makes the whole file worthless.

use roaring::RoaringBitmap;

use crate::fnv::fnv1a;
use crate::region::{Change, ShadowSets};
use crate::wire::LogKey;

const MAGIC: &[u8; 8] = b"DMULSHD1";
/// Length and checksum before each payload.
const FRAME: usize = 12;

const IN_SYNC: u8 = 1;
const OUT_OF_SYNC: u8 = 2;
const RECOVERING: u8 = 3;
const MARKED: u8 = 4;
const CLEARED: u8 = 5;

/// The log a shadow belongs to: only a CTR with the same uuid, luid and constructor string
/// (the kernel resends the very string of the table) gets it back.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub key: &'a LogKey,
    pub ctr: &'a str,
}

/// Why a shadow file was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("not a shadow, or cut short in its snapshot: {0}")]
    Unreadable(&'static str),
    #[error("it belongs to another log or table (uuid, luid or constructor string differ)")]
    OtherLog,
}

/// What a shadow file held.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    pub sets: ShadowSets,
    /// Change records after the last good one were cut short or unreadable.
    pub torn_tail: bool,
}

/// A snapshot record: the file's first, and its only one after a compaction.
pub fn snapshot(owner: Owner<'_>, sets: &ShadowSets) -> Vec<u8> {
    let uuid = owner.key.uuid.as_bytes();
    let mut out = Vec::with_capacity(FRAME + 64 + uuid.len() + owner.ctr.len());
    push_record(&mut out, |payload| {
        payload.extend_from_slice(MAGIC);
        payload.extend_from_slice(&owner.key.luid.to_le_bytes());
        payload.extend_from_slice(&(uuid.len() as u16).to_le_bytes());
        payload.extend_from_slice(uuid);
        payload.extend_from_slice(&(owner.ctr.len() as u32).to_le_bytes());
        payload.extend_from_slice(owner.ctr.as_bytes());
        for set in [&sets.out_of_sync, &sets.recovering, &sets.dirty] {
            payload.extend_from_slice(&(set.serialized_size() as u32).to_le_bytes());
            set.serialize_into(&mut *payload).expect("a Vec takes every byte");
        }
    });
    out
}

/// The records of `changes`, ready to append.
pub fn changes(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
    for change in changes {
        let (tag, regions): (u8, &[u32]) = match change {
            Change::InSync(r) => (IN_SYNC, std::slice::from_ref(r)),
            Change::OutOfSync(r) => (OUT_OF_SYNC, std::slice::from_ref(r)),
            Change::Recovering(r) => (RECOVERING, std::slice::from_ref(r)),
            Change::Marked(rs) => (MARKED, rs),
            Change::Cleared(rs) => (CLEARED, rs),
        };
        push_record(&mut out, |payload| {
            payload.push(tag);
            if matches!(tag, MARKED | CLEARED) {
                payload.extend_from_slice(&(regions.len() as u32).to_le_bytes());
            }
            regions.iter().for_each(|r| payload.extend_from_slice(&r.to_le_bytes()));
        });
    }
    out
}

/// Reads a shadow file for `owner`, a log of `region_count` regions.
pub fn replay(bytes: &[u8], owner: Owner<'_>, region_count: u32) -> Result<Replayed, Unusable> {
    let mut records = Records(bytes);
    let first = records.next().ok_or(Unusable::Unreadable("no intact first record"))?;
    let mut sets = read_snapshot(first, owner, region_count)?;
    let mut torn_tail = false;
    while !records.0.is_empty() {
        let applied = records.next().and_then(|payload| apply(payload, &mut sets, region_count));
        if applied.is_none() {
            torn_tail = true;
            break;
        }
    }
    Ok(Replayed { sets, torn_tail })
}

fn read_snapshot(
    payload: &[u8],
    owner: Owner<'_>,
    region_count: u32,
) -> Result<ShadowSets, Unusable> {
    let mut at = Cursor(payload);
    if at.take(MAGIC.len()) != Some(MAGIC) {
        return Err(Unusable::Unreadable("no shadow magic"));
    }
    let short = Unusable::Unreadable("snapshot cut short");
    let luid = at.u64().ok_or(short.clone())?;
    let uuid_len = at.u16().ok_or(short.clone())?;
    let uuid = at.take(usize::from(uuid_len)).ok_or(short.clone())?;
    let ctr_len = at.u32().ok_or(short.clone())?;
    let ctr = at.take(ctr_len as usize).ok_or(short.clone())?;
    if luid != owner.key.luid || uuid != owner.key.uuid.as_bytes() || ctr != owner.ctr.as_bytes() {
        return Err(Unusable::OtherLog);
    }
    let mut set = || {
        let len = at.u32().ok_or(short.clone())?;
        let bytes = at.take(len as usize).ok_or(short.clone())?;
        let set = RoaringBitmap::deserialize_from(bytes)
            .map_err(|_| Unusable::Unreadable("a bitmap does not read"))?;
        match set.max() {
            Some(max) if max >= region_count => Err(Unusable::Unreadable("a region past the end")),
            _ => Ok(set),
        }
    };
    Ok(ShadowSets { out_of_sync: set()?, recovering: set()?, dirty: set()? })
}

/// Applies one change record; `None` if it does not read.
fn apply(payload: &[u8], sets: &mut ShadowSets, region_count: u32) -> Option<()> {
    let mut at = Cursor(payload);
    let tag = *at.take(1)?.first()?;
    let mut region = || at.u32().filter(|r| *r < region_count);
    match tag {
        IN_SYNC | OUT_OF_SYNC => {
            let r = region()?;
            sets.recovering.remove(r);
            if tag == IN_SYNC {
                sets.out_of_sync.remove(r);
            } else {
                sets.out_of_sync.insert(r);
            }
        }
        RECOVERING => {
            sets.recovering.insert(region()?);
        }
        MARKED | CLEARED => {
            let n = at.u32()?;
            let regions: Option<RoaringBitmap> =
                (0..n).map(|_| at.u32().filter(|r| *r < region_count)).collect();
            if tag == MARKED {
                sets.dirty |= regions?;
            } else {
                sets.dirty -= regions?;
            }
        }
        _ => return None,
    }
    at.0.is_empty().then_some(())
}

/// Appends one record to `out`: its length and checksum, then the payload `write` appends.
pub(crate) fn push_record(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME]);
    write(out);
    let payload = start + FRAME;
    let len = (out.len() - payload) as u32;
    let sum = fnv1a(&out[payload..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..payload].copy_from_slice(&sum.to_le_bytes());
}

/// The payloads of intact records, in order; `None` at the first one that is not.
pub(crate) struct Records<'a>(pub &'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let mut at = Cursor(self.0);
        let len = at.u32()? as usize;
        let sum = at.u64()?;
        let payload = at.take(len)?;
        if fnv1a(payload) != sum {
            return None;
        }
        self.0 = at.0;
        Some(payload)
    }
}

/// Little-endian reads off the front of a byte slice.
pub(crate) struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes(b.try_into().expect("2 bytes")))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}
