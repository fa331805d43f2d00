//! The one message every log actor takes, whatever its kind (single-host or clustered), and
//! [`LogHandle`], the one recipient through which the socket actor, the registry and the
//! engine reach a log. Kept apart from the actors so that none of them has to know the
//! others.

use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::handover::CarriedLog;
use crate::status::LogStatus;
use crate::transport::Peer;
use crate::wire::{Request, RequestHeader};

/// A decoded request for this log.
pub(crate) struct LogRequest {
    pub header: RequestHeader,
    pub request: Request,
    pub peer: Peer,
    /// When the datagram was taken from the transport, for the latency metrics.
    pub received: Instant,
}

/// What a log actor is asked: its kernel's requests, in order, and the engine's controls.
// Nearly every message is a request: boxing it to shrink the rare controls would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum LogMessage {
    Request(LogRequest),
    /// Commit what is pending, then stop; the sender is told when that is done, and what the
    /// next daemon needs to take the log back without the kernel (`None`: it cannot).
    Shutdown(oneshot::Sender<Option<CarriedLog>>),
    /// Report this log's state.
    Describe(oneshot::Sender<LogStatus>),
    /// A newer CTR took this log's key: stop at once.
    Retire,
}

/// How the engine reaches one log actor, of whatever kind.
#[derive(Clone)]
pub(crate) struct LogHandle(Recipient<LogMessage>);

impl LogHandle {
    pub(crate) fn of<A>(addr: Addr<A>) -> LogHandle
    where
        A: Actor<Context = Context<A>> + Handler<LogMessage>,
    {
        LogHandle(addr.recipient())
    }

    pub(crate) fn request(&self, request: LogRequest) {
        self.0.do_send(LogMessage::Request(request));
    }

    pub(crate) fn retire(&self) {
        self.0.do_send(LogMessage::Retire);
    }

    /// Asks the log to commit and stop; resolves when it has (or is gone), with what the
    /// next daemon needs to take it back.
    pub(crate) fn shutdown(&self) -> impl std::future::Future<Output = Option<CarriedLog>> {
        let (done, stopped) = oneshot::channel();
        self.0.do_send(LogMessage::Shutdown(done));
        // An actor that stopped without answering has nothing left to commit, nor to carry.
        async move { stopped.await.ok().flatten() }
    }

    /// The log's state; `None` if it stopped meanwhile.
    pub(crate) async fn describe(&self) -> Option<LogStatus> {
        let (reply, status) = oneshot::channel();
        self.0.do_send(LogMessage::Describe(reply));
        status.await.ok()
    }
}
