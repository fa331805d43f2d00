//! The routing table: which log actor serves which `(uuid, luid)`.
//!
//! Shared by the socket actor (which routes every request through it) and the log actors
//! (which take themselves out when they stop), so it is a concurrent map. Every entry carries
//! a generation, so that an actor replaced by a newer CTR for the same key cannot remove its
//! successor on its way out.

use std::sync::atomic::{AtomicU64, Ordering};

use actix::Addr;
use dashmap::DashMap;

use crate::log_actor::LogActor;
use crate::wire::LogKey;

#[derive(Default)]
pub struct Registry {
    logs: DashMap<LogKey, Entry>,
    next_generation: AtomicU64,
}

struct Entry {
    addr: Addr<LogActor>,
    generation: u64,
}

impl Registry {
    /// A generation number for a log actor about to be started.
    pub fn next_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    /// Routes `key` to `addr`; returns the actor it replaces, if any.
    pub fn insert(
        &self,
        key: LogKey,
        addr: Addr<LogActor>,
        generation: u64,
    ) -> Option<Addr<LogActor>> {
        self.logs.insert(key, Entry { addr, generation }).map(|old| old.addr)
    }

    pub fn get(&self, key: &LogKey) -> Option<Addr<LogActor>> {
        self.logs.get(key).map(|entry| entry.addr.clone())
    }

    /// Stops routing `key`; returns the actor that served it.
    pub fn remove(&self, key: &LogKey) -> Option<Addr<LogActor>> {
        self.logs.remove(key).map(|(_, entry)| entry.addr)
    }

    /// Stops routing `key` only if it still goes to the actor of `generation`.
    pub fn remove_generation(&self, key: &LogKey, generation: u64) {
        self.logs.remove_if(key, |_, entry| entry.generation == generation);
    }

    /// Every routed actor.
    pub fn all(&self) -> Vec<Addr<LogActor>> {
        self.logs.iter().map(|entry| entry.addr.clone()).collect()
    }

    /// Every routed actor, no longer routed: for shutdown.
    pub fn drain(&self) -> Vec<Addr<LogActor>> {
        let keys: Vec<LogKey> = self.logs.iter().map(|e| e.key().clone()).collect();
        keys.iter().filter_map(|key| self.remove(key)).collect()
    }

    pub fn len(&self) -> usize {
        self.logs.len()
    }
}
