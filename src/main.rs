//! dm-ulogd: the userspace dirty-log daemon for device-mapper mirrors.
//!
//! This binary is wiring only: it reads the command line and the configuration, sets up
//! logging, and runs the engine from the `dm-ulog-actors` crate (or its simulator).

mod config;
mod control;
mod daemon;
mod inspect;
mod notify;
mod simulate;
mod status;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Overrides, Settings, TransportSpec};

/// Serves the kernel's `userspace` mirror log (dm-log-userspace) over the netlink
/// connector: core, disk, and (single-node) clustered-core / clustered-disk logs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file [default: /etc/dm-ulogd/dm-ulogd.toml, if it exists]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Where requests come from: `netlink` (the kernel) or `unix:PATH` (the same datagrams on
    /// a unix socket, for the simulator and tests) [config: transport; default: netlink]
    #[arg(long, global = true, value_name = "SPEC")]
    transport: Option<TransportSpec>,
    /// Log filter: error, warn, info, debug, trace, or tracing directives
    /// [config: log_level; default: info]
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// Extra threads that serve logs; 0 serves them on the socket's thread
    /// [config: workers; default: 0]
    #[arg(long, global = true, value_name = "N")]
    workers: Option<usize>,
    /// Serve clustered-core and clustered-disk tables as single-host logs
    /// [config: single_node_clustered; default: off]
    #[arg(long, global = true)]
    single_node_clustered: bool,
    /// The root-only socket that `status` asks the running daemon through
    /// [config: control_socket; default: /run/dm-ulogd/control]
    #[arg(long, global = true, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// The runtime directory (a tmpfs) where each log's sync state outlives a daemon crash
    /// [config: state_dir; default: /run/dm-ulogd/state]
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the configured transport in the foreground (the default)
    Run,
    /// Drive an in-process engine with the kernel simulator and print a live summary
    Simulate(simulate::SimulateArgs),
    /// Show every log of the running daemon: sync progress, dirty regions, FLUSH latency
    Status {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
        /// Refresh every 2 seconds
        #[arg(long)]
        watch: bool,
    },
    /// Read a disk log (a log device or an image file) offline, in the kernel's format
    Inspect {
        /// The log device or file
        path: PathBuf,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    // Reading a log offline needs neither configuration nor logging.
    if let Command::Inspect { path, json } = &command {
        return exit(inspect::run(path, *json));
    }
    // The simulator prints its own summary; the engine's lifecycle lines would drown it.
    let log_level = (cli.log_level)
        .or_else(|| matches!(command, Command::Simulate(_)).then(|| "warn".to_owned()));
    let overrides = Overrides {
        config: cli.config,
        transport: cli.transport,
        log_level,
        workers: cli.workers,
        single_node_clustered: cli.single_node_clustered,
        control_socket: cli.control_socket,
        state_dir: cli.state_dir,
    };
    let settings = match Settings::load(&overrides) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("dm-ulogd: configuration: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = telemetry::init(&settings.log_level) {
        eprintln!("dm-ulogd: configuration: {error}");
        return ExitCode::from(2);
    }
    exit(match command {
        Command::Simulate(args) => simulate::run(settings, args),
        Command::Status { json, watch } => status::run(&settings.control_socket, json, watch),
        // Inspect returned above, before any configuration was read.
        Command::Run | Command::Inspect { .. } => daemon::run(settings),
    })
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dm-ulogd: {error}");
            ExitCode::FAILURE
        }
    }
}
