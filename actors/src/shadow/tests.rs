//! The shadow file: round trips through snapshot and journal, and every way a file found at
//! a reconnect can be wrong.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::*;
use crate::region::{LogArgs, ResumeFrom, ShadowSets};
use crate::units::RegionIndex;
use crate::wire::Uuid;

const CTR: &str = "512 disk /dev/ram2 8";

fn key(luid: u64) -> LogKey {
    LogKey { uuid: Uuid::new("LVM-shadow-test").unwrap(), luid }
}

/// A disk log of 64 regions, resumed all in sync.
fn log() -> RegionLog {
    let args: LogArgs = CTR.parse().unwrap();
    let mut log = RegionLog::new(&args);
    log.resume(ResumeFrom::Real { loaded: Some(RoaringBitmap::new()) });
    log
}

fn owner(key: &LogKey) -> Owner<'_> {
    Owner { key, ctr: CTR }
}

/// `dir/state`, checked and open, keeping up to `budget` journals open.
fn state_dir(dir: &std::path::Path, budget: usize) -> Arc<StateDir> {
    Arc::new(StateDir::open(&dir.join("state"), budget).unwrap())
}

/// The shadow of a fresh [`log`] of luid 7 in `dir`, saved.
fn saved_shadow(dir: &std::path::Path) -> (LogKey, Shadow, RegionLog) {
    let key = key(7);
    let mut shadow = Shadow::new(state_dir(dir, 4), &key);
    let log = log();
    shadow.save(owner(&key), &log).unwrap();
    (key, shadow, log)
}

/// Appends what `log` reported to `shadow` since its last write.
fn journal(shadow: &mut Shadow, key: &LogKey, log: &RegionLog) {
    shadow.journal(owner(key), log).unwrap();
}

#[test]
fn snapshot_and_journal_replay_to_the_state_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (key, mut shadow, mut log) = saved_shadow(dir.path());
    log.set_region_sync(RegionIndex(3), false, shadow.pending()).unwrap();
    log.set_region_sync(RegionIndex(9), false, shadow.pending()).unwrap();
    journal(&mut shadow, &key, &log);
    // Recovery of 3 succeeds, 9 is handed out, 20 to 22 are marked and 22 cleared.
    assert_eq!(log.get_resync_work(shadow.pending()), Some(RegionIndex(3)));
    log.set_region_sync(RegionIndex(3), true, shadow.pending()).unwrap();
    assert_eq!(log.get_resync_work(shadow.pending()), Some(RegionIndex(9)));
    log.mark([20, 21, 22].map(RegionIndex).into_iter(), shadow.pending()).unwrap();
    log.clear(std::iter::once(RegionIndex(22)), shadow.pending()).unwrap();
    journal(&mut shadow, &key, &log);

    let replayed = shadow.load(owner(&key), 64).unwrap().expect("a shadow");
    assert!(!replayed.torn_tail);
    assert_eq!(replayed.sets, log.shadow_sets());
    assert_eq!(replayed.sets.out_of_sync, RoaringBitmap::from_iter([9]));
    assert_eq!(replayed.sets.recovering, RoaringBitmap::from_iter([9]));
    assert_eq!(replayed.sets.dirty, RoaringBitmap::from_iter([20, 21]));
}

#[test]
fn a_torn_last_record_is_dropped_and_what_precedes_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (key, mut shadow, mut log) = saved_shadow(dir.path());
    for region in [1, 2].map(RegionIndex) {
        log.set_region_sync(region, false, shadow.pending()).unwrap();
    }
    journal(&mut shadow, &key, &log);
    // The last record loses its last byte, as a write cut by a crash would leave it.
    let bytes = std::fs::read(shadow.path()).unwrap();
    std::fs::write(shadow.path(), &bytes[..bytes.len() - 1]).unwrap();

    let replayed = shadow.load(owner(&key), 64).unwrap().expect("a shadow");
    assert!(replayed.torn_tail);
    assert_eq!(replayed.sets.out_of_sync, RoaringBitmap::from_iter([1]));
}

#[test]
fn garbage_or_a_cut_snapshot_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (key, shadow, _) = saved_shadow(dir.path());
    let bytes = std::fs::read(shadow.path()).unwrap();
    for broken in [b"not a shadow at all".to_vec(), bytes[..bytes.len() / 2].to_vec(), Vec::new()] {
        std::fs::write(shadow.path(), &broken).unwrap();
        let error = shadow.load(owner(&key), 64).unwrap_err();
        assert!(
            matches!(error, LoadError::Unusable { why: Unusable::Unreadable(_), .. }),
            "{error}"
        );
    }
    // A checksum that holds over a payload that is no snapshot.
    std::fs::write(shadow.path(), format::changes(&[Change::InSync(1)])).unwrap();
    assert!(shadow.load(owner(&key), 64).is_err());
}

#[test]
fn a_shadow_of_another_table_or_log_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (seven, shadow, _) = saved_shadow(dir.path());
    let other_ctr = Owner { key: &seven, ctr: "512 disk /dev/ram2 8 nosync" };
    assert!(matches!(
        shadow.load(other_ctr, 64),
        Err(LoadError::Unusable { why: Unusable::OtherLog, .. })
    ));
    // The file holds luid 7; a log of luid 8 reading it (a hash collision) must not take it.
    let other_luid = key(8);
    assert!(matches!(
        shadow.load(owner(&other_luid), 64),
        Err(LoadError::Unusable { why: Unusable::OtherLog, .. })
    ));
}

#[test]
fn no_file_is_no_shadow_and_discard_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = key(7);
    let mut shadow = Shadow::new(state_dir(dir.path(), 4), &key);
    assert!(shadow.load(owner(&key), 64).unwrap().is_none());
    shadow.save(owner(&key), &log()).unwrap();
    shadow.discard().unwrap();
    assert!(!shadow.path().exists());
    shadow.discard().unwrap();
}

#[test]
fn a_long_journal_is_compacted_into_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (key, mut shadow, mut log) = saved_shadow(dir.path());
    for round in 0..10_000u64 {
        log.set_region_sync(RegionIndex(round % 64), round % 3 == 0, shadow.pending()).unwrap();
        journal(&mut shadow, &key, &log);
    }
    let size = std::fs::metadata(shadow.path()).unwrap().len();
    assert!(size <= MIN_COMPACT_BYTES, "{size} bytes");
    let replayed = shadow.load(owner(&key), 64).unwrap().unwrap();
    assert_eq!(replayed.sets, log.shadow_sets());
}

#[test]
fn a_core_log_keeps_no_dirty_set() {
    let args: LogArgs = "512 core 8".parse().unwrap();
    let mut log = RegionLog::new(&args);
    let mut reported = Vec::new();
    log.mark(std::iter::once(RegionIndex(4)), &mut reported).unwrap();
    log.clear(std::iter::once(RegionIndex(4)), &mut reported).unwrap();
    assert!(reported.is_empty());
    assert_eq!(log.shadow_sets().dirty, RoaringBitmap::new());
    assert_eq!(
        log.shadow_sets(),
        ShadowSets { out_of_sync: (0..64).collect(), ..Default::default() }
    );
}

#[test]
fn a_journal_past_the_open_budget_is_opened_for_each_record() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path(), 1);
    let (first, second) = (key(1), key(2));
    let (mut kept, mut reopened) =
        (Shadow::new(state.clone(), &first), Shadow::new(state, &second));
    let (mut log_a, mut log_b) = (log(), log());
    kept.save(owner(&first), &log_a).unwrap();
    reopened.save(owner(&second), &log_b).unwrap();
    assert!(matches!(kept.journal, Journal::Open(..)));
    assert!(matches!(reopened.journal, Journal::Closed), "the budget of one is spent");
    for (shadow, key, log) in
        [(&mut kept, &first, &mut log_a), (&mut reopened, &second, &mut log_b)]
    {
        log.set_region_sync(RegionIndex(5), false, shadow.pending()).unwrap();
        journal(shadow, key, log);
        let replayed = shadow.load(owner(key), 64).unwrap().unwrap();
        assert_eq!(replayed.sets, log.shadow_sets());
    }
}

#[test]
fn a_failed_write_removes_the_file_and_the_next_change_writes_it_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (key, mut shadow, mut log) = saved_shadow(dir.path());
    // The aside name taken by a directory: the next snapshot cannot be created.
    std::fs::create_dir(dir.path().join("state").join(shadow.aside.to_str().unwrap())).unwrap();
    log.set_region_sync(RegionIndex(3), false, shadow.pending()).unwrap();
    shadow.compact_at = 0; // this change compacts, so it writes a snapshot
    assert!(shadow.journal(owner(&key), &log).is_err());
    assert!(!shadow.path().exists(), "no stale shadow is left behind");
    assert!(matches!(shadow.journal, Journal::Missing), "the next change writes it afresh");
    std::fs::remove_dir(dir.path().join("state").join(shadow.aside.to_str().unwrap())).unwrap();
    log.set_region_sync(RegionIndex(4), false, shadow.pending()).unwrap();
    journal(&mut shadow, &key, &log);
    let replayed = shadow.load(owner(&key), 64).unwrap().expect("written afresh");
    assert_eq!(replayed.sets, log.shadow_sets());
}
