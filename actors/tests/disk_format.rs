//! The disk-log format against the kernel's rules, in both directions: images the store
//! writes are read by an independent reader transcribed from dm-log.c, and images built by
//! hand the way the kernel writes them are loaded by the store.

use dm_ulog_actors::region::{LogArgs, RegionLog, ResumeFrom, SyncMode};
use dm_ulog_actors::sim::KernelImage;
use dm_ulog_actors::store::format::{self, image_size, Layout};
use dm_ulog_actors::store::LogDevice;
use dm_ulog_actors::units::{RegionCount, RegionIndex};
use proptest::prelude::*;
use roaring::RoaringBitmap;

/// dm-log.c's `read_header` + `disk_resume`, on bytes: the clean bit of every region.
fn kernel_resume(image: &[u8], count: u64, sync: SyncMode) -> (Vec<bool>, bool) {
    let magic = u32::from_le_bytes(image[0..4].try_into().unwrap());
    let mut version = u32::from_le_bytes(image[4..8].try_into().unwrap());
    let mut nr_regions = u64::from_le_bytes(image[8..16].try_into().unwrap());
    if sync != SyncMode::Default || magic != 0x4D69_5272 {
        version = 2;
        nr_regions = 0;
    }
    if version == 1 {
        version = 2; // little-endian hosts only
    }
    let failed = version != 2;
    if failed {
        nr_regions = 0;
    }
    let clean = (0..count)
        .map(|i| {
            if i < nr_regions {
                image[1024 + (i / 8) as usize] & (1 << (i % 8)) != 0
            } else {
                sync == SyncMode::NoSync
            }
        })
        .collect();
    (clean, failed)
}

/// A kernel-written image: header, then `clean` as little-endian bits, padded as the kernel
/// pads, and bytes 16 to 24 (which the kernel does not read) filled, for the store to keep.
fn kernel_image(magic: u32, version: u32, clean: &[bool], block_size: u32) -> Vec<u8> {
    let writer = KernelImage { magic, version, block_size };
    let mut image = writer.render(clean.len() as u64, |region| clean[region as usize]);
    image[16..24].copy_from_slice(b"reserved");
    image
}

fn clean_of(dirty: &RoaringBitmap, count: u64) -> Vec<bool> {
    (0..count).map(|i| !dirty.contains(i as u32)).collect()
}

fn temp_device(len: u64) -> (tempfile::NamedTempFile, LogDevice) {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(len).unwrap();
    let device = LogDevice::open(file.path().to_str().unwrap()).unwrap();
    (file, device)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The kernel's image, loaded by the store, gives the kernel's own resume result.
    #[test]
    fn store_loads_kernel_images(
        clean in prop::collection::vec(any::<bool>(), 1..3000),
        magic in prop_oneof![Just(0x4D69_5272u32), any::<u32>()],
        version in prop_oneof![Just(2u32), Just(1), Just(3), Just(0)],
        sync in prop_oneof![Just(SyncMode::Default), Just(SyncMode::Force), Just(SyncMode::NoSync)],
        grow in 0u64..100,
        shrink in 0u64..100,
    ) {
        let image = kernel_image(magic, version, &clean, 512);
        // The table may have grown or shrunk since the image was written.
        let count = (clean.len() as u64 + grow).saturating_sub(shrink).max(1);
        let (expected, failed) = kernel_resume(&image, count, sync);
        let loaded = format::load(&image, RegionCount(count), sync);
        prop_assert_eq!(clean_of(&loaded.dirty, count), expected);
        prop_assert_eq!(loaded.incompatible, failed);
        // The header is rewritten for the new count; bytes 16.. survive.
        prop_assert_eq!(&loaded.header_block[0..4], &0x4D69_5272u32.to_le_bytes());
        prop_assert_eq!(&loaded.header_block[8..16], &count.to_le_bytes());
        prop_assert_eq!(&loaded.header_block[16..24], &image[16..24]);
    }

    /// What the store writes, the kernel reads back as the same regions, on a real file.
    #[test]
    fn kernel_reads_store_images(
        marks in prop::collection::vec(0u64..2000, 0..200),
        clears in prop::collection::vec(0u64..2000, 0..200),
        block_size in prop_oneof![Just(512u32), Just(4096)],
    ) {
        let args: LogArgs = "4000 disk x 2".parse().unwrap();
        let count = args.region_count();
        let mut log = RegionLog::new(&args);
        let layout = Layout { count, block_size, header_block: format::load(&[], count, SyncMode::Default).header_block };
        log.resume(ResumeFrom::Real { loaded: Some(RoaringBitmap::new()) });
        let (file, device) = temp_device(image_size(count, block_size));
        device.write(&layout.render_all(&log.unclean())).unwrap();
        let mut touched = RoaringBitmap::new();
        for region in &marks {
            log.mark(std::iter::once(RegionIndex(*region)), &mut touched).unwrap();
        }
        for region in &clears {
            log.clear(std::iter::once(RegionIndex(*region)), &mut touched).unwrap();
        }
        // Only the touched blocks are written, yet the whole image must read right.
        device.write(&layout.render_touched(&touched, &log.unclean())).unwrap();
        let image = std::fs::read(file.path()).unwrap();
        let (clean, failed) = kernel_resume(&image, count.0, SyncMode::Default);
        prop_assert!(!failed);
        prop_assert_eq!(clean, clean_of(&unclean_union(&log), count.0));
        // Padding bits past the last region stay clear, as the kernel leaves them.
        let last = count.0 as usize;
        for bit in last..last.next_multiple_of(32) {
            prop_assert_eq!(image[1024 + bit / 8] & (1 << (bit % 8)), 0);
        }
    }
}

#[test]
fn one_region_of_a_million_writes_one_block() {
    let args: LogArgs = "2000000 disk x 2".parse().unwrap();
    let count = args.region_count();
    assert_eq!(count, RegionCount(1_000_000));
    let mut log = RegionLog::new(&args);
    let loaded = format::load(&[], count, SyncMode::Default);
    log.resume(ResumeFrom::Real { loaded: Some(RoaringBitmap::new()) });
    let layout = Layout { count, block_size: 512, header_block: loaded.header_block };
    let (file, device) = temp_device(image_size(count, 512));
    device.write(&layout.render_all(&log.unclean())).unwrap();
    let mut touched = RoaringBitmap::new();
    log.mark(std::iter::once(RegionIndex(777_777)), &mut touched).unwrap();
    let commit = layout.render_touched(&touched, &log.unclean());
    device.write(&commit).unwrap();
    let written = commit.bytes();
    assert!(
        commit.blocks() <= 2 && written <= 2 * 512,
        "{} blocks, {written} bytes",
        commit.blocks()
    );
    // The kernel's disk log rewrites the whole image for the same change.
    assert_eq!(image_size(count, 512), 126_464);
    let image = std::fs::read(file.path()).unwrap();
    let (clean, _) = kernel_resume(&image, count.0, SyncMode::Default);
    assert_eq!(clean.iter().filter(|c| !**c).count(), 1);
    assert!(!clean[777_777]);
}

#[test]
fn a_log_device_too_small_for_the_image_is_refused() {
    let (_file, device) = temp_device(1024);
    let needed = image_size(RegionCount(10_000), device.block_size());
    assert!(device.check_size(needed).is_err());
    assert!(device.check_size(1024).is_ok());
}

#[test]
fn a_missing_log_device_is_a_clear_error() {
    let err = LogDevice::open("/nonexistent/log").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/log"), "{err}");
    assert_eq!(err.errno().0, libc::ENOENT);
    // major:minor names are looked up in sysfs; 0:0 is no block device.
    assert!(LogDevice::open("0:0").is_err());
    let err = LogDevice::open("/dev/null").unwrap_err();
    assert!(err.to_string().contains("neither a block device nor a regular file"), "{err}");
}

/// Every region whose clean bit the store writes as 0.
fn unclean_union(log: &RegionLog) -> RoaringBitmap {
    log.unclean().into_iter().fold(RoaringBitmap::new(), |all, set| all | set)
}

/// A CLEAR of a region out of sync leaves its clean bit 0 on disk, so that the next resume
/// resyncs it (tests/kernel/README.md, finding C); SET_REGION_SYNC(1) then writes it clean.
#[test]
fn a_region_out_of_sync_stays_unclean_on_disk_until_set_in_sync() {
    let args: LogArgs = "64 disk x 2".parse().unwrap();
    let count = args.region_count();
    let mut log = RegionLog::new(&args);
    let loaded = format::load(&[], count, SyncMode::Default);
    log.resume(ResumeFrom::Real { loaded: Some(RoaringBitmap::new()) });
    let layout = Layout { count, block_size: 512, header_block: loaded.header_block };
    let (file, device) = temp_device(image_size(count, 512));
    let region = RegionIndex(5);
    log.set_region_sync(region, false, ()).unwrap();
    log.mark(std::iter::once(region), ()).unwrap();
    log.clear(std::iter::once(region), ()).unwrap();
    device.write(&layout.render_all(&log.unclean())).unwrap();
    let image = std::fs::read(file.path()).unwrap();
    assert!(!kernel_resume(&image, count.0, SyncMode::Default).0[5]);
    assert!(!log.is_clean(region).unwrap());
    let mut touched = RoaringBitmap::new();
    log.set_region_sync(region, true, &mut touched).unwrap();
    device.write(&layout.render_touched(&touched, &log.unclean())).unwrap();
    let image = std::fs::read(file.path()).unwrap();
    assert!(kernel_resume(&image, count.0, SyncMode::Default).0[5]);
    assert!(log.is_clean(region).unwrap());
}
