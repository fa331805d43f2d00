//! The daemon as a process: configuration layering and errors, start-up checks, and the
//! SIGTERM drain that commits every disk log before exiting 0.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{clean_on_disk, log_file, sim_log, Daemon};
use dm_ulog_actors::wire::{RegionBatch, Request};

fn dm_ulogd(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_configuration_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    // (command-line arguments, environment, what the message must name)
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--config".into(), "/nonexistent/dm-ulogd.toml".into()], vec![], "not found"),
        (vec!["--config".into(), write("syntax.toml", "workers = [")], vec![], "syntax.toml"),
        (vec!["--config".into(), write("unknown.toml", "wrokers = 2")], vec![], "wrokers"),
        (vec!["--config".into(), write("type.toml", "workers = \"many\"")], vec![], "workers"),
        (
            vec!["--config".into(), write("transport.toml", "transport = \"tcp:1\"")],
            vec![],
            "neither `netlink` nor `unix:PATH`",
        ),
        (vec![], vec![("DM_ULOGD_WORKERS", "lots")], "workers"),
        (
            vec!["--config".into(), write("metrics.toml", "metrics_listen = \"localhost:9877\"")],
            vec![],
            "metrics_listen \"localhost:9877\"",
        ),
        (vec![], vec![("DM_ULOGD_METRICS_LISTEN", "on")], "metrics_listen"),
        (vec!["--metrics-listen".into(), "127.0.0.1:99999".into()], vec![], "--metrics-listen"),
        (vec!["--log-level".into(), "info,=[".into()], vec![], "log_level"),
        (vec!["--log-level".into(), "infoo".into()], vec![], "\"infoo\" is not a level"),
        (vec!["--config".into(), write("level.toml", "log_level = \"infoo\"")], vec![], "infoo"),
    ];
    for (args, env, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = dm_ulogd(&args, &env);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(needle),
            "{args:?} {env:?}: {:?} lacks {needle:?}",
            stderr(&output)
        );
    }
}

#[test]
fn netlink_without_capabilities_says_which_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let output = Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_dm-ulogd"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("missing: CAP_NET_ADMIN, CAP_SYS_ADMIN"), "{text}");
}

/// Flags beat the environment, which beats the file, which beats the defaults.
#[tokio::test]
async fn settings_layer_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let socket = |name: &str| dir.path().join(name);
    let config = dir.path().join("layers.toml");
    std::fs::write(&config, format!("transport = \"unix:{}\"\n", socket("file.sock").display()))
        .unwrap();
    let env_transport = format!("unix:{}", socket("env.sock").display());
    let flag_transport = format!("unix:{}", socket("flag.sock").display());
    let spawn = |flag: Option<&str>, env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"));
        command.arg("--config").arg(&config).stderr(Stdio::null());
        command.arg("--control-socket").arg(socket("control.sock"));
        command.arg("--state-dir").arg(socket("state"));
        if let Some(flag) = flag {
            command.args(["--transport", flag]);
        }
        if let Some(env) = env {
            command.env("DM_ULOGD_TRANSPORT", env);
        }
        command.spawn().unwrap()
    };
    for (flag, env, expected) in [
        (None, None, "file.sock"),
        (None, Some(env_transport.as_str()), "env.sock"),
        (Some(flag_transport.as_str()), Some(env_transport.as_str()), "flag.sock"),
    ] {
        let mut child = spawn(flag, env);
        common::wait_bound(&mut child, &[&socket(expected)], Path::new("(stderr discarded)"));
        // Nothing else on the host may talk to the daemon.
        let mode = std::fs::metadata(socket(expected)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_file(socket(expected)).unwrap();
    }
}

/// Marks answered but never flushed are committed by the SIGTERM drain, and the exit is 0.
#[tokio::test]
async fn sigterm_commits_every_disk_log_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    let mut paths = Vec::new();
    for i in 0..4 {
        let path = log_file(dir.path(), &format!("log{i}"), 125);
        let mut log = sim_log(
            &link,
            &format!("term-{i}"),
            &format!("disk {} 8 nosync", path.display()),
            125,
            false,
        );
        log.create().await.unwrap();
        let marks = RegionBatch::from_regions(&[i, 100 + i]).unwrap();
        log.direct(&Request::MarkRegion(marks)).await.unwrap();
        assert!(clean_on_disk(&path, i), "a plain MARK is not written until a FLUSH");
        paths.push(path);
    }
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    for (i, path) in paths.iter().enumerate() {
        let i = i as u64;
        assert!(
            !clean_on_disk(path, i) && !clean_on_disk(path, 100 + i),
            "log{i} committed at exit"
        );
    }
    assert!(daemon.output().contains("stopping: committing every disk log"));
}
