//! The log actor's side of the [`Shadow`](crate::shadow::Shadow): taken back at a
//! reconnect's CTR, rewritten at RESUME, appended to before each reply that changes what it
//! keeps, removed at DTR, and given up (removed) when it cannot be kept current.

use crate::shadow::Owner;

use super::LogActor;

impl LogActor {
    /// At CTR: a reconnect takes back the shadow a crashed daemon left; a new table removes
    /// whatever stale file its key names.
    pub(super) fn take_back_shadow(&mut self, reconnect: bool) {
        let Some(shadow) = &mut self.shadow else { return };
        let (uuid, luid) = (&self.key.uuid, self.key.luid);
        let path = shadow.path().display().to_string();
        if !reconnect {
            if let Err(error) = shadow.discard() {
                tracing::warn!(%uuid, luid, %path, %error, "stale shadow not removed");
            }
            return;
        }
        let count = u32::try_from(self.region.region_count().0).expect("LogArgs bounds the count");
        match shadow.load(Owner { key: &self.key, ctr: &self.ctr }, count) {
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
                tracing::info!(
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

    /// Rewrites the shadow as one snapshot of the whole state (at RESUME).
    pub(super) fn save_shadow(&mut self) {
        self.region.take_changes();
        let Some(shadow) = &mut self.shadow else { return };
        if let Err(error) = shadow.save(Owner { key: &self.key, ctr: &self.ctr }, &self.region) {
            self.lose_shadow(error);
        }
    }

    /// Journals what the last request changed, before its reply goes out.
    pub(super) fn journal(&mut self) {
        let changes = self.region.take_changes();
        let Some(shadow) = &mut self.shadow else { return };
        if changes.is_empty() {
            return;
        }
        let owner = Owner { key: &self.key, ctr: &self.ctr };
        if let Err(error) = shadow.append(owner, &self.region, &changes) {
            self.lose_shadow(error);
        }
    }

    /// DTR: the kernel forgets this log, so must the next daemon.
    pub(super) fn drop_shadow(&mut self) {
        let Some(mut shadow) = self.shadow.take() else { return };
        self.region.report_changes(false);
        if let Err(error) = shadow.discard() {
            let path = shadow.path().display();
            tracing::warn!(uuid = %self.key.uuid, luid = self.key.luid, %path, %error, "shadow not removed");
        }
    }

    /// A shadow that cannot be kept current must not be found by the next daemon.
    fn lose_shadow(&mut self, error: std::io::Error) {
        let Some(mut shadow) = self.shadow.take() else { return };
        self.region.report_changes(false);
        let removed = shadow.discard();
        tracing::error!(
            uuid = %self.key.uuid, luid = self.key.luid, path = %shadow.path().display(), %error,
            removed = removed.is_ok(),
            "shadow not written: after a daemon crash this log will start from its own state"
        );
        self.last_error = Some(format!("shadow: {error}"));
    }
}
