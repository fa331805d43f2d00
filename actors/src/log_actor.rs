//! The log actor: one per single-host log instance, spawned on CTR and stopped on DTR.
//!
//! It owns the log's [`RegionLog`] and applies the log's requests one at a time in arrival
//! order; logs never wait for each other. A disk log also owns its device's [`Committer`]
//! and does group commit ([`disk`]).
//!
//! With a state directory it also keeps the log's [`Shadow`]: each change of the sync state
//! is journaled before the reply that makes the kernel rely on it, and a CTR by which the
//! kernel reconnects takes the shadow back. At the engine's shutdown it says how the next
//! daemon takes it back without the kernel ([`crate::handover`]).

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::handover::{CarriedLog, Phase};
use crate::log_core::{serve_log, LogCore, ServesLog, Tally};
use crate::region::{LogKind, RegionLog, ResumeFrom};
use crate::reply_to::ReplyTo;
use crate::shadow::{Shadow, StateDir};
use crate::store::Committer;
use crate::transport::Peer;
use crate::wire::{Errno, Reply, ReplyPayload, Request};

mod disk;
mod shadowing;

use disk::Waiter;

/// One single-host log (`core` or `disk`): its state, its order and, for a disk log, its
/// device and group commit belong to this actor alone, so no lock stands between requests.
pub(crate) struct LogActor {
    core: LogCore,
    /// The CTR string as the shadow names its owner, rendered once: the journal's hot path
    /// needs it whenever it compacts.
    ctr: String,
    region: RegionLog,
    /// Who waits for a disk log's next commit.
    queued: Vec<Waiter>,
    /// A commit of the changes behind an answered FLUSH is scheduled.
    behind_scheduled: bool,
    /// The log's state kept for the next daemon, if there is a state directory.
    shadow: Option<Shadow>,
    /// The last write of the shadow failed (said once, until one succeeds).
    shadow_failing: bool,
    /// A reconnect's CTR took the shadow back: the next RESUME keeps its sync state, and its
    /// recovering set (the kernel may be copying those regions right now).
    restored: bool,
    /// A RESUME came since the CTR.
    resumed: bool,
    /// DTR or shutdown: stop once nothing is left to commit.
    closing: bool,
}

impl LogActor {
    pub(crate) fn new(core: LogCore, state_dir: Option<&Arc<StateDir>>) -> LogActor {
        let region = RegionLog::new(&core.args);
        let shadow = state_dir.map(|dir| Shadow::new(dir.clone(), &core.key));
        LogActor {
            ctr: core.args.to_string(),
            core,
            region,
            queued: Vec::new(),
            behind_scheduled: false,
            shadow,
            shadow_failing: false,
            restored: false,
            resumed: false,
            closing: false,
        }
    }

    /// CTR: a core log is ready at once; a disk log first opens its device.
    fn construct(&mut self, to: ReplyTo, reconnect: bool, ctx: &mut Context<Self>) {
        self.take_back_shadow(reconnect);
        let LogKind::Disk { device } = &self.core.args.kind else {
            return self.core.constructed(&to, Ok(ReplyPayload::Empty), ctx);
        };
        let open = self.core.open_device(device, |_| Ok(()));
        ctx.wait(open.into_actor(self).map(move |opened, act, ctx| match opened {
            Ok((flusher, claim, ())) => {
                let name = flusher.device().name().to_owned();
                act.core.device =
                    Some(disk::committer(flusher, claim, act.core.args.region_count()));
                // The kernel holds the named device as a dependency of the table.
                act.core.constructed(&to, Ok(ReplyPayload::DeviceName(name)), ctx);
            }
            Err(error) => act.core.not_constructed(&to, &error, ctx),
        }));
    }

    /// Answers from the region log, which tells the committer and the shadow what changed.
    fn answer(&mut self, request: &Request) -> Option<Reply> {
        let touched = self.core.device.as_mut().map(Committer::changed);
        let journal = self.shadow.as_mut().map(Shadow::pending);
        self.region.answer(request, (touched, journal))
    }

    /// What the next daemon needs to take this log back: its CTR and phase, and the shadow,
    /// without which a reconnected or resumed log cannot be carried (its sync state is there).
    fn carried(&self) -> Option<CarriedLog> {
        let phase = match (self.restored, self.resumed) {
            (true, _) => Phase::Reconnected,
            (false, true) => Phase::Resumed,
            (false, false) => Phase::Constructed,
        };
        let shadow_current = self.shadow.is_some() && !self.shadow_failing;
        (phase == Phase::Constructed || shadow_current).then(|| CarriedLog {
            key: self.core.key.clone(),
            ctr: self.ctr.clone(),
            phase,
        })
    }

    fn stop_if_closing(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            ctx.stop();
        }
    }
}

impl ServesLog for LogActor {
    fn tally(&self) -> Tally {
        Tally {
            in_sync: self.region.sync_count(),
            dirty: self.region.dirty_count(),
            recovering: self.region.recovering_count(),
        }
    }

    fn request(&mut self, request: Request, to: ReplyTo, ctx: &mut Context<Self>) {
        let is_disk = self.core.device.is_some();
        match &request {
            Request::Ctr { reconnect, .. } => {
                self.core.quiet = to.peer == Peer::Engine;
                self.construct(to, *reconnect, ctx);
            }
            Request::Dtr => {
                self.closing = true;
                self.drop_shadow();
                tracing::info!(uuid = %self.core.key.uuid, luid = self.core.key.luid, "log destroyed");
                self.commit(Waiter::Kernel(to), ctx);
            }
            Request::Resume if is_disk => {
                self.resumed = true;
                self.resume_disk(to, ctx);
            }
            Request::Flush(_) | Request::Postsuspend if is_disk => {
                let answer = self.answer(&request);
                self.journal();
                let owes_nothing = self.core.device.as_ref().is_some_and(Committer::owes_nothing);
                match answer {
                    // A FLUSH after nothing but changes towards clean (the committer's header).
                    Some(Ok(_)) if owes_nothing && matches!(request, Request::Flush(_)) => {
                        self.core.respond(&to, Ok(ReplyPayload::Empty));
                        self.commit_behind(ctx);
                    }
                    Some(Ok(_)) => self.commit(Waiter::Kernel(to), ctx),
                    Some(Err(errno)) => self.core.respond(&to, Err(errno)),
                    None => self.core.respond(&to, Err(Errno::EINVAL)),
                }
            }
            Request::Resume => {
                self.resumed = true;
                self.region.resume(if std::mem::take(&mut self.restored) {
                    ResumeFrom::Reconnect { device: None }
                } else {
                    ResumeFrom::Real { loaded: None }
                });
                self.save_shadow();
                self.core.respond(&to, Ok(ReplyPayload::Empty));
            }
            _ => {
                let reply = self.answer(&request).unwrap_or(Err(Errno::EINVAL));
                self.journal();
                self.core.respond(&to, reply);
            }
        }
    }

    fn shutdown(&mut self, done: oneshot::Sender<Option<CarriedLog>>, ctx: &mut Context<Self>) {
        self.closing = true;
        self.core.quiet = true;
        if self.restored || self.resumed {
            self.save_shadow_carried();
        }
        let carried = self.carried();
        self.commit(Waiter::Shutdown(done, carried), ctx);
    }
}

serve_log!(LogActor, core);
