//! The on-disk layout of dm-log.c's `disk` log, byte for byte.
//!
//! ```text
//!    0  le32 magic 0x4D695272 ("MiRr")   4  le32 version (2)   8  le64 nr_regions
//!   16  ... not interpreted, written back as read ...
//! 1024  clean bitmap: region i is byte 1024 + i/8, bit i%8; 1 = clean (and in sync)
//! ```
//!
//! The bitmap is `round_up(region_count, 32) / 8` bytes, and the whole image is rounded up to
//! the log device's logical block size. The kernel rewrites the whole image on every commit;
//! we write only the blocks whose bits changed, which for one region is one block.

use roaring::RoaringBitmap;

use crate::region::SyncMode;
use crate::units::RegionCount;

pub const MIRROR_MAGIC: u32 = 0x4D69_5272;
pub const MIRROR_DISK_VERSION: u32 = 2;
/// Where the bitmap starts (`LOG_OFFSET` sectors).
pub const BITMAP_OFFSET: usize = 1024;

/// The header's first 16 bytes, all of it that the kernel reads or writes; the rest of the
/// first 1024 bytes is written back as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub magic: u32,
    pub version: u32,
    pub nr_regions: u64,
}

/// The bytes [`Header`] covers.
pub const HEADER_LEN: usize = 16;

impl Header {
    /// The header a log of `count` regions writes.
    pub fn new(count: RegionCount) -> Header {
        Header { magic: MIRROR_MAGIC, version: MIRROR_DISK_VERSION, nr_regions: count.0 }
    }

    /// The header in an image's first bytes; a field the bytes do not reach reads as 0, as
    /// the zeroes of a device never written.
    pub fn read(bytes: &[u8]) -> Header {
        let field = |at: usize, len: usize| bytes.get(at..at + len);
        let le32 = |at| field(at, 4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4")));
        let le64 = field(8, 8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8")));
        Header { magic: le32(0), version: le32(4), nr_regions: le64 }
    }

    /// Whether this is a mirror log's header at all.
    pub fn is_mirror_log(&self) -> bool {
        self.magic == MIRROR_MAGIC
    }

    /// Whether the kernel can read this version (1 and 2 share the layout).
    pub fn is_readable(&self) -> bool {
        matches!(self.version, 1 | 2)
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn emit(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.magic.to_le_bytes());
        out[4..8].copy_from_slice(&self.version.to_le_bytes());
        out[8..16].copy_from_slice(&self.nr_regions.to_le_bytes());
    }

    /// The first 1024 bytes of a log of `count` regions written afresh: this header, zeroes.
    pub fn fresh_block(count: RegionCount) -> Box<[u8; BITMAP_OFFSET]> {
        let mut block = Box::new([0u8; BITMAP_OFFSET]);
        Header::new(count).emit(&mut block[..]);
        block
    }
}

/// The bitmap's size for `count` regions: whole 32-bit words.
pub fn bitset_size(count: RegionCount) -> u64 {
    count.0.div_ceil(32) * 4
}

/// The image's size on a device with `block_size`-byte logical blocks.
pub fn image_size(count: RegionCount, block_size: u32) -> u64 {
    (BITMAP_OFFSET as u64 + bitset_size(count)).next_multiple_of(u64::from(block_size))
}

/// What a resume found on the log device.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Regions to treat as dirty and out of sync.
    pub dirty: RoaringBitmap,
    /// The first 1024 bytes to write back: the new header, then bytes 16..1024 as read.
    pub header_block: Box<[u8; BITMAP_OFFSET]>,
    /// The header had a version this log cannot read: the kernel fails the log device
    /// (status `D`) and treats every region as new.
    pub incompatible: bool,
}

/// Reads an image as `disk_resume` does. `image` may be shorter than the full image (a
/// failed read gives an empty one): missing bytes read as a header-less log.
pub fn load(image: &[u8], count: RegionCount, sync: SyncMode) -> Loaded {
    let mut loader = Loader::new(&image[..image.len().min(BITMAP_OFFSET)], count, sync);
    loader.bitmap(0, image.get(BITMAP_OFFSET..).unwrap_or(&[]));
    loader.finish()
}

/// [`load`], a piece at a time: the header, then the bitmap in pieces of whole bytes, so
/// that a large image (512 MiB for 2^32 regions) is never held whole.
pub struct Loader {
    count: RegionCount,
    sync: SyncMode,
    header_block: Box<[u8; BITMAP_OFFSET]>,
    incompatible: bool,
    /// Regions whose state the header says the bitmap holds.
    known: u32,
    clean: RoaringBitmap,
}

impl Loader {
    /// Starts from the image's first bytes (up to [`BITMAP_OFFSET`]; fewer read as missing).
    pub fn new(header: &[u8], count: RegionCount, sync: SyncMode) -> Loader {
        let read = Header::read(header);
        let mut header_block = Box::new([0u8; BITMAP_OFFSET]);
        let kept = header.len().min(BITMAP_OFFSET);
        header_block[..kept].copy_from_slice(&header[..kept]);
        let magic_ok = read.is_mirror_log();
        let incompatible = magic_ok && sync == SyncMode::Default && !read.is_readable();
        // sync/nosync, a foreign magic or a version we cannot read: a new header, no regions known.
        let stored_regions = if sync != SyncMode::Default || !magic_ok || incompatible {
            0
        } else {
            read.nr_regions
        };
        let known = count.bitmap_bound().min(u32::try_from(stored_regions).unwrap_or(u32::MAX));
        Loader { count, sync, header_block, incompatible, known, clean: RoaringBitmap::new() }
    }

    /// Takes the bitmap's bytes from byte `offset` of the bitmap on; bits past the regions the
    /// header covers are ignored.
    pub fn bitmap(&mut self, offset: u64, bytes: &[u8]) {
        let known_bytes = u64::from(self.known).div_ceil(8);
        let Some(wanted) = known_bytes.checked_sub(offset).filter(|w| *w > 0) else { return };
        let bytes = &bytes[..bytes.len().min(wanted as usize)];
        let first = u32::try_from(offset * 8).expect("within the known regions");
        let mut piece = RoaringBitmap::from_lsb0_bytes(first, bytes);
        piece.remove_range(self.known..);
        self.clean |= piece;
    }

    /// What the image said.
    pub fn finish(self) -> Loaded {
        let count32 = self.count.bitmap_bound();
        let mut dirty = RoaringBitmap::new();
        dirty.insert_range(0..self.known);
        dirty -= self.clean;
        // Regions the header did not cover (a grown log, a new header): dirty unless nosync.
        if self.sync != SyncMode::NoSync {
            dirty.insert_range(self.known..count32);
        }
        dirty.optimize();
        let mut header_block = self.header_block;
        Header::new(self.count).emit(&mut header_block[..]);
        Loaded { dirty, header_block, incompatible: self.incompatible }
    }
}

/// The blocks one commit writes: `(first block, bytes)` runs of consecutive blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    pub block_size: u32,
    pub runs: Vec<(u64, Vec<u8>)>,
}

impl Commit {
    pub fn blocks(&self) -> u64 {
        self.runs.iter().map(|(_, bytes)| bytes.len() as u64 / u64::from(self.block_size)).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|(_, bytes)| bytes.len() as u64).sum()
    }
}

/// The layout of one log's image on one device: renders blocks from the sets of regions
/// whose clean bit is 0.
#[derive(Debug, Clone)]
pub struct Layout {
    pub count: RegionCount,
    pub block_size: u32,
    pub header_block: Box<[u8; BITMAP_OFFSET]>,
}

impl Layout {
    pub fn blocks(&self) -> u64 {
        image_size(self.count, self.block_size) / u64::from(self.block_size)
    }

    /// The whole image: what resume writes.
    pub fn render_all(&self, unclean: &[&RoaringBitmap]) -> Commit {
        self.render(0..self.blocks(), unclean)
    }

    /// Only the blocks that hold a bit of a `touched` region.
    pub fn render_touched(&self, touched: &RoaringBitmap, unclean: &[&RoaringBitmap]) -> Commit {
        let bits_per_block = u64::from(self.block_size) * 8;
        let block_of =
            |region: u32| (BITMAP_OFFSET as u64 * 8 + u64::from(region)) / bits_per_block;
        let mut commit = Commit { block_size: self.block_size, runs: Vec::new() };
        let mut blocks = touched.iter().map(block_of).peekable();
        while let Some(first) = blocks.next() {
            let mut last = first;
            while let Some(next) = blocks.peek().copied().filter(|b| *b <= last + 1) {
                last = next;
                blocks.next();
            }
            commit.runs.extend(self.render(first..last + 1, unclean).runs);
        }
        commit
    }

    /// The bytes of `blocks`: the header where they cover it, then the bitmap, all clean but
    /// for the regions in `unclean`. Whole stretches of 65,536 regions that a set holds all
    /// or none of are one fill, so a resume of a log all in sync or all to resync costs one
    /// step per stretch, not per region.
    pub fn render(&self, blocks: std::ops::Range<u64>, unclean: &[&RoaringBitmap]) -> Commit {
        let bs = u64::from(self.block_size);
        let (start, end) = (blocks.start * bs, blocks.end * bs);
        let mut bytes = vec![0u8; (end - start) as usize];
        let header_end = end.min(BITMAP_OFFSET as u64);
        if start < header_end {
            let header = &self.header_block[start as usize..header_end as usize];
            bytes[..header.len()].copy_from_slice(header);
        }
        // Bitmap bits `first_bit..end_bit`; `first_bit` starts a byte (`start` is whole blocks).
        let first_bit = start.max(BITMAP_OFFSET as u64) * 8 - BITMAP_OFFSET as u64 * 8;
        let end_bit = (end * 8).saturating_sub(BITMAP_OFFSET as u64 * 8).min(self.count.0);
        if first_bit < end_bit {
            let offset = (BITMAP_OFFSET as u64 + first_bit / 8 - start) as usize;
            let bitmap = &mut bytes[offset..];
            set_bits(bitmap, 0..end_bit - first_bit, true);
            for set in unclean {
                clear_regions(bitmap, first_bit, end_bit, set);
            }
        }
        Commit { block_size: self.block_size, runs: vec![(blocks.start, bytes)] }
    }
}

/// Sets or clears `bits` of `bitmap` (bit i is byte i / 8, bit i % 8), a byte at a time where
/// the range covers whole bytes.
fn set_bits(bitmap: &mut [u8], bits: std::ops::Range<u64>, value: bool) {
    let whole = bits.start.next_multiple_of(8)..bits.end - bits.end % 8;
    if whole.start >= whole.end {
        return set_bit_by_bit(bitmap, bits, value);
    }
    set_bit_by_bit(bitmap, bits.start..whole.start, value);
    bitmap[(whole.start / 8) as usize..(whole.end / 8) as usize].fill(if value { 0xFF } else { 0 });
    set_bit_by_bit(bitmap, whole.end..bits.end, value);
}

fn set_bit_by_bit(bitmap: &mut [u8], bits: std::ops::Range<u64>, value: bool) {
    for bit in bits {
        let byte = &mut bitmap[(bit / 8) as usize];
        let mask = 1 << (bit % 8);
        *byte = if value { *byte | mask } else { *byte & !mask };
    }
}

/// Clears the bits of the regions of `set` within `first..end`, in a bitmap whose bit 0 is
/// region `first`: a container's stretch that `set` holds whole is one fill.
fn clear_regions(bitmap: &mut [u8], first: u64, end: u64, set: &RoaringBitmap) {
    let mut window = first;
    while window < end {
        let next = ((window >> 16) + 1).checked_shl(16).unwrap_or(u64::MAX).min(end);
        // `end` is at most 2^32 - 1 (a u32 region count), so both fit.
        let regions = window as u32..next as u32;
        match set.range_cardinality(regions.clone()) {
            0 => {}
            held if held == next - window => set_bits(bitmap, window - first..next - first, false),
            _ => {
                for region in set.range(regions) {
                    let bit = u64::from(region) - first;
                    bitmap[(bit / 8) as usize] &= !(1 << (bit % 8));
                }
            }
        }
        window = next;
    }
}
