//! Why a request against a log was refused.

use crate::units::{RegionCount, RegionIndex};
use crate::wire::Errno;

/// A request that the log cannot apply; nothing of it has been applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("region {region} is outside the log's {count} regions")]
    OutOfRange { region: RegionIndex, count: RegionCount },
}

impl LogError {
    pub fn errno(&self) -> Errno {
        match self {
            LogError::OutOfRange { .. } => Errno::EINVAL,
        }
    }
}
