//! `dm-ulogd inspect`: reads a disk log offline, in the kernel's format: its header, region
//! count, how many regions are clean and dirty, and the dirty regions as ranges.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use dm_ulog_actors::region::SyncMode;
use dm_ulog_actors::store::format::{
    self, bitset_size, Header, BITMAP_OFFSET, HEADER_LEN, MIRROR_MAGIC,
};
use dm_ulog_actors::units::RegionCount;
use serde::Serialize;

/// What a disk log holds.
#[derive(Debug, Serialize)]
pub struct Report {
    pub path: String,
    pub version: u32,
    pub regions: u64,
    pub clean: u64,
    pub dirty: u64,
    /// Inclusive ranges of dirty regions.
    pub dirty_ranges: Vec<(u64, u64)>,
}

pub fn run(path: &Path, json: bool) -> Result<(), String> {
    let report = read(path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("{}: dm disk log, version {}", report.path, report.version);
    println!("regions: {} ({} clean, {} dirty)", report.regions, report.clean, report.dirty);
    if !report.dirty_ranges.is_empty() {
        let ranges: Vec<String> = report
            .dirty_ranges
            .iter()
            .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect();
        println!("dirty: {}", ranges.join(" "));
    }
    Ok(())
}

pub fn read(path: &Path) -> Result<Report, String> {
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header).map_err(|e| format!("{name}: not a disk log: {e}"))?;
    let read = Header::read(&header);
    if !read.is_mirror_log() {
        let magic = read.magic;
        return Err(format!("{name}: not a dm disk log (magic {magic:#010x}, expected {MIRROR_MAGIC:#010x} \"MiRr\")"));
    }
    if !read.is_readable() {
        let version = read.version;
        return Err(format!("{name}: disk log version {version}, which the kernel cannot read"));
    }
    let count = RegionCount(read.nr_regions);
    if count.0 > u64::from(u32::MAX) {
        return Err(format!("{name}: header claims {count} regions, more than a log holds"));
    }
    let mut image = header.to_vec();
    let want = BITMAP_OFFSET as u64 + bitset_size(count);
    file.take(want - HEADER_LEN as u64)
        .read_to_end(&mut image)
        .map_err(|e| format!("{name}: {e}"))?;
    if (image.len() as u64) < want {
        return Err(format!(
            "{name}: cut short: {} bytes, the header's {count} regions need {want}",
            image.len()
        ));
    }
    let loaded = format::load(&image, count, SyncMode::Default);
    let mut dirty_ranges: Vec<(u64, u64)> = Vec::new();
    for region in loaded.dirty.iter().map(u64::from) {
        match dirty_ranges.last_mut() {
            Some((_, end)) if *end + 1 == region => *end = region,
            _ => dirty_ranges.push((region, region)),
        }
    }
    let dirty = loaded.dirty.len();
    Ok(Report {
        path: name,
        version: read.version,
        regions: count.0,
        clean: count.0 - dirty,
        dirty,
        dirty_ranges,
    })
}
