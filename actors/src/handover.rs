//! A planned restart the kernel does not notice: the engine hands its transport's socket and
//! its logs to the next daemon, instead of closing the socket and leaving the kernel to
//! replay every CTR after its 2 s retry (and to wait out its 15 s timeout for what was read
//! and not answered).
//!
//! How: the engine stops reading, answers everything it has read, commits every disk log and
//! writes the [`Manifest`] to the state directory: the socket it was serving, and for each
//! log its key, its CTR string and how far the kernel had brought it ([`Phase`]). Each log's
//! sync state is its shadow, current since every change is journaled before its reply. The
//! socket itself goes to the next daemon by descriptor (systemd's file-descriptor store, or
//! an exec that inherits it); requests the kernel sends meanwhile wait in its queue. The next
//! engine takes the manifest back only with the very socket it names, and takes each log
//! back as a reconnect would, from its shadow, but without the kernel: the CTR and RESUME it
//! would have replayed are made by the engine itself, and their answers go nowhere.
//!
//! A log that cannot be carried (a clustered log served through corosync: its state is the
//! group's, and its membership ends with the process) is left out: its next request finds no
//! log, and the kernel replays its CTR as after a crash, which rejoins the group.
//!
//! ```text
//! record   = le32 payload length | le64 FNV-1a of the payload | payload   (as in shadows)
//! manifest = "DMULHND1" | le64 socket st_dev | le64 socket st_ino | le32 logs
//! log      = le8 phase | le64 luid | le16 n | uuid (n bytes) | le32 n | CTR string (n bytes)
//! ```

use std::ffi::CStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::shadow::format::{push_record, Cursor, Records};
use crate::shadow::StateDir;
use crate::wire::{LogKey, Uuid};

const MAGIC: &[u8; 8] = b"DMULHND1";
const NAME: &CStr = c"handover";
const ASIDE: &CStr = c"handover.new";

/// How far the kernel had brought a log when it was handed over, which decides what the
/// next engine replays for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A new table's CTR was answered and no RESUME came yet: the log starts from its CTR
    /// string alone, as the kernel's RESUME will expect.
    Constructed,
    /// A reconnect's CTR took the shadow back and its RESUME has not come yet: the log takes
    /// the shadow back and waits for that RESUME.
    Reconnected,
    /// Resumed at least once: the log takes the shadow back and resumes as after a
    /// reconnect, its sync and recovering sets standing, a disk log's image written back.
    Resumed,
}

impl Phase {
    fn code(self) -> u8 {
        match self {
            Phase::Constructed => 1,
            Phase::Reconnected => 2,
            Phase::Resumed => 3,
        }
    }

    fn from_code(code: u8) -> Option<Phase> {
        match code {
            1 => Some(Phase::Constructed),
            2 => Some(Phase::Reconnected),
            3 => Some(Phase::Resumed),
            _ => None,
        }
    }
}

/// One log, as the next engine needs it to take the log back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedLog {
    pub key: LogKey,
    /// The CTR string (without the NUL of a reconnect), as the shadow names its owner.
    pub ctr: String,
    pub phase: Phase,
}

/// Which socket a manifest belongs to: its inode, the same in every process that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketId {
    pub dev: u64,
    pub ino: u64,
}

impl SocketId {
    pub fn of(socket: BorrowedFd<'_>) -> io::Result<SocketId> {
        // SAFETY: fstat(2) fills the stat it is given.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(socket.as_raw_fd(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SocketId { dev: stat.st_dev, ino: stat.st_ino })
    }
}

/// What one engine leaves the next: the socket and the logs carried with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub socket: SocketId,
    pub logs: Vec<CarriedLog>,
}

/// A manifest whose bytes do not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("handover manifest unreadable: {0}")]
pub struct Unreadable(&'static str);

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        push_record(&mut out, |payload| {
            payload.extend_from_slice(MAGIC);
            payload.extend_from_slice(&self.socket.dev.to_le_bytes());
            payload.extend_from_slice(&self.socket.ino.to_le_bytes());
            payload.extend_from_slice(&(self.logs.len() as u32).to_le_bytes());
        });
        for log in &self.logs {
            let uuid = log.key.uuid.as_bytes();
            push_record(&mut out, |payload| {
                payload.push(log.phase.code());
                payload.extend_from_slice(&log.key.luid.to_le_bytes());
                payload.extend_from_slice(&(uuid.len() as u16).to_le_bytes());
                payload.extend_from_slice(uuid);
                payload.extend_from_slice(&(log.ctr.len() as u32).to_le_bytes());
                payload.extend_from_slice(log.ctr.as_bytes());
            });
        }
        out
    }

    /// The manifest `bytes` hold, whole: a manifest cut short carries nothing.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, Unreadable> {
        let mut records = Records(bytes);
        let mut head = Cursor(records.next().ok_or(Unreadable("no intact first record"))?);
        if head.take(MAGIC.len()) != Some(MAGIC) {
            return Err(Unreadable("no manifest magic"));
        }
        let short = Unreadable("first record cut short");
        let socket = SocketId {
            dev: head.u64().ok_or(short.clone())?,
            ino: head.u64().ok_or(short.clone())?,
        };
        let count = head.u32().ok_or(short)?;
        if !head.0.is_empty() {
            return Err(Unreadable("bytes after the first record's log count"));
        }
        let logs = (0..count)
            .map(|_| records.next().ok_or(Unreadable("a log's record is missing or torn")))
            .map(|payload| payload.and_then(decode_log))
            .collect::<Result<Vec<_>, _>>()?;
        if !records.0.is_empty() {
            return Err(Unreadable("bytes after the last log"));
        }
        Ok(Manifest { socket, logs })
    }
}

fn decode_log(payload: &[u8]) -> Result<CarriedLog, Unreadable> {
    let short = Unreadable("a log's record cut short");
    let mut at = Cursor(payload);
    let phase =
        at.take(1).and_then(|b| Phase::from_code(b[0])).ok_or(Unreadable("unknown phase"))?;
    let luid = at.u64().ok_or(short.clone())?;
    let uuid_len = at.u16().ok_or(short.clone())?;
    let uuid = at.take(usize::from(uuid_len)).ok_or(short.clone())?;
    let uuid = Uuid::from_bytes(uuid).ok_or(Unreadable("a uuid too long or with a NUL"))?;
    let ctr_len = at.u32().ok_or(short.clone())?;
    let ctr = at.take(ctr_len as usize).ok_or(short)?;
    let ctr = std::str::from_utf8(ctr).map_err(|_| Unreadable("a CTR string not UTF-8"))?;
    if !at.0.is_empty() {
        return Err(Unreadable("bytes after a log's CTR string"));
    }
    Ok(CarriedLog { key: LogKey { uuid, luid }, ctr: ctr.to_owned(), phase })
}

impl StateDir {
    /// Writes `manifest` (aside, then renamed into place) for the next daemon.
    pub fn write_handover(&self, manifest: &Manifest) -> io::Result<()> {
        self.remove(ASIDE)?;
        let mut file = self.create_new(ASIDE)?;
        file.write_all(&manifest.encode())?;
        self.rename(ASIDE, NAME)
    }

    /// The manifest a previous daemon left, removed as it is read: it is for one start only,
    /// and a stale one (the socket went with a stopped service) must not outlive the start
    /// that finds it. `Ok(None)` when there is none.
    pub fn take_handover(&self) -> io::Result<Option<Result<Manifest, Unreadable>>> {
        let mut bytes = Vec::new();
        match self.open_read(NAME).and_then(|mut f| f.read_to_end(&mut bytes)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        self.remove(NAME)?;
        Ok(Some(Manifest::decode(&bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let log = |uuid: &[u8], luid, ctr: &str, phase| CarriedLog {
            key: LogKey { uuid: Uuid::from_bytes(uuid).unwrap(), luid },
            ctr: ctr.to_owned(),
            phase,
        };
        Manifest {
            socket: SocketId { dev: 7, ino: 123_456 },
            logs: vec![
                log(b"LVM-a", 1, "2048 core 512", Phase::Resumed),
                log(b"\xff\n-b", u64::MAX, "2048 disk 254:3 512 nosync", Phase::Reconnected),
                log(b"c", 3, "4096 clustered-core 1024", Phase::Constructed),
            ],
        }
    }

    #[test]
    fn a_manifest_decodes_to_itself() {
        let manifest = manifest();
        assert_eq!(Manifest::decode(&manifest.encode()), Ok(manifest));
        let empty = Manifest { socket: SocketId { dev: 0, ino: 1 }, logs: vec![] };
        assert_eq!(Manifest::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn a_manifest_cut_or_changed_anywhere_carries_nothing() {
        let bytes = manifest().encode();
        for len in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x40;
            assert!(Manifest::decode(&changed).is_err(), "byte {at} changed");
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(Manifest::decode(&longer).is_err());
    }
}
