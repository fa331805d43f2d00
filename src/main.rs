//! dm-ulogd: the userspace dirty-log daemon for device-mapper mirrors.
//!
//! This binary is wiring only: it reads the command line and the configuration, sets up
//! logging, and runs the engine from the `dm-ulog-actors` crate (or its simulator).

mod adopt;
mod check;
mod config;
mod control;
mod daemon;
mod docs;
mod exposition;
mod inspect;
mod instance_lock;
mod metrics_endpoint;
mod notify;
mod process_metrics;
mod restart;
mod signals;
mod simulate;
mod status_command;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ClientFlags, DaemonFlags, Overrides, Settings};

/// Serves the kernel's `userspace` mirror log (dm-log-userspace) over the netlink
/// connector: core, disk, and (single-node) clustered-core / clustered-disk logs.
///
/// Without a command it serves (as `run`), with the daemon's flags given here.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    daemon: DaemonFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the configured transport in the foreground (the default)
    Run {
        #[command(flatten)]
        client: ClientFlags,
        #[command(flatten)]
        daemon: DaemonFlags,
    },
    /// Drive an in-process engine with the kernel simulator and print a live summary
    Simulate(simulate::SimulateArgs),
    /// Show every log of the running daemon: sync progress, dirty regions, commit times
    Status {
        #[command(flatten)]
        client: ClientFlags,
        /// Only these logs (by uuid); every log if none is named
        uuids: Vec<String>,
        /// Print JSON for scripts (with --watch: one document per line)
        #[arg(long)]
        json: bool,
        /// Refresh every 2 seconds, waiting for the daemon while it restarts
        #[arg(long)]
        watch: bool,
    },
    /// Execute the daemon's binary again (a new version installed in its place) without the
    /// kernel noticing: the socket and every log carried over
    Upgrade {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Move live mirrors from the kernel's core or disk log to dm-ulogd's, by a table reload
    Adopt {
        #[command(flatten)]
        client: ClientFlags,
        #[command(flatten)]
        selection: adopt::Selection,
    },
    /// Move mirrors dm-ulogd serves back to the kernel's own core or disk log
    Release {
        #[command(flatten)]
        client: ClientFlags,
        #[command(flatten)]
        selection: adopt::Selection,
    },
    /// Show every mirror, its log, its sync ratio and whether this daemon serves it
    List {
        #[command(flatten)]
        client: ClientFlags,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Check that this host can serve mirrors and the daemon serves them well: one line per
    /// check; exit 0 if all pass, 1 if one fails, 2 for a usage error
    Check {
        #[command(flatten)]
        client: ClientFlags,
        #[command(flatten)]
        daemon: DaemonFlags,
    },
    /// Read a disk log (a log device or an image file) offline, in the kernel's format
    Inspect {
        /// The log device or file
        path: PathBuf,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Write the man pages and shell completions into DIR (for packaging)
    #[command(hide = true)]
    GenerateDocs {
        /// Where man8/ and completions/ go
        dir: PathBuf,
    },
}

impl Command {
    /// The flags given with the command, over those given before it.
    fn overrides(&mut self, client: ClientFlags, daemon: DaemonFlags) -> Overrides {
        let (given, given_daemon) = match self {
            Command::Run { client, daemon } | Command::Check { client, daemon } => {
                (std::mem::take(client), std::mem::take(daemon))
            }
            Command::Status { client, .. }
            | Command::Upgrade { client }
            | Command::Adopt { client, .. }
            | Command::Release { client, .. }
            | Command::List { client, .. } => (std::mem::take(client), DaemonFlags::default()),
            Command::Simulate(_) | Command::Inspect { .. } | Command::GenerateDocs { .. } => {
                Default::default()
            }
        };
        Overrides { client: given.over(client), daemon: given_daemon.over(daemon) }
    }
}

fn main() -> ExitCode {
    let Cli { client, daemon, command } = Cli::parse();
    let mut command =
        command.unwrap_or(Command::Run { client: Default::default(), daemon: Default::default() });
    let mut overrides = command.overrides(client, daemon);
    // Reading a log offline needs neither configuration nor logging; nor do the docs.
    if let Command::Inspect { path, json } = &command {
        return exit(inspect::run(path, *json));
    }
    if let Command::GenerateDocs { dir } = &command {
        return exit(docs::generate::<Cli>(dir));
    }
    // A configuration that does not load is one of its findings, not a reason to stop.
    if matches!(command, Command::Check { .. }) {
        return ExitCode::from(if check::run(&overrides) { 0 } else { 1 });
    }
    // The simulator prints its own summary; the engine's lifecycle lines would drown it.
    if let Command::Simulate(args) = &command {
        overrides.daemon.log_level = Some("warn".to_owned());
        overrides.daemon.workers = args.workers;
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
    let control = settings.control_socket.clone();
    exit(match command {
        Command::Simulate(args) => simulate::run(settings, args),
        Command::Status { uuids, json, watch, .. } => {
            status_command::run(&control, &uuids, json, watch)
        }
        Command::Upgrade { .. } => control::upgrade(&control),
        Command::Adopt { selection, .. } => {
            adopt::convert(&control, adopt::Direction::Adopt, &selection)
        }
        Command::Release { selection, .. } => {
            adopt::convert(&control, adopt::Direction::Release, &selection)
        }
        Command::List { json, .. } => adopt::list(&control, json),
        // Inspect, check and the docs returned above, before any configuration was read.
        Command::Run { .. }
        | Command::Inspect { .. }
        | Command::Check { .. }
        | Command::GenerateDocs { .. } => daemon::run(settings, &overrides, level),
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
