//! Log output: to the journal, with structured fields, when systemd connected stderr to it;
//! to stderr otherwise. Filtered by the configured level either way.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber; a filter that does not parse is a configuration error.
pub fn init(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log_level {level:?}: {e}"))?;
    // systemd sets JOURNAL_STREAM when a service's stderr is the journal.
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| layer.with_syslog_identifier("dm-ulogd".into()));
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colours only for a person at a terminal, not for a log file.
            .with_ansi(std::io::stderr().is_terminal())
    });
    tracing_subscriber::registry().with(filter).with(journald).with(stderr).init();
    Ok(())
}
