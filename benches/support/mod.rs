//! What the harness-less benches share: the daemon and the echo responder as processes,
//! and their resident memory and write counters.
#![allow(dead_code)] // each bench uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use dm_ulog_actors::sim::load::{echo, echo_with, LoadClient};

use crate::common::{daemon_args, wait_bound};

/// The environment variable that makes a bench binary serve as the echo responder.
const ECHO_ROLE: &str = "BENCH_ECHO_SOCKET";
/// With [`ECHO_ROLE`]: the file that the echo responder writes and syncs before it answers a
/// FLUSH ([`Server::syncing_echo`]).
const ECHO_SYNC_FILE: &str = "BENCH_ECHO_SYNC_FILE";
/// With [`ECHO_ROLE`]: the directory where the threaded syncing echo keeps a file per log
/// ([`Server::threaded_syncing_echo`]).
const ECHO_SYNC_DIR: &str = "BENCH_ECHO_SYNC_DIR";

/// `cargo bench` passes --bench; `cargo test` runs the same binary without it, for a short
/// smoke run that checks the machinery.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// When this process was started as the echo responder, serves it and never returns.
pub fn serve_echo_if_asked() {
    if let Some(path) = std::env::var_os(ECHO_ROLE) {
        match (std::env::var_os(ECHO_SYNC_FILE), std::env::var_os(ECHO_SYNC_DIR)) {
            (Some(file), _) => syncing_echo(Path::new(&path), Path::new(&file)),
            (None, Some(dir)) => threaded_syncing_echo(Path::new(&path), Path::new(&dir)),
            (None, None) => echo(Path::new(&path)),
        }
        .expect("echo responder");
        std::process::exit(0);
    }
}

/// The echo responder, except that it answers a FLUSH only after a `pwrite` of one block to
/// `file` and an `fdatasync`, on the thread that received it: the least any responder can do
/// for a FLUSH. It has none of a daemon's costs, and none of its promises either: here one
/// slow device would hold up every other log.
fn syncing_echo(path: &Path, file: &Path) -> std::io::Result<()> {
    use dm_ulog_actors::wire::RequestType;
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(file)?;
    file.write_all_at(&[0; 4096], 0)?;
    file.sync_all()?;
    echo_with(path, |header| {
        if header.kind() == Some(RequestType::Flush) {
            file.write_all_at(&[0x5A; 512], 1024)?;
            file.sync_data()?;
        }
        Ok(())
    })
}

/// The syncing echo with a daemon's shape and none of its engine: the socket thread hands
/// each request to its log's responder thread (one per client socket: a bench client drives
/// one log), which answers in order and, for a FLUSH, first writes one block of its own file
/// and syncs it. Independent logs thus sync concurrently, as the daemon's do.
fn threaded_syncing_echo(path: &Path, dir: &Path) -> std::io::Result<()> {
    use dm_ulog_actors::wire::{
        decode_frame, emit_reply, ReplyPayload, RequestType, MAX_REPLY_FRAME,
    };
    use std::collections::HashMap;
    use std::os::unix::fs::FileExt;
    use std::os::unix::net::UnixDatagram;
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Arc;
    let _ = std::fs::remove_file(path);
    let socket = Arc::new(UnixDatagram::bind(path)?);
    let mut responders: HashMap<PathBuf, Sender<Vec<u8>>> = HashMap::new();
    let mut request = [0u8; dm_ulog_actors::wire::MAX_REQUEST_FRAME * 2];
    loop {
        let (len, peer) = socket.recv_from(&mut request)?;
        let Some(peer) = peer.as_pathname().map(Path::to_path_buf) else { continue };
        let next = responders.len();
        let responder = responders.entry(peer.clone()).or_insert_with(|| {
            let (tx, rx) = channel::<Vec<u8>>();
            let (socket, file) = (socket.clone(), dir.join(format!("log{next}")));
            std::thread::spawn(move || -> std::io::Result<()> {
                let file = std::fs::File::create(file)?;
                file.write_all_at(&[0; 4096], 0)?;
                file.sync_all()?;
                let mut reply = [0u8; MAX_REPLY_FRAME];
                for bytes in rx {
                    let Ok(frame) = decode_frame(&bytes) else { continue };
                    if frame.header.kind() == Some(RequestType::Flush) {
                        file.write_all_at(&[0x5A; 512], 1024)?;
                        file.sync_data()?;
                    }
                    let n = emit_reply(&frame.header, 0, &Ok(ReplyPayload::Empty), &mut reply);
                    socket.send_to(&reply[..n], &peer)?;
                }
                Ok(())
            });
            tx
        });
        let _ = responder.send(request[..len].to_vec());
    }
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    /// The daemon's state directory on a tmpfs, removed with the server.
    state: Option<PathBuf>,
}

impl Server {
    /// This bench binary again, as the echo responder at `socket`.
    pub fn echo(socket: &Path) -> Server {
        let mut echo = Command::new(std::env::current_exe().unwrap());
        Server::start(echo.env(ECHO_ROLE, socket), &[socket], Path::new("(the echo's stderr)"))
    }

    /// The echo responder at `socket`, writing and syncing `file` before each FLUSH's answer.
    pub fn syncing_echo(socket: &Path, file: &Path) -> Server {
        let mut echo = Command::new(std::env::current_exe().unwrap());
        let echo = echo.env(ECHO_ROLE, socket).env(ECHO_SYNC_FILE, file);
        Server::start(echo, &[socket], Path::new("(the echo's stderr)"))
    }

    /// The threaded syncing echo at `socket`, with a file per log in `dir`.
    pub fn threaded_syncing_echo(socket: &Path, dir: &Path) -> Server {
        let mut echo = Command::new(std::env::current_exe().unwrap());
        let echo = echo.env(ECHO_ROLE, socket).env(ECHO_SYNC_DIR, dir);
        Server::start(echo, &[socket], Path::new("(the echo's stderr)"))
    }

    /// dm-ulogd on the unix transport at `socket`, with its files in `dir`, and its state
    /// directory on a tmpfs, as the daemon requires (/run/dm-ulogd/state by default): the
    /// shadow's appends cost a write to the page cache there, and more on a disk file system.
    pub fn daemon(dir: &Path, socket: &Path) -> Server {
        let state = tmpfs_dir(dir);
        let config = dir.join("empty.toml");
        std::fs::write(&config, "").unwrap();
        let (control, log) = (dir.join("control.sock"), dir.join("dm-ulogd.log"));
        let mut daemon = Command::new(daemon_binary());
        daemon
            .args(daemon_args(&config, socket, &control, Some(&state)))
            .args(["--log-level", "warn"])
            .args(std::env::var("BENCH_DAEMON_ARGS").unwrap_or_default().split_whitespace())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut server = Server::start(&mut daemon, &[socket, &control], &log);
        server.state = Some(state);
        server
    }

    fn start(command: &mut Command, sockets: &[&Path], log: &Path) -> Server {
        let mut child = command.stdin(Stdio::null()).spawn().expect("server starts");
        wait_bound(&mut child, sockets, log);
        Server { child, state: None }
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// CPU time the process has used so far, all its threads, in nanoseconds
    /// (/proc/<pid>/task/*/schedstat: exact, where /proc/<pid>/stat counts clock ticks).
    pub fn cpu_ns(&self) -> u64 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).unwrap();
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Bytes passed to write(2)-family calls on files and pipes (sockets not included).
    pub fn bytes_written(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.child.id())).unwrap();
        io.lines().find_map(|l| l.strip_prefix("wchar: ")).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(state) = &self.state {
            let _ = std::fs::remove_dir_all(state);
        }
    }
}

/// The echo responder and the daemon side by side in `dir`, each with a client of its own.
pub struct EchoAndDaemon {
    pub echo: Server,
    pub daemon: Server,
    pub echo_client: LoadClient,
    pub daemon_client: LoadClient,
}

impl EchoAndDaemon {
    pub fn start(dir: &Path) -> EchoAndDaemon {
        let (echo_path, daemon_path) = (dir.join("echo.sock"), dir.join("daemon.sock"));
        let echo = Server::echo(&echo_path);
        let daemon = Server::daemon(dir, &daemon_path);
        EchoAndDaemon {
            echo,
            daemon,
            echo_client: LoadClient::new(&dir.join("c1.sock"), &echo_path).unwrap(),
            daemon_client: LoadClient::new(&dir.join("c2.sock"), &daemon_path).unwrap(),
        }
    }
}

/// The daemon to measure: this build's, or BENCH_DAEMON (another build, for A/B runs).
fn daemon_binary() -> PathBuf {
    std::env::var_os("BENCH_DAEMON").map_or(env!("CARGO_BIN_EXE_dm-ulogd").into(), PathBuf::from)
}

/// A directory named after `dir` on /dev/shm (a tmpfs on every Linux with glibc), or
/// `dir/state` where there is none.
fn tmpfs_dir(dir: &Path) -> PathBuf {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let shm = Path::new("/dev/shm");
    let state =
        if shm.is_dir() { shm.join(format!("dm-ulogd-bench{name}")) } else { dir.join("state") };
    std::fs::create_dir_all(&state).unwrap();
    state
}

/// A scratch directory on the file system the bench should measure (BENCH_DIR, or target/).
pub fn scratch_dir() -> tempfile::TempDir {
    let base: PathBuf = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_TARGET_TMPDIR").into());
    tempfile::tempdir_in(base).unwrap()
}

pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

pub fn p99(values: &[f64]) -> f64 {
    quantile(values, 0.99)
}

/// The `q` quantile (0..=1) of `values`, by nearest rank.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
