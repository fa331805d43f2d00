//! The test kit: the real dm-ulogd binary on a unix socket, and what tests, benches and the
//! cluster harness need around it (benches and the harness include this file too).
#![allow(dead_code)] // each test binary uses a different part

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dm_ulog_actors::sim::{KernelLink, LogTable, SimLog};
use dm_ulog_actors::store::format::image_size;
use dm_ulog_actors::units::RegionCount;
use dm_ulog_actors::wire::reply::decode_reply;
use dm_ulog_actors::wire::{Request, RequestHeader, Uuid};
use tokio::net::UnixDatagram;

/// The arguments every test, bench and cluster node starts dm-ulogd with: a configuration
/// file of its own (the host's /etc plays no part), the unix transport at `socket`, the
/// control socket at `control` and, unless the caller gives its own, a state directory.
pub fn daemon_args(
    config: &Path,
    socket: &Path,
    control: &Path,
    state_dir: Option<&Path>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--config".into(), config.into()];
    args.extend(["--transport".into(), format!("unix:{}", socket.display()).into()]);
    args.extend(["--control-socket".into(), control.into()]);
    if let Some(state_dir) = state_dir {
        args.extend(["--state-dir".into(), state_dir.into()]);
    }
    args
}

/// Waits until `child` has bound every socket of `sockets`; panics, pointing at its `log`,
/// if it exits first. Polling for files is set-up, not an assertion: the daemon binds its
/// transport, then its control socket, at start-up.
pub fn wait_bound(child: &mut Child, sockets: &[&Path], log: &Path) {
    while !sockets.iter().all(|socket| socket.exists()) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("dm-ulogd exited at start-up: {status}; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A dm-ulogd process serving `unix:<dir>/dm-ulogd.sock`.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    extra_args: Vec<String>,
    /// The hard and soft limit of open files it runs under, if not the test's own.
    open_files: Option<u64>,
    /// The binary it runs: the build's, or a copy of it.
    binary: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, extra_args: &[&str]) -> Daemon {
        Daemon::start_limited(dir, extra_args, None)
    }

    /// As [`Daemon::start`], running a copy of the build's binary at `binary`.
    pub fn start_copy(dir: &Path, binary: &Path, extra_args: &[&str]) -> Daemon {
        std::fs::copy(env!("CARGO_BIN_EXE_dm-ulogd"), binary).unwrap();
        Daemon::launch(dir, extra_args, None, binary)
    }

    /// As [`Daemon::start`], under a limit of `open_files` descriptors.
    pub fn start_limited(dir: &Path, extra_args: &[&str], open_files: Option<u64>) -> Daemon {
        Daemon::launch(dir, extra_args, open_files, Path::new(env!("CARGO_BIN_EXE_dm-ulogd")))
    }

    fn launch(dir: &Path, extra_args: &[&str], open_files: Option<u64>, binary: &Path) -> Daemon {
        let mut daemon = Daemon {
            child: None,
            dir: dir.to_owned(),
            socket: dir.join("dm-ulogd.sock"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            open_files,
            binary: binary.to_owned(),
        };
        daemon.restart();
        daemon
    }

    /// Starts the process (again) and waits until both its sockets are bound.
    pub fn restart(&mut self) {
        let control = self.control_socket();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&control);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dm-ulogd.log"))
            .unwrap();
        // A configuration file of the test's own: the host's /etc plays no part.
        let config = self.config();
        if !config.exists() {
            std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
        }
        // The test's own state_dir, unless it gave one.
        let given = self.extra_args.iter().any(|a| a == "--state-dir");
        let state_dir = (!given).then(|| self.state_dir());
        let mut command = Command::new(&self.binary);
        if let Some(limit) = self.open_files {
            let limit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            // SAFETY: setrlimit(2) is async-signal-safe, as pre_exec requires.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let mut child = command
            .args(daemon_args(&config, &self.socket, &control, state_dir.as_deref()))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dm-ulogd starts");
        wait_bound(&mut child, &[&self.socket, &control], &self.dir.join("dm-ulogd.log"));
        self.child = Some(child);
    }

    /// Where the daemon's control socket is.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// The daemon's own configuration file: the log level (debug) unless a test writes it.
    pub fn config(&self) -> PathBuf {
        self.dir.join("dm-ulogd.toml")
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.take().expect("running").wait().unwrap()
    }

    /// `dm-ulogd status --json` against this daemon: every log it serves.
    pub fn status(&self) -> Vec<serde_json::Value> {
        let output = Command::new(env!("CARGO_BIN_EXE_dm-ulogd"))
            .arg("status")
            .arg("--json")
            .arg("--control-socket")
            .arg(self.control_socket())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Where this daemon keeps the logs' shadows (never /run in a test): its own `state`,
    /// unless the test gave `--state-dir`.
    pub fn state_dir(&self) -> PathBuf {
        let given = self.extra_args.iter().position(|a| a == "--state-dir");
        match given.and_then(|i| self.extra_args.get(i + 1)) {
            Some(path) => PathBuf::from(path),
            None => self.dir.join("state"),
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// The daemon's log output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("dm-ulogd.log")).unwrap_or_default()
    }

    /// A simulated kernel talking to this daemon.
    pub fn link(&self, name: &str, timeout: Duration) -> Arc<KernelLink> {
        KernelLink::unix(&self.dir.join(format!("{name}.sock")), &self.socket, timeout).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A file big enough for a disk log of `regions` regions on 512-byte blocks.
pub fn log_file(dir: &Path, name: &str, regions: u64) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(image_size(RegionCount(regions), 512)).unwrap();
    path
}

/// A log of `regions` regions of 8 sectors: `"core 8"`, `"disk <path> 8"`, ...
pub fn sim_log(
    link: &Arc<KernelLink>,
    uuid: &str,
    log_args: &str,
    regions: u64,
    integrated_flush: bool,
) -> SimLog {
    let table = LogTable {
        uuid: uuid.to_owned(),
        log_args: log_args.to_owned(),
        target_sectors: regions * 8,
        integrated_flush,
    };
    let luid = 0xffff_8a5a_dff7_0000 + uuid.bytes().map(u64::from).sum::<u64>();
    SimLog::new(link.clone(), table, luid, regions)
}

/// The clean bit of `region` in a disk-log image, read by the kernel's rule.
pub fn clean_on_disk(path: &Path, region: u64) -> bool {
    let image = std::fs::read(path).unwrap();
    image[1024 + (region / 8) as usize] & (1 << (region % 8)) != 0
}

/// A tmpfs of 64 KiB, unmounted (lazily) on drop.
pub struct SmallFs(pub PathBuf);

impl SmallFs {
    pub fn mount(at: &Path) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(at).status();
        assert!(status.is_ok_and(|s| s.success()), "mounting a tmpfs needs root");
        SmallFs(at.to_owned())
    }

    /// Fills the file system up, so that the next block it must allocate fails with ENOSPC.
    pub fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.0.join("filler")).unwrap();
        while filler.write_all(&[0xAA; 4096]).is_ok() {}
    }

    /// Gives back what [`SmallFs::fill`] took.
    pub fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A client that sends hand-made datagrams.
pub struct Raw {
    socket: UnixDatagram,
    daemon: PathBuf,
    seq: u32,
    /// The luid of the requests it makes.
    pub luid: u64,
}

/// A reply as the kernel reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub seq: u32,
    pub error: i32,
    pub data: Vec<u8>,
}

impl Raw {
    pub fn new(dir: &Path, daemon: &Path) -> Raw {
        Raw::bound(&dir.join("raw.sock"), daemon)
    }

    /// A client on its own socket at `path`.
    pub fn bound(path: &Path, daemon: &Path) -> Raw {
        Raw {
            socket: UnixDatagram::bind(path).unwrap(),
            daemon: daemon.to_owned(),
            seq: 1000,
            luid: 77,
        }
    }

    /// A well-formed request datagram for `uuid`.
    pub fn frame(&mut self, uuid: &str, request: &Request) -> (u32, Vec<u8>) {
        self.seq += 1;
        let header = RequestHeader::current(request, Uuid::new(uuid).unwrap(), self.luid, self.seq);
        (self.seq, request.to_datagram(&header))
    }

    pub async fn send(&self, datagram: &[u8]) {
        self.socket.send_to(datagram, &self.daemon).await.unwrap();
    }

    pub async fn recv(&self) -> Seen {
        let mut buf = vec![0u8; 65536];
        let len = self.socket.recv(&mut buf).await.unwrap();
        let reply = decode_reply(&buf[..len]).expect("a reply the kernel can read");
        Seen { seq: reply.seq, error: reply.error, data: reply.data.to_vec() }
    }

    /// Sends a request and returns its reply.
    pub async fn call(&mut self, uuid: &str, request: &Request) -> Seen {
        let (seq, frame) = self.frame(uuid, request);
        self.send(&frame).await;
        let seen = self.recv().await;
        assert_eq!(seen.seq, seq, "reply to the request just sent");
        seen
    }

    /// Sends `datagram`, then a probe; true when the next reply is the probe's.
    pub async fn unanswered(&mut self, datagram: &[u8]) -> bool {
        self.send(datagram).await;
        let (probe, frame) = self.frame("good", &Request::GetSyncCount);
        self.send(&frame).await;
        self.recv().await.seq == probe
    }

    /// Sends `datagram` and returns the one reply it gets.
    pub async fn answer(&mut self, datagram: &[u8]) -> Seen {
        self.send(datagram).await;
        self.recv().await
    }
}

/// One HTTP response as read off the wire.
pub struct Response {
    pub status: String,
    /// Names lowercased, as HTTP/1.1 compares them.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }
}

/// Reads one response: its head, then the bytes its Content-Length gives (none after a
/// HEAD request), so that the connection can carry the next one.
pub fn read_response(
    reader: &mut std::io::BufReader<std::net::TcpStream>,
    to_head: bool,
) -> Response {
    use std::io::{BufRead, Read};
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response =
        Response { status: status.trim_end().to_owned(), headers, body: String::new() };
    let length: usize = response.header("content-length").expect("a length").parse().unwrap();
    if !to_head {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        response.body = String::from_utf8(body).unwrap();
    }
    response
}

/// Sends `request` as it is, on a connection of its own, and reads the response.
pub fn http(address: std::net::SocketAddr, request: &[u8]) -> Response {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    // A server that never answers fails the test instead of hanging it.
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(request).unwrap();
    read_response(&mut std::io::BufReader::new(stream), request.starts_with(b"HEAD "))
}

/// The body of one scrape of the daemon's metrics endpoint (started with
/// `--metrics-listen 0`), once its line says where it listens; `promtool check metrics`
/// passes it.
pub fn scrape(daemon: &Daemon) -> String {
    let address = loop {
        let output = daemon.output();
        let line = output.lines().find(|l| l.contains("metrics endpoint listening"));
        if let Some(line) = line {
            let address = line.split("address=").nth(1).expect("the line names the address");
            break address.trim().parse().expect("an IP:PORT address");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let body = http(address, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").body;
    promtool_check_metrics(&body);
    body
}

/// `promtool check metrics` (its parser and its linter) passes `text`.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));
}

/// The value of the sample named `name` (without labels) in a scrape.
pub fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Sends `line` on the control socket at `path` and returns the whole answer.
pub fn control(path: &Path, line: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream.write_all(line.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}
