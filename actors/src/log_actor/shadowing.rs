//! The log actor's side of the [`Shadow`](crate::shadow::Shadow): taken back at a
//! reconnect's CTR, rewritten at RESUME, appended to before each reply that changes what it
//! keeps, and removed at DTR. A write that fails removes it (the shadow sees to that), and
//! the next change writes it afresh; the failure is counted, and said once until then.

use crate::log_core::lifecycle;
use crate::shadow::Owner;

use super::LogActor;

impl LogActor {
    /// At CTR: a reconnect takes back the shadow a crashed daemon left; a new table removes
    /// whatever stale file its key names.
    pub(super) fn take_back_shadow(&mut self, reconnect: bool) {
        let Some(shadow) = &mut self.shadow else { return };
        let (uuid, luid) = (&self.core.key.uuid, self.core.key.luid);
        let path = shadow.path().display().to_string();
        if !reconnect {
            if let Err(error) = shadow.discard() {
                tracing::warn!(%uuid, luid, %path, %error, "stale shadow not removed");
            }
            return;
        }
        let count = self.region.region_count().bitmap_bound();
        match shadow.load(Owner { key: &self.core.key, ctr: &self.ctr }, count) {
            Ok(None) => tracing::warn!(
                %uuid, luid, "reconnect without a shadow: the log starts from its own state"
            ),
            Ok(Some(replayed)) => {
                if replayed.torn_tail {
                    tracing::warn!(
                        %uuid, luid, %path,
                        "shadow ends in a torn record, which no reply relied on: it is left out"
                    );
                }
                self.region.restore(replayed.sets);
                self.restored = true;
                lifecycle!(
                    self.core.quiet,
                    %uuid, luid, in_sync = self.region.sync_count(),
                    recovering = self.region.recovering_count(),
                    "sync state taken back from the shadow"
                );
            }
            Err(error) => tracing::warn!(
                %uuid, luid, %error, "shadow ignored: the log starts from its own state"
            ),
        }
    }

    /// At the engine's shutdown: a snapshot with a core log's marks too, which a next daemon
    /// taking the log over needs ([`crate::handover`]), and a reconnect may take back.
    pub(super) fn save_shadow_carried(&mut self) {
        let Some(shadow) = &mut self.shadow else { return };
        let saved =
            shadow.save_carried(Owner { key: &self.core.key, ctr: &self.ctr }, &self.region);
        self.shadow_written(saved);
    }

    /// Rewrites the shadow as one snapshot of the whole state (at RESUME).
    pub(super) fn save_shadow(&mut self) {
        let Some(shadow) = &mut self.shadow else { return };
        let saved = shadow.save(Owner { key: &self.core.key, ctr: &self.ctr }, &self.region);
        self.shadow_written(saved);
    }

    /// Journals what the last request changed, before its reply goes out.
    pub(super) fn journal(&mut self) {
        let Some(shadow) = self.shadow.as_mut().filter(|s| s.has_pending()) else {
            return;
        };
        let journaled = shadow.journal(Owner { key: &self.core.key, ctr: &self.ctr }, &self.region);
        self.shadow_written(journaled);
    }

    /// DTR: the kernel forgets this log, so must the next daemon.
    pub(super) fn drop_shadow(&mut self) {
        let Some(mut shadow) = self.shadow.take() else { return };
        if let Err(error) = shadow.discard() {
            let path = shadow.path().display().to_string();
            tracing::warn!(uuid = %self.core.key.uuid, luid = self.core.key.luid, %path, %error, "shadow not removed");
        }
    }

    /// Counts a failed write and says the first of a run; says when the shadow is back.
    fn shadow_written(&mut self, written: std::io::Result<()>) {
        let path = || self.shadow.as_ref().map(|s| s.path().display().to_string());
        match written {
            Ok(()) if std::mem::take(&mut self.shadow_failing) => tracing::info!(
                uuid = %self.core.key.uuid, luid = self.core.key.luid, path = path(),
                "shadow written afresh"
            ),
            Ok(()) => {}
            Err(error) => {
                self.core.metrics().shadow_failed();
                if !std::mem::replace(&mut self.shadow_failing, true) {
                    tracing::error!(
                        uuid = %self.core.key.uuid, luid = self.core.key.luid, path = path(), %error,
                        "shadow not written: it is written afresh at the log's next change; \
                         a daemon crash before then leaves this log to start from its own state"
                    );
                    self.core.note_error(format!("shadow: {error}"));
                }
            }
        }
    }
}
