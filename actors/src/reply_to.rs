//! [`ReplyTo`]: where a log actor's answer to one kernel request goes, and the one way every
//! log actor sends it, so that every answer is counted and every refusal gets its tracing
//! line with the log's uuid.

use std::time::Instant;

use crate::metrics::Metrics;
use crate::transport::{Peer, ReplySink};
use crate::wire::reply::{fitted, reply_capacity};
use crate::wire::{LogKey, Reply, Request, RequestHeader};

pub(crate) struct ReplyTo {
    pub header: RequestHeader,
    pub peer: Peer,
    /// What the kernel accepts for this request type.
    pub capacity: usize,
    /// When the datagram was taken from the transport, for the latency metrics.
    pub received: Instant,
}

impl ReplyTo {
    pub(crate) fn new(
        header: RequestHeader,
        peer: Peer,
        request: &Request,
        received: Instant,
    ) -> ReplyTo {
        let capacity = reply_capacity(request, header.version);
        ReplyTo { header, peer, capacity, received }
    }

    /// Counts and sends `reply`. A refusal, whether the log's or one the reply became (a
    /// payload the kernel has no room for), is traced and returned as text for the log's
    /// status.
    pub(crate) fn send(
        &self,
        sink: &ReplySink,
        metrics: &Metrics,
        key: &LogKey,
        reply: &Reply,
    ) -> Result<(), String> {
        let sent = fitted(reply, self.capacity).map(drop);
        // Counted first, so that whoever has the reply finds it counted; the engine's own
        // requests (a handover's) are no one's.
        if self.peer != Peer::Engine {
            metrics.answered(self.header.kind(), sent.err(), self.received);
        }
        sink.reply(&self.peer, &self.header, self.capacity, reply);
        let Err(errno) = sent else { return Ok(()) };
        tracing::warn!(
            uuid = %key.uuid, luid = key.luid, request = ?self.header.kind(), %errno,
            "request refused"
        );
        let request = self.header.kind().map_or("request", |k| k.name());
        Err(format!("{request}: {errno}"))
    }
}
