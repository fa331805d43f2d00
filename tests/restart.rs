//! Planned restarts the kernel does not notice (src/restart.rs, actors' `handover`): the real
//! binary on a unix transport, with the simulated kernel driving every log type through
//! writes, clears, recovery and suspends while the daemon hands over, by `dm-ulogd upgrade`
//! (an exec in the same process) and through systemd's fd store (the sd_notify protocol,
//! played here by the test: it takes the FDSTORE=1 descriptor and passes it to the next
//! instance as systemd does). Nothing may be lost: no request resent after a timeout, no
//! reconnect (no -ESRCH, so no replayed CTR), and the oracle's checks of every answer hold.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{daemon_args, log_file, sim_log, wait_bound, Daemon};
use dm_ulog_actors::sim::{drive, KernelLink, Rng, SimLog};

const REGIONS: u64 = 256;
/// Steps each log takes between looks at whether the restart is over, and after it is.
const STEPS: u64 = 20;
const STEPS_AFTER: u64 = 200;

/// One log of each type the single-host engine serves, created and partly resynced.
async fn logs(dir: &Path, link: &Arc<KernelLink>) -> Vec<SimLog> {
    let disk = |name: &str| log_file(dir, name, REGIONS).display().to_string();
    let tables = [
        ("core", "core 8".to_owned(), false),
        ("core-nosync", "core 8 nosync".to_owned(), false),
        ("disk", format!("disk {} 8", disk("disk.img")), false),
        ("disk-if", format!("disk {} 8", disk("disk-if.img")), true),
        ("ccore", "clustered-core 8".to_owned(), true),
    ];
    let mut logs = Vec::new();
    for (uuid, args, integrated_flush) in tables {
        let mut log = sim_log(link, &format!("restart-{uuid}"), &args, REGIONS, integrated_flush);
        log.create().await.unwrap();
        for _ in 0..REGIONS / 2 {
            log.recover().await.unwrap();
        }
        logs.push(log);
    }
    logs
}

/// Drives every log through random steps at once, from before `restart` (run on a thread)
/// begins until after it is over.
async fn drive_across(
    mut logs: Vec<SimLog>,
    restart: impl FnOnce() + Send + 'static,
) -> Vec<SimLog> {
    let restarted = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut log) in logs.drain(..).enumerate() {
        let restarted = restarted.clone();
        tasks.spawn(async move {
            let mut rng = Rng::new(0x4e57 + i as u64);
            while !restarted.load(Ordering::Relaxed) {
                drive(&mut log, &mut rng, STEPS).await.unwrap();
            }
            drive(&mut log, &mut rng, STEPS_AFTER).await.unwrap();
            (i, log)
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::task::spawn_blocking(restart).await.unwrap();
    restarted.store(true, Ordering::Relaxed);
    let mut driven: Vec<(usize, SimLog)> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        driven.push(done.unwrap());
    }
    driven.sort_by_key(|(i, _)| *i);
    driven.into_iter().map(|(_, log)| log).collect()
}

/// What "the kernel did not notice" means: no resend, no reconnect, every check held.
async fn assert_unnoticed(mut logs: Vec<SimLog>, link: &KernelLink) {
    for log in &mut logs {
        log.audit().await.unwrap();
        assert_eq!(log.oracle.epoch(), 0, "{}: the kernel had to reconnect", log.name());
        log.remove().await.unwrap();
    }
    assert_eq!(
        link.stats.resends.load(Ordering::Relaxed),
        0,
        "a request was resent after a timeout"
    );
    let violations: Vec<String> = logs.iter().flat_map(|l| l.oracle.violations.clone()).collect();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn upgrade_carries_every_log_while_the_kernel_writes() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &["--single-node-clustered"]);
    // A lost answer shows as a resend after this timeout.
    let link = daemon.link("kernel", Duration::from_secs(10));
    let logs = logs(dir.path(), &link).await;
    let control = daemon.control_socket();
    let upgraded = Arc::new(std::sync::Mutex::new(None));
    let result = upgraded.clone();
    let logs = drive_across(logs, move || {
        let output = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
            .args(["upgrade", "--control-socket"])
            .arg(&control)
            .output()
            .unwrap();
        *result.lock().unwrap() = Some(output);
    })
    .await;
    let output = upgraded.lock().unwrap().take().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("upgraded: serving 5 logs"), "{stdout}");
    assert_eq!(daemon.status().len(), 5);
    let log = daemon.output();
    assert!(log.contains("logs handed over by the previous daemon taken back logs=5"), "{log}");
    assert!(!log.contains("no such log"), "{log}");
    assert_unnoticed(logs, &link).await;
}

/// The test as systemd: its notify socket, on which a stopping daemon stores the transport.
struct Systemd {
    notify: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl Systemd {
    fn new(dir: &Path) -> Systemd {
        let path = dir.join("notify.sock");
        let notify = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Systemd { notify, path }
    }

    /// The notifications up to the first that carries a descriptor: its text and the fd.
    fn stored(&self) -> (String, OwnedFd) {
        loop {
            let mut text = [0u8; 256];
            let mut control = [0u64; 8];
            let mut iov = libc::iovec { iov_base: text.as_mut_ptr().cast(), iov_len: text.len() };
            // SAFETY: recvmsg(2) into live buffers of the sizes given; CMSG_* stay in `control`.
            let fd = unsafe {
                let mut header: libc::msghdr = std::mem::zeroed();
                header.msg_iov = &mut iov;
                header.msg_iovlen = 1;
                header.msg_control = control.as_mut_ptr().cast();
                header.msg_controllen = std::mem::size_of_val(&control);
                let n = libc::recvmsg(self.notify.as_raw_fd(), &mut header, 0);
                assert!(n >= 0, "no notification: {}", std::io::Error::last_os_error());
                let cmsg = libc::CMSG_FIRSTHDR(&header);
                let text = String::from_utf8_lossy(&text[..n as usize]).into_owned();
                if cmsg.is_null() {
                    println!("notified: {text:?}");
                    continue;
                }
                assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                (text, OwnedFd::from_raw_fd(fd))
            };
            return fd;
        }
    }
}

impl Systemd {
    /// The next READY notification, with the status that comes with it.
    fn ready(&self) -> String {
        loop {
            let mut text = [0u8; 256];
            let n = self.notify.recv(&mut text).expect("a notification");
            let text = String::from_utf8_lossy(&text[..n]).into_owned();
            if text.starts_with("READY=1") {
                return text;
            }
        }
    }
}

/// Where one daemon's files are, whichever process serves them.
#[derive(Clone)]
struct Paths {
    dir: std::path::PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        std::fs::write(dir.join("dm-ulogd.toml"), "log_level = \"debug\"\n").unwrap();
        Paths { dir: dir.to_owned() }
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.join("dm-ulogd.sock")
    }

    fn control(&self) -> std::path::PathBuf {
        self.dir.join("control.sock")
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.join("dm-ulogd.log")
    }
}

/// Starts dm-ulogd as systemd starts a service: `$NOTIFY_SOCKET`, and `stored` (if any)
/// passed as descriptor 3 with `LISTEN_FDS`, `LISTEN_FDNAMES` and its own `LISTEN_PID`.
fn start_as_systemd(paths: &Paths, notify: &Path, stored: Option<&OwnedFd>) -> Child {
    let (socket, control, log) = (paths.socket(), paths.control(), paths.log());
    let output = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let mut command = Command::new("sh");
    // The shell's pid is the daemon's after `exec`, as a forked service's is.
    command.args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#, env!("CARGO_BIN_EXE_dm-ulogd")]);
    let (config, state) = (paths.dir.join("dm-ulogd.toml"), paths.dir.join("state"));
    command.args(daemon_args(&config, &socket, &control, Some(&state)));
    command.arg("--single-node-clustered").env("NOTIFY_SOCKET", notify);
    if let Some(stored) = stored {
        let fd = stored.as_raw_fd();
        command.env("LISTEN_FDS", "1").env("LISTEN_FDNAMES", "transport");
        // SAFETY: dup2(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(move || match libc::dup2(fd, 3) {
                3 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
    }
    let _ = std::fs::remove_file(&control);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .unwrap();
    wait_bound(&mut child, &[&socket, &control], &log);
    child
}

#[tokio::test]
async fn a_systemd_restart_hands_the_socket_and_every_log_over() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let systemd = Systemd::new(dir.path());
    let first = start_as_systemd(&paths, &systemd.path, None);
    let link =
        KernelLink::unix(&dir.path().join("kernel.sock"), &paths.socket(), Duration::from_secs(10))
            .unwrap();
    let logs = logs(dir.path(), &link).await;
    let next = Arc::new(std::sync::Mutex::new(None));
    let started = next.clone();
    let restarted = paths.clone();
    let logs = drive_across(logs, move || {
        // systemctl restart: SIGTERM, the descriptor stored, the next instance given it.
        let mut first = first;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
        let (text, socket) = systemd.stored();
        assert_eq!(text, "FDSTORE=1\nFDNAME=transport\n");
        assert!(first.wait().unwrap().success());
        let second = start_as_systemd(&restarted, &systemd.path, Some(&socket));
        let ready = systemd.ready();
        *started.lock().unwrap() = Some((second, socket, ready));
    })
    .await;
    let (mut second, _stored, ready) = next.lock().unwrap().take().unwrap();
    // Ready once the logs are back, and it says so.
    assert_eq!(ready, "READY=1\nSTATUS=serving 5 logs\n");
    let log = std::fs::read_to_string(paths.log()).unwrap();
    assert!(log.contains("socket stored with systemd for the next instance"), "{log}");
    assert!(log.contains("serving the socket the previous daemon passed on"), "{log}");
    assert!(log.contains("logs handed over by the previous daemon taken back logs=5"), "{log}");
    assert_unnoticed(logs, &link).await;
    second.kill().unwrap();
    second.wait().unwrap();
}

/// `dm-ulogd upgrade` of a binary it must not run, and of one that does not execute: the
/// first is refused before anything is handed over, the second fails at the exec, and the
/// daemon takes its own handover back. Either way it serves on, unnoticed by the kernel.
#[tokio::test]
async fn an_upgrade_that_cannot_exec_serves_on_with_every_log() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("dm-ulogd");
    let daemon = Daemon::start_copy(dir.path(), &binary, &["--single-node-clustered"]);
    let link = daemon.link("kernel", Duration::from_secs(10));
    let upgrade = || {
        let output = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
            .args(["upgrade", "--control-socket"])
            .arg(daemon.control_socket())
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let mut logs = logs(dir.path(), &link).await;

    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = upgrade();
    assert!(refused.contains("group or others may write it"), "{refused}");

    // Not an executable format: execve(2) fails with ENOEXEC.
    std::fs::remove_file(&binary).unwrap();
    std::fs::write(&binary, b"not a binary\n").unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let failed = upgrade();
    assert!(failed.contains("the exec failed; serving on with the running binary"), "{failed}");

    let mut rng = Rng::new(7);
    for log in &mut logs {
        drive(log, &mut rng, STEPS_AFTER).await.unwrap();
    }
    assert_eq!(daemon.status().len(), 5);
    assert!(daemon.output().contains("logs handed over by the previous daemon taken back logs=5"));
    assert_unnoticed(logs, &link).await;
}

/// A handover whose socket is gone (systemd flushed its fd store: a stop, not a restart)
/// carries nothing: the next daemon, on a new socket, drops the manifest, and the kernel
/// reconnects each log from its shadow, as after a crash.
#[tokio::test]
async fn a_manifest_without_its_socket_is_dropped_and_the_kernel_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let systemd = Systemd::new(dir.path());
    let mut first = start_as_systemd(&paths, &systemd.path, None);
    let link =
        KernelLink::unix(&dir.path().join("kernel.sock"), &paths.socket(), Duration::from_secs(10))
            .unwrap();
    let mut logs = logs(dir.path(), &link).await;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    drop(systemd.stored());
    assert!(first.wait().unwrap().success());
    let mut second = start_as_systemd(&paths, &systemd.path, None);
    let mut rng = Rng::new(11);
    for log in &mut logs {
        drive(log, &mut rng, STEPS_AFTER).await.unwrap();
        assert!(log.oracle.epoch() > 0, "{}: the kernel did not reconnect", log.name());
    }
    let log = std::fs::read_to_string(paths.log()).unwrap();
    assert!(log.contains("a handover manifest for another socket (closed since) dropped"), "{log}");
    for log in &mut logs {
        log.audit().await.unwrap();
        log.remove().await.unwrap();
    }
    let violations: Vec<String> = logs.iter().flat_map(|l| l.oracle.violations.clone()).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    second.kill().unwrap();
    second.wait().unwrap();
}
