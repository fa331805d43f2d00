//! The messages every log actor takes, whatever its kind (single-host or clustered): what
//! the socket actor, the registry and the engine send, kept apart from the actors so that
//! none of them has to know the others.

use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::status::LogStatus;
use crate::transport::Peer;
use crate::wire::{Request, RequestHeader};

/// A decoded request for this log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LogRequest {
    pub header: RequestHeader,
    pub request: Request,
    pub peer: Peer,
    /// When the datagram was taken from the transport, for the latency metrics.
    pub received: Instant,
}

/// Commit what is pending, then stop; the sender is told when that is done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown(pub oneshot::Sender<()>);

/// A newer CTR took this log's key: stop at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Report this log's state.
#[derive(Message)]
#[rtype(result = "LogStatus")]
pub struct Describe;
