//! The kernel's `disk` log format, the log device that holds it, and how a log commits to it.
//!
//! [`format`](mod@format) is pure: it reads a log image into a dirty set following dm-log.c's resume
//! rules, and renders the blocks a commit must write. [`device`] does the I/O: it opens a
//! regular file or a block device, reads the image, and writes blocks durably; `Flusher`
//! runs that I/O on the log's own thread. `Committer` holds the rules every disk log
//! commits by: what a commit writes and what its end says of the device's health.
//! `claims` keeps two mirrors off one log device.

pub(crate) mod claims;
pub mod device;
pub mod format;

mod committer;
mod flusher;

pub(crate) use claims::{Claim, DeviceClaims};
pub(crate) use committer::{Committer, Extent, Health, COMMIT_BEHIND_DELAY};
pub use device::{DeviceError, LogDevice};
pub(crate) use flusher::Flusher;
pub use format::{Commit, Layout, Loaded};
