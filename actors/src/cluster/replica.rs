//! [`Replica`]: one member's side of a log's group, with no I/O: it takes what CPG delivers
//! (views and messages, in the agreed order) and says what to do ([`Effect`]s).
//!
//! Getting the state to a member that joins: at every view in which some member lacks the
//! state, the lowest member that holds it multicasts a snapshot taken at that view, in
//! chunks, tagged with the view. CPG delivers the view change at the same point of the total
//! order everywhere, so the snapshot holds exactly the ops delivered before it; the joiner
//! keeps the ops delivered after it and applies them on top. A view change during the
//! transfer starts it over (the joiner drops what it kept; the new snapshot covers it).
//! When no holder is left, the lowest member starts the state afresh from what it knows
//! (the log device, or all regions out of sync).
//!
//! A member never multicasts an op before it holds the state, so none of its own ops is ever
//! in a snapshot it has not seen.

use std::collections::BTreeSet;

use roaring::RoaringBitmap;

use super::message::{Chunk, Message, Snapshot};
use super::state::{ClusterState, Member, Op};
use crate::fnv::fnv1a;
use crate::region::LogArgs;
use crate::wire::Reply;

/// Snapshot chunks stay well below CPG's largest message (about 1 MiB).
const CHUNK_SIZE: usize = 512 * 1024;

/// What the member must do after an event.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Multicast this to the group.
    Send(Message),
    /// One of this member's own ops was applied, at `position` in the total order: the
    /// answer for the oldest request it sent.
    Answer { reply: Reply, position: u64 },
    /// The state is here: requests held back may go now.
    Installed,
    /// The log device holds everything up to this position.
    Durable(u64),
    /// The writer failed to write the log device up to this position.
    CommitFailed(u64),
}

pub struct Replica {
    me: Member,
    args: LogArgs,
    /// What this member would start the state from if it were the first: out-of-sync regions.
    fresh: RoaringBitmap,
    state: Option<ClusterState>,
    holders: BTreeSet<Member>,
    view: Vec<Member>,
    view_id: u64,
    /// Snapshot bytes received so far for the current view.
    assembling: Vec<u8>,
    next_chunk: u32,
    /// Ops delivered since the current view, while waiting for its snapshot.
    kept: Vec<(Member, Op)>,
}

impl Replica {
    pub fn new(me: Member, args: LogArgs, fresh: RoaringBitmap) -> Replica {
        Replica {
            me,
            args,
            fresh,
            state: None,
            holders: BTreeSet::new(),
            view: Vec::new(),
            view_id: 0,
            assembling: Vec::new(),
            next_chunk: 0,
            kept: Vec::new(),
        }
    }

    pub fn me(&self) -> Member {
        self.me
    }

    pub fn state(&self) -> Option<&ClusterState> {
        self.state.as_ref()
    }

    /// The member that writes a clustered-disk log: the lowest one holding the state.
    pub fn writer(&self) -> Option<Member> {
        self.view.iter().find(|m| self.holders.contains(m)).copied()
    }

    pub fn members(&self) -> &[Member] {
        &self.view
    }

    /// CPG's view change: `members` now, of whom `joined` just came, and `left` went away.
    pub fn on_view(
        &mut self,
        members: &[Member],
        left: &[Member],
        joined: &[Member],
    ) -> Vec<Effect> {
        let mut members = members.to_vec();
        members.sort();
        if self.view.is_empty() {
            // The first view this member sees: those who were there before hold the state.
            self.holders = members.iter().filter(|m| !joined.contains(m)).copied().collect();
        }
        self.view = members;
        self.view_id = view_id(&self.view);
        self.holders.retain(|m| self.view.contains(m));
        if let Some(state) = &mut self.state {
            for member in left {
                state.member_left(*member);
            }
        }
        // A transfer in progress is for an older view: it starts over.
        self.assembling.clear();
        self.next_chunk = 0;
        self.kept.clear();

        let mut effects = Vec::new();
        if self.state.is_none() && self.holders.is_empty() && self.view.first() == Some(&self.me) {
            self.state = Some(ClusterState::new(&self.args, std::mem::take(&mut self.fresh)));
            self.holders.insert(self.me);
            effects.push(Effect::Installed);
        }
        let lacking = self.view.iter().any(|m| !self.holders.contains(m));
        if let (Some(state), true) = (&self.state, lacking) {
            if self.writer() == Some(self.me) {
                let chunks = Snapshot::chunks(state, &self.holders, self.view_id, CHUNK_SIZE);
                effects
                    .extend(chunks.into_iter().map(|chunk| Effect::Send(Message::Snapshot(chunk))));
            }
        }
        effects
    }

    /// A message, delivered in the agreed order.
    pub fn on_message(&mut self, from: Member, message: Message) -> Vec<Effect> {
        match message {
            Message::Ops(ops) => {
                ops.into_iter().flat_map(|op| self.on_message(from, Message::Op(op))).collect()
            }
            Message::Op(op) => match &mut self.state {
                Some(state) => {
                    let reply = state.apply(from, &op);
                    if from == self.me {
                        vec![Effect::Answer { reply, position: state.applied() }]
                    } else {
                        Vec::new()
                    }
                }
                None => {
                    self.kept.push((from, op));
                    Vec::new()
                }
            },
            Message::Durable(position) => vec![Effect::Durable(position)],
            Message::CommitFailed(position) => vec![Effect::CommitFailed(position)],
            Message::Snapshot(chunk) => self.on_chunk(chunk),
        }
    }

    fn on_chunk(&mut self, chunk: Chunk) -> Vec<Effect> {
        if chunk.view != self.view_id {
            return Vec::new();
        }
        let last = chunk.index + 1 == chunk.total;
        if self.state.is_some() {
            // Every member that lacked the state has it once the last chunk is delivered.
            if last {
                self.holders.extend(self.view.iter().copied());
            }
            return Vec::new();
        }
        if chunk.index != self.next_chunk {
            return Vec::new();
        }
        self.assembling.extend_from_slice(&chunk.bytes);
        self.next_chunk += 1;
        if !last {
            return Vec::new();
        }
        let bytes = std::mem::take(&mut self.assembling);
        let Ok(snapshot) = Snapshot::decode(&bytes) else {
            tracing::error!(member = %self.me, "undecodable state snapshot; waiting for the next");
            return Vec::new();
        };
        self.holders = snapshot.holders;
        self.holders.extend(self.view.iter().copied());
        let mut state = snapshot.state;
        let mut effects = vec![Effect::Installed];
        for (from, op) in std::mem::take(&mut self.kept) {
            let reply = state.apply(from, &op);
            if from == self.me {
                effects.push(Effect::Answer { reply, position: state.applied() });
            }
        }
        self.state = Some(state);
        effects
    }

    /// The out-of-sync regions this member would start the state from, were it the first
    /// holder: what it read or knew when it left.
    pub fn fresh(&self) -> &RoaringBitmap {
        &self.fresh
    }

    /// This member left the group: its replica is no longer kept current. Should it start
    /// the state afresh when it comes back, it starts from `fresh`.
    pub fn detach(&mut self, fresh: RoaringBitmap) {
        *self = Replica::new(self.me, self.args.clone(), fresh);
    }

    /// What a member that leaves knows of the log: after a POSTSUSPEND, its own state (its
    /// marks are gone, and whatever it knew out of sync still is); after losing its group,
    /// nothing, so every region is out of sync.
    pub fn leaving_knowledge(&self, clean_leave: bool) -> RoaringBitmap {
        match (&self.state, clean_leave) {
            (Some(state), true) => state.unclean(),
            _ => self.args.all_regions(),
        }
    }
}

/// A name for a view, the same on every member.
fn view_id(members: &[Member]) -> u64 {
    let bytes: Vec<u8> = members
        .iter()
        .flat_map(|m| m.node.to_le_bytes().into_iter().chain(m.pid.to_le_bytes()))
        .collect();
    fnv1a(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::RegionIndex;
    use crate::wire::ReplyPayload;

    const A: Member = Member { node: 1, pid: 1 };
    const B: Member = Member { node: 2, pid: 2 };
    const C: Member = Member { node: 3, pid: 3 };

    /// A perfect group: every member sees every event in one order.
    struct Group {
        replicas: Vec<Replica>,
        members: Vec<Member>,
    }

    impl Group {
        fn new() -> Group {
            Group { replicas: Vec::new(), members: Vec::new() }
        }

        fn args() -> LogArgs {
            "80 clustered-core 8".parse().unwrap()
        }

        fn join(&mut self, m: Member) {
            let args = Group::args();
            let fresh = args.initial_out_of_sync();
            self.replicas.push(Replica::new(m, args, fresh));
            self.members.push(m);
            self.view(&[], &[m]);
        }

        fn leave(&mut self, m: Member) {
            self.replicas.retain(|r| r.me != m);
            self.members.retain(|x| *x != m);
            self.view(&[m], &[]);
        }

        fn view(&mut self, left: &[Member], joined: &[Member]) {
            let members = self.members.clone();
            let sends: Vec<(Member, Vec<Effect>)> = self
                .replicas
                .iter_mut()
                .map(|r| (r.me, r.on_view(&members, left, joined)))
                .collect();
            self.deliver_sends(sends);
        }

        fn send(&mut self, from: Member, op: Op) {
            let sends: Vec<(Member, Vec<Effect>)> = self
                .replicas
                .iter_mut()
                .map(|r| (r.me, r.on_message(from, Message::Op(op.clone()))))
                .collect();
            self.deliver_sends(sends);
        }

        fn deliver_sends(&mut self, sends: Vec<(Member, Vec<Effect>)>) {
            for (from, effects) in sends {
                for effect in effects {
                    if let Effect::Send(message) = effect {
                        let more: Vec<(Member, Vec<Effect>)> = self
                            .replicas
                            .iter_mut()
                            .map(|r| (r.me, r.on_message(from, message.clone())))
                            .collect();
                        self.deliver_sends(more);
                    }
                }
            }
        }

        fn states(&self) -> Vec<&ClusterState> {
            self.replicas.iter().map(|r| r.state().expect("every member holds the state")).collect()
        }
    }

    #[test]
    fn joiners_get_the_state_and_then_agree() {
        let mut g = Group::new();
        g.join(B);
        g.send(B, Op::Resume);
        g.send(B, Op::Mark(vec![3]));
        g.send(B, Op::SetRegionSync { region: 0, in_sync: true });
        g.join(A);
        g.join(C);
        let states = g.states();
        assert!(states.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(states[0].is_clean(3), Ok(false));
        assert_eq!(states[0].sync_count(), 1);
        // The writer is the lowest member holding the state.
        assert!(g.replicas.iter().all(|r| r.writer() == Some(A)));
        g.leave(B);
        let states = g.states();
        assert!(states.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(states[0].is_clean(3), Ok(false), "unmarked, but out of sync");
        assert_eq!(states[0].in_sync(3), Ok(false), "B's mark is resynced");
    }

    #[test]
    fn ops_sent_together_are_applied_and_answered_as_if_sent_one_by_one() {
        let args = Group::args();
        let ops = [Op::Clear(vec![1]), Op::Mark(vec![1, 2]), Op::IsClean(1), Op::Flush(vec![3])];
        let mut alone = Replica::new(A, args.clone(), args.initial_out_of_sync());
        let mut batched = Replica::new(A, args.clone(), args.initial_out_of_sync());
        for replica in [&mut alone, &mut batched] {
            replica.on_view(&[A], &[], &[A]);
        }
        let one_by_one: Vec<Effect> =
            ops.iter().flat_map(|op| alone.on_message(A, Message::Op(op.clone()))).collect();
        let together = batched.on_message(A, Message::Ops(ops.to_vec()));
        assert_eq!(together.len(), ops.len(), "one answer per op");
        assert_eq!(together, one_by_one);
        assert_eq!(alone.state(), batched.state());
    }

    #[test]
    fn ops_delivered_during_a_transfer_are_applied_after_it() {
        let args = Group::args();
        let fresh = args.initial_out_of_sync();
        let mut a = Replica::new(A, args.clone(), fresh.clone());
        let mut b = Replica::new(B, args, fresh);
        assert_eq!(a.on_view(&[A], &[], &[A]), vec![Effect::Installed]);
        a.on_message(A, Message::Op(Op::Mark(vec![1])));
        let chunks: Vec<Message> = a
            .on_view(&[A, B], &[], &[B])
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send(m) => Some(m),
                _ => None,
            })
            .collect();
        assert!(b.on_view(&[A, B], &[], &[B]).is_empty());
        // B's view of the order: an op of A's, then the snapshot, then one of its own.
        for m in [&mut a, &mut b] {
            m.on_message(A, Message::Op(Op::Mark(vec![2])));
        }
        for chunk in &chunks {
            a.on_message(A, chunk.clone());
        }
        let installed: Vec<Effect> =
            chunks.iter().flat_map(|c| b.on_message(A, c.clone())).collect();
        assert_eq!(installed, vec![Effect::Installed]);
        let answer = b.on_message(B, Message::Op(Op::GetResyncWork));
        a.on_message(B, Message::Op(Op::GetResyncWork));
        assert_eq!(
            answer,
            vec![Effect::Answer {
                reply: Ok(ReplyPayload::ResyncWork(Some(RegionIndex(0)))),
                position: 3
            }]
        );
        assert_eq!(a.state(), b.state());
        assert_eq!(b.state().unwrap().is_clean(2), Ok(false));
    }

    #[test]
    fn with_no_holder_left_the_lowest_member_starts_afresh() {
        let args = Group::args();
        let fresh = args.initial_out_of_sync();
        let mut c = Replica::new(C, args.clone(), fresh.clone());
        let mut b = Replica::new(B, args, fresh);
        // C and B join a group whose only holder, A, dies before sending anything.
        assert!(c.on_view(&[A, B, C], &[], &[B, C]).is_empty());
        assert!(b.on_view(&[A, B, C], &[], &[B, C]).is_empty());
        let started = b.on_view(&[B, C], &[A], &[]);
        assert_eq!(started[0], Effect::Installed);
        assert!(c.on_view(&[B, C], &[A], &[]).is_empty());
        for effect in started {
            if let Effect::Send(m) = effect {
                c.on_message(B, m.clone());
                b.on_message(B, m);
            }
        }
        assert_eq!(c.state(), b.state());
        assert_eq!(c.state().unwrap().sync_count(), 0);
    }
}
