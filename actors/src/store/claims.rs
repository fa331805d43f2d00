//! [`DeviceClaims`]: which log device each log uses, so that two logs never share one.
//!
//! Two mirrors whose logs live on one device would overwrite each other's bitmap. The table
//! of live mirrors (the same uuid twice: a table reload loads the inactive table beside the
//! live one) may share a device; logs of different uuids may not, and the second one gets
//! EBUSY. It is the daemon's own table, never an exclusive open: once CTR answers with the
//! device's name the kernel claims the device for the mirror itself (`dm_get_device`), and an
//! `O_EXCL` held by the daemon would make that claim, or the next table reload, fail.

use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::wire::Uuid;

/// What makes two opened log devices the same: the device number of a block device, or the
/// file system and inode of a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceIdentity {
    Block { rdev: u64 },
    File { dev: u64, ino: u64 },
}

/// The log devices in use, by the uuid of the logs using them.
#[derive(Debug, Default)]
pub struct DeviceClaims {
    held: DashMap<DeviceIdentity, (Uuid, usize)>,
}

/// One log's hold on its device; dropping it lets the device go.
#[derive(Debug)]
pub struct Claim {
    claims: Arc<DeviceClaims>,
    identity: DeviceIdentity,
}

impl DeviceClaims {
    /// Claims `identity` for a log of `uuid`; the uuid of the logs holding it otherwise, as
    /// it is shown.
    pub fn claim(self: &Arc<Self>, identity: DeviceIdentity, uuid: &Uuid) -> Result<Claim, String> {
        match self.held.entry(identity) {
            Entry::Occupied(mut held) if held.get().0 == *uuid => held.get_mut().1 += 1,
            Entry::Occupied(held) => return Err(held.get().0.to_string()),
            Entry::Vacant(free) => drop(free.insert((uuid.clone(), 1))),
        }
        Ok(Claim { claims: self.clone(), identity })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims.held.remove_if_mut(&self.identity, |_, (_, holders)| {
            *holders -= 1;
            *holders == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_device_serves_one_uuid_until_its_last_log_lets_go() {
        let claims = Arc::new(DeviceClaims::default());
        let (a, b) = (Uuid::new("A").unwrap(), Uuid::new("B").unwrap());
        let device = DeviceIdentity::File { dev: 1, ino: 2 };
        let live = claims.claim(device, &a).unwrap();
        let reloaded = claims.claim(device, &a).expect("the same mirror's inactive table");
        assert_eq!(claims.claim(device, &b).unwrap_err(), "A");
        assert!(claims.claim(DeviceIdentity::Block { rdev: 2 }, &b).is_ok(), "another device");
        drop(live);
        assert_eq!(claims.claim(device, &b).unwrap_err(), "A", "one of A's logs still holds it");
        drop(reloaded);
        assert!(claims.claim(device, &b).is_ok());
    }
}
