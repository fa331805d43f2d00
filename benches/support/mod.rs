//! What the harness-less benches share: the daemon and the echo responder as processes,
//! and their resident memory and write counters.
#![allow(dead_code)] // each bench uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dm_ulog_actors::sim::load::{echo, LoadClient};

/// The environment variable that makes a bench binary serve as the echo responder.
const ECHO_ROLE: &str = "BENCH_ECHO_SOCKET";

/// `cargo bench` passes --bench; `cargo test` runs the same binary without it, for a short
/// smoke run that checks the machinery.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// When this process was started as the echo responder, serves it and never returns.
pub fn serve_echo_if_asked() {
    if let Some(path) = std::env::var_os(ECHO_ROLE) {
        echo(Path::new(&path)).expect("echo responder");
        std::process::exit(0);
    }
}

/// A server process, killed when dropped.
pub struct Server(Child);

impl Server {
    /// This bench binary again, as the echo responder at `socket`.
    pub fn echo(socket: &Path) -> Server {
        Server::start(Command::new(std::env::current_exe().unwrap()).env(ECHO_ROLE, socket), socket)
    }

    /// dm-ulogd on the unix transport at `socket`, with its files in `dir`.
    pub fn daemon(dir: &Path, socket: &Path) -> Server {
        let config = dir.join("empty.toml");
        std::fs::write(&config, "").unwrap();
        Server::start(
            Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
                .args(["--log-level", "warn", "--config"])
                .arg(&config)
                .args(std::env::var("BENCH_DAEMON_ARGS").unwrap_or_default().split_whitespace())
                .arg("--transport")
                .arg(format!("unix:{}", socket.display()))
                .arg("--control-socket")
                .arg(dir.join("control.sock"))
                .arg("--state-dir")
                .arg(dir.join("state")),
            socket,
        )
    }

    fn start(command: &mut Command, socket: &Path) -> Server {
        let child = command.stdin(Stdio::null()).spawn().expect("server starts");
        while !socket.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        Server(child)
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Bytes passed to write(2)-family calls on files and pipes (sockets not included).
    pub fn bytes_written(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.0.id())).unwrap();
        io.lines().find_map(|l| l.strip_prefix("wchar: ")).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

/// A scratch directory on the file system the bench should measure (BENCH_DIR, or target/).
pub fn scratch_dir() -> tempfile::TempDir {
    let base: PathBuf = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_TARGET_TMPDIR").into());
    tempfile::tempdir_in(base).unwrap()
}
