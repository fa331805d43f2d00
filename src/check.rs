//! `dm-ulogd check`: is this host ready to serve mirrors, and is the daemon serving them well?
//! One line per check, `ok` or `FAIL` and what was found; exit 0 when every check passes, 1
//! when one fails, 2 for a usage error (clap's, before any check runs).

use std::path::Path;

use dm_ulog_actors::shadow::StateDir;
use dm_ulog_actors::transport::missing_capabilities;

use crate::config::{Overrides, Settings, TransportSpec};
use crate::control;

/// The outcome of one check: passed or not, and what was found.
struct Checked {
    name: &'static str,
    passed: bool,
    found: String,
}

/// Runs every check and prints its line; true if all passed.
pub fn run(overrides: &Overrides) -> bool {
    let settings = Settings::load(overrides);
    let mut checks = vec![Checked {
        name: "configuration",
        passed: settings.is_ok(),
        found: match &settings {
            Ok(_) => overrides.client.config.as_ref().map_or_else(
                || "valid (the defaults, and /etc/dm-ulogd/dm-ulogd.toml if there)".to_owned(),
                |path| format!("{} is valid", path.display()),
            ),
            Err(error) => error.to_string(),
        },
    }];
    if let Ok(settings) = &settings {
        if settings.transport == TransportSpec::Netlink {
            checks.push(kernel_module());
            checks.push(capabilities());
        }
        checks.push(state_dir(&settings.state_dir));
        checks.extend(daemon(&settings.control_socket));
    }
    for check in &checks {
        let verdict = if check.passed { "ok  " } else { "FAIL" };
        println!("{verdict} {}: {}", check.name, check.found);
    }
    checks.iter().all(|check| check.passed)
}

fn kernel_module() -> Checked {
    let loaded = Path::new("/sys/module/dm_log_userspace").exists();
    Checked {
        name: "dm-log-userspace",
        passed: loaded,
        found: if loaded {
            "loaded".into()
        } else {
            "not loaded (modprobe dm-log-userspace)".into()
        },
    }
}

fn capabilities() -> Checked {
    let missing = missing_capabilities();
    Checked {
        name: "capabilities",
        passed: missing.is_empty(),
        found: match missing.as_slice() {
            [] => "CAP_NET_ADMIN and CAP_SYS_ADMIN, as the netlink connector needs".into(),
            missing => format!("missing {} (run as root)", missing.join(", ")),
        },
    }
}

/// The state directory passes the daemon's own checks (owner, mode, no symlink) and is a
/// tmpfs, forgotten at reboot as the kernel forgets.
fn state_dir(path: &Path) -> Checked {
    let name = "state_dir";
    if !path.exists() {
        let found = format!("{} is not there yet (the daemon creates it)", path.display());
        return Checked { name, passed: true, found };
    }
    if let Err(error) = StateDir::open(path, 0) {
        return Checked { name, passed: false, found: error.to_string() };
    }
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: statfs(2) on a NUL-terminated path, into the struct given.
    let tmpfs = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } == 0
        && stat.f_type == libc::TMPFS_MAGIC;
    Checked {
        name,
        passed: tmpfs,
        found: if tmpfs {
            format!("{} is a tmpfs, the daemon's own, written by no one else", path.display())
        } else {
            format!(
                "{} is not a tmpfs: shadows would outlive a reboot, which the kernel does not",
                path.display()
            )
        },
    }
}

/// The daemon answers, and no log device of it is failed.
fn daemon(control_socket: &Path) -> Vec<Checked> {
    let logs = match control::query(control_socket) {
        Ok(logs) => logs,
        Err(error) => return vec![Checked { name: "daemon", passed: false, found: error }],
    };
    let failing: Vec<String> = logs
        .iter()
        .filter(|log| matches!(log.health, Some('D' | 'F')))
        .map(|log| format!("{} ({})", log.uuid, log.health.unwrap_or('?')))
        .collect();
    vec![
        Checked { name: "daemon", passed: true, found: format!("serving {} logs", logs.len()) },
        Checked {
            name: "log devices",
            passed: failing.is_empty(),
            found: match failing.as_slice() {
                [] => "none dead (D) or failed (F)".into(),
                failing => format!("{} dead or failed: {}", failing.len(), failing.join(", ")),
            },
        },
    ]
}
