//! `dm-ulogd adopt`, `release` and `list`: moving live mirrors between the kernel's own dirty
//! logs and dm-ulogd, by a table reload (load the converted table, suspend, resume), and
//! showing which log serves each mirror.
//!
//! What carries over is what each log keeps. A disk log's state is on its device in the
//! kernel's format, which both sides read and write, so it carries over whole, either way. A
//! core log's state lives only in the memory of the side that serves it: a mirror in sync is
//! converted as `nosync` (checked again once the suspend has quiesced it: a mirror that fell
//! out of sync meanwhile is left as it was), and one in mid-resync can only start its resync
//! over, which is done only when asked (`--resync`). Clustered logs have no kernel
//! counterpart, and mirrors that LVM manages are LVM's to convert (it would load its own
//! table again at the next activation or refresh). Any failure leaves the mirror on its old
//! table: an inactive table loaded is cleared, a suspended mirror resumed.

mod dmsetup;
mod table;

use std::path::Path;

use dmsetup::{DeviceInfo, Dmsetup};
use table::{DirtyLog, LogSpec, MirrorLine, Sync, TableLine, UserspaceSpec};

use crate::control;

/// Which way a conversion goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The kernel's `core`/`disk` log to dm-ulogd's.
    Adopt,
    /// dm-ulogd's `core`/`disk` log back to the kernel's.
    Release,
}

/// What the operator asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// The mirrors (device-mapper names)
    #[arg(required_unless_present = "all")]
    names: Vec<String>,
    /// Every mirror device there is
    #[arg(long, conflicts_with = "names")]
    all: bool,
    /// Convert core-log mirrors in mid-resync too: their resync starts over
    #[arg(long)]
    resync: bool,
    /// Print what would be loaded, and change nothing
    #[arg(long)]
    dry_run: bool,
}

/// Converts the selected mirrors; `Err` says how many were not.
pub fn convert(control: &Path, direction: Direction, selection: &Selection) -> Result<(), String> {
    let dmsetup = Dmsetup::find()?;
    // A userspace log's CTR waits for its daemon for ever: never load one without it.
    control::query(control).map_err(|e| format!("{e}: nothing converted"))?;
    let names = if selection.all { dmsetup.mirror_devices()? } else { selection.names.clone() };
    let mut failed = 0;
    for name in &names {
        match convert_one(&dmsetup, name, direction, selection) {
            Ok(said) => println!("{name}: {said}"),
            Err(why) => {
                failed += 1;
                println!("{name}: not converted: {why}");
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} of {} mirrors not converted (each left as it was)", names.len())),
    }
}

/// One mirror line's conversion, decided before anything changes.
struct Converted {
    line: MirrorLine,
    /// A core log converted as `nosync`: still in sync once the mirror is suspended?
    recheck_in_sync: bool,
    said: String,
}

fn convert_one(
    dmsetup: &Dmsetup,
    name: &str,
    direction: Direction,
    selection: &Selection,
) -> Result<String, String> {
    let info = dmsetup.info(name)?;
    refuse_device(&info)?;
    let table = dmsetup.table(name)?;
    let ratios = dmsetup.sync_ratios(name)?;
    let mirrors = table.iter().filter(|l| matches!(l, TableLine::Mirror(_))).count();
    if mirrors == 0 {
        return Err("no mirror target in its table".into());
    }
    let mut recheck = Vec::new();
    let mut said = Vec::new();
    let mut converted = Vec::with_capacity(table.len());
    for (index, line) in table.iter().enumerate() {
        let TableLine::Mirror(mirror) = line else {
            converted.push(line.clone());
            continue;
        };
        let uuid = match mirrors {
            1 => log_uuid(&info),
            _ => format!("{}-{index}", log_uuid(&info)),
        };
        let ratio = ratios.get(index).copied().flatten();
        let Some(done) = convert_line(mirror, ratio, &uuid, direction, selection.resync)? else {
            converted.push(line.clone());
            continue;
        };
        if done.recheck_in_sync {
            recheck.push(index);
        }
        said.push(done.said);
        converted.push(TableLine::Mirror(done.line));
    }
    if said.is_empty() {
        let side = match direction {
            Direction::Adopt => "a userspace log",
            Direction::Release => "the kernel's own log",
        };
        return Ok(format!("on {side} already: left as it is"));
    }
    if selection.dry_run {
        let text: Vec<String> = converted.iter().map(ToString::to_string).collect();
        return Ok(format!("{} (dry run) would load: {}", said.join("; "), text.join(" | ")));
    }
    reload(dmsetup, name, &converted, &recheck)?;
    Ok(said.join("; "))
}

/// Devices no conversion touches.
fn refuse_device(info: &DeviceInfo) -> Result<(), String> {
    if info.uuid.starts_with("LVM-") {
        return Err(format!(
            "LVM manages it (uuid {}): LVM loads its own table again at the next activation or \
             refresh, so convert it with LVM (lvconvert) instead",
            info.uuid
        ));
    }
    if info.suspended {
        return Err("it is suspended: resume it first".into());
    }
    Ok(())
}

/// The uuid the userspace log goes by: the device's own uuid, or else its name.
fn log_uuid(info: &DeviceInfo) -> String {
    if info.uuid.is_empty() {
        info.name.clone()
    } else {
        info.uuid.clone()
    }
}

/// The line with its log converted; `None` if its log is on the far side already (so that
/// `--all` can be run again, as at every boot); `Err` why it cannot be converted.
fn convert_line(
    line: &MirrorLine,
    ratio: Option<(u64, u64)>,
    uuid: &str,
    direction: Direction,
    resync: bool,
) -> Result<Option<Converted>, String> {
    let spec = match (direction, &line.log) {
        (Direction::Adopt, DirtyLog::Kernel(spec)) => spec,
        (Direction::Release, DirtyLog::Userspace { spec: UserspaceSpec::Plain(spec), .. }) => spec,
        (Direction::Release, DirtyLog::Userspace { spec: UserspaceSpec::Clustered(_), .. }) => {
            return Err(format!("its {} log has no kernel counterpart", line.log.describe()))
        }
        (Direction::Adopt, DirtyLog::Userspace { .. })
        | (Direction::Release, DirtyLog::Kernel(_)) => return Ok(None),
    };
    let (to, from) = match direction {
        Direction::Adopt => ("dm-ulogd", "the kernel"),
        Direction::Release => ("the kernel", "dm-ulogd"),
    };
    let in_sync = matches!(ratio, Some((synced, regions)) if synced == regions && regions > 0);
    let progress = ratio.map_or("?".to_owned(), |(s, r)| format!("{s}/{r}"));
    // A disk log's state carries over from its device: its first-resume sync flag is spent.
    let (sync, recheck_in_sync, said) = match &spec.device {
        Some(_) => (
            Sync::Default,
            false,
            format!("disk log, {progress} in sync: its state carries over to {to}"),
        ),
        None if in_sync => {
            (Sync::No, true, format!("core log in sync ({progress}): {to} serves it as nosync"))
        }
        None if resync => (
            Sync::Default,
            false,
            format!("core log in mid-resync ({progress}): its resync starts over under {to}"),
        ),
        None => {
            return Err(format!(
                "core log in mid-resync ({progress}): its state is in {from}'s memory only, so \
                 under {to} the resync would start over from the first region; run again with \
                 --resync to accept that"
            ))
        }
    };
    let spec = LogSpec { sync, ..spec.clone() };
    let log = match direction {
        Direction::Adopt => DirtyLog::Userspace {
            uuid: uuid.to_owned(),
            integrated_flush: false,
            spec: UserspaceSpec::Plain(spec),
        },
        Direction::Release => DirtyLog::Kernel(spec),
    };
    Ok(Some(Converted { line: MirrorLine { log, ..line.clone() }, recheck_in_sync, said }))
}

/// Loads `table`, suspends, checks the lines in `recheck` are still in sync, resumes; on any
/// failure the mirror goes back to running its old table.
fn reload(
    dmsetup: &Dmsetup,
    name: &str,
    table: &[TableLine],
    recheck: &[usize],
) -> Result<(), String> {
    let back = |why: String| {
        let _ = dmsetup.clear(name);
        let suspended = dmsetup.info(name).map(|i| i.suspended).unwrap_or(true);
        match suspended.then(|| dmsetup.resume(name)) {
            Some(Err(error)) => format!("{why}; and resuming it on its old table failed: {error}"),
            _ => format!("{why}; it runs on its old table"),
        }
    };
    dmsetup.load(name, table).map_err(&back)?;
    dmsetup.suspend(name).map_err(&back)?;
    if !recheck.is_empty() {
        let ratios = dmsetup.sync_ratios(name).map_err(&back)?;
        for &index in recheck {
            if let Some(Some((synced, regions))) = ratios.get(index) {
                if synced != regions {
                    return Err(back(format!(
                        "fell out of sync ({synced}/{regions}) while suspending"
                    )));
                }
            }
        }
    }
    dmsetup.resume(name).map_err(&back)
}

/// `dm-ulogd list`: every mirror, its log, its sync ratio, and whether this daemon serves it.
pub fn list(control: &Path, json: bool) -> Result<(), String> {
    let dmsetup = Dmsetup::find()?;
    // Without a daemon, no userspace log is served by it.
    let served: Vec<String> = control::query(control)
        .map(|logs| logs.into_iter().map(|log| log.uuid).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for name in dmsetup.mirror_devices()? {
        let table = dmsetup.table(&name)?;
        let ratios = dmsetup.sync_ratios(&name)?;
        for (index, line) in table.iter().enumerate() {
            let TableLine::Mirror(mirror) = line else { continue };
            let serves = match &mirror.log {
                DirtyLog::Kernel(_) => "no (the kernel's own log)",
                DirtyLog::Userspace { uuid, .. } if served.contains(uuid) => "yes",
                DirtyLog::Userspace { .. } => "no (another userspace daemon)",
            };
            let sync = ratios.get(index).copied().flatten();
            rows.push((name.clone(), mirror.log.describe(), sync, serves));
        }
    }
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, log, sync, serves)| {
                serde_json::json!({
                    "name": name, "log": log, "in_sync": sync.map(|s| s.0),
                    "regions": sync.map(|s| s.1), "dm_ulogd": *serves == "yes",
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("{:<24} {:<26} {:>13}  DM-ULOGD", "NAME", "LOG", "SYNC");
    for (name, log, sync, serves) in rows {
        let sync = sync.map_or("-".to_owned(), |(s, r)| format!("{s}/{r}"));
        println!("{name:<24} {log:<26} {sync:>13}  {serves}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(line: &str) -> MirrorLine {
        match line.parse().unwrap() {
            TableLine::Mirror(mirror) => mirror,
            TableLine::Other(_) => panic!("{line}"),
        }
    }

    fn converted(
        line: &str,
        ratio: (u64, u64),
        direction: Direction,
        resync: bool,
    ) -> Result<String, String> {
        let converted = convert_line(&mirror(line), Some(ratio), "U", direction, resync)?;
        Ok(converted.map_or("as it is".into(), |c| c.line.to_string()))
    }

    #[test]
    fn adopting_keeps_everything_but_the_log() {
        let core = "0 4096 mirror core 1 128 2 1:8 0 1:9 0 1 handle_errors";
        assert_eq!(
            converted(core, (32, 32), Direction::Adopt, false).unwrap(),
            "0 4096 mirror userspace 4 U core 128 nosync 2 1:8 0 1:9 0 1 handle_errors"
        );
        let disk = "0 4096 mirror disk 3 1:2 128 sync 2 1:8 0 1:9 0";
        assert_eq!(
            converted(disk, (3, 32), Direction::Adopt, false).unwrap(),
            "0 4096 mirror userspace 4 U disk 1:2 128 2 1:8 0 1:9 0"
        );
    }

    #[test]
    fn a_core_log_in_mid_resync_is_converted_only_when_asked() {
        let core = "0 4096 mirror core 1 128 2 1:8 0 1:9 0";
        let refused = converted(core, (12, 32), Direction::Adopt, false).unwrap_err();
        assert!(
            refused.contains("mid-resync (12/32)") && refused.contains("--resync"),
            "{refused}"
        );
        assert_eq!(
            converted(core, (12, 32), Direction::Adopt, true).unwrap(),
            "0 4096 mirror userspace 3 U core 128 2 1:8 0 1:9 0"
        );
    }

    #[test]
    fn releasing_gives_the_kernel_its_own_log_back() {
        let disk =
            "0 4096 mirror userspace 5 KT integrated_flush disk /dev/ram72 128 2 1:8 0 1:9 0";
        assert_eq!(
            converted(disk, (32, 32), Direction::Release, false).unwrap(),
            "0 4096 mirror disk 2 /dev/ram72 128 2 1:8 0 1:9 0"
        );
        let core = "0 4096 mirror userspace 3 KT core 128 2 1:8 0 1:9 0";
        assert_eq!(
            converted(core, (32, 32), Direction::Release, false).unwrap(),
            "0 4096 mirror core 2 128 nosync 2 1:8 0 1:9 0"
        );
        let clustered = "0 4096 mirror userspace 3 KT clustered-core 128 2 1:8 0 1:9 0";
        let refused = converted(clustered, (32, 32), Direction::Release, false).unwrap_err();
        assert!(refused.contains("no kernel counterpart"), "{refused}");
    }

    #[test]
    fn a_log_already_on_the_far_side_is_left_as_it_is() {
        let core = "0 4096 mirror core 1 128 2 1:8 0 1:9 0";
        assert_eq!(converted(core, (32, 32), Direction::Release, false).unwrap(), "as it is");
        let served = "0 4096 mirror userspace 3 KT core 128 2 1:8 0 1:9 0";
        assert_eq!(converted(served, (32, 32), Direction::Adopt, false).unwrap(), "as it is");
    }
}
