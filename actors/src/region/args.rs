//! The CTR string: `"<target sectors> <log type> <log args...>"`, exactly as
//! dm-log-userspace builds it from the table (the uuid and `integrated_flush` already gone).
//!
//! The grammar of each type follows its reference: `core <region_size> [sync|nosync]` and
//! `disk <log_dev> <region_size> [sync|nosync]` as dm-log.c parses them; the clustered types
//! as libdm emits them, `clustered-core <region_size> [sync|nosync] [block_on_error]` and
//! `clustered-disk <log_dev> <region_size> [sync|nosync] [block_on_error]`. A parsed string
//! prints back to itself.

use std::fmt;
use std::str::FromStr;

use roaring::RoaringBitmap;

use crate::units::{RegionCount, RegionSize, RegionSizeError, Sectors};
use crate::wire::Errno;

/// Where a log keeps its bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogKind {
    /// In memory only.
    Core,
    /// On a log device in the kernel's disk-log format: a path or `major:minor`.
    Disk { device: String },
}

/// How the log starts out (dm-log.c: DEFAULTSYNC, FORCESYNC, NOSYNC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Trust what the log says: a new core log resyncs everything, a disk log what was dirty.
    Default,
    /// `sync`: resync every region.
    Force,
    /// `nosync`: take every region as in sync.
    NoSync,
}

/// A parsed CTR string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogArgs {
    pub target: Sectors,
    pub kind: LogKind,
    /// `clustered-core` / `clustered-disk`: coordinated with other hosts.
    pub clustered: bool,
    pub region_size: RegionSize,
    pub sync: SyncMode,
    /// Only the clustered types accept it; it is kept and echoed, as cmirrord does.
    pub block_on_error: bool,
}

/// The most regions one log may have: region numbers are kept as `u32` in the bitmaps.
pub(super) const MAX_REGIONS: u64 = u32::MAX as u64;

/// A CTR string that does not describe a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("no target length")]
    MissingTarget,
    #[error("target length {0:?} is not a number of sectors")]
    BadTarget(String),
    #[error("no log type")]
    MissingType,
    #[error("unknown log type {0:?} (core, disk, clustered-core, clustered-disk)")]
    UnknownType(String),
    #[error("the {0} log type needs a log device")]
    MissingDevice(&'static str),
    #[error("no region size")]
    MissingRegionSize,
    #[error(transparent)]
    RegionSize(#[from] RegionSizeError),
    #[error("unrecognised argument {0:?}")]
    UnknownArgument(String),
    #[error("{0} regions are more than the {MAX_REGIONS} a log can hold")]
    TooManyRegions(RegionCount),
}

impl ArgsError {
    pub fn errno(&self) -> Errno {
        Errno::EINVAL
    }
}

impl LogArgs {
    pub fn region_count(&self) -> RegionCount {
        self.region_size.regions_in(self.target)
    }

    /// Every region of the log, as bitmap indices.
    pub fn all_regions(&self) -> RoaringBitmap {
        let count = self.region_count().bitmap_bound();
        let mut all = RoaringBitmap::new();
        all.insert_range(0..count);
        all.optimize();
        all
    }

    /// What a new log starts from, as `core_ctr` sets it up: every region out of sync, or
    /// none with `nosync`.
    pub fn initial_out_of_sync(&self) -> RoaringBitmap {
        match self.sync {
            SyncMode::NoSync => RoaringBitmap::new(),
            _ => self.all_regions(),
        }
    }

    /// The log type's name as tables spell it.
    pub fn type_name(&self) -> &'static str {
        match (&self.kind, self.clustered) {
            (LogKind::Core, false) => "core",
            (LogKind::Disk { .. }, false) => "disk",
            (LogKind::Core, true) => "clustered-core",
            (LogKind::Disk { .. }, true) => "clustered-disk",
        }
    }

    /// STATUS_INFO as the kernel's own logs print it: `1 <type>` for a core log, and
    /// `3 <type> <device> <health letter>` for a disk log, given its device's name and health.
    pub fn status_info(&self, device: Option<(&str, char)>) -> String {
        match device {
            None => format!("1 {}", self.type_name()),
            Some((name, health)) => format!("3 {} {name} {health}", self.type_name()),
        }
    }

    /// STATUS_TABLE as the kernel's own logs print it: `<type> <#args> <args> `.
    pub fn status_table(&self) -> String {
        // The CTR string without its target length is exactly the table's log arguments.
        let printed = self.to_string();
        let args = printed.split_once(' ').map_or("", |(_, rest)| rest);
        let mut words = args.split(' ');
        let type_name = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        let mut line = format!("{type_name} {}", rest.len());
        for word in rest {
            line.push(' ');
            line.push_str(word);
        }
        line.push(' ');
        line
    }
}

impl FromStr for LogArgs {
    type Err = ArgsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut tokens = s.split_ascii_whitespace();
        let target_token = tokens.next().ok_or(ArgsError::MissingTarget)?;
        let target: Sectors =
            target_token.parse().map_err(|_| ArgsError::BadTarget(target_token.to_owned()))?;
        let type_token = tokens.next().ok_or(ArgsError::MissingType)?;
        let (disk, clustered) = match type_token {
            "core" => (false, false),
            "disk" => (true, false),
            "clustered-core" => (false, true),
            "clustered-disk" => (true, true),
            other => return Err(ArgsError::UnknownType(other.to_owned())),
        };
        let kind = if disk {
            let device =
                tokens.next().ok_or(ArgsError::MissingDevice(type_token_name(clustered)))?;
            LogKind::Disk { device: device.to_owned() }
        } else {
            LogKind::Core
        };
        let region_size =
            RegionSize::parse(tokens.next().ok_or(ArgsError::MissingRegionSize)?, target)?;
        let mut args = LogArgs {
            target,
            kind,
            clustered,
            region_size,
            sync: SyncMode::Default,
            block_on_error: false,
        };
        let mut rest = tokens.peekable();
        if let Some(mode) = rest.peek().and_then(|t| parse_sync(t)) {
            args.sync = mode;
            rest.next();
        }
        if clustered && rest.peek() == Some(&"block_on_error") {
            args.block_on_error = true;
            rest.next();
        }
        if let Some(extra) = rest.next() {
            return Err(ArgsError::UnknownArgument(extra.to_owned()));
        }
        let count = args.region_count();
        if count.0 > MAX_REGIONS {
            return Err(ArgsError::TooManyRegions(count));
        }
        Ok(args)
    }
}

fn type_token_name(clustered: bool) -> &'static str {
    if clustered {
        "clustered-disk"
    } else {
        "disk"
    }
}

fn parse_sync(token: &str) -> Option<SyncMode> {
    match token {
        "sync" => Some(SyncMode::Force),
        "nosync" => Some(SyncMode::NoSync),
        _ => None,
    }
}

impl fmt::Display for LogArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.target, self.type_name())?;
        if let LogKind::Disk { device } = &self.kind {
            write!(f, " {device}")?;
        }
        write!(f, " {}", self.region_size)?;
        match self.sync {
            SyncMode::Default => {}
            SyncMode::Force => f.write_str(" sync")?,
            SyncMode::NoSync => f.write_str(" nosync")?,
        }
        if self.block_on_error {
            f.write_str(" block_on_error")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_the_kernel_sent() {
        // Strings observed from kernel 6.1 in ../shared/reference/qemu-real-kernel.md.
        let args: LogArgs = "32768 clustered-disk /dev/ram2 1024".parse().unwrap();
        assert_eq!(args.kind, LogKind::Disk { device: "/dev/ram2".into() });
        assert!(args.clustered);
        assert_eq!(args.region_count(), RegionCount(32));
        let args: LogArgs = "32768 core 1024 nosync".parse().unwrap();
        assert_eq!((args.kind, args.sync), (LogKind::Core, SyncMode::NoSync));
        let args: LogArgs = "1000 disk 253:2 8 sync".parse().unwrap();
        assert_eq!(args.sync, SyncMode::Force);
        assert_eq!(args.region_count(), RegionCount(125));
    }

    #[test]
    fn refuses_what_the_kernel_logs_refuse() {
        let err = |s: &str| s.parse::<LogArgs>().unwrap_err();
        assert_eq!(err(""), ArgsError::MissingTarget);
        assert_eq!(err("x core 8"), ArgsError::BadTarget("x".into()));
        assert_eq!(err("100"), ArgsError::MissingType);
        assert_eq!(err("100 mirror 8"), ArgsError::UnknownType("mirror".into()));
        assert_eq!(err("100 disk"), ArgsError::MissingDevice("disk"));
        assert_eq!(err("100 core"), ArgsError::MissingRegionSize);
        assert!(matches!(err("100 core 3"), ArgsError::RegionSize(_)));
        assert!(matches!(err("100 core 128"), ArgsError::RegionSize(_)));
        assert_eq!(err("100 core 8 sometimes"), ArgsError::UnknownArgument("sometimes".into()));
        assert_eq!(err("100 core 8 nosync sync"), ArgsError::UnknownArgument("sync".into()));
        // block_on_error is a cmirrord feature: the kernel's core and disk logs refuse it.
        assert_eq!(
            err("100 core 8 block_on_error"),
            ArgsError::UnknownArgument("block_on_error".into())
        );
        assert!(matches!(err("18446744073709551615 core 2"), ArgsError::TooManyRegions(_)));
    }

    fn canonical_args() -> impl Strategy<Value = String> {
        (
            1u32..20,
            0u64..1 << 30,
            prop_oneof!["core", "disk", "clustered-core", "clustered-disk"],
            prop_oneof!["", " sync", " nosync"],
            any::<bool>(),
        )
            .prop_map(|(shift, extra, log_type, sync, block)| {
                let region_size = 1u64 << shift;
                let target = region_size + extra;
                let device = if log_type.ends_with("disk") { " 253:7" } else { "" };
                let block =
                    if block && log_type.starts_with("clustered") { " block_on_error" } else { "" };
                format!("{target} {log_type}{device} {region_size}{sync}{block}")
            })
    }

    proptest! {
        #[test]
        fn ctr_string_round_trips(s in canonical_args()) {
            let args: LogArgs = s.parse().unwrap();
            prop_assert_eq!(args.to_string(), s);
        }
    }
}
