//! `dm-ulogd simulate`: the kernel simulator against an in-process engine, with a live
//! summary. It needs no root, no kernel module and no device: disk logs live on files in
//! a temporary directory.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dm_ulog_actors::sim::{drive, KernelLink, LogTable, Rng, SimLog};
use dm_ulog_actors::store::format::image_size;
use dm_ulog_actors::transport::channel_pair;
use dm_ulog_actors::units::RegionCount;
use dm_ulog_actors::{Engine, EngineConfig};

use crate::config::Settings;

/// Region size of the simulated mirrors, in sectors (512 KiB, LVM's default).
const REGION_SECTORS: u64 = 1024;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Core logs to run
    #[arg(long, default_value_t = 48)]
    core_logs: usize,
    /// Disk logs to run, each on a file in a temporary directory
    #[arg(long, default_value_t = 16)]
    disk_logs: usize,
    /// Regions per log
    #[arg(long, default_value_t = 4096)]
    regions: u64,
    /// How long to run, in seconds
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Send marks inside FLUSH requests, as tables with `integrated_flush` do
    #[arg(long)]
    integrated_flush: bool,
    /// Seed of the random workload
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Extra threads that serve logs, as the daemon's `workers` [default: the configuration's]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

#[derive(Default)]
struct Totals {
    checks: AtomicU64,
    violations: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
}

pub fn run(settings: Settings, args: SimulateArgs) -> Result<(), String> {
    actix::System::new().block_on(simulate(settings, args))
}

/// The table of simulated log `i`: a core log, or a disk log on a file in `dir`.
fn table_of(i: usize, args: &SimulateArgs, dir: &Path) -> Result<LogTable, String> {
    let log_args = if i < args.core_logs {
        format!("core {REGION_SECTORS}")
    } else {
        let path = dir.join(format!("log{i}"));
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        file.set_len(image_size(RegionCount(args.regions), 512)).map_err(|e| e.to_string())?;
        format!("disk {} {REGION_SECTORS}", path.display())
    };
    Ok(LogTable {
        uuid: format!("sim-{i:05}"),
        log_args,
        target_sectors: args.regions * REGION_SECTORS,
        integrated_flush: args.integrated_flush,
    })
}

/// A line a second, until every simulated log is done.
async fn report_progress(
    tasks: &[tokio::task::JoinHandle<()>],
    link: &KernelLink,
    engine: &Engine,
) {
    let started = Instant::now();
    let mut last = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    while tasks.iter().any(|t| !t.is_finished()) {
        ticker.tick().await;
        let requests = link.stats.requests.load(Ordering::Relaxed);
        println!(
            "{:>4.0} s  logs {:>5}  requests {:>9}  {:>7}/s",
            started.elapsed().as_secs_f64(),
            engine.log_count(),
            requests,
            requests - last
        );
        last = requests;
    }
}

async fn simulate(settings: Settings, args: SimulateArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("dm-ulogd-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (transport, client) = channel_pair();
    // In-process logs die with the simulator: nothing to keep for a next run.
    let config = EngineConfig {
        workers: settings.workers,
        single_node_clustered: true,
        ..EngineConfig::default()
    };
    let engine = Engine::start(config, transport);
    let link = KernelLink::channel(client, Duration::from_secs(15));
    let totals = Arc::new(Totals::default());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let logs = args.core_logs + args.disk_logs;

    let mut tasks = Vec::new();
    for i in 0..logs {
        let table = table_of(i, &args, &dir)?;
        let mut log = SimLog::new(link.clone(), table, 0x1000 + i as u64, args.regions);
        let mut rng = Rng::new(args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let totals = totals.clone();
        tasks.push(actix::spawn(async move {
            let result = async {
                log.create().await?;
                while Instant::now() < deadline {
                    drive(&mut log, &mut rng, 64).await?;
                }
                log.remove().await
            }
            .await;
            totals.checks.fetch_add(log.oracle.checks, Ordering::Relaxed);
            totals.violations.lock().unwrap().extend(log.oracle.violations);
            if let Err(failed) = result {
                totals.failures.lock().unwrap().push(format!("{}: {failed}", log.table.uuid));
            }
        }));
    }

    println!(
        "simulating {} core and {} disk logs of {} regions for {} s",
        args.core_logs, args.disk_logs, args.regions, args.seconds
    );
    let started = Instant::now();
    report_progress(&tasks, &link, &engine).await;
    for task in tasks {
        let _ = task.await;
    }
    engine.drain().await;
    let _ = std::fs::remove_dir_all(&dir);

    let requests = link.stats.requests.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let violations = totals.violations.lock().unwrap();
    let failures = totals.failures.lock().unwrap();
    println!(
        "done: {requests} requests in {elapsed:.1} s ({:.0}/s); invariant checks: {} passed, {} failed",
        requests as f64 / elapsed,
        totals.checks.load(Ordering::Relaxed) - violations.len() as u64,
        violations.len()
    );
    for line in violations.iter().chain(failures.iter()).take(20) {
        println!("  {line}");
    }
    if violations.is_empty() && failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} invariant violations, {} failed logs", violations.len(), failures.len()))
    }
}
