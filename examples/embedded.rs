//! Embedding the engine: a host program runs its own actix System and serves dirty logs
//! in-process over a channel, with no socket and no root.
//!
//! Here the host plays the kernel too, through the simulator: it creates a core log,
//! writes to two regions, and prints the log's status line.
//!
//! Run: `cargo run --example embedded`

use std::time::Duration;

use dm_ulog_actors::sim::{KernelLink, LogTable, SimLog};
use dm_ulog_actors::transport::channel_pair;
use dm_ulog_actors::{Engine, EngineConfig};

fn main() {
    actix::System::new().block_on(async {
        // The engine's end of the channel goes to the engine, the other end to the host.
        let (transport, client) = channel_pair();
        let engine =
            Engine::start(EngineConfig { workers: 1, ..EngineConfig::default() }, transport);

        let link = KernelLink::channel(client, Duration::from_secs(15));
        let table = LogTable {
            uuid: "embedded-example".into(),
            log_args: "core 1024 nosync".into(),
            target_sectors: 64 * 1024,
            integrated_flush: false,
        };
        let mut log = SimLog::new(link, table, 1, 64);
        log.create().await.expect("CTR and RESUME");
        log.write(&[3, 7]).await.expect("marks and FLUSH");
        let (sync_count, status) = log.status().await.expect("status");
        println!(
            "{} logs served; status `{status}`, {sync_count}/64 regions in sync",
            engine.log_count()
        );
        log.complete(&[3, 7]).await.expect("clears and FLUSH");
        log.remove().await.expect("DTR");

        engine.drain().await;
    });
}
