//! [`KernelImage`]: a disk log image as the kernel's dm-log.c writes it, built from the
//! format's literals rather than from [`crate::store`], so that tests hold the store (and
//! `dm-ulogd inspect`) against an independent writer: the header (magic "MiRr", version,
//! region count) in the first 1,024 bytes, then one bit per region, 1 = clean, in 32-bit
//! little-endian words, the image padded to whole logical blocks.

/// How the image's header reads.
#[derive(Debug, Clone, Copy)]
pub struct KernelImage {
    pub magic: u32,
    pub version: u32,
    pub block_size: u32,
}

impl Default for KernelImage {
    /// What kernel 6.1 writes on a device of 512-byte blocks.
    fn default() -> KernelImage {
        KernelImage { magic: 0x4D69_5272, version: 2, block_size: 512 }
    }
}

impl KernelImage {
    /// The image of a log of `regions` regions, clean where `clean` says so.
    pub fn render(&self, regions: u64, clean: impl Fn(u64) -> bool) -> Vec<u8> {
        let len = (1024 + regions.div_ceil(32) * 4).next_multiple_of(u64::from(self.block_size));
        let mut image = vec![0u8; len as usize];
        image[0..4].copy_from_slice(&self.magic.to_le_bytes());
        image[4..8].copy_from_slice(&self.version.to_le_bytes());
        image[8..16].copy_from_slice(&regions.to_le_bytes());
        for region in (0..regions).filter(|r| clean(*r)) {
            image[1024 + (region / 8) as usize] |= 1 << (region % 8);
        }
        image
    }
}
