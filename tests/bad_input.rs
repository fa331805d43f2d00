//! The bad-input campaign against the real binary: every kind of broken datagram gets its
//! defined answer (or, where nothing can be answered, none), the daemon keeps serving the
//! other logs, and nothing already committed is lost.
//!
//! "No reply" is shown without timing: a valid probe request follows the bad one on the same
//! socket, and the next reply must be the probe's.

mod common;

use common::{clean_on_disk, log_file, Daemon, Raw, Seen, SmallFs};
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{RegionBatch, Request};

fn batch(regions: &[u64]) -> RegionBatch {
    RegionBatch::from_regions(regions).unwrap()
}

fn set_u16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_ne_bytes());
}

fn set_u32(frame: &mut [u8], at: usize, value: u32) {
    frame[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

const EINVAL: i32 = -libc::EINVAL;
const CN_LEN: usize = 32;
const REQUEST_TYPE: usize = 36 + 152;
const DATA_SIZE: usize = 36 + 156;

#[tokio::test]
async fn every_bad_input_gets_its_defined_reply_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let mut raw = Raw::new(dir.path(), &daemon.socket);

    // Two healthy logs with state to lose: a core log and a disk log.
    let ctr = |args: &str| Request::Ctr { args: args.into(), reconnect: false };
    assert_eq!(raw.call("good", &ctr("1000 core 8 nosync")).await.error, 0);
    assert_eq!(raw.call("good", &Request::MarkRegion(batch(&[5]))).await.error, 0);
    let disk_path = log_file(dir.path(), "disky", 125);
    let disk_args = format!("1000 disk {} 8 nosync", disk_path.display());
    assert_eq!(raw.call("disky", &ctr(&disk_args)).await.error, 0);
    assert_eq!(raw.call("disky", &Request::Resume).await.error, 0);
    assert_eq!(raw.call("disky", &Request::Flush(batch(&[9]))).await.error, 0);
    assert!(!clean_on_disk(&disk_path, 9));

    // Datagrams with no request header to answer.
    assert!(raw.unanswered(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).await, "10-byte datagram");
    let (_, mut foreign) = raw.frame("good", &Request::GetSyncCount);
    set_u32(&mut foreign, 16, 1); // cn id {1, 1}: the proc connector's, not ours
    assert!(raw.unanswered(&foreign).await, "foreign connector id");

    // A request header cut short: the zero-length EAGAIN ack, so the kernel resends.
    let (seq, mut short) = raw.frame("good", &Request::GetSyncCount);
    set_u16(&mut short, CN_LEN, 100);
    short.truncate(36 + 100);
    let ack = raw.answer(&short).await;
    assert_eq!(ack, Seen { seq, error: -libc::EAGAIN, data: vec![] });
    // A datagram larger than any connector message: cut at the receive buffer, incomplete.
    let (seq, mut huge) = raw.frame("good", &Request::GetSyncCount);
    set_u16(&mut huge, CN_LEN, 19_964);
    huge.resize(20_000, 0);
    assert_eq!(raw.answer(&huge).await, Seen { seq, error: -libc::EAGAIN, data: vec![] });

    // Headers in hand, payloads wrong: -EINVAL with the request's seq.
    let (seq, mut mismatch) = raw.frame("good", &Request::MarkRegion(batch(&[1])));
    set_u32(&mut mismatch, DATA_SIZE, 16); // cn.len says 8 payload bytes
    assert_eq!(raw.answer(&mismatch).await, Seen { seq, error: EINVAL, data: vec![] });
    let (seq, mut unknown) = raw.frame("good", &Request::GetSyncCount);
    set_u32(&mut unknown, REQUEST_TYPE, 99);
    assert_eq!(raw.answer(&unknown).await, Seen { seq, error: EINVAL, data: vec![] });
    // Only the low 8 bits name the type.
    let (seq, mut masked) = raw.frame("good", &Request::GetSyncCount);
    set_u32(&mut masked, REQUEST_TYPE, 0x0100 | 14);
    assert_eq!(
        raw.answer(&masked).await,
        Seen { seq, error: 0, data: 125u64.to_ne_bytes().to_vec() }
    );
    // 40 regions in one MARK: more than the kernel's 32.
    let (seq, mut oversized) = raw.frame("good", &Request::MarkRegion(batch(&[1; 32])));
    oversized.extend_from_slice(&[0u8; 64]);
    set_u16(&mut oversized, CN_LEN, 160 + 320);
    set_u32(&mut oversized, DATA_SIZE, 320);
    assert_eq!(raw.answer(&oversized).await, Seen { seq, error: EINVAL, data: vec![] });
    // A MARK of 12 bytes: not a whole number of regions.
    let (seq, mut ragged) = raw.frame("good", &Request::MarkRegion(batch(&[1, 2])));
    ragged.truncate(ragged.len() - 4);
    set_u16(&mut ragged, CN_LEN, 160 + 12);
    set_u32(&mut ragged, DATA_SIZE, 12);
    assert_eq!(raw.answer(&ragged).await, Seen { seq, error: EINVAL, data: vec![] });
    // Regions past the end of the log.
    assert_eq!(raw.call("good", &Request::MarkRegion(batch(&[3, 500]))).await.error, EINVAL);
    assert_eq!(raw.call("good", &Request::IsClean(RegionIndex(125))).await.error, EINVAL);
    assert_eq!(raw.call("good", &Request::IsClean(RegionIndex(3))).await.data, 1u64.to_ne_bytes());
    // Bad constructor arguments.
    for args in [
        "1000 core 3",
        "1000 core",
        "garbage",
        "1000 core 8 sometimes",
        "",
        "1000 disk /nonexistent/dev 8",
    ] {
        assert_eq!(
            raw.call("bad-ctr", &ctr(args)).await.error,
            if args.contains("/nonexistent") { -libc::ENOENT } else { EINVAL },
            "{args:?}"
        );
    }
    let (seq, mut binary) = raw.frame("bad-ctr", &ctr("1000 core 8"));
    binary[36 + 160 + 2] = 0xFF; // not UTF-8
    assert_eq!(raw.answer(&binary).await, Seen { seq, error: EINVAL, data: vec![] });
    // Unknown log: -ESRCH, which makes a kernel replay CTR and RESUME.
    assert_eq!(raw.call("nobody", &Request::GetSyncCount).await.error, -libc::ESRCH);
    // A duplicate CTR replaces the log (the kernel reuses luids without a DTR).
    assert_eq!(raw.call("dup", &ctr("1000 core 8 nosync")).await.error, 0);
    assert_eq!(raw.call("dup", &Request::MarkRegion(batch(&[4]))).await.error, 0);
    assert_eq!(raw.call("dup", &ctr("1000 core 8 nosync")).await.error, 0);
    assert_eq!(raw.call("dup", &Request::IsClean(RegionIndex(4))).await.data, 1u64.to_ne_bytes());
    // DTR twice.
    assert_eq!(raw.call("dup", &Request::Dtr).await.error, 0);
    assert_eq!(raw.call("dup", &Request::Dtr).await.error, -libc::ESRCH);

    // A log device that fails under the log: ENOSPC on a full file system.
    let small = SmallFs::mount(&dir.path().join("small"));
    let failing = log_file(&small.0, "failing", 200_000);
    small.fill();
    let failing_args = format!("1600000 disk {} 8", failing.display());
    assert_eq!(raw.call("failing", &ctr(&failing_args)).await.error, 0);
    assert_eq!(raw.call("failing", &Request::Resume).await.error, -libc::EIO);
    // A new log device is all dirty: a clear is the change that needs writing.
    assert_eq!(raw.call("failing", &Request::ClearRegion(batch(&[150_000]))).await.error, 0);
    assert_eq!(raw.call("failing", &Request::Flush(RegionBatch::EMPTY)).await.error, -libc::EIO);
    let status = raw.call("failing", &Request::StatusInfo).await.data;
    assert_eq!(status, format!("3 disk {} D\0", failing.display()).into_bytes());
    assert_eq!(raw.call("failing", &Request::Dtr).await.error, -libc::EIO);

    // Nothing the other logs had was lost, and they still serve.
    assert_eq!(raw.call("good", &Request::IsClean(RegionIndex(5))).await.data, 0u64.to_ne_bytes());
    assert_eq!(raw.call("disky", &Request::IsClean(RegionIndex(9))).await.data, 0u64.to_ne_bytes());
    assert!(!clean_on_disk(&disk_path, 9));
    assert_eq!(raw.call("disky", &Request::Postsuspend).await.error, 0);
    let status = raw.call("disky", &Request::StatusInfo).await.data;
    assert_eq!(status, format!("3 disk {} A\0", disk_path.display()).into_bytes());

    // Every refusal was logged, with the log's uuid where there was one.
    let output = daemon.output();
    for needle in [
        "unknown request type 0x63",
        "uuid=bad-ctr",
        "uuid=nobody",
        "uuid=failing",
        "incomplete",
        "not device-mapper",
    ] {
        assert!(output.contains(needle), "log lacks {needle:?}");
    }
}
