//! Log output: to the journal, with structured fields, when systemd connected stderr to it;
//! to stderr otherwise. Filtered by the configured level either way, and the level can be
//! changed while the daemon runs (SIGHUP).
//!
//! Uuids, device paths and CTR strings come from the kernel's tables and the host, so no
//! value reaches stderr raw: control characters are escaped, and a uuid holding a newline
//! cannot forge a log line. (The journal takes each field as bytes, so nothing to forge.)

use std::fmt;
use std::io::IsTerminal;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the level filter of the installed subscriber.
pub struct LevelHandle(reload::Handle<EnvFilter, Registry>);

impl LevelHandle {
    /// Applies `level`, if it is a valid filter.
    pub fn set(&self, level: &str) -> Result<(), String> {
        self.0.reload(filter(level)?).map_err(|e| e.to_string())
    }
}

/// Installs the subscriber; a filter that does not parse is a configuration error.
pub fn init(level: &str) -> Result<LevelHandle, String> {
    let (filter, handle) = reload::Layer::new(filter(level)?);
    // systemd sets JOURNAL_STREAM when a service's stderr is the journal.
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| layer.with_syslog_identifier("dm-ulogd".into()));
    let escaped = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let value = Escaped(format!("{value:?}"));
        match field.name() {
            "message" => write!(writer, "{value}"),
            name => write!(writer, "{name}={value}"),
        }
    })
    .delimited(" ");
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(escaped)
            // Colours only for a person at a terminal, not for a log file.
            .with_ansi(std::io::stderr().is_terminal())
    });
    tracing_subscriber::registry().with(filter).with(journald).with(stderr).init();
    Ok(LevelHandle(handle))
}

/// The level names a bare directive may be.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A level name, or comma-separated directives (`target=level`). A bare word that is no
/// level would parse as a target enabled at every level and silence everything else, so it
/// is refused: `infoo` is a typo, not a filter.
fn filter(level: &str) -> Result<EnvFilter, String> {
    let bad = level.split(',').map(str::trim).find(|directive| {
        let level = directive.rsplit_once('=').map_or(*directive, |(_, level)| level);
        !LEVELS.contains(&level.to_ascii_lowercase().as_str())
    });
    if let Some(bad) = bad {
        return Err(format!(
            "log_level {level:?}: {bad:?} is not a level ({}) or a `target=level` directive",
            LEVELS.join(", ")
        ));
    }
    EnvFilter::try_new(level).map_err(|e| format!("log_level {level:?}: {e}"))
}

/// Text with its control characters escaped (`\n`, `\u{1b}`).
struct Escaped(String);

impl fmt::Display for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_pass_and_typos_do_not() {
        for good in ["info", "DEBUG", "off", "dm_ulog_actors=debug", "warn,dm_ulog_actors=trace"] {
            assert!(filter(good).is_ok(), "{good}");
        }
        for bad in ["infoo", "", "dm_ulog_actors", "dm_ulog_actors=loud", "info,"] {
            assert!(filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let forged = Escaped("x\nERROR forged \u{1b}[2J".into()).to_string();
        assert_eq!(forged, "x\\nERROR forged \\u{1b}[2J");
    }
}
