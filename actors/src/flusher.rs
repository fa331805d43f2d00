//! The flusher: a disk log's I/O thread, owned by its log actor.
//!
//! Each disk log reads and writes its device on a thread of its own, so a slow or failed
//! device holds up only its own log, never the thread that serves other logs. Jobs run in the
//! order they were sent, so the device sees the log's writes in that order.
//!
//! Why a thread per log rather than tokio's blocking pool behind a child actor: a commit then
//! costs one hand-off to the device and none back. The job carries what to do once the write
//! is durable, and that runs on the I/O thread the moment `fdatasync` returns: a log actor
//! sends its FLUSH replies from there, without waiting for its own thread to be woken and
//! scheduled, and learns of the commit afterwards. The same replies sent from tokio's
//! blocking pool, with a queue per log, made 64 busy disk logs slower (README's Benchmarks).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::store::{Commit, DeviceError, LogDevice};

/// Room enough for a blocking pwrite/fdatasync loop; the default 2 MiB per log adds up.
const STACK_SIZE: usize = 256 * 1024;

pub struct Flusher {
    device: Arc<LogDevice>,
    jobs: mpsc::Sender<Job>,
}

enum Job {
    Read { len: u64, then: Box<dyn FnOnce(Result<Vec<u8>, DeviceError>) + Send> },
    Write { commit: Commit, then: Box<dyn FnOnce(Result<(), DeviceError>) + Send> },
}

impl Flusher {
    /// Starts the I/O thread of `device`; it ends when the Flusher is dropped and its jobs
    /// are done.
    pub fn start(device: Arc<LogDevice>) -> Result<Flusher, DeviceError> {
        let (jobs, queue) = mpsc::channel();
        let io_device = device.clone();
        std::thread::Builder::new()
            .name("dm-ulogd-io".into())
            .stack_size(STACK_SIZE)
            .spawn(move || serve(&io_device, queue))
            .map_err(|source| DeviceError::Io { name: device.name().into(), source })?;
        Ok(Flusher { device, jobs })
    }

    pub fn device(&self) -> &LogDevice {
        &self.device
    }

    /// Writes `commit` durably, then calls `then` with the result on the I/O thread. If the
    /// thread is gone, `then` is dropped uncalled.
    pub fn write_then(
        &self,
        commit: Commit,
        then: impl FnOnce(Result<(), DeviceError>) + Send + 'static,
    ) {
        let _ = self.jobs.send(Job::Write { commit, then: Box::new(then) });
    }

    /// Writes `commit` durably.
    pub fn write(&self, commit: Commit) -> impl Future<Output = Result<(), DeviceError>> {
        let (done, result) = oneshot::channel();
        self.write_then(commit, move |written| drop(done.send(written)));
        self.outcome(result)
    }

    /// Reads the first `len` bytes of the device: the whole image.
    pub fn read_image(&self, len: u64) -> impl Future<Output = Result<Vec<u8>, DeviceError>> {
        let (done, result) = oneshot::channel();
        let then = Box::new(move |read| drop(done.send(read)));
        let _ = self.jobs.send(Job::Read { len, then });
        self.outcome(result)
    }

    fn outcome<T>(
        &self,
        result: oneshot::Receiver<Result<T, DeviceError>>,
    ) -> impl Future<Output = Result<T, DeviceError>> {
        let name = self.device.name().to_owned();
        async move { result.await.unwrap_or_else(|_| Err(stopped(name))) }
    }
}

/// The I/O thread: one job at a time until the log actor drops its Flusher.
fn serve(device: &LogDevice, queue: mpsc::Receiver<Job>) {
    for job in queue {
        match job {
            Job::Read { len, then } => then(guarded(device, || device.read_image(len))),
            Job::Write { commit, then } => then(guarded(device, || device.write(&commit))),
        }
    }
}

/// A panic in the I/O fails its job, not the log's later ones.
fn guarded<T>(
    device: &LogDevice,
    io: impl FnOnce() -> Result<T, DeviceError>,
) -> Result<T, DeviceError> {
    catch_unwind(AssertUnwindSafe(io)).unwrap_or_else(|_| Err(stopped(device.name().into())))
}

fn stopped(name: String) -> DeviceError {
    DeviceError::Io {
        name,
        source: std::io::Error::other("log device I/O failed (thread panicked)"),
    }
}
