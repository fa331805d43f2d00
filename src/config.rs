//! The daemon's settings, layered: built-in defaults, then the configuration file, then
//! `DM_ULOGD_*` environment variables, then command-line flags, each overriding the last.

use std::fmt;
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
    pub transport: TransportSpec,
    /// A tracing filter: `error`, `warn`, `info`, `debug`, `trace`, or per-module directives.
    pub log_level: String,
    /// Threads that log actors are spread over; 0 runs them beside the socket.
    pub workers: usize,
    /// Serve clustered-core / clustered-disk tables as single-host logs (no cluster).
    pub single_node_clustered: bool,
    /// The root-only socket that `dm-ulogd status` asks.
    pub control_socket: PathBuf,
    /// The runtime directory of the logs' shadows (actors/src/shadow).
    pub state_dir: PathBuf,
}

/// Command-line values that override every other layer.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub transport: Option<TransportSpec>,
    pub log_level: Option<String>,
    pub workers: Option<usize>,
    pub single_node_clustered: bool,
    pub control_socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

impl Settings {
    pub fn load(overrides: &Overrides) -> Result<Settings, config::ConfigError> {
        let (path, required) = match &overrides.config {
            Some(path) => (path.as_path(), true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        Config::builder()
            .set_default("transport", "netlink")?
            .set_default("log_level", "info")?
            .set_default("workers", EngineConfig::default().workers as u64)?
            .set_default("single_node_clustered", false)?
            .set_default("control_socket", DEFAULT_CONTROL_SOCKET)?
            .set_default("state_dir", DEFAULT_STATE_DIR)?
            .add_source(File::from(path).format(FileFormat::Toml).required(required))
            .add_source(Environment::with_prefix("DM_ULOGD").try_parsing(true))
            .set_override_option("transport", overrides.transport.as_ref().map(|t| t.to_string()))?
            .set_override_option("log_level", overrides.log_level.clone())?
            .set_override_option("workers", overrides.workers.map(|w| w as u64))?
            .set_override_option(
                "single_node_clustered",
                overrides.single_node_clustered.then_some(true),
            )?
            .set_override_option(
                "control_socket",
                overrides.control_socket.as_ref().map(|p| p.display().to_string()),
            )?
            .set_override_option(
                "state_dir",
                overrides.state_dir.as_ref().map(|p| p.display().to_string()),
            )?
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

impl<'de> Deserialize<'de> for TransportSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
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
}
