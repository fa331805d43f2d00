//! The kernel's `disk` log format and the log device that holds it.
//!
//! [`format`] is pure: it reads a log image into a dirty set following dm-log.c's resume
//! rules, and renders the blocks a commit must write. [`device`] does the I/O: it opens a
//! regular file or a block device, reads the image, and writes blocks durably. [`claims`]
//! keeps two mirrors off one log device.

pub mod claims;
pub mod device;
pub mod format;

pub use claims::{Claim, DeviceClaims};
pub use device::{DeviceError, LogDevice};
pub use format::{Commit, Layout, Loaded};
