//! One mirror's dirty log as dm-log-userspace-base.c and dm-raid1 drive it: the CTR built
//! from the table, the create / suspend / resume / remove sequences that dmsetup causes,
//! writes (IN_SYNC and IS_REMOTE_RECOVERING per write, marks then FLUSH, or the marks inside
//! FLUSH with `integrated_flush`), completions (CLEAR then FLUSH), recovery
//! (GET_RESYNC_WORK / SET_REGION_SYNC), status, and the reconnect after `-ESRCH`.

use std::sync::Arc;
use std::time::Duration;

use super::link::{Answer, KernelLink, LinkError};
use super::oracle::Oracle;
use crate::units::RegionIndex;
use crate::wire::reply::reply_capacity;
use crate::wire::{RegionBatch, ReplyPayload, Request, Uuid, DM_ULOG_REQUEST_VERSION};

/// A request that failed: the negative errno the kernel saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request failed with {0}")]
pub struct Failed(pub i32);

/// A mirror table's log part, as dmsetup would load it.
#[derive(Debug, Clone)]
pub struct LogTable {
    pub uuid: String,
    /// `"<log type> <log args...>"`, e.g. `"core 1024 nosync"`.
    pub log_args: String,
    pub target_sectors: u64,
    pub integrated_flush: bool,
}

impl LogTable {
    /// The CTR payload dm-log-userspace builds: `"<target sectors> <log type> <args...>"`.
    pub fn ctr_string(&self) -> String {
        format!("{} {}", self.target_sectors, self.log_args)
    }
}

pub struct SimLog {
    link: Arc<KernelLink>,
    pub table: LogTable,
    uuid: Uuid,
    luid: u64,
    version: u32,
    region_count: u64,
    /// The kernel's `in_sync_hint`: IS_REMOTE_RECOVERING is only asked at or above it.
    in_sync_hint: u64,
    reconnect_delay: Duration,
    pub oracle: Oracle,
}

impl SimLog {
    pub fn new(link: Arc<KernelLink>, table: LogTable, luid: u64, region_count: u64) -> SimLog {
        let uuid = Uuid::new(&table.uuid).expect("uuid fits the field");
        SimLog {
            link,
            table,
            uuid,
            luid,
            version: DM_ULOG_REQUEST_VERSION,
            region_count,
            in_sync_hint: 0,
            reconnect_delay: Duration::from_millis(100),
            oracle: Oracle::default(),
        }
    }

    /// Speaks an older header generation (0: no version field).
    pub fn with_version(mut self, version: u32) -> SimLog {
        self.version = version;
        self
    }

    /// How long to wait before each reconnect attempt (the kernel waits 2 s).
    pub fn with_reconnect_delay(mut self, delay: Duration) -> SimLog {
        self.reconnect_delay = delay;
        self
    }

    pub fn region_count(&self) -> u64 {
        self.region_count
    }

    pub fn name(&self) -> String {
        self.table.uuid.clone()
    }

    /// One request straight to the daemon, no reconnect (CTR, DTR, suspend, resume).
    pub async fn direct(&self, request: &Request) -> Result<ReplyPayload, Failed> {
        let answer = self.link.call(&self.uuid, self.luid, self.version, request).await;
        decode(request, answer, reply_capacity(request, self.version))
    }

    /// `userspace_do_request`: on `-ESRCH` (no daemon, or one that does not know this log)
    /// replay CTR with its NUL and RESUME, then retry. As in the kernel's `fill_pkg`, the
    /// size of each reply becomes the reply buffer's size for the retry.
    pub async fn request(&mut self, request: &Request) -> Result<ReplyPayload, Failed> {
        let mut room = reply_capacity(request, self.version);
        loop {
            let answer = self.link.call(&self.uuid, self.luid, self.version, request).await;
            if let Ok(answer) = &answer {
                room = if answer.data.len() > room { 0 } else { answer.data.len() };
            }
            match decode(request, answer, room) {
                Err(Failed(e)) if e == -libc::ESRCH => self.reconnect().await,
                other => return other,
            }
        }
    }

    async fn reconnect(&mut self) {
        let ctr = Request::Ctr { args: self.table.ctr_string(), reconnect: true };
        loop {
            tokio::time::sleep(self.reconnect_delay).await;
            if self.direct(&ctr).await.is_ok() {
                break;
            }
        }
        self.oracle.reconnected();
        // The kernel keeps its in_sync_hint: the reconnect sends RESUME itself, past
        // userspace_resume(), which alone resets it (finding B in tests/kernel/README.md).
        // A failed RESUME leaves the original request to fail or retry; the next
        // request finds out.
        let _ = self.direct(&Request::Resume).await;
    }

    /// `dmsetup create`: CTR, GET_REGION_SIZE, GET_SYNC_COUNT, RESUME, as kernel 6.1 sent them.
    pub async fn create(&mut self) -> Result<Option<String>, Failed> {
        let ctr = Request::Ctr { args: self.table.ctr_string(), reconnect: false };
        let device = match self.direct(&ctr).await? {
            ReplyPayload::DeviceName(name) => Some(name),
            _ => None,
        };
        self.direct(&Request::GetRegionSize).await?;
        self.request(&Request::GetSyncCount).await?;
        self.oracle.resumed();
        self.direct(&Request::Resume).await?;
        Ok(device)
    }

    /// `dmsetup suspend` + `resume`: writes drain first, as device-mapper waits for them.
    pub async fn suspend_resume(&mut self) -> Result<(), Failed> {
        self.complete_all().await?;
        self.direct(&Request::Presuspend).await?;
        self.direct(&Request::Postsuspend).await?;
        // From the moment RESUME is sent the daemon may have reread the log device.
        self.oracle.resumed();
        self.direct(&Request::Resume).await?;
        self.in_sync_hint = 0;
        Ok(())
    }

    /// `dmsetup remove`.
    pub async fn remove(&mut self) -> Result<(), Failed> {
        self.complete_all().await?;
        self.direct(&Request::Presuspend).await?;
        self.direct(&Request::Postsuspend).await?;
        self.direct(&Request::Dtr).await?;
        Ok(())
    }

    /// Writes start on `regions`: the region hash asks IN_SYNC and IS_REMOTE_RECOVERING,
    /// marks the regions that had no write in flight, and flushes before dispatching.
    pub async fn write(&mut self, regions: &[u64]) -> Result<(), Failed> {
        let name = self.name();
        let mut marks = RegionBatch::EMPTY;
        for &region in regions {
            // A failed IN_SYNC reads as "not in sync" (userspace_in_sync).
            let in_sync = self.flag(&Request::InSync(RegionIndex(region))).await.unwrap_or(false);
            self.oracle.check_in_sync(&name, region, in_sync);
            if region >= self.in_sync_hint {
                // A failed IS_REMOTE_RECOVERING reads as "recovering": the hint stays.
                let remote = self.request(&Request::IsRemoteRecovering(RegionIndex(region))).await;
                if let Ok(ReplyPayload::RemoteRecovering { in_sync_hint, .. }) = remote {
                    self.in_sync_hint = in_sync_hint.0;
                }
            }
            if self.oracle.start_write(region) {
                marks.push(RegionIndex(region));
            }
        }
        if self.table.integrated_flush {
            if !marks.is_empty() {
                self.request(&Request::Flush(marks)).await?;
                self.oracle.flushed();
            }
        } else {
            if !marks.is_empty() {
                self.request(&Request::MarkRegion(marks)).await?;
            }
            self.request(&Request::Flush(RegionBatch::EMPTY)).await?;
            self.oracle.flushed();
        }
        Ok(())
    }

    /// Writes on `regions` complete: the regions left with none are cleared, then flushed.
    pub async fn complete(&mut self, regions: &[u64]) -> Result<(), Failed> {
        let mut clears = RegionBatch::EMPTY;
        for &region in regions {
            if self.oracle.end_write(region) {
                clears.push(RegionIndex(region));
            }
        }
        if !clears.is_empty() {
            let cleared: Vec<u64> = clears.iter().map(|r| r.0).collect();
            let epoch = self.oracle.epoch();
            self.request(&Request::ClearRegion(clears)).await?;
            self.request(&Request::Flush(RegionBatch::EMPTY)).await?;
            self.oracle.cleared(&cleared, epoch);
        }
        Ok(())
    }

    /// Completes every write in flight.
    pub async fn complete_all(&mut self) -> Result<(), Failed> {
        let mut regions = self.oracle.writes_in_flight();
        while !regions.is_empty() {
            let chunk: Vec<u64> = regions.drain(..regions.len().min(32)).collect();
            // A region with several writes needs as many completions.
            for region in &chunk {
                while self.oracle.has_writes(*region) {
                    self.complete(&[*region]).await?;
                }
            }
        }
        Ok(())
    }

    /// One recovery step: take a region to resync and copy it (instantly), unless writes are
    /// in flight there, in which case recovery of it fails for now. As `dm_rh_update_states`
    /// does, a recovered region is cleared, reported in sync, then flushed.
    pub async fn recover(&mut self) -> Result<Option<u64>, Failed> {
        // A failed GET_RESYNC_WORK ends this recovery pass, as in dm_rh_recovery_prepare.
        let Ok(ReplyPayload::ResyncWork(Some(region))) =
            self.request(&Request::GetResyncWork).await
        else {
            return Ok(None);
        };
        let in_sync = !self.oracle.has_writes(region.0);
        let epoch = self.oracle.epoch();
        if in_sync {
            let batch = RegionBatch::from_regions(&[region.0]).expect("one region fits");
            self.request(&Request::ClearRegion(batch)).await?;
        }
        self.request(&Request::SetRegionSync { region, in_sync }).await?;
        self.request(&Request::Flush(RegionBatch::EMPTY)).await?;
        if in_sync {
            self.oracle.recovered(region.0, epoch);
        } else {
            self.oracle.recovery_failed(region.0);
        }
        Ok(Some(region.0))
    }

    /// `dmsetup status`: GET_SYNC_COUNT, then STATUS_INFO.
    pub async fn status(&mut self) -> Result<(u64, String), Failed> {
        // A failed GET_SYNC_COUNT reads as 0.
        let count = match self.request(&Request::GetSyncCount).await {
            Ok(ReplyPayload::Count(n)) => n,
            Ok(_) => return Err(Failed(-libc::EPROTO)),
            Err(_) => 0,
        };
        if count > self.region_count {
            self.oracle.violations.push(format!(
                "{}: sync count {count} > {}",
                self.name(),
                self.region_count
            ));
        }
        match self.request(&Request::StatusInfo).await {
            Ok(ReplyPayload::Status(line)) => Ok((count, line)),
            Ok(_) => Err(Failed(-libc::EPROTO)),
            Err(_) => Ok((count, "userspace 1 COM_FAILURE".into())),
        }
    }

    /// Asks IS_CLEAN of every region with writes in flight and checks the answers, and
    /// IN_SYNC of every region in sync at the last kill.
    pub async fn audit(&mut self) -> Result<(), Failed> {
        let name = self.name();
        // Failures read as "not clean" and "not in sync", as the kernel reads them.
        for region in self.oracle.writes_in_flight() {
            let clean = self.flag(&Request::IsClean(RegionIndex(region))).await.unwrap_or(false);
            self.oracle.check_clean(&name, region, clean);
        }
        for region in self.oracle.in_sync_at_kill() {
            let in_sync = self.flag(&Request::InSync(RegionIndex(region))).await.unwrap_or(false);
            self.oracle.check_in_sync(&name, region, in_sync);
        }
        Ok(())
    }

    async fn flag(&mut self, request: &Request) -> Result<bool, Failed> {
        match self.request(request).await? {
            ReplyPayload::Flag(flag) => Ok(flag),
            _ => Err(Failed(-libc::EPROTO)),
        }
    }
}

/// The answer as the kernel reads it: a payload larger than the `room` left is
/// "Insufficient space" (-ENOSPC).
fn decode(
    request: &Request,
    answer: Result<Answer, LinkError>,
    room: usize,
) -> Result<ReplyPayload, Failed> {
    let answer = answer.map_err(|error| match error {
        LinkError::NoListener => Failed(-libc::ESRCH),
        LinkError::Closed => Failed(-libc::EPIPE),
    })?;
    if answer.data.len() > room {
        return Err(Failed(-libc::ENOSPC));
    }
    if answer.error != 0 {
        return Err(Failed(answer.error));
    }
    ReplyPayload::decode(request.kind(), &answer.data).ok_or(Failed(-libc::EPROTO))
}
