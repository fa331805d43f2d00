//! [`Committer`]: one log's device in use, and the rules of writing it that every disk log
//! follows, single-host and clustered alike.
//!
//! What a commit writes: the blocks of the regions touched since the last one, unless the
//! device is stale (a write failed, or this log never wrote it whole), when it is the whole
//! image, header included. What a commit's end says of the device: a failed write leaves it
//! stale, with the health dm-log.c gives it (`D`, or `F` if only making it durable failed);
//! the whole image written makes it `A` again. The committer does no I/O and answers no
//! one: its owner hands [`Committer::begin`]'s writing to the [`Flusher`] and reports back
//! through [`Committer::end`], so that the two log actors keep their own waiters.
//!
//! What a FLUSH must wait for: a commit of every change towards unclean (a mark, a region
//! put out of sync) received before it. Changes towards clean (clears, recoveries) promise
//! nothing the kernel relies on: one lost to a crash keeps its region dirty on the device,
//! which costs a resync of a region that was in sync, never data. So while the device is
//! not stale and nothing towards unclean is pending or on its way, a FLUSH
//! [owes nothing](Committer::owes_nothing): it may be answered before its changes are
//! durable, and they are committed behind it.

use std::collections::VecDeque;
use std::time::Duration;

use roaring::RoaringBitmap;

use super::flusher::{Flusher, Writing};
use super::format::BITMAP_OFFSET;
use super::{Claim, DeviceError, Layout};
use crate::region::RegionObserver;

/// How long the changes behind an answered FLUSH may wait for a commit someone waits for
/// to take them along: in a busy mirror the next write's FLUSH does, so that a write costs
/// one fdatasync, not two; in an idle one they are on the device this long after. Single-host
/// and clustered-disk logs both follow it.
pub(crate) const COMMIT_BEHIND_DELAY: Duration = Duration::from_millis(50);

/// How many commit times the status report's percentiles are taken over.
const COMMIT_TIMES_KEPT: usize = 512;

/// The health letter of a disk log's status line (dm-log.c: A, D, F).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Alive,
    /// A read or write of the log device failed.
    Failed,
    /// Making a write durable failed.
    FlushFailed,
}

impl Health {
    pub fn letter(self) -> char {
        match self {
            Health::Alive => 'A',
            Health::Failed => 'D',
            Health::FlushFailed => 'F',
        }
    }

    /// What a failed write says of the device.
    pub fn after(error: &DeviceError) -> Health {
        match error {
            DeviceError::Flush { .. } => Health::FlushFailed,
            _ => Health::Failed,
        }
    }
}

/// What a commit on its way to the device writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The blocks of the regions touched since the last commit.
    Touched,
    /// The whole image, repairing a stale device.
    Whole,
}

/// What changed since the last commit began: the regions whose clean bit the next commit
/// writes, and whether any of them became unclean (then a FLUSH waits for it). The log's
/// [`RegionObserver`].
#[derive(Debug, Default)]
pub struct Changed {
    touched: RoaringBitmap,
    towards_unclean: bool,
}

impl Changed {
    /// `regions` changed, in either direction for all this log knows (the clustered writer
    /// knows only what differs from what it wrote last).
    #[cfg(feature = "cluster")]
    pub fn add(&mut self, regions: &RoaringBitmap) {
        self.touched |= regions;
        self.towards_unclean |= !regions.is_empty();
    }
}

impl RegionObserver for Changed {
    fn clean_bit_changed(&mut self, region: u32, clean: bool) {
        self.touched.insert(region);
        self.towards_unclean |= !clean;
    }
}

/// A commit on its way to the device.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    extent: Extent,
    towards_unclean: bool,
}

/// One log's device, its I/O thread and what its next commit must write. Its owner (the
/// log actor) decides when to commit and whom to answer.
pub struct Committer {
    flusher: Flusher,
    layout: Layout,
    status_name: String,
    /// Keeps other mirrors off this device while the log lives.
    _claim: Claim,
    health: Health,
    /// The device may hold anything where this log was to write: the next commit writes the
    /// whole image.
    stale: bool,
    in_flight: Option<InFlight>,
    changed: Changed,
    /// How long the last commits took, newest last, for the status report.
    commit_times: VecDeque<Duration>,
}

impl Committer {
    /// The device side of a log laid out as `layout`; `stale` if its first commit must write
    /// the whole image.
    pub fn new(flusher: Flusher, claim: Claim, layout: Layout, stale: bool) -> Committer {
        let status_name = flusher.device().status_name();
        Committer {
            flusher,
            layout,
            status_name,
            _claim: claim,
            health: Health::Alive,
            stale,
            in_flight: None,
            changed: Changed::default(),
            commit_times: VecDeque::new(),
        }
    }

    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The header block a load found, kept as it is in every later write.
    pub fn keep_header(&mut self, header_block: Box<[u8; BITMAP_OFFSET]>) {
        self.layout.header_block = header_block;
    }

    /// The device's status name (`major:minor`, or the file's path).
    pub fn status_name(&self) -> &str {
        &self.status_name
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Says the device is in a state this log must not build on (read, or written, by
    /// someone else meanwhile): the next commit writes it whole.
    pub fn mark_stale(&mut self, health: Option<Health>) {
        self.stale = true;
        if let Some(health) = health {
            self.health = health;
        }
    }

    /// Where the log reports the regions whose clean bit changes.
    pub fn changed(&mut self) -> &mut Changed {
        &mut self.changed
    }

    /// Whether a region changed since the last commit began.
    pub fn has_changes(&self) -> bool {
        !self.changed.touched.is_empty()
    }

    /// Whether changes wait to be committed behind an answered FLUSH. A stale device is
    /// written again only for someone who waits: a failing device is not rewritten in a loop.
    pub fn has_changes_behind(&self) -> bool {
        self.has_changes() && !self.stale
    }

    /// Whether a commit would write anything: a region changed, or the device is stale.
    pub fn has_work(&self) -> bool {
        self.stale || self.has_changes()
    }

    /// Whether a FLUSH now may be answered before anything more is durable: the device is
    /// not stale (no failed write waits for its repair), and no change towards unclean is
    /// pending or on its way to the device (the module's header says why that is safe).
    pub fn owes_nothing(&self) -> bool {
        let in_flight = self.in_flight.is_some_and(|commit| commit.towards_unclean);
        !self.stale && !self.changed.towards_unclean && !in_flight
    }

    pub fn is_committing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The whole image of a log whose regions not clean are `unclean`: nothing touched is
    /// left to write once it is written.
    pub fn whole(&mut self, unclean: &[&RoaringBitmap]) -> Writing {
        self.changed = Changed::default();
        let unclean = unclean.iter().map(|set| (*set).clone()).collect();
        Writing::Whole { layout: self.layout.clone(), unclean }
    }

    /// Starts a commit of a log whose regions not clean are `unclean`; returns what to hand
    /// the I/O thread, and what it is.
    pub fn begin(&mut self, unclean: &[&RoaringBitmap]) -> (Writing, Extent) {
        let towards_unclean = self.changed.towards_unclean;
        let (writing, extent) = if self.stale {
            (self.whole(unclean), Extent::Whole)
        } else {
            let Changed { touched, .. } = std::mem::take(&mut self.changed);
            (Writing::Blocks(self.layout.render_touched(&touched, unclean)), Extent::Touched)
        };
        self.in_flight = Some(InFlight { extent, towards_unclean });
        (writing, extent)
    }

    /// Ends the commit begun last, `took` long, and records what it says of the device.
    pub fn end(&mut self, took: Duration, written: &Result<(), DeviceError>) {
        let extent = self.in_flight.take().map(|commit| commit.extent);
        if self.commit_times.len() == COMMIT_TIMES_KEPT {
            self.commit_times.pop_front();
        }
        self.commit_times.push_back(took);
        match written {
            // What the failed write left on the device is unknown, the blocks it wrote for
            // regions touched since included.
            Err(error) => self.mark_stale(Some(Health::after(error))),
            Ok(()) if extent == Some(Extent::Whole) => {
                self.stale = false;
                self.health = Health::Alive;
            }
            Ok(()) => {}
        }
    }

    /// A resume wrote the whole image: the device's health is decided afresh, `loaded` being
    /// what reading it said.
    pub fn resumed(&mut self, loaded: Health, written: &Result<(), DeviceError>) {
        self.stale = written.is_err();
        self.health = match written {
            Err(error) => Health::after(error),
            Ok(()) => loaded,
        };
    }

    /// The `q` quantile of the last commit times, in microseconds.
    pub fn commit_time_us(&self, q: f64) -> Option<f64> {
        let mut times: Vec<Duration> = self.commit_times.iter().copied().collect();
        times.sort_unstable();
        let last = times.len().checked_sub(1)?;
        Some(times[(last as f64 * q).round() as usize].as_secs_f64() * 1e6)
    }
}
