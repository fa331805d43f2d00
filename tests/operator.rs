//! What operators use besides the daemon itself: `dm-ulogd inspect` on disk logs in the
//! kernel's format (as the daemon wrote them, and as built by hand), the systemd unit, and
//! the shipped configuration file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{log_file, sim_log, Daemon};
use dm_ulog_actors::sim::KernelImage;

fn inspect(path: &Path, json: bool) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"));
    command.arg("inspect").arg(path);
    if json {
        command.arg("--json");
    }
    let output = command.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

/// A kernel-written image: header for `regions`, then every region clean except `dirty`.
fn kernel_image(path: &Path, regions: u64, dirty: &[u64]) {
    std::fs::write(path, KernelImage::default().render(regions, |r| !dirty.contains(&r))).unwrap();
}

#[test]
fn inspect_reads_a_kernel_written_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel.img");
    kernel_image(&path, 100, &[3, 4, 5, 9, 99]);
    let (ok, out, _) = inspect(&path, false);
    assert!(ok);
    assert!(out.contains("regions: 100 (95 clean, 5 dirty)"), "{out}");
    assert!(out.contains("dirty: 3-5 9 99"), "{out}");
    let (ok, out, _) = inspect(&path, true);
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["regions"], 100);
    assert_eq!(report["dirty"], 5);
    assert_eq!(report["dirty_ranges"], serde_json::json!([[3, 5], [9, 9], [99, 99]]));
}

#[test]
fn inspect_refuses_what_is_not_a_disk_log() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x41u8; 4096]).unwrap();
    let (ok, _, err) = inspect(&junk, false);
    assert!(!ok);
    assert!(err.contains("not a dm disk log"), "{err}");
    let short = dir.path().join("short");
    kernel_image(&short, 100_000, &[]);
    let bytes = std::fs::read(&short).unwrap();
    std::fs::write(&short, &bytes[..2000]).unwrap();
    let (ok, _, err) = inspect(&short, false);
    assert!(!ok);
    assert!(err.contains("cut short"), "{err}");
    let (ok, _, err) = inspect(&dir.path().join("absent"), false);
    assert!(!ok && err.contains("absent"), "{err}");
}

#[tokio::test]
async fn inspect_reads_what_the_daemon_committed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    let path = log_file(dir.path(), "log", 1000);
    let mut log =
        sim_log(&link, "inspected", &format!("disk {} 8 nosync", path.display()), 1000, false);
    log.create().await.unwrap();
    log.write(&[10, 11, 500]).await.unwrap();
    let (ok, out, _) = inspect(&path, false);
    assert!(ok);
    assert!(out.contains("regions: 1000 (997 clean, 3 dirty)"), "{out}");
    assert!(out.contains("dirty: 10-11 500"), "{out}");
}

#[test]
fn the_systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for name in ["dm-ulogd.service", "dm-ulogd-adopt.service"] {
        let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist").join(name);
        // systemd-analyze checks that ExecStart exists: point it at the binary under test.
        let text = std::fs::read_to_string(&unit)
            .unwrap()
            .replace("/usr/local/bin/dm-ulogd", env!("CARGO_BIN_EXE_dm-ulogd"));
        let copy = dir.path().join(name);
        std::fs::write(&copy, text).unwrap();
        copies.push(copy);
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .output()
        .expect("systemd-analyze");
    let messages = String::from_utf8_lossy(&output.stderr);
    let about_us: Vec<&str> = messages.lines().filter(|l| l.contains("dm-ulogd")).collect();
    assert!(output.status.success() && about_us.is_empty(), "{messages}");
}

#[test]
fn the_shipped_configuration_file_is_the_defaults() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/dm-ulogd.toml");
    // The daemon accepts it (an unknown key or a bad value would exit 2).
    let output = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
        .arg("--config")
        .arg(&file)
        .args(["--transport", "unix:/nonexistent-dir/x.sock"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unix socket /nonexistent-dir/x.sock"));
}

#[tokio::test]
async fn status_reports_every_log_of_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    let mut core = sim_log(&link, "status-core", "core 8", 1000, false);
    core.create().await.unwrap();
    for _ in 0..10 {
        core.recover().await.unwrap();
    }
    core.write(&[500, 501]).await.unwrap();
    let path = log_file(dir.path(), "log", 1000);
    let mut disk =
        sim_log(&link, "status-disk", &format!("disk {} 8 nosync", path.display()), 1000, false);
    disk.create().await.unwrap();
    disk.write(&[7]).await.unwrap();
    let status = |json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"));
        command.arg("status").arg("--control-socket").arg(dir.path().join("control.sock"));
        if json {
            command.arg("--json");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let logs: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    let logs = logs.as_array().unwrap();
    assert_eq!(logs.len(), 2);
    let core = &logs[0];
    assert_eq!(
        (core["uuid"].as_str(), core["log_type"].as_str()),
        (Some("status-core"), Some("core"))
    );
    assert_eq!((core["regions"].as_u64(), core["in_sync"].as_u64()), (Some(1000), Some(10)));
    assert_eq!((core["dirty"].as_u64(), core["recovering"].as_u64()), (Some(2), Some(0)));
    let disk = &logs[1];
    assert_eq!(disk["health"].as_str(), Some("A"));
    assert_eq!((disk["in_sync"].as_u64(), disk["dirty"].as_u64()), (Some(1000), Some(1)));
    assert!(disk["flush_p99_us"].as_f64().unwrap() > 0.0);
    let table = status(false);
    assert!(
        table.contains("status-core") && table.contains("1.00%") && table.contains("100.00%"),
        "{table}"
    );
    // Only root reaches the control socket.
    let mode = std::fs::metadata(dir.path().join("control.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
