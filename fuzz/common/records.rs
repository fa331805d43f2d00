//! The record framing the shadow and handover files share (le32 length, le64 FNV-1a of the
//! payload, payload), for the fuzz targets of their decoders: recomputing every checksum lets
//! a mutation reach the field decoders instead of dying at the checksum.

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Rewrites the checksum of every record whose length field fits in the file.
pub fn fix_checksums(file: &mut [u8]) {
    let mut at = 0;
    while let Some(len) = file.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let Some(payload) = file.get(at + 12..).and_then(|rest| rest.get(..len)) else { return };
        let sum = fnv1a(payload).to_le_bytes();
        file[at + 4..at + 12].copy_from_slice(&sum);
        at += 12 + len;
    }
}
