//! [`ReplyTo`]: where a log actor's answer to one kernel request goes, and the one way every
//! log actor sends it, so that every refusal gets its tracing line with the log's uuid.

use crate::transport::{Peer, ReplySink};
use crate::wire::reply::reply_capacity;
use crate::wire::{LogKey, Reply, Request, RequestHeader};

pub(crate) struct ReplyTo {
    pub header: RequestHeader,
    pub peer: Peer,
    /// What the kernel accepts for this request type.
    pub capacity: usize,
}

impl ReplyTo {
    pub fn new(header: RequestHeader, peer: Peer, request: &Request) -> ReplyTo {
        let capacity = reply_capacity(request, header.version);
        ReplyTo { header, peer, capacity }
    }

    /// Sends `reply`; a refusal is traced, and returned as text for the log's status.
    pub fn send(&self, sink: &ReplySink, key: &LogKey, reply: &Reply) -> Option<String> {
        sink.reply(&self.peer, &self.header, self.capacity, reply);
        let Err(errno) = reply else { return None };
        tracing::warn!(
            uuid = %key.uuid, luid = key.luid, request = ?self.header.kind(), %errno,
            "request refused"
        );
        let request = self.header.kind().map_or("request", |k| k.name());
        Some(format!("{request}: {errno}"))
    }
}
