//! Typed units of the dirty-log protocol.
//!
//! The kernel passes everything as bare `u64`s: target lengths in 512-byte sectors, region
//! sizes in sectors, region numbers and region counts. Mixing them up is the classic bug of a
//! dirty log, so each one is its own type here and conversions are explicit.

use std::fmt;
use std::str::FromStr;

/// A length in 512-byte sectors (the unit of `ti->len` and of the region size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sectors(pub u64);

impl fmt::Display for Sectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Sectors {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_decimal(s).map(Sectors)
    }
}

/// The number of a region: sector `n * region_size` starts region `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RegionIndex(pub u64);

impl fmt::Display for RegionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many regions a log covers: `ceil(target length / region size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RegionCount(pub u64);

impl RegionCount {
    /// The count as the bound of a region bitmap's indices. Every count a log holds came
    /// through `LogArgs`, which refuses counts past `u32::MAX`: the one place that says so.
    pub fn bitmap_bound(self) -> u32 {
        u32::try_from(self.0).expect("LogArgs refuses region counts past u32::MAX")
    }
}

impl fmt::Display for RegionCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A region size in sectors, as the kernel's `_check_region_size` accepts it: a power of two,
/// at least 2 sectors, and no larger than the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionSize(u32);

/// Why a region size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionSizeError {
    #[error("region size {0} is not a number of sectors")]
    NotANumber(String),
    #[error("region size {0} is not a power of two of at least 2 sectors")]
    NotPowerOfTwo(u32),
    #[error("region size {size} is larger than the target ({target} sectors)")]
    LargerThanTarget { size: u32, target: Sectors },
}

impl RegionSize {
    /// Checks a region size against a target length exactly as dm-log.c does.
    pub fn new(sectors: u32, target: Sectors) -> Result<Self, RegionSizeError> {
        if sectors < 2 || !sectors.is_power_of_two() {
            return Err(RegionSizeError::NotPowerOfTwo(sectors));
        }
        if u64::from(sectors) > target.0 {
            return Err(RegionSizeError::LargerThanTarget { size: sectors, target });
        }
        Ok(RegionSize(sectors))
    }

    /// Parses the decimal token of a table (`"%u"` with nothing after it) and checks it.
    pub fn parse(token: &str, target: Sectors) -> Result<Self, RegionSizeError> {
        let sectors = parse_decimal(token)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| RegionSizeError::NotANumber(token.to_owned()))?;
        Self::new(sectors, target)
    }

    pub fn sectors(self) -> u32 {
        self.0
    }

    /// How many regions of this size cover `target` (the last one may be partial).
    pub fn regions_in(self, target: Sectors) -> RegionCount {
        RegionCount(target.0.div_ceil(u64::from(self.0)))
    }
}

impl fmt::Display for RegionSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses plain decimal digits only: the kernel prints numbers with `%llu`/`%u`, so a sign,
/// spaces or a `0x` prefix mean the string did not come from it.
fn parse_decimal(s: &str) -> Result<u64, std::num::ParseIntError> {
    if s.starts_with('+') {
        // u64::from_str accepts a leading '+'; "%u" output never has one.
        return "+".parse::<u64>();
    }
    s.parse::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_size_follows_check_region_size() {
        let target = Sectors(1024);
        assert!(RegionSize::new(2, target).is_ok());
        assert!(RegionSize::new(1024, target).is_ok());
        assert_eq!(RegionSize::new(1, target), Err(RegionSizeError::NotPowerOfTwo(1)));
        assert_eq!(RegionSize::new(0, target), Err(RegionSizeError::NotPowerOfTwo(0)));
        assert_eq!(RegionSize::new(24, target), Err(RegionSizeError::NotPowerOfTwo(24)));
        assert!(matches!(
            RegionSize::new(2048, target),
            Err(RegionSizeError::LargerThanTarget { .. })
        ));
        assert!(RegionSize::parse("+8", target).is_err());
        assert!(RegionSize::parse("8x", target).is_err());
        assert!(RegionSize::parse("4294967296", Sectors(u64::MAX)).is_err());
    }

    #[test]
    fn region_count_rounds_up() {
        let size = RegionSize::new(8, Sectors(100)).unwrap();
        assert_eq!(size.regions_in(Sectors(100)), RegionCount(13));
        assert_eq!(size.regions_in(Sectors(96)), RegionCount(12));
    }
}
