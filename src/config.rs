//! The daemon's settings, layered: built-in defaults, then the configuration file, then
//! `DM_ULOGD_*` environment variables, then command-line flags, each overriding the last.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use config::{Config, Environment, File, FileFormat};
use dm_ulog_actors::EngineConfig;
use serde::Deserialize;

/// Where the configuration file is looked for when `--config` does not name one.
pub const DEFAULT_CONFIG: &str = "/etc/dm-ulogd/dm-ulogd.toml";

/// Where the control socket is when configuration does not say.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/dm-ulogd/control";

/// Where the logs' shadows are when configuration does not say: a tmpfs, which outlives a
/// daemon crash and not a reboot, just as the kernel's own state of the mirrors.
pub const DEFAULT_STATE_DIR: &str = "/run/dm-ulogd/state";

/// Every configuration key; README.md documents each.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `netlink` (the kernel) or `unix:PATH` (the same protocol on a unix datagram socket).
    #[serde(deserialize_with = "from_text")]
    pub transport: TransportSpec,
    /// A tracing filter: `error`, `warn`, `info`, `debug`, `trace`, or per-module directives.
    pub log_level: String,
    /// Threads that log actors are spread over; 0 runs them beside the socket.
    pub workers: usize,
    /// Serve clustered-core / clustered-disk tables as single-host logs (no cluster).
    pub single_node_clustered: bool,
    /// Serve clustered-core / clustered-disk across hosts through the local corosync.
    pub corosync: bool,
    /// The root-only socket that `dm-ulogd status` asks.
    pub control_socket: PathBuf,
    /// Where the Prometheus metrics endpoint listens, if anywhere.
    #[serde(deserialize_with = "from_text")]
    pub metrics_listen: MetricsListen,
    /// The runtime directory of the logs' shadows (actors/src/shadow).
    pub state_dir: PathBuf,
    /// Lock the daemon's memory (mlockall): the kernel's mirror writes wait on it.
    pub lock_memory: bool,
}

/// Command-line values that override every other layer: the flags of the command given,
/// over those given before it (`dm-ulogd --config F status` and `dm-ulogd status --config F`
/// are the same).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub client: ClientFlags,
    pub daemon: DaemonFlags,
}

/// What every command that reads the configuration or talks to the daemon takes.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ClientFlags {
    /// Configuration file [default: /etc/dm-ulogd/dm-ulogd.toml, if it exists]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The root-only socket that `status` asks the running daemon through
    /// [config: control_socket; default: /run/dm-ulogd/control]
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
}

/// What only the daemon itself (and `check`, which checks its configuration) takes.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct DaemonFlags {
    /// Where requests come from: `netlink` (the kernel) or `unix:PATH` (the same datagrams on
    /// a unix socket, for the simulator and tests) [config: transport; default: netlink]
    #[arg(long, value_name = "SPEC")]
    pub transport: Option<TransportSpec>,
    /// Log filter: error, warn, info, debug, trace, or tracing directives
    /// [config: log_level; default: info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Extra threads that serve logs; 0 serves them on the socket's thread
    /// [config: workers; default: 0]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Serve clustered-core and clustered-disk tables as single-host logs
    /// [config: single_node_clustered; default: off]
    #[arg(long)]
    pub single_node_clustered: bool,
    /// Serve clustered-core and clustered-disk tables across hosts: each log's state is kept
    /// alike by the daemons of every host through the local corosync (CPG and quorum)
    /// [config: corosync; default: off]
    #[arg(long)]
    pub corosync: bool,
    /// Serve Prometheus metrics over HTTP at ADDR (`127.0.0.1:9877`, or a bare port for
    /// 127.0.0.1; port 0 picks a free one, logged at start), or `off`
    /// [config: metrics_listen; default: off]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<MetricsListen>,
    /// The runtime directory (a tmpfs) where each log's sync state outlives a daemon crash
    /// [config: state_dir; default: /run/dm-ulogd/state]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Lock the daemon's memory into RAM (mlockall, each page as it is first used): the
    /// kernel's mirror writes wait on the daemon, which must not wait on swap
    /// [config: lock_memory; default: off; the systemd unit turns it on]
    #[arg(long)]
    pub lock_memory: bool,
}

impl ClientFlags {
    /// These flags, with `before`'s where these give none.
    pub fn over(self, before: ClientFlags) -> ClientFlags {
        ClientFlags {
            config: self.config.or(before.config),
            control_socket: self.control_socket.or(before.control_socket),
        }
    }
}

impl DaemonFlags {
    /// These flags, with `before`'s where these give none.
    pub fn over(self, before: DaemonFlags) -> DaemonFlags {
        DaemonFlags {
            transport: self.transport.or(before.transport),
            log_level: self.log_level.or(before.log_level),
            workers: self.workers.or(before.workers),
            single_node_clustered: self.single_node_clustered || before.single_node_clustered,
            corosync: self.corosync || before.corosync,
            metrics_listen: self.metrics_listen.or(before.metrics_listen),
            state_dir: self.state_dir.or(before.state_dir),
            lock_memory: self.lock_memory || before.lock_memory,
        }
    }
}

impl Settings {
    pub fn load(overrides: &Overrides) -> Result<Settings, config::ConfigError> {
        let (client, daemon) = (&overrides.client, &overrides.daemon);
        let (path, required) = match &client.config {
            Some(path) => (path.as_path(), true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        Config::builder()
            .set_default("transport", "netlink")?
            .set_default("log_level", "info")?
            .set_default("workers", EngineConfig::default().workers as u64)?
            .set_default("single_node_clustered", false)?
            .set_default("corosync", false)?
            .set_default("control_socket", DEFAULT_CONTROL_SOCKET)?
            .set_default("metrics_listen", MetricsListen::Off.to_string())?
            .set_default("state_dir", DEFAULT_STATE_DIR)?
            .set_default("lock_memory", false)?
            .add_source(File::from(path).format(FileFormat::Toml).required(required))
            .add_source(Environment::with_prefix("DM_ULOGD").try_parsing(true))
            .set_override_option("transport", daemon.transport.as_ref().map(|t| t.to_string()))?
            .set_override_option("log_level", daemon.log_level.clone())?
            .set_override_option("workers", daemon.workers.map(|w| w as u64))?
            .set_override_option(
                "single_node_clustered",
                daemon.single_node_clustered.then_some(true),
            )?
            .set_override_option("corosync", daemon.corosync.then_some(true))?
            .set_override_option(
                "control_socket",
                client.control_socket.as_ref().map(|p| p.display().to_string()),
            )?
            .set_override_option(
                "metrics_listen",
                daemon.metrics_listen.as_ref().map(|m| m.to_string()),
            )?
            .set_override_option(
                "state_dir",
                daemon.state_dir.as_ref().map(|p| p.display().to_string()),
            )?
            .set_override_option("lock_memory", daemon.lock_memory.then_some(true))?
            .build()?
            .try_deserialize()
    }
}

/// Which transport the daemon serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSpec {
    Netlink,
    Unix(PathBuf),
}

impl FromStr for TransportSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "netlink" => Ok(TransportSpec::Netlink),
            Some(("unix", path)) if !path.is_empty() => Ok(TransportSpec::Unix(path.into())),
            _ => Err(format!("transport {s:?} is neither `netlink` nor `unix:PATH`")),
        }
    }
}

impl fmt::Display for TransportSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportSpec::Netlink => f.write_str("netlink"),
            TransportSpec::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The metrics endpoint: off (the default), or the TCP address it listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    On(SocketAddr),
}

impl FromStr for MetricsListen {
    type Err = String;

    /// `off`, `IP:PORT` (`[IPv6]:PORT`), or a bare port for 127.0.0.1: the metrics carry no
    /// secrets but have no authentication either, so only a deliberate address leaves the host.
    /// Host names are not resolved: a storage daemon's start must not wait for DNS.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(MetricsListen::Off);
        }
        let address = match s.parse::<u16>() {
            Ok(port) => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            Err(_) => s.parse::<SocketAddr>(),
        };
        address.map(MetricsListen::On).map_err(|_| {
            format!("metrics_listen {s:?} is neither `off`, a port, nor an IP:PORT address")
        })
    }
}

impl fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::On(address) => address.fmt(f),
        }
    }
}

/// Reads a value from its text form, with the message its `FromStr` gives.
fn from_text<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = String>,
{
    String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_spec_round_trips() {
        for text in ["netlink", "unix:/run/dm-ulogd.sock"] {
            assert_eq!(text.parse::<TransportSpec>().unwrap().to_string(), text);
        }
        assert!("unix:".parse::<TransportSpec>().is_err());
        assert!("tcp:1.2.3.4".parse::<TransportSpec>().is_err());
    }

    #[test]
    fn metrics_listen_is_off_an_address_or_a_local_port() {
        for text in ["off", "127.0.0.1:9877", "0.0.0.0:0", "[::1]:9877"] {
            assert_eq!(text.parse::<MetricsListen>().unwrap().to_string(), text);
        }
        assert_eq!("9877".parse::<MetricsListen>().unwrap().to_string(), "127.0.0.1:9877");
        for bad in ["", "on", "localhost:9877", "127.0.0.1", "70000", "127.0.0.1:70000"] {
            assert!(bad.parse::<MetricsListen>().is_err(), "{bad:?}");
        }
    }
}
