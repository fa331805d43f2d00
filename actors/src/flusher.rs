//! The flusher: a disk log's I/O worker, a child of its log actor.
//!
//! Reads and writes of the log device run on tokio's blocking pool, so a slow or failed
//! device holds up only its own log, never the thread that serves other logs. Each request
//! is atomic (the next one starts when the previous one has finished), so the device sees
//! the log actor's writes in the order it sent them.

use std::future::Future;
use std::sync::Arc;

use actix::prelude::*;

use crate::store::{Commit, DeviceError, LogDevice};

pub struct Flusher {
    device: Arc<LogDevice>,
}

impl Flusher {
    pub fn new(device: Arc<LogDevice>) -> Flusher {
        Flusher { device }
    }
}

impl Actor for Flusher {
    type Context = Context<Self>;
}

/// Read the first `len` bytes of the device: the whole image.
#[derive(Message)]
#[rtype(result = "Result<Vec<u8>, DeviceError>")]
pub struct ReadImage(pub u64);

/// Write these blocks and make them durable.
#[derive(Message)]
#[rtype(result = "Result<(), DeviceError>")]
pub struct WriteCommit(pub Commit);

impl Handler<ReadImage> for Flusher {
    type Result = AtomicResponse<Self, Result<Vec<u8>, DeviceError>>;

    fn handle(&mut self, ReadImage(len): ReadImage, _: &mut Context<Self>) -> Self::Result {
        let device = self.device.clone();
        AtomicResponse::new(Box::pin(
            blocking(&self.device, move || device.read_image(len)).into_actor(self),
        ))
    }
}

impl Handler<WriteCommit> for Flusher {
    type Result = AtomicResponse<Self, Result<(), DeviceError>>;

    fn handle(&mut self, WriteCommit(commit): WriteCommit, _: &mut Context<Self>) -> Self::Result {
        let device = self.device.clone();
        AtomicResponse::new(Box::pin(
            blocking(&self.device, move || device.write(&commit)).into_actor(self),
        ))
    }
}

/// Runs device I/O on the blocking pool.
fn blocking<T: Send + 'static>(
    device: &LogDevice,
    io: impl FnOnce() -> Result<T, DeviceError> + Send + 'static,
) -> impl Future<Output = Result<T, DeviceError>> {
    let name = device.name().to_owned();
    let task = tokio::task::spawn_blocking(io);
    async move {
        task.await.unwrap_or_else(|_| {
            Err(DeviceError::Io {
                name,
                source: std::io::Error::other("log device I/O task panicked"),
            })
        })
    }
}
