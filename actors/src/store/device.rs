//! A log device: a block device or a regular file holding one disk log image.
//!
//! Writes go to the exact byte ranges of the changed blocks with `pwrite`, then `fdatasync`
//! makes them durable (on a block device that also flushes the device's write cache), and
//! only then is a commit reported done.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::claims::{Claim, DeviceClaims, DeviceIdentity};
use super::format::{image_size, Commit, Layout, Loaded, Loader, BITMAP_OFFSET};
use crate::region::SyncMode;
use crate::units::RegionCount;
use crate::wire::{Errno, Uuid};

/// The logical block size of a regular file standing in for a device: a 512-byte-sector disk.
pub const FILE_BLOCK_SIZE: u32 = 512;

/// How much of a whole image is read, or rendered and written, at a time: a resume of 2^32
/// regions (a 512 MiB image) then holds no more than this of it.
const PIECE: u64 = 1 << 20;

/// Why a log device could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("log device {name}: {source}")]
    Open { name: String, source: io::Error },
    #[error("log device {name} is neither a block device nor a regular file")]
    NotADevice { name: String },
    #[error("log device {name} is too small: {size} bytes, the log needs {needed}")]
    TooSmall { name: String, size: u64, needed: u64 },
    #[error("log device {name}: {source}")]
    Io { name: String, source: io::Error },
    #[error("log device {name}: flush failed: {source}")]
    Flush { name: String, source: io::Error },
    #[error("log device {name} is the log of another mirror already (uuid {holder})")]
    Busy { name: String, holder: String },
}

impl DeviceError {
    pub fn errno(&self) -> Errno {
        match self {
            DeviceError::Open { source, .. }
            | DeviceError::Io { source, .. }
            | DeviceError::Flush { source, .. } => Errno::from_io(source),
            DeviceError::NotADevice { .. } => Errno::ENODEV,
            DeviceError::TooSmall { .. } => Errno::EINVAL,
            DeviceError::Busy { .. } => Errno(libc::EBUSY),
        }
    }
}

/// An open log device.
#[derive(Debug)]
pub struct LogDevice {
    /// The name the table gave: a path or `major:minor`.
    name: String,
    file: File,
    block_size: u32,
    size: u64,
    /// `major:minor` of a block device; `None` for a regular file.
    dev_id: Option<(u32, u32)>,
    identity: DeviceIdentity,
}

impl LogDevice {
    /// Opens the device a table names, by path or as `major:minor`.
    pub fn open(name: &str) -> Result<LogDevice, DeviceError> {
        let path =
            resolve(name).map_err(|source| DeviceError::Open { name: name.into(), source })?;
        let open_error = |source| DeviceError::Open { name: name.into(), source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        let io_error = |source| DeviceError::Io { name: name.into(), source };
        let identity = if meta.file_type().is_block_device() {
            DeviceIdentity::Block { rdev: meta.rdev() }
        } else {
            DeviceIdentity::File { dev: meta.dev(), ino: meta.ino() }
        };
        let (block_size, size, dev_id) = if meta.file_type().is_block_device() {
            let rdev = meta.rdev();
            let id = (libc::major(rdev), libc::minor(rdev));
            (
                block_ioctl::logical_block_size(&file).map_err(io_error)?,
                block_ioctl::size(&file).map_err(io_error)?,
                Some(id),
            )
        } else if meta.is_file() {
            (FILE_BLOCK_SIZE, meta.len(), None)
        } else {
            return Err(DeviceError::NotADevice { name: name.into() });
        };
        Ok(LogDevice { name: name.into(), file, block_size, size, dev_id, identity })
    }

    /// Opens the log device of a log of `count` regions, checks that it holds the image,
    /// and claims it for the log's `uuid`: what CTR does for every disk log type.
    pub(crate) fn open_for_log(
        name: &str,
        count: RegionCount,
        claims: &Arc<DeviceClaims>,
        uuid: &Uuid,
    ) -> Result<(LogDevice, Claim), DeviceError> {
        let device = LogDevice::open(name)?;
        device.check_size(image_size(count, device.block_size()))?;
        let claim = claims
            .claim(device.identity, uuid)
            .map_err(|holder| DeviceError::Busy { name: name.into(), holder })?;
        Ok((device, claim))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// `major:minor` as the kernel's disk log prints it in status lines; a regular file, which
    /// has none, is shown by its name.
    pub(crate) fn status_name(&self) -> String {
        match self.dev_id {
            Some((major, minor)) => format!("{major}:{minor}"),
            None => self.name.clone(),
        }
    }

    /// Fails unless the device holds an image of `needed` bytes (dm-log.c: "too small").
    pub fn check_size(&self, needed: u64) -> Result<(), DeviceError> {
        if self.size < needed {
            return Err(DeviceError::TooSmall { name: self.name.clone(), size: self.size, needed });
        }
        Ok(())
    }

    /// Reads the image of a log of `count` regions a piece at a time, as `disk_resume` does.
    pub fn load(&self, count: RegionCount, sync: SyncMode) -> Result<Loaded, DeviceError> {
        let io_error = |source| DeviceError::Io { name: self.name.clone(), source };
        let len = image_size(count, self.block_size);
        let mut header = [0u8; BITMAP_OFFSET];
        self.file.read_exact_at(&mut header, 0).map_err(io_error)?;
        let mut loader = Loader::new(&header, count, sync);
        let mut piece = vec![0u8; PIECE as usize];
        let mut at = BITMAP_OFFSET as u64;
        while at < len {
            let piece = &mut piece[..(len - at).min(PIECE) as usize];
            self.file.read_exact_at(piece, at).map_err(io_error)?;
            loader.bitmap(at - BITMAP_OFFSET as u64, piece);
            at += piece.len() as u64;
        }
        Ok(loader.finish())
    }

    /// Writes the whole image of `layout`, rendered a piece at a time, and makes it durable.
    pub(crate) fn write_whole(
        &self,
        layout: &Layout,
        unclean: &[&RoaringBitmap],
    ) -> Result<(), DeviceError> {
        let blocks_per_piece = (PIECE / u64::from(layout.block_size)).max(1);
        let mut first = 0;
        while first < layout.blocks() {
            let end = (first + blocks_per_piece).min(layout.blocks());
            self.write_blocks(&layout.render(first..end, unclean))?;
            first = end;
        }
        self.sync()
    }

    /// Writes the commit's blocks and makes them durable before returning.
    pub fn write(&self, commit: &Commit) -> Result<(), DeviceError> {
        self.write_blocks(commit)?;
        self.sync()
    }

    fn write_blocks(&self, commit: &Commit) -> Result<(), DeviceError> {
        let io_error = |source| DeviceError::Io { name: self.name.clone(), source };
        for (first_block, bytes) in &commit.runs {
            let offset = first_block * u64::from(commit.block_size);
            self.file.write_all_at(bytes, offset).map_err(io_error)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), DeviceError> {
        self.file
            .sync_data()
            .map_err(|source| DeviceError::Flush { name: self.name.clone(), source })
    }
}

/// A path as given, or `/dev/<name>` of a `major:minor` pair, looked up in sysfs.
fn resolve(name: &str) -> io::Result<PathBuf> {
    let is_dev_id = name.split_once(':').is_some_and(|(major, minor)| {
        [major, minor].iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if !is_dev_id {
        return Ok(PathBuf::from(name));
    }
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{name}/uevent"))?;
    uevent
        .lines()
        .find_map(|line| line.strip_prefix("DEVNAME="))
        .map(|dev| PathBuf::from("/dev").join(dev))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no DEVNAME in sysfs uevent"))
}

/// The two block-device ioctls a log needs.
mod block_ioctl {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    /// `BLKSSZGET`: the logical block size.
    const BLKSSZGET: libc::c_ulong = 0x1268;
    /// `BLKGETSIZE64`: the size in bytes.
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

    pub(super) fn logical_block_size(file: &File) -> io::Result<u32> {
        let mut size: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one c_int through the pointer, which is valid for it.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut size) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(size as u32)
    }

    pub(super) fn size(file: &File) -> io::Result<u64> {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid for it.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(size)
    }
}
