//! An in-process transport: the host program holds a [`ChannelClient`] and exchanges the
//! same datagrams with the engine that a kernel would, without a socket.

use tokio::sync::mpsc;

use super::{Incoming, ReplySink, SinkKind, Source, Transport};

/// The host's end of an in-process transport.
pub struct ChannelClient {
    requests: mpsc::UnboundedSender<Vec<u8>>,
    replies: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl ChannelClient {
    /// Hands a request datagram to the engine; false once the engine is gone.
    pub fn send(&self, datagram: Vec<u8>) -> bool {
        self.requests.send(datagram).is_ok()
    }

    /// The next reply datagram; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.replies.recv().await
    }

    /// Splits the client so that sending and receiving can live in different tasks.
    pub fn split(self) -> (mpsc::UnboundedSender<Vec<u8>>, mpsc::UnboundedReceiver<Vec<u8>>) {
        (self.requests, self.replies)
    }
}

/// A connected pair: the engine's [`Transport`] and the host's [`ChannelClient`].
pub fn channel_pair() -> (Transport, ChannelClient) {
    let (request_tx, request_rx) = mpsc::unbounded_channel();
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let transport = Transport {
        incoming: Incoming::new(Source::Channel(request_rx)),
        replies: ReplySink::new(SinkKind::Channel(reply_tx), Default::default()),
        socket: None,
    };
    (transport, ChannelClient { requests: request_tx, replies: reply_rx })
}
