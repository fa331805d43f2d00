//! FNV-1a, 64 bits: the crate's one non-cryptographic hash. It checksums shadow records, names
//! shadow files and CPG groups after a uuid, and names a cluster view after its members.

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
