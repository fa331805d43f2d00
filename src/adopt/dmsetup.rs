//! Driving device-mapper through `dmsetup`, the tool an operator already reads mirrors with.
//!
//! Why not the ioctl interface (devicemapper-rs): a table reload under a live mirror must stay
//! in step with udev (dmsetup's cookies keep /dev/mapper and the rules of LVM and others
//! consistent), and dmsetup prints and reads tables in exactly the words `dmsetup table` shows
//! the operator; what `adopt` loads can be read back and compared word for word. It runs once
//! per operator command, so a process per step costs nothing that matters.
//!
//! The binary runs as root, so it is taken from the system's own directories only, and only if
//! it is a regular file of root's that no one else may write.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::table::TableLine;

const DMSETUP: [&str; 4] =
    ["/usr/sbin/dmsetup", "/sbin/dmsetup", "/usr/bin/dmsetup", "/bin/dmsetup"];

/// The checked dmsetup binary.
pub struct Dmsetup(PathBuf);

/// One device: its name, uuid and whether it is suspended.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub name: String,
    pub uuid: String,
    pub suspended: bool,
}

impl Dmsetup {
    pub fn find() -> Result<Dmsetup, String> {
        let path = DMSETUP.iter().map(Path::new).find(|p| p.exists()).ok_or_else(|| {
            format!("dmsetup not found in {} (apt-get install dmsetup)", DMSETUP.join(", "))
        })?;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} is not a regular file of root's that only root may write: not run",
                path.display()
            ));
        }
        Ok(Dmsetup(path.to_owned()))
    }

    fn run(&self, args: &[&str], input: Option<&str>) -> Result<String, String> {
        let mut child = Command::new(&self.0)
            .args(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.0.display()))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).map_err(|e| format!("dmsetup's input: {e}"))?;
        }
        let output = child.wait_with_output().map_err(|e| format!("dmsetup: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("dmsetup {}: {}", args.join(" "), stderr.trim()));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Every device with a `mirror` target, by name.
    pub fn mirror_devices(&self) -> Result<Vec<String>, String> {
        let listed = self.run(&["ls", "--target", "mirror"], None)?;
        // "No devices found" is printed, not failed, when there is none.
        Ok(listed
            .lines()
            .filter(|l| !l.starts_with("No devices found"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect())
    }

    pub fn info(&self, name: &str) -> Result<DeviceInfo, String> {
        let line = self.run(
            &[
                "info",
                "-c",
                "--noheadings",
                "--separator",
                "\t",
                "-o",
                "name,uuid,attr",
                "--",
                name,
            ],
            None,
        )?;
        let fields: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
        let [name, uuid, attr] = fields[..] else {
            return Err(format!("dmsetup info {name}: unexpected {line:?}"));
        };
        Ok(DeviceInfo { name: name.into(), uuid: uuid.into(), suspended: attr.contains('s') })
    }

    /// The live table, line by line.
    pub fn table(&self, name: &str) -> Result<Vec<TableLine>, String> {
        let table = self.run(&["table", "--", name], None)?;
        table.lines().map(|line| line.parse().map_err(|e| format!("{e}"))).collect()
    }

    /// Each line's sync ratio (`in sync/regions`) from `dmsetup status`; `None` for lines of
    /// other targets.
    pub fn sync_ratios(&self, name: &str) -> Result<Vec<Option<(u64, u64)>>, String> {
        let status = self.run(&["status", "--", name], None)?;
        Ok(status.lines().map(sync_ratio).collect())
    }

    pub fn load(&self, name: &str, table: &[TableLine]) -> Result<(), String> {
        let text: String = table.iter().map(|line| format!("{line}\n")).collect();
        self.run(&["load", "--", name], Some(&text)).map(drop)
    }

    pub fn suspend(&self, name: &str) -> Result<(), String> {
        self.run(&["suspend", "--", name], None).map(drop)
    }

    pub fn resume(&self, name: &str) -> Result<(), String> {
        self.run(&["resume", "--", name], None).map(drop)
    }

    /// Drops the inactive table loaded by [`Dmsetup::load`].
    pub fn clear(&self, name: &str) -> Result<(), String> {
        self.run(&["clear", "--", name], None).map(drop)
    }
}

/// `<start> <length> mirror <#legs> <legs...> <in sync>/<regions> ...`: the ratio.
fn sync_ratio(line: &str) -> Option<(u64, u64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.get(2) != Some(&"mirror") {
        return None;
    }
    let legs: usize = words.get(3)?.parse().ok()?;
    let (in_sync, regions) = words.get(4 + legs)?.split_once('/')?;
    Some((in_sync.parse().ok()?, regions.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_ratio_is_read_past_the_legs() {
        assert_eq!(sync_ratio("0 4096 mirror 2 1:8 1:9 12/32 1 AA 1 core"), Some((12, 32)));
        assert_eq!(
            sync_ratio("0 4096 mirror 3 1:8 1:9 1:10 32/32 1 AAA 3 disk 1:2 A"),
            Some((32, 32))
        );
        assert_eq!(sync_ratio("0 8 linear"), None);
        assert_eq!(sync_ratio("0 4096 mirror 2 1:8"), None);
    }
}
