//! The routing table: which log actor serves which `(uuid, luid)`.
//!
//! Shared by the socket actor (which routes every request through it) and the log actors'
//! [`Registration`]s (which take their entry out when the actor is dropped), so it is a
//! concurrent map. Every entry carries a generation, so that an actor replaced by a newer
//! CTR for the same key cannot remove its successor on its way out.
//!
//! Logs are served by different kinds of actor (single-host and clustered), so an entry
//! holds a [`LogHandle`]: the one message every log actor takes, whatever its kind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::log_messages::{LogHandle, LogRequest};
use crate::wire::LogKey;

/// Which actor serves which log: the socket actor looks every request up here, and a log
/// actor that stops takes its own entry out (by generation, never its successor's).
#[derive(Default)]
pub(crate) struct Registry {
    logs: DashMap<LogKey, Entry>,
    next_generation: AtomicU64,
}

struct Entry {
    addr: LogHandle,
    generation: u64,
}

/// A log actor's claim on its key, held by the actor and dropped with it: the registry then
/// stops routing the key to it, but never to a successor that took the key since. With it,
/// no log actor has to know the registry to leave it.
pub(crate) struct Registration {
    registry: Arc<Registry>,
    key: LogKey,
    generation: u64,
}

impl Registration {
    /// The generation under which [`Registry::insert`] routes to this actor.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove_generation(&self.key, self.generation);
    }
}

impl Registry {
    /// The registration of a log actor about to be started for `key`, with a new generation.
    pub(crate) fn register(registry: &Arc<Registry>, key: LogKey) -> Registration {
        let generation = registry.next_generation.fetch_add(1, Ordering::Relaxed);
        Registration { registry: registry.clone(), key, generation }
    }

    /// Routes `key` to `addr`; returns the actor it replaces, if any.
    pub(crate) fn insert(
        &self,
        key: LogKey,
        addr: LogHandle,
        generation: u64,
    ) -> Option<LogHandle> {
        self.logs.insert(key, Entry { addr, generation }).map(|old| old.addr)
    }

    /// Hands `request` to the actor that serves `key`, or gives it back (boxed: it is large,
    /// and an unknown key is rare) if none does.
    pub(crate) fn send(&self, key: &LogKey, request: LogRequest) -> Result<(), Box<LogRequest>> {
        match self.logs.get(key) {
            Some(entry) => {
                entry.addr.request(request);
                Ok(())
            }
            None => Err(Box::new(request)),
        }
    }

    /// As [`Registry::send`], and stops routing `key`.
    pub(crate) fn send_last(
        &self,
        key: &LogKey,
        request: LogRequest,
    ) -> Result<(), Box<LogRequest>> {
        match self.remove(key) {
            Some(log) => {
                log.request(request);
                Ok(())
            }
            None => Err(Box::new(request)),
        }
    }

    /// Stops routing `key`; returns the actor that served it.
    pub(crate) fn remove(&self, key: &LogKey) -> Option<LogHandle> {
        self.logs.remove(key).map(|(_, entry)| entry.addr)
    }

    /// Stops routing `key` only if it still goes to the actor of `generation`.
    fn remove_generation(&self, key: &LogKey, generation: u64) {
        self.logs.remove_if(key, |_, entry| entry.generation == generation);
    }

    /// Every routed key.
    pub(crate) fn keys(&self) -> Vec<LogKey> {
        self.logs.iter().map(|entry| entry.key().clone()).collect()
    }

    /// Every routed actor.
    pub(crate) fn all(&self) -> Vec<LogHandle> {
        self.logs.iter().map(|entry| entry.addr.clone()).collect()
    }

    /// Every routed actor, no longer routed: for shutdown.
    pub(crate) fn drain(&self) -> Vec<LogHandle> {
        let keys: Vec<LogKey> = self.logs.iter().map(|e| e.key().clone()).collect();
        keys.iter().filter_map(|key| self.remove(key)).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.logs.len()
    }
}
