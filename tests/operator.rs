//! What operators use besides the daemon itself: `dm-ulogd inspect` on disk logs in the
//! kernel's format (as the daemon wrote them, and as built by hand), the systemd unit, and
//! the shipped configuration file.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{daemon_args, log_file, sim_log, Daemon};
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

/// A copy of the unit `dist/<name>` in `dir`, its binary the one under test (systemd-analyze
/// checks that ExecStart exists).
fn unit_under_test(dir: &Path, name: &str) -> std::path::PathBuf {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist").join(name);
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/sbin/dm-ulogd", env!("CARGO_BIN_EXE_dm-ulogd"));
    let copy = dir.join(name);
    std::fs::write(&copy, text).unwrap();
    copy
}

#[test]
fn the_systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let copies =
        ["dm-ulogd.service", "dm-ulogd-adopt.service"].map(|n| unit_under_test(dir.path(), n));
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&copies)
        .output()
        .expect("systemd-analyze");
    let messages = String::from_utf8_lossy(&output.stderr);
    let about_us: Vec<&str> = messages.lines().filter(|l| l.contains("dm-ulogd")).collect();
    assert!(output.status.success() && about_us.is_empty(), "{messages}");
}

/// The unit confines the daemon as far as serving the kernel allows: `systemd-analyze
/// security` rates it (offline, as the unit file stands) 2.5 or less.
#[test]
fn the_systemd_unit_exposes_at_most_2_5() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit_under_test(dir.path(), "dm-ulogd.service"))
        .output()
        .expect("systemd-analyze");
    let report = String::from_utf8_lossy(&output.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|line| line.split("Overall exposure level for dm-ulogd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(exposure <= 2.5, "exposure {exposure}:\n{report}");
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

/// Every configuration key (each daemon flag's help names its key) is documented where an
/// administrator looks: the shipped file sets it, dm-ulogd.toml(5) describes it, and the
/// README's settings table has a row for it; none of them names a key that is not one.
#[test]
fn every_configuration_key_is_in_the_shipped_file_the_man_page_and_readme() {
    let help = Command::new(env!("CARGO_BIN_EXE_dm-ulogd")).args(["run", "--help"]).output();
    let help = String::from_utf8(help.unwrap().stdout).unwrap();
    let keys: HashSet<&str> = help
        .split("[config: ")
        .skip(1)
        .map(|rest| rest.split(|c: char| !(c.is_ascii_lowercase() || c == '_')).next().unwrap())
        .collect();
    assert_eq!(keys.len(), 9, "{keys:?}");
    let read = |file: &str| {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
    };
    let named = |text: &str, prefix: &str, end: char| -> HashSet<String> {
        (text.lines())
            .filter_map(|line| Some(line.strip_prefix(prefix)?.split(end).next()?.to_owned()))
            .collect()
    };
    let keys: HashSet<String> = keys.into_iter().map(str::to_owned).collect();
    let shipped = named(&read("dist/dm-ulogd.toml"), "", ' ');
    let shipped: HashSet<String> =
        shipped.into_iter().filter(|k| !k.is_empty() && !k.starts_with('#')).collect();
    assert_eq!(shipped, keys, "dist/dm-ulogd.toml");
    let page = read("dist/dm-ulogd.toml.5");
    let described = page.split(".SH KEYS").nth(1).and_then(|s| s.split(".SH ").next()).unwrap();
    assert_eq!(named(described, ".BR ", ' '), keys, "dm-ulogd.toml(5)");
    let readme = read("README.md");
    let table = named(&readme, "| `", '`');
    assert!(keys.is_subset(&table), "README's settings table lacks {:?}", &keys - &table);
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
    let status = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"));
        command.arg("status").arg("--control-socket").arg(dir.path().join("control.sock"));
        let output = command.args(args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let logs: serde_json::Value = serde_json::from_str(&status(&["--json"])).unwrap();
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
    let table = status(&[]);
    assert!(
        table.contains("status-core") && table.contains("1.00%") && table.contains("100.00%"),
        "{table}"
    );
    let header = table.lines().next().unwrap();
    let who = format!("dm-ulogd {} (pid {}), up ", env!("CARGO_PKG_VERSION"), daemon.pid());
    assert!(header.starts_with(&who) && header.ends_with(", serving 2 logs"), "{table}");
    assert!(table.lines().nth(1).unwrap().contains("COMMIT p50/p99"), "{table}");
    let one: serde_json::Value = serde_json::from_str(&status(&["--json", "status-disk"])).unwrap();
    let one = one.as_array().unwrap();
    assert_eq!((one.len(), one[0]["uuid"].as_str()), (1, Some("status-disk")));
    // Only root reaches the control socket.
    let mode = std::fs::metadata(dir.path().join("control.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// `dm-ulogd check` against a running daemon, against none, and with a configuration that
/// does not load: a line per check, exit 0 exactly when no line says FAIL.
#[test]
fn check_says_what_it_found_one_line_per_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let (control, state) = (daemon.control_socket(), daemon.state_dir());
    // The daemon's own flags, but for its --config: each check names the file it loads.
    let flags = daemon_args(&daemon.config(), &daemon.socket, &control, Some(&state))[2..].to_vec();
    let check = |config: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
            .arg("check")
            .arg("--config")
            .arg(config)
            .args(&flags)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let failed = stdout.lines().any(|line| line.starts_with("FAIL"));
        assert_eq!(output.status.code(), Some(if failed { 1 } else { 0 }), "{stdout}");
        stdout
    };
    let serving = check(&daemon.config());
    for name in ["configuration", "state_dir", "daemon", "log devices"] {
        assert!(
            serving.lines().any(|l| l[5..].starts_with(&format!("{name}: "))),
            "{name}: {serving}"
        );
    }
    assert!(serving.contains("ok   daemon: serving 0 logs"), "{serving}");
    daemon.terminate();
    let stopped = check(&daemon.config());
    assert!(stopped.contains("FAIL daemon: control socket"), "{stopped}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "workers = \"many\"\n").unwrap();
    let unloadable = check(&bad);
    assert!(unloadable.starts_with("FAIL configuration: "), "{unloadable}");
}

/// Under systemd (`$NOTIFY_SOCKET`, `$WATCHDOG_USEC`): READY=1 with a STATUS= line once the
/// transport is served, then WATCHDOG=1 every half period while the engine answers, each with
/// the logs' summary.
#[test]
fn systemd_hears_ready_status_and_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let socket = dir.path().join("dm-ulogd.sock");
    let control = dir.path().join("control.sock");
    let config = dir.path().join("dm-ulogd.toml");
    std::fs::write(&config, "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
        .args(daemon_args(&config, &socket, &control, Some(&dir.path().join("state"))))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut heard = Vec::new();
    while heard.iter().filter(|m: &&String| m.starts_with("WATCHDOG=1")).count() < 2 {
        let mut message = [0u8; 512];
        let n = notify.recv(&mut message).expect("a notification within 30 s");
        heard.push(String::from_utf8_lossy(&message[..n]).into_owned());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(heard[0], "READY=1\nSTATUS=serving 0 logs\n", "{heard:?}");
    let ping = heard.iter().find(|m| m.starts_with("WATCHDOG=1")).unwrap();
    assert_eq!(
        ping, "WATCHDOG=1\nSTATUS=serving 0 logs: 0 in sync, 0 resyncing, 0 log devices failed\n",
        "{heard:?}"
    );
}

/// A mistyped flag gets clap's suggestion of the one meant, and the usage exit status 2.
#[test]
fn a_mistyped_flag_is_told_the_one_it_resembles() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_dm-ulogd")).args(["status", "--jsn"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("a similar argument exists: '--json'"), "{stderr}");
}

/// Each command lists (and takes) only its own flags: the daemon's are not offered where
/// they would be ignored.
#[test]
fn each_command_offers_only_its_own_flags() {
    let help = |command: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{command}");
        String::from_utf8(output.stdout).unwrap()
    };
    for (command, has, lacks) in [
        ("run", &["--transport", "--state-dir", "--config"][..], &[][..]),
        ("check", &["--transport", "--state-dir", "--config"][..], &[][..]),
        (
            "status",
            &["--control-socket", "--config", "--watch"][..],
            &["--transport", "--state-dir"][..],
        ),
        ("upgrade", &["--control-socket"][..], &["--transport", "--workers"][..]),
        ("adopt", &["--resync", "--dry-run", "--control-socket"][..], &["--transport"][..]),
        ("inspect", &["--json"][..], &["--transport", "--config", "--control-socket"][..]),
        (
            "simulate",
            &["--workers", "--seconds"][..],
            &["--transport", "--state-dir", "--control-socket"][..],
        ),
    ] {
        let text = help(command);
        for flag in has {
            assert!(text.contains(flag), "{command} --help lacks {flag}:\n{text}");
        }
        for flag in lacks {
            assert!(!text.contains(flag), "{command} --help offers {flag}:\n{text}");
        }
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
        .args(["inspect", "--transport", "netlink", "x"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

/// After a crash, `status` says how many shadows wait for the kernel to reconnect their logs,
/// and stops saying it once the kernel has.
#[tokio::test]
async fn status_counts_the_shadows_waiting_for_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    let mut log = sim_log(&link, "waiting", "core 8", 100, false)
        .with_reconnect_delay(Duration::from_millis(20));
    log.create().await.unwrap();
    let header = |daemon: &Daemon| {
        let output = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
            .arg("status")
            .arg("--control-socket")
            .arg(daemon.control_socket())
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().lines().next().unwrap_or_default().to_owned()
    };
    assert!(!header(&daemon).contains("waiting"), "{}", header(&daemon));
    daemon.kill();
    daemon.restart();
    let waiting = header(&daemon);
    assert!(
        waiting
            .ends_with("serving 0 logs, 1 shadows waiting for the kernel to reconnect their logs"),
        "{waiting}"
    );
    log.request(&dm_ulog_actors::wire::Request::GetSyncCount).await.unwrap();
    let reconnected = header(&daemon);
    assert!(reconnected.ends_with("serving 1 logs"), "{reconnected}");
}
