//! Log output: tracing to stderr, filtered by the configured level.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; a filter that does not parse is a configuration error.
pub fn init(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log_level {level:?}: {e}"))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    Ok(())
}
