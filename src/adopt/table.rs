//! A device-mapper table line of the `mirror` target, as `dmsetup table` prints it and
//! `dmsetup load` takes it, parsed into its parts: the dirty log (the kernel's `core` or
//! `disk`, or `userspace` with the daemon's own log type inside), the legs and the features.
//! A parsed line prints back to the same words ([`std::fmt::Display`]), so a conversion
//! changes the log and nothing else.
//!
//! ```text
//! <start> <length> mirror <log type> <#log args> <log args...> <#legs> (<dev> <offset>)... [<#features> <features...>]
//! log args: core <region size> [sync|nosync]
//!           disk <device> <region size> [sync|nosync]
//!           userspace <uuid> [integrated_flush] <core|disk|clustered-core|clustered-disk> <args...>
//! ```

use std::fmt;
use std::str::FromStr;

/// One table line; `Other` for any target but `mirror`, kept word for word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableLine {
    Mirror(MirrorLine),
    Other(String),
}

/// A `mirror` target line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorLine {
    pub start: u64,
    pub length: u64,
    pub log: DirtyLog,
    /// Each leg's device and offset, as printed (`major:minor` by the kernel).
    pub legs: Vec<(String, u64)>,
    /// `handle_errors`, `keep_log`: passed through as they are.
    pub features: Vec<String>,
}

/// The mirror's dirty log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirtyLog {
    /// One of the kernel's own logs (dm-log.c).
    Kernel(LogSpec),
    /// `userspace`: a daemon serves `spec` (the type `clustered-*` too) for `uuid`.
    Userspace { uuid: String, integrated_flush: bool, spec: UserspaceSpec },
}

/// A `core` or `disk` log as the kernel's own and the daemon's `core` and `disk` share them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    /// `None` for a core log.
    pub device: Option<String>,
    pub region_size: u64,
    pub sync: Sync,
}

/// What a userspace log's daemon serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserspaceSpec {
    /// `core` or `disk`: a kernel log has the same.
    Plain(LogSpec),
    /// `clustered-core` / `clustered-disk` and their words: no kernel log has them.
    Clustered(Vec<String>),
}

/// The optional sync argument of a log (dm-log.c: DEFAULTSYNC, FORCESYNC, NOSYNC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Default,
    Force,
    No,
}

/// A table line that does not read as the kernel prints it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table line {line:?}: {why}")]
pub struct BadLine {
    line: String,
    why: String,
}

impl LogSpec {
    fn type_name(&self) -> &'static str {
        if self.device.is_some() {
            "disk"
        } else {
            "core"
        }
    }

    fn words(&self) -> Vec<String> {
        let mut words = vec![self.type_name().to_owned()];
        words.extend(self.device.clone());
        words.push(self.region_size.to_string());
        match self.sync {
            Sync::Default => {}
            Sync::Force => words.push("sync".into()),
            Sync::No => words.push("nosync".into()),
        }
        words
    }

    /// `core <rs> [sync]` or `disk <dev> <rs> [sync]`, from the type word on.
    fn parse(words: &[&str]) -> Result<LogSpec, String> {
        let (device, rest) = match words {
            ["core", rest @ ..] => (None, rest),
            ["disk", device, rest @ ..] => (Some((*device).to_owned()), rest),
            _ => return Err(format!("not a core or disk log: {words:?}")),
        };
        let (size, sync) = match rest {
            [size] => (size, Sync::Default),
            [size, "sync"] => (size, Sync::Force),
            [size, "nosync"] => (size, Sync::No),
            _ => return Err(format!("log arguments {rest:?}: a region size, then sync or nosync")),
        };
        let region_size = size.parse().map_err(|_| format!("region size {size:?}"))?;
        Ok(LogSpec { device, region_size, sync })
    }
}

impl DirtyLog {
    /// The log's type as tables and `dm-ulogd list` name it: `core`, `userspace disk`, ...
    pub fn describe(&self) -> String {
        match self {
            DirtyLog::Kernel(spec) => spec.type_name().to_owned(),
            DirtyLog::Userspace { spec: UserspaceSpec::Plain(spec), .. } => {
                format!("userspace {}", spec.type_name())
            }
            DirtyLog::Userspace { spec: UserspaceSpec::Clustered(words), .. } => {
                format!("userspace {}", words.first().map_or("?", String::as_str))
            }
        }
    }

    fn words(&self) -> Vec<String> {
        match self {
            DirtyLog::Kernel(spec) => spec.words(),
            DirtyLog::Userspace { uuid, integrated_flush, spec } => {
                let mut words = vec![uuid.clone()];
                if *integrated_flush {
                    words.push("integrated_flush".into());
                }
                match spec {
                    UserspaceSpec::Plain(spec) => words.extend(spec.words()),
                    UserspaceSpec::Clustered(inner) => words.extend(inner.iter().cloned()),
                }
                words
            }
        }
    }
}

impl FromStr for TableLine {
    type Err = BadLine;

    fn from_str(line: &str) -> Result<TableLine, BadLine> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.get(2) {
            Some(&"mirror") => parse_mirror(&words)
                .map(TableLine::Mirror)
                .map_err(|why| BadLine { line: line.to_owned(), why }),
            Some(_) => Ok(TableLine::Other(words.join(" "))),
            None => Err(BadLine { line: line.to_owned(), why: "no target type".into() }),
        }
    }
}

fn parse_mirror(words: &[&str]) -> Result<MirrorLine, String> {
    let number = |at: usize, what: &str| -> Result<u64, String> {
        let word = words.get(at).ok_or_else(|| format!("no {what}"))?;
        word.parse().map_err(|_| format!("{what} {word:?} is not a number"))
    };
    // A count can be no more than the words there are: no arithmetic on it can overflow.
    let count = |at: usize, what: &str| -> Result<usize, String> {
        let n = number(at, what)?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= words.len())
            .ok_or_else(|| format!("{what} {n} is more than the line holds"))
    };
    let (start, length) = (number(0, "start")?, number(1, "length")?);
    let log_type = *words.get(3).ok_or("no log type")?;
    let log_argc = count(4, "log argument count")?;
    let log_args = words.get(5..5 + log_argc).ok_or("fewer log arguments than counted")?;
    let log = match log_type {
        "core" | "disk" => {
            let mut spec = vec![log_type];
            spec.extend_from_slice(log_args);
            DirtyLog::Kernel(LogSpec::parse(&spec)?)
        }
        "userspace" => {
            let (uuid, rest) = log_args.split_first().ok_or("a userspace log without its uuid")?;
            let (integrated_flush, rest) = match rest {
                ["integrated_flush", rest @ ..] => (true, rest),
                rest => (false, rest),
            };
            let spec = match rest.first() {
                Some(&"core" | &"disk") => UserspaceSpec::Plain(LogSpec::parse(rest)?),
                Some(_) => UserspaceSpec::Clustered(rest.iter().map(|w| (*w).to_owned()).collect()),
                None => return Err("a userspace log without its type".into()),
            };
            DirtyLog::Userspace { uuid: (*uuid).to_owned(), integrated_flush, spec }
        }
        other => return Err(format!("log type {other:?} (core, disk or userspace)")),
    };
    let at = 5 + log_argc;
    let leg_count = count(at, "leg count")?;
    let mut legs = Vec::with_capacity(leg_count.min(32));
    for i in 0..leg_count {
        let device = words.get(at + 1 + 2 * i).ok_or("fewer legs than counted")?;
        legs.push(((*device).to_owned(), number(at + 2 + 2 * i, "leg offset")?));
    }
    let at = at + 1 + 2 * leg_count;
    let features = match words.get(at) {
        None => Vec::new(),
        Some(_) => {
            let n = count(at, "feature count")?;
            let features = words.get(at + 1..at + 1 + n).ok_or("fewer features than counted")?;
            if words.len() != at + 1 + n {
                return Err("words after the features".into());
            }
            features.iter().map(|w| (*w).to_owned()).collect()
        }
    };
    Ok(MirrorLine { start, length, log, legs, features })
}

impl fmt::Display for TableLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableLine::Other(line) => f.write_str(line),
            TableLine::Mirror(mirror) => mirror.fmt(f),
        }
    }
}

impl fmt::Display for MirrorLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.log.words();
        let name = match self.log {
            DirtyLog::Kernel(ref spec) => spec.type_name(),
            DirtyLog::Userspace { .. } => "userspace",
        };
        // A kernel log's type is its first word; the count is of the words after it.
        let args = if matches!(self.log, DirtyLog::Kernel(_)) { &log[1..] } else { &log[..] };
        write!(f, "{} {} mirror {name} {}", self.start, self.length, args.len())?;
        for word in args {
            write!(f, " {word}")?;
        }
        write!(f, " {}", self.legs.len())?;
        for (device, offset) in &self.legs {
            write!(f, " {device} {offset}")?;
        }
        if !self.features.is_empty() {
            write!(f, " {}", self.features.len())?;
            for feature in &self.features {
                write!(f, " {feature}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as kernel 6.1's `dmsetup table` prints them.
    const PRINTED: [&str; 7] = [
        "0 4096 mirror core 1 128 2 1:8 0 1:9 0",
        "0 4096 mirror core 2 128 nosync 2 1:8 0 1:9 0 1 handle_errors",
        "0 16384 mirror disk 2 1:2 512 2 1:0 0 1:1 0",
        "0 16384 mirror disk 3 1:2 512 sync 3 1:0 0 1:1 0 1:3 2048 2 handle_errors keep_log",
        "0 4096 mirror userspace 4 KT14-1 disk /dev/ram72 128 2 1:10 0 1:11 0",
        "0 4096 mirror userspace 5 KT14-3 integrated_flush disk /dev/ram73 128 2 1:14 0 1:15 0",
        "0 4096 mirror userspace 3 LVM-x clustered-core 128 2 1:12 0 1:13 0",
    ];

    #[test]
    fn printed_lines_parse_and_print_back_to_themselves() {
        for line in PRINTED {
            let parsed: TableLine = line.parse().unwrap();
            assert!(matches!(parsed, TableLine::Mirror(_)), "{line}");
            assert_eq!(parsed.to_string(), line);
        }
        let linear: TableLine = "0 8 linear 1:2 0".parse().unwrap();
        assert_eq!(linear, TableLine::Other("0 8 linear 1:2 0".into()));
    }

    #[test]
    fn the_parts_are_where_the_kernel_put_them() {
        let TableLine::Mirror(mirror) = PRINTED[3].parse().unwrap() else { panic!() };
        let spec = LogSpec { device: Some("1:2".into()), region_size: 512, sync: Sync::Force };
        assert_eq!(mirror.log, DirtyLog::Kernel(spec));
        assert_eq!(mirror.legs.len(), 3);
        assert_eq!(mirror.legs[2], ("1:3".into(), 2048));
        assert_eq!(mirror.features, ["handle_errors", "keep_log"]);
        let TableLine::Mirror(mirror) = PRINTED[5].parse().unwrap() else { panic!() };
        assert!(matches!(mirror.log, DirtyLog::Userspace { integrated_flush: true, .. }));
        assert_eq!(mirror.log.describe(), "userspace disk");
    }

    #[test]
    fn lines_that_are_not_the_kernels_are_refused() {
        for line in [
            "0 4096 mirror core 1",
            "0 4096 mirror core 1 128 3 1:8 0",
            "0 4096 mirror core 1 x 2 1:8 0 1:9 0",
            "0 4096 mirror core 2 128 often 2 1:8 0 1:9 0",
            "0 4096 mirror floppy 1 128 2 1:8 0 1:9 0",
            "0 4096 mirror userspace 0 2 1:8 0 1:9 0",
            "0 4096 mirror core 1 128 2 1:8 0 1:9 0 1 handle_errors extra",
            "0 4096 mirror core 18446744073709551615 128",
            "0",
        ] {
            assert!(line.parse::<TableLine>().is_err(), "{line}");
        }
    }
}
