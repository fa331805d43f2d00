//! The flusher: a disk log's I/O thread, owned by its log actor.
//!
//! Each disk log reads and writes its device on a thread of its own, so a slow or failed
//! device holds up only its own log, never the thread that serves other logs. Jobs run in the
//! order they were sent, so the device sees the log's writes in that order. Whatever grows
//! with the log's size runs here too: loading the image at resume and rendering it whole, so
//! that a resume of a huge log delays only that log.
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

use roaring::RoaringBitmap;
use tokio::sync::oneshot;

use crate::region::SyncMode;
use crate::store::{Commit, DeviceError, Layout, Loaded, LogDevice};
use crate::units::RegionCount;

/// Room enough for a blocking pwrite/fdatasync loop; the default 2 MiB per log adds up.
const STACK_SIZE: usize = 256 * 1024;

/// A disk log's I/O thread and the queue to it: the only code that blocks on the log's
/// device, so a slow device stalls its own log and nothing else.
pub struct Flusher {
    device: Arc<LogDevice>,
    jobs: mpsc::Sender<Job>,
}

/// What a write puts on the device.
pub enum Writing {
    /// The changed blocks, rendered already.
    Blocks(Commit),
    /// The whole image, rendered on the I/O thread from the layout and the regions not clean.
    Whole { layout: Layout, unclean: Vec<RoaringBitmap> },
}

enum Job {
    Load {
        count: RegionCount,
        sync: SyncMode,
        then: Box<dyn FnOnce(Result<Loaded, DeviceError>) + Send>,
    },
    Write {
        writing: Writing,
        then: Box<dyn FnOnce(Result<(), DeviceError>) + Send>,
    },
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

    /// Writes durably, then calls `then` with the result on the I/O thread. If the thread is
    /// gone, `then` is dropped uncalled.
    pub fn write_then(
        &self,
        writing: Writing,
        then: impl FnOnce(Result<(), DeviceError>) + Send + 'static,
    ) {
        let _ = self.jobs.send(Job::Write { writing, then: Box::new(then) });
    }

    /// Writes durably.
    pub fn write(&self, writing: Writing) -> impl Future<Output = Result<(), DeviceError>> {
        let (done, result) = oneshot::channel();
        self.write_then(writing, move |written| drop(done.send(written)));
        self.outcome(result)
    }

    /// Loads the image of a log of `count` regions as a resume does.
    pub fn load(
        &self,
        count: RegionCount,
        sync: SyncMode,
    ) -> impl Future<Output = Result<Loaded, DeviceError>> {
        let (done, result) = oneshot::channel();
        let then = Box::new(move |loaded| drop(done.send(loaded)));
        let _ = self.jobs.send(Job::Load { count, sync, then });
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
            Job::Load { count, sync, then } => then(guarded(device, || device.load(count, sync))),
            Job::Write { writing: Writing::Blocks(commit), then } => {
                then(guarded(device, || device.write(&commit)))
            }
            Job::Write { writing: Writing::Whole { layout, unclean }, then } => {
                let unclean: Vec<&RoaringBitmap> = unclean.iter().collect();
                then(guarded(device, || device.write_whole(&layout, &unclean)))
            }
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
