//! dm-ulogd: the userspace dirty-log daemon for device-mapper mirrors.
//!
//! This binary is wiring only: it reads the command line and the configuration, sets up
//! logging, and runs the engine from the `dm-ulog-actors` crate (or its simulator).

mod adopt;
mod config;
mod control;
mod daemon;
mod exposition;
mod inspect;
mod instance_lock;
mod metrics_endpoint;
mod notify;
mod restart;
mod signals;
mod simulate;
mod status_command;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Overrides, Settings};

/// Serves the kernel's `userspace` mirror log (dm-log-userspace) over the netlink
/// connector: core, disk, and (single-node) clustered-core / clustered-disk logs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
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
    /// Execute the daemon's binary again (a new version installed in its place) without the
    /// kernel noticing: the socket and every log carried over
    Upgrade,
    /// Move live mirrors from the kernel's core or disk log to dm-ulogd's, by a table reload
    Adopt(adopt::Selection),
    /// Move mirrors dm-ulogd serves back to the kernel's own core or disk log
    Release(adopt::Selection),
    /// Show every mirror, its log, its sync ratio and whether this daemon serves it
    List {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
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
    let Cli { mut overrides, command } = Cli::parse();
    let command = command.unwrap_or(Command::Run);
    // Reading a log offline needs neither configuration nor logging.
    if let Command::Inspect { path, json } = &command {
        return exit(inspect::run(path, *json));
    }
    // The simulator prints its own summary; the engine's lifecycle lines would drown it.
    if matches!(command, Command::Simulate(_)) {
        overrides.log_level.get_or_insert_with(|| "warn".to_owned());
    }
    let settings = match Settings::load(&overrides) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("dm-ulogd: configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let level = match telemetry::init(&settings.log_level) {
        Ok(level) => level,
        Err(error) => {
            eprintln!("dm-ulogd: configuration: {error}");
            return ExitCode::from(2);
        }
    };
    exit(match command {
        Command::Simulate(args) => simulate::run(settings, args),
        Command::Status { json, watch } => {
            status_command::run(&settings.control_socket, json, watch)
        }
        Command::Upgrade => control::upgrade(&settings.control_socket),
        Command::Adopt(selection) => {
            adopt::convert(&settings.control_socket, adopt::Direction::Adopt, &selection)
        }
        Command::Release(selection) => {
            adopt::convert(&settings.control_socket, adopt::Direction::Release, &selection)
        }
        Command::List { json } => adopt::list(&settings.control_socket, json),
        // Inspect returned above, before any configuration was read.
        Command::Run | Command::Inspect { .. } => daemon::run(settings, &overrides, level),
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
