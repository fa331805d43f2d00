//! The daemon on an unlucky or hostile host: failing writes, full file systems, planted
//! files, a second daemon, clients that never read, signals, and strings meant to forge log
//! lines. Each test is one of the ways the real binary (over the unix transport) could let
//! the host get the better of it.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::{clean_on_disk, log_file, Daemon, Raw, SmallFs};
use dm_ulog_actors::region::{LogArgs, ShadowSets};
use dm_ulog_actors::shadow::format::snapshot;
use dm_ulog_actors::shadow::{Owner, Shadow, StateDir};
use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::{LogKey, RegionBatch, Request, Uuid};

const EIO: i32 = -libc::EIO;

fn ctr(args: &str) -> Request {
    Request::Ctr { args: args.into(), reconnect: false }
}

fn batch(regions: &[u64]) -> RegionBatch {
    RegionBatch::from_regions(regions).unwrap()
}

fn status_letter(raw_status: &[u8]) -> char {
    let line = String::from_utf8_lossy(raw_status);
    line.trim_end_matches('\0').chars().last().unwrap()
}

/// Frees the page of `path` at `offset` (tmpfs gives it back to the file system).
fn punch_page(path: &Path, offset: i64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate(2) on a file this function holds open.
    assert_eq!(unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, 4096) }, 0);
}

/// A daemon serving one 60,000-region disk log (three pages of image) on a 64 KiB tmpfs,
/// created `nosync` and resumed: written all clean. Fields drop in order, the tmpfs before
/// the directory it is mounted in.
struct SmallDiskLog {
    raw: Raw,
    _daemon: Daemon,
    small: SmallFs,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDiskLog {
    async fn resumed(uuid: &str) -> SmallDiskLog {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path(), &[]);
        let mut raw = Raw::new(dir.path(), &daemon.socket);
        let small = SmallFs::mount(&dir.path().join("small"));
        let log = log_file(&small.0, "log", 60_000);
        let args = format!("480000 disk {} 8 nosync", log.display());
        assert_eq!(raw.call(uuid, &ctr(&args)).await.error, 0);
        assert_eq!(raw.call(uuid, &Request::Resume).await.error, 0);
        SmallDiskLog { raw, _daemon: daemon, small, log, _dir: dir }
    }
}

/// A FLUSH after nothing but a clear owes nothing, so it is answered at once and the clear is
/// written behind it. That write fails here: the FLUSHes after it answer -EIO until a
/// write repairs the device, and the repair writes the clear too.
#[tokio::test]
async fn a_failed_write_behind_an_answered_flush_fails_every_flush_until_repaired() {
    let mut disk = SmallDiskLog::resumed("behind").await;
    // Region 58000's bit is in the third page.
    assert_eq!(disk.raw.call("behind", &Request::Flush(batch(&[58_000]))).await.error, 0);
    assert!(!clean_on_disk(&disk.log, 58_000));
    // The third page gone and no room for it: the next write there fails.
    punch_page(&disk.log, 8192);
    disk.small.fill();
    assert_eq!(disk.raw.call("behind", &Request::ClearRegion(batch(&[58_000]))).await.error, 0);
    assert_eq!(disk.raw.call("behind", &Request::Flush(RegionBatch::EMPTY)).await.error, 0);
    // Waiting for the write behind that FLUSH to fail is set-up, not an assertion.
    while status_letter(&disk.raw.call("behind", &Request::StatusInfo).await.data) != 'D' {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(disk.raw.call("behind", &Request::Flush(RegionBatch::EMPTY)).await.error, EIO);
    assert_eq!(disk.raw.call("behind", &Request::Flush(batch(&[1]))).await.error, EIO);
    disk.small.free();
    assert_eq!(disk.raw.call("behind", &Request::Flush(RegionBatch::EMPTY)).await.error, 0);
    assert!(clean_on_disk(&disk.log, 58_000), "the repair wrote the clear");
    assert!(!clean_on_disk(&disk.log, 1));
    assert_eq!(status_letter(&disk.raw.call("behind", &Request::StatusInfo).await.data), 'A');
}

#[tokio::test]
async fn a_failed_whole_image_write_is_repaired_before_any_flush_succeeds() {
    let mut disk = SmallDiskLog::resumed("stale").await;
    let args = |sync: &str| format!("480000 disk {} 8 {sync}", disk.log.display());
    assert_eq!(disk.raw.call("stale", &Request::Postsuspend).await.error, 0);
    assert_eq!(disk.raw.call("stale", &Request::Dtr).await.error, 0);
    assert!(clean_on_disk(&disk.log, 58_000));
    // The next table resyncs everything, so its resume writes the image all dirty. Its
    // second page has no room: the write stops there, and the third page keeps its old bits.
    punch_page(&disk.log, 4096);
    disk.small.fill();
    assert_eq!(disk.raw.call("stale", &ctr(&args("sync"))).await.error, 0);
    assert_eq!(disk.raw.call("stale", &Request::Resume).await.error, EIO);
    assert!(clean_on_disk(&disk.log, 58_000), "the device still holds the old bit");
    // Region 58000 is dirty in memory already, so its MARK changes nothing there; the FLUSH
    // must still not claim what the device lacks.
    assert_eq!(disk.raw.call("stale", &Request::MarkRegion(batch(&[58_000]))).await.error, 0);
    assert_eq!(disk.raw.call("stale", &Request::Flush(RegionBatch::EMPTY)).await.error, EIO);
    assert_eq!(disk.raw.call("stale", &Request::Flush(batch(&[59_000]))).await.error, EIO);
    let status = disk.raw.call("stale", &Request::StatusInfo).await.data;
    assert_eq!(status_letter(&status), 'D');
    // Room again: the next FLUSH rewrites the whole image, and only then answers 0.
    disk.small.free();
    assert_eq!(disk.raw.call("stale", &Request::Flush(batch(&[59_000]))).await.error, 0);
    assert!(!clean_on_disk(&disk.log, 58_000) && !clean_on_disk(&disk.log, 59_000));
    assert!(!clean_on_disk(&disk.log, 100), "every region of the new table is to be resynced");
    let status = disk.raw.call("stale", &Request::StatusInfo).await.data;
    assert_eq!(status_letter(&status), 'A');

    // A resume that wrote nothing at all, not even the header.
    let headless = log_file(&disk.small.0, "headless", 64);
    disk.small.fill();
    let headless_args = format!("512 disk {} 8", headless.display());
    assert_eq!(disk.raw.call("headless", &ctr(&headless_args)).await.error, 0);
    assert_eq!(disk.raw.call("headless", &Request::Resume).await.error, EIO);
    assert_eq!(disk.raw.call("headless", &Request::Flush(RegionBatch::EMPTY)).await.error, EIO);
    disk.small.free();
    assert_eq!(disk.raw.call("headless", &Request::Flush(RegionBatch::EMPTY)).await.error, 0);
    let image = std::fs::read(&headless).unwrap();
    assert_eq!(&image[0..4], &0x4D69_5272u32.to_le_bytes(), "the header, written at last");
    assert_eq!(u64::from_le_bytes(image[8..16].try_into().unwrap()), 64);
}

#[tokio::test]
async fn a_ctr_answered_with_an_error_leaves_no_log_behind() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    // A device name longer than the kernel's 128 bytes: the CTR reply cannot carry it.
    let deep = dir.path().join("d".repeat(100)).join("e".repeat(100));
    std::fs::create_dir_all(&deep).unwrap();
    let long = log_file(&deep, "log", 64);
    let reply = raw.call("long-name", &ctr(&format!("512 disk {} 8", long.display()))).await;
    assert_eq!(reply.error, -libc::ENOSPC);
    assert_eq!(raw.call("long-name", &Request::GetSyncCount).await.error, -libc::ESRCH);
    assert!(daemon.status().is_empty(), "no log was left behind");
    // Nor its claim on the device: another mirror may use it, under a shorter name.
    let short = dir.path().join("short");
    std::os::unix::fs::symlink(&long, &short).unwrap();
    let reply = raw.call("other", &ctr(&format!("512 disk {} 8", short.display()))).await;
    assert_eq!(reply.error, 0);
}

#[tokio::test]
async fn two_mirrors_never_share_a_log_device() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    let log = log_file(dir.path(), "log", 64);
    let args = format!("512 disk {} 8", log.display());
    assert_eq!(raw.call("first", &ctr(&args)).await.error, 0);
    assert_eq!(raw.call("first", &Request::Resume).await.error, 0);
    // Another mirror on the same device, even by another name for it.
    assert_eq!(raw.call("second", &ctr(&args)).await.error, -libc::EBUSY);
    let alias = dir.path().join("alias");
    std::os::unix::fs::symlink(&log, &alias).unwrap();
    let aliased = format!("512 disk {} 8", alias.display());
    assert_eq!(raw.call("second", &ctr(&aliased)).await.error, -libc::EBUSY);
    // The same mirror's inactive table, as a reload loads it: the same uuid, another luid.
    raw.luid = 78;
    assert_eq!(raw.call("first", &ctr(&args)).await.error, 0);
    assert_eq!(raw.call("first", &Request::Dtr).await.error, 0);
    raw.luid = 77;
    assert_eq!(raw.call("second", &ctr(&args)).await.error, -libc::EBUSY, "77 still holds it");
    assert_eq!(raw.call("first", &Request::Dtr).await.error, 0);
    assert_eq!(raw.call("second", &ctr(&args)).await.error, 0);
    assert!(daemon.output().contains("the log of another mirror already (uuid first)"));
}

#[tokio::test]
async fn a_state_dir_others_may_write_or_a_symlink_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&open, &link).unwrap();
    for (name, state_dir, why) in [("open", &open, "mode 777"), ("link", &link, "is a symlink")] {
        let home = dir.path().join(format!("daemon-{name}"));
        std::fs::create_dir(&home).unwrap();
        let state = state_dir.display().to_string();
        let mut daemon = Daemon::start(&home, &["--state-dir", &state]);
        let mut raw = Raw::new(&home, &daemon.socket);
        assert_eq!(raw.call("core", &ctr("512 core 8")).await.error, 0);
        assert_eq!(raw.call("core", &Request::Resume).await.error, 0);
        daemon.terminate();
        let output = daemon.output();
        assert!(output.contains(why) && output.contains("serving without shadows"), "{output}");
        let files: Vec<_> = std::fs::read_dir(&open).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(files.iter().all(|f| !f.to_string_lossy().ends_with(".shadow")), "{files:?}");
    }
}

#[tokio::test]
async fn a_link_planted_in_state_dir_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "root only").unwrap();
    let key = LogKey { uuid: Uuid::new("planted").unwrap(), luid: raw.luid };
    let state = Arc::new(StateDir::open(&daemon.state_dir(), 1).unwrap());
    let aside = Shadow::new(state, &key).path().with_extension("new");
    std::os::unix::fs::symlink(&victim, &aside).unwrap();
    assert_eq!(raw.call("planted", &ctr("512 core 8")).await.error, 0);
    assert_eq!(raw.call("planted", &Request::Resume).await.error, 0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root only");
    assert!(!aside.exists(), "the link was removed, not followed");
    assert!(aside.with_extension("shadow").exists(), "and the shadow written");
}

#[tokio::test]
async fn a_shadow_never_makes_a_log_cleaner_than_its_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    let log = log_file(dir.path(), "log", 64);
    let args = format!("512 disk {} 8 nosync", log.display());
    assert_eq!(raw.call("forged", &ctr(&args)).await.error, 0);
    assert_eq!(raw.call("forged", &Request::Resume).await.error, 0);
    assert_eq!(raw.call("forged", &Request::Flush(batch(&[7]))).await.error, 0);
    daemon.kill();
    // A shadow saying that nothing is dirty, where the daemon's said region 7 was.
    let key = LogKey { uuid: Uuid::new("forged").unwrap(), luid: raw.luid };
    let ctr_string = args.parse::<LogArgs>().unwrap().to_string();
    let forged = snapshot(Owner { key: &key, ctr: &ctr_string }, &ShadowSets::default());
    let state = Arc::new(StateDir::open(&daemon.state_dir(), 1).unwrap());
    std::fs::write(Shadow::new(state, &key).path(), forged).unwrap();
    daemon.restart();
    let mut raw = Raw::bound(&dir.path().join("raw2.sock"), &daemon.socket);
    let reconnect = Request::Ctr { args: args.clone(), reconnect: true };
    assert_eq!(raw.call("forged", &reconnect).await.error, 0);
    assert_eq!(raw.call("forged", &Request::Resume).await.error, 0);
    assert!(daemon.output().contains("sync state taken back from the shadow"));
    assert_eq!(raw.call("forged", &Request::IsClean(RegionIndex(7))).await.data, [0; 8]);
    assert!(!clean_on_disk(&log, 7), "the device was not rewritten clean");
}

#[tokio::test]
async fn a_peer_that_never_reads_stalls_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &["--metrics-listen", "0"]);
    let mut deaf = Raw::bound(&dir.path().join("deaf.sock"), &daemon.socket);
    let mut other = Raw::new(dir.path(), &daemon.socket);
    assert_eq!(other.call("core", &ctr("512 core 8")).await.error, 0);
    // The deaf client sends and never reads: its queue fills, and every reply after that
    // has nowhere to go. More of them than may wait for room.
    for _ in 0..5000 {
        let (_, frame) = deaf.frame("core", &Request::GetSyncCount);
        deaf.send(&frame).await;
    }
    // The other client is answered while the deaf one's replies wait for room.
    assert_eq!(other.call("core", &Request::GetSyncCount).await.error, 0);
    let unsent = || common::sample(&common::scrape(&daemon), "dm_ulogd_replies_unsent_total");
    // Those past the limit are given up at once, and counted (by the thread that retries).
    while unsent().expect("counted") < 800.0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_control_socket_outlives_idle_clients_and_descriptor_exhaustion() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_limited(dir.path(), &[], Some(64));
    let control = dir.path().join("control.sock");
    // More idle connections than the daemon has descriptors left.
    let idle: Vec<_> =
        (0..100).map(|_| std::os::unix::net::UnixStream::connect(&control).unwrap()).collect();
    // Each is closed by the daemon, at once or when it has idled too long, or is still
    // waiting to be accepted; none of them may end the socket.
    drop(idle);
    let logs = daemon.status();
    assert!(logs.is_empty());
    // An unknown command gets JSON too.
    let answer = common::control(&control, "help\n");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("valid JSON");
    assert_eq!(answer["error"].as_str(), Some("unknown command \"help\""));
}

#[tokio::test]
async fn a_second_daemon_on_the_same_state_dir_exits_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Daemon::start(dir.path(), &[]);
    let state = first.state_dir().display().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
        .args(["--config", &first.config().display().to_string()])
        .args(["--transport", &format!("unix:{}", first.socket.display())])
        .args(["--control-socket", &dir.path().join("control.sock").display().to_string()])
        .args(["--state-dir", &state])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("another dm-ulogd (pid {})", first.pid())), "{stderr}");
    // The first still has its sockets.
    let mut raw = Raw::new(dir.path(), &first.socket);
    assert_eq!(raw.call("core", &ctr("512 core 8")).await.error, 0);
    assert_eq!(first.status().len(), 1);
    // And removes them when it stops.
    assert!(first.terminate().success());
    assert!(!first.socket.exists() && !dir.path().join("control.sock").exists());
}

#[tokio::test]
async fn every_terminating_signal_commits_hangup_reloads_and_usr1_reports() {
    let dir = tempfile::tempdir().unwrap();
    for (signal, name) in [(libc::SIGQUIT, "SIGQUIT"), (libc::SIGUSR2, "SIGUSR2")] {
        let home = dir.path().join(name);
        std::fs::create_dir(&home).unwrap();
        let mut daemon = Daemon::start(&home, &[]);
        let mut raw = Raw::new(&home, &daemon.socket);
        let log = log_file(&home, "log", 64);
        let args = format!("512 disk {} 8 nosync", log.display());
        assert_eq!(raw.call("sig", &ctr(&args)).await.error, 0);
        assert_eq!(raw.call("sig", &Request::Resume).await.error, 0);
        assert_eq!(raw.call("sig", &Request::Flush(batch(&[3]))).await.error, 0);
        // The clear waits for a commit that only a stop would make.
        assert_eq!(raw.call("sig", &Request::ClearRegion(batch(&[3]))).await.error, 0);
        assert!(!clean_on_disk(&log, 3));
        if signal == libc::SIGQUIT {
            // The log level is reloaded on SIGHUP: debug lines appear after it, not before.
            std::fs::write(daemon.config(), "log_level = \"trace\"").unwrap();
            daemon.signal(libc::SIGHUP);
            while !daemon.output().contains("configuration reloaded") {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(daemon.output().contains("log_level=\"trace\""));
            daemon.signal(libc::SIGUSR1);
            while !daemon.output().contains("log state") {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let output = daemon.output();
            let line = output.lines().find(|l| l.contains("log state")).unwrap();
            assert!(line.contains("uuid=sig") && line.contains("health=A"), "{line}");
        }
        daemon.signal(signal);
        assert!(daemon.wait().success(), "{name}: exit 0");
        assert!(clean_on_disk(&log, 3), "{name} committed the clear");
        assert!(daemon.output().contains(&format!("signal={name}")));
    }
}

#[tokio::test]
async fn untrusted_strings_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    let forged = "x\nERROR forged line";
    assert_eq!(raw.call(forged, &ctr("512 core 3")).await.error, -libc::EINVAL);
    let escape = dir.path().join("esc\u{1b}[2J");
    let reply = raw.call("esc", &ctr(&format!("512 disk {} 8", escape.display()))).await;
    assert_eq!(reply.error, -libc::ENOENT);
    let output = daemon.output();
    assert!(output.contains("uuid=x\\nERROR forged line"), "{output}");
    assert!(!output.lines().any(|l| l.starts_with("ERROR forged")));
    assert!(!output.contains('\u{1b}'), "an ESC byte reached the log");
    assert!(output.contains("esc\\u{1b}[2J"));
}

#[tokio::test]
async fn a_shadow_that_failed_to_write_is_written_afresh_at_the_next_change() {
    let dir = tempfile::tempdir().unwrap();
    let small = SmallFs::mount(&dir.path().join("small"));
    let state = small.0.join("state");
    let state_arg = state.display().to_string();
    let mut daemon =
        Daemon::start(dir.path(), &["--state-dir", &state_arg, "--metrics-listen", "0"]);
    let mut raw = Raw::new(dir.path(), &daemon.socket);
    small.fill();
    let args = "512 core 8";
    assert_eq!(raw.call("kept", &ctr(args)).await.error, 0);
    // The resume's snapshot finds no room; the log serves on without it.
    assert_eq!(raw.call("kept", &Request::Resume).await.error, 0);
    let recover = |region| Request::SetRegionSync { region: RegionIndex(region), in_sync: true };
    assert_eq!(raw.call("kept", &recover(0)).await.error, 0);
    let scrape = common::scrape(&daemon);
    assert!(common::sample(&scrape, "dm_ulogd_shadow_write_failures_total") >= Some(2.0));
    assert_eq!(daemon.output().matches("shadow not written").count(), 1, "said once");
    // Room again: the next change writes the whole shadow, and a crash after it keeps it.
    small.free();
    assert_eq!(raw.call("kept", &recover(1)).await.error, 0);
    assert!(daemon.output().contains("shadow written afresh"));
    daemon.kill();
    daemon.restart();
    let mut raw = Raw::bound(&dir.path().join("raw2.sock"), &daemon.socket);
    let reconnect = Request::Ctr { args: args.into(), reconnect: true };
    assert_eq!(raw.call("kept", &reconnect).await.error, 0);
    assert!(daemon.output().contains("sync state taken back from the shadow"));
    assert_eq!(raw.call("kept", &Request::GetSyncCount).await.data, 2u64.to_ne_bytes());
}
