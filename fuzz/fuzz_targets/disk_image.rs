//! Fuzzes the disk-log loader, `store::format::load` and its piecewise `Loader`, which read
//! whatever the log device holds at a resume, and the renderer that writes it back. Input:
//! le32 region count (below 2^17: past a roaring container's 2^16, and each input fast),
//! a sync mode byte, a block size byte (512 << n%4), le16 where to cut the bitmap, the image.
//! Checks: no panic; the bitmap read in two pieces gives what `load` gives; the whole image
//! rendered from what was loaded (its dirty set as unclean) loads, with SyncMode::Default,
//! to the same dirty set whatever the first load's mode: the render writes a header for
//! exactly `count` regions, and Default is the one mode that reads the bitmap back (Force
//! takes every region as dirty, NoSync none, by design); an incremental commit writes the
//! same bytes as the whole image in the blocks it touches.
#![no_main]

use dm_ulog_actors::region::SyncMode;
use dm_ulog_actors::store::format::{image_size, load, Layout, Loader, BITMAP_OFFSET};
use dm_ulog_actors::units::RegionCount;
use libfuzzer_sys::fuzz_target;
use roaring::RoaringBitmap;

fuzz_target!(|input: &[u8]| {
    let Some((head, image)) = input.split_first_chunk::<8>() else { return };
    let count =
        RegionCount(u64::from(u32::from_le_bytes([head[0], head[1], head[2], 0]) % (1 << 17)));
    let sync = [SyncMode::Default, SyncMode::Force, SyncMode::NoSync][usize::from(head[4] % 3)];
    let block_size = 512u32 << (head[5] % 4);
    let loaded = load(image, count, sync);
    assert!(loaded.dirty.max().is_none_or(|max| u64::from(max) < count.0));

    let (header, bitmap) = image.split_at(image.len().min(BITMAP_OFFSET));
    let cut = usize::from(u16::from_le_bytes([head[6], head[7]])) % (bitmap.len() + 1);
    let mut loader = Loader::new(header, count, sync);
    loader.bitmap(0, &bitmap[..cut]);
    loader.bitmap(cut as u64, &bitmap[cut..]);
    let pieces = loader.finish();
    assert_eq!((&pieces.dirty, &pieces.header_block), (&loaded.dirty, &loaded.header_block));

    let layout = Layout { count, block_size, header_block: loaded.header_block.clone() };
    let unclean = [&loaded.dirty];
    let whole = layout.render_all(&unclean);
    let [(0, rendered)] = &whole.runs[..] else { panic!("render_all gave {:?}", whole.runs) };
    assert_eq!(rendered.len() as u64, image_size(count, block_size));
    let reloaded = load(rendered, count, SyncMode::Default);
    assert!(!reloaded.incompatible);
    assert_eq!(reloaded.dirty, loaded.dirty);
    assert_eq!(reloaded.header_block, loaded.header_block);

    // A commit touching some dirty regions (the first few and the last: cheap at any count).
    let mut touched: RoaringBitmap = loaded.dirty.iter().take(40).collect();
    touched.extend(loaded.dirty.max());
    for (first, bytes) in layout.render_touched(&touched, &unclean).runs {
        let start = (first * u64::from(block_size)) as usize;
        assert_eq!(rendered.get(start..start + bytes.len()), Some(&bytes[..]));
    }
});
