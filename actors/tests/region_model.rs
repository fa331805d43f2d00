//! RegionLog against a model written straight from drivers/md/dm-log.c: plain `Vec<bool>`
//! bit arrays with 1 = clean / in sync, and the kernel's functions transcribed line by line.
//! Random request sequences must get identical replies at every step.
//!
//! The intended differences (see region/log.rs), which the model follows:
//! - `core_set_region_sync` increments `sync_count` even for a region already in sync; both
//!   sides here count the regions in sync;
//! - dm-log.c's `core_is_clean` reads the clean bit alone, so a region cleared while out of
//!   sync is clean, its bit reaches the disk, and a resume then counts it in sync (finding C
//!   in tests/kernel/README.md). RegionLog reports a region clean only when it is also in
//!   sync: the model's IS_CLEAN is `clean_bits[r] && sync_bits[r]`.

use dm_ulog_actors::region::{LogArgs, RegionLog};
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{Errno, RegionBatch, Reply, ReplyPayload, Request};
use proptest::prelude::*;

/// dm-log.c's `struct log_c`, the parts a core log uses.
struct KernelCoreLog {
    region_size: u64,
    clean_bits: Vec<bool>,
    sync_bits: Vec<bool>,
    recovering_bits: Vec<bool>,
    sync_search: u64,
}

impl KernelCoreLog {
    fn new(region_count: u64, region_size: u64, nosync: bool) -> Self {
        let n = region_count as usize;
        KernelCoreLog {
            region_size,
            clean_bits: vec![true; n],
            sync_bits: vec![nosync; n],
            recovering_bits: vec![false; n],
            sync_search: 0,
        }
    }

    fn count(&self) -> u64 {
        self.clean_bits.len() as u64
    }

    fn index(&self, region: RegionIndex) -> Result<usize, Errno> {
        (region.0 < self.count()).then_some(region.0 as usize).ok_or(Errno::EINVAL)
    }

    fn answer(&mut self, request: &Request) -> Reply {
        match request {
            Request::Resume => {
                self.sync_search = 0; // core_resume
                Ok(ReplyPayload::Empty)
            }
            Request::Presuspend | Request::Postsuspend => Ok(ReplyPayload::Empty),
            Request::GetRegionSize => Ok(ReplyPayload::Count(self.region_size)),
            Request::IsClean(r) => Ok(ReplyPayload::Flag(self.is_clean(self.index(*r)?))),
            Request::InSync(r) => Ok(ReplyPayload::Flag(self.sync_bits[self.index(*r)?])),
            Request::Flush(batch) | Request::MarkRegion(batch) => {
                let regions = self.indices(batch)?;
                regions.into_iter().for_each(|r| self.clean_bits[r] = false); // core_mark_region
                Ok(ReplyPayload::Empty)
            }
            Request::ClearRegion(batch) => {
                let regions = self.indices(batch)?;
                regions.into_iter().for_each(|r| self.clean_bits[r] = true); // core_clear_region
                Ok(ReplyPayload::Empty)
            }
            Request::GetResyncWork => Ok(ReplyPayload::ResyncWork(self.get_resync_work())),
            Request::SetRegionSync { region, in_sync } => {
                let r = self.index(*region)?;
                self.recovering_bits[r] = false;
                if *in_sync {
                    self.sync_bits[r] = true;
                } else if self.sync_bits[r] {
                    self.sync_bits[r] = false;
                }
                Ok(ReplyPayload::Empty)
            }
            Request::GetSyncCount => {
                Ok(ReplyPayload::Count(self.sync_bits.iter().filter(|b| **b).count() as u64))
            }
            Request::IsRemoteRecovering(r) => {
                self.index(*r)?;
                let hint =
                    self.sync_bits.iter().position(|b| !b).map_or(self.count(), |p| p as u64);
                Ok(ReplyPayload::RemoteRecovering {
                    recovering: false,
                    in_sync_hint: RegionIndex(hint),
                })
            }
            other => panic!("not a region request: {other:?}"),
        }
    }

    /// `core_is_clean`, with the deviation in the header: out of sync is never clean.
    fn is_clean(&self, r: usize) -> bool {
        self.clean_bits[r] && self.sync_bits[r]
    }

    fn indices(&self, batch: &RegionBatch) -> Result<Vec<usize>, Errno> {
        batch.iter().map(|r| self.index(r)).collect()
    }

    /// core_get_resync_work.
    fn get_resync_work(&mut self) -> Option<RegionIndex> {
        if self.sync_search >= self.count() {
            return None;
        }
        loop {
            let start = self.sync_search as usize;
            let region = self.sync_bits[start..]
                .iter()
                .position(|b| !b)
                .map_or(self.count(), |p| (start + p) as u64); // find_next_zero_bit_le
            self.sync_search = region + 1;
            if region >= self.count() {
                return None;
            }
            if !self.recovering_bits[region as usize] {
                self.recovering_bits[region as usize] = true;
                return Some(RegionIndex(region));
            }
        }
    }
}

fn request(region_count: u64) -> impl Strategy<Value = Request> {
    // Mostly in range, sometimes just past the end.
    let region = move || (0..region_count + 2).prop_map(RegionIndex);
    let batch = move |min: usize| {
        prop::collection::vec(0..region_count + 1, min..=32)
            .prop_map(|v| RegionBatch::from_regions(&v).unwrap())
    };
    prop_oneof![
        1 => Just(Request::Resume),
        1 => Just(Request::Presuspend),
        1 => Just(Request::GetRegionSize),
        3 => region().prop_map(Request::IsClean),
        3 => region().prop_map(Request::InSync),
        3 => batch(0).prop_map(Request::Flush),
        4 => batch(1).prop_map(Request::MarkRegion),
        4 => batch(1).prop_map(Request::ClearRegion),
        4 => Just(Request::GetResyncWork),
        4 => (region(), any::<bool>()).prop_map(|(region, in_sync)| Request::SetRegionSync { region, in_sync }),
        2 => Just(Request::GetSyncCount),
        2 => region().prop_map(Request::IsRemoteRecovering),
    ]
}

fn scenario() -> impl Strategy<Value = (String, u64, bool, Vec<Request>)> {
    (1u32..6, 1u64..300, any::<bool>()).prop_flat_map(|(shift, regions, nosync)| {
        let region_size = 1u64 << shift;
        // A partial last region half of the time.
        let partial = regions > 1 && regions % 2 == 1;
        let target = regions * region_size - u64::from(partial) * (region_size / 2);
        let sync = if nosync { " nosync" } else { "" };
        let ctr = format!("{target} core {region_size}{sync}");
        (Just(ctr), Just(region_size), Just(nosync), prop::collection::vec(request(regions), 1..60))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn region_log_answers_as_dm_log_c((ctr, region_size, nosync, requests) in scenario()) {
        let args: LogArgs = ctr.parse().unwrap();
        let mut log = RegionLog::new(&args);
        let mut kernel = KernelCoreLog::new(args.region_count().0, region_size, nosync);
        for request in &requests {
            let ours = log.answer(request, ()).expect("a region request");
            let theirs = kernel.answer(request);
            prop_assert_eq!(ours, theirs, "after {:?}", request);
        }
        for r in 0..kernel.count() {
            prop_assert_eq!(log.is_clean(RegionIndex(r)).unwrap(), kernel.is_clean(r as usize));
            prop_assert_eq!(log.in_sync(RegionIndex(r)).unwrap(), kernel.sync_bits[r as usize]);
        }
    }
}

#[test]
fn a_new_core_log_resyncs_everything_unless_nosync() {
    let mut log = RegionLog::new(&"100 core 8".parse().unwrap());
    assert_eq!(log.sync_count(), 0);
    assert_eq!(log.get_resync_work(()), Some(RegionIndex(0)));
    assert_eq!(log.get_resync_work(()), Some(RegionIndex(1)));
    log.set_region_sync(RegionIndex(0), true, ()).unwrap();
    assert_eq!(log.sync_count(), 1);
    // The same SET_REGION_SYNC resent after a timeout does not count twice.
    log.set_region_sync(RegionIndex(0), true, ()).unwrap();
    assert_eq!(log.sync_count(), 1);
    let nosync = RegionLog::new(&"100 core 8 nosync".parse().unwrap());
    assert_eq!(nosync.sync_count(), 13);
}

#[test]
fn a_batch_with_one_bad_region_changes_nothing() {
    let mut log = RegionLog::new(&"100 core 8 nosync".parse().unwrap());
    let batch = RegionBatch::from_regions(&[1, 2, 13]).unwrap();
    assert_eq!(log.answer(&Request::MarkRegion(batch), ()), Some(Err(Errno::EINVAL)));
    assert!(log.is_clean(RegionIndex(1)).unwrap());
}
