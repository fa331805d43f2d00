//! Which log a request names: its [`Uuid`] as the kernel's fixed field holds it, and the
//! [`LogKey`] (uuid and luid) that tells one log instance from another.

use std::fmt;

use super::DM_UUID_LEN;

/// A log's uuid as the kernel sends it: at most 128 bytes, NUL-padded to 129.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Uuid([u8; DM_UUID_LEN]);

impl Uuid {
    /// A uuid from text; `None` when it does not fit the field or holds a NUL.
    pub fn new(text: &str) -> Option<Uuid> {
        Uuid::from_bytes(text.as_bytes())
    }

    /// A uuid from its bytes, which need not be UTF-8; `None` as for [`Uuid::new`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Uuid> {
        if bytes.len() >= DM_UUID_LEN || bytes.contains(&0) {
            return None;
        }
        let mut field = [0u8; DM_UUID_LEN];
        field[..bytes.len()].copy_from_slice(bytes);
        Some(Uuid(field))
    }

    /// The uuid field as received; bytes after the first NUL are ignored, and a field with no
    /// NUL at all is cut at 128 bytes, as the kernel's own strings would be.
    pub(super) fn from_field(field: &[u8]) -> Uuid {
        let mut uuid = [0u8; DM_UUID_LEN];
        let len = field.iter().position(|b| *b == 0).unwrap_or(DM_UUID_LEN - 1);
        uuid[..len].copy_from_slice(&field[..len]);
        Uuid(uuid)
    }

    /// The uuid's bytes, without the NUL padding.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self.0.iter().position(|b| *b == 0).unwrap_or(DM_UUID_LEN);
        &self.0[..len]
    }

    pub fn field(&self) -> &[u8; DM_UUID_LEN] {
        &self.0
    }
}

/// For people and log lines: the uuid as text, its control characters escaped (`\n`,
/// `\u{1b}`) and bytes that are not UTF-8 replaced, so that no uuid can forge a log line or
/// reach a terminal raw. [`Uuid::as_bytes`] is the uuid itself.
impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in String::from_utf8_lossy(self.as_bytes()).chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

/// What identifies one log instance: the uuid, plus the kernel's luid, which tells apart the
/// live and the inactive table of the same mirror.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LogKey {
    pub uuid: Uuid,
    pub luid: u64,
}

impl fmt::Display for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:#x}", self.uuid, self.luid)
    }
}
