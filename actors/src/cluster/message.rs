//! What the members of a log's group multicast to each other, and its bytes.
//!
//! Five kinds: an [`Op`] (one per state-changing kernel request), `Ops` (several of one
//! member's, in its order, in one multicast), `Durable` and
//! `CommitFailed` (the member that writes a clustered-disk log says how far the total order
//! is on disk, or that writing it failed), and a chunk of a state snapshot for members that
//! joined. The encoding is little-endian with a
//! version byte first: members of different versions refuse each other's messages rather
//! than misreading them.

use std::collections::BTreeSet;

use roaring::RoaringBitmap;

use super::state::{ClusterState, Member, Op};

const VERSION: u8 = 2;

/// A message of the group.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Op(Op),
    /// Ops one member sends together, applied in this order as if sent one by one.
    Ops(Vec<Op>),
    /// Everything up to this position in the total order is durable on the log device.
    Durable(u64),
    /// Writing the log device up to this position failed: FLUSHes waiting on it fail.
    CommitFailed(u64),
    Snapshot(Chunk),
}

/// One piece of a snapshot, for the view it was taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub view: u64,
    pub index: u32,
    pub total: u32,
    pub bytes: Vec<u8>,
}

/// What a joining member installs: the state, and who holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub state: ClusterState,
    pub holders: BTreeSet<Member>,
}

/// Bytes that are not a message of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable group message: {0}")]
pub struct DecodeError(&'static str);

impl Message {
    /// The bytes of `Message::Op(op)`, without taking the op: a request's op is sent as it
    /// stands in the log's queue, not cloned into a message first.
    pub(crate) fn encode_op(op: &Op) -> Vec<u8> {
        let mut w = Writer(vec![VERSION]);
        w.op(op);
        w.0
    }

    /// The bytes of `Message::Ops` of these ops, without taking them, as [`Message::encode_op`].
    pub(crate) fn encode_ops<'a>(ops: impl ExactSizeIterator<Item = &'a Op>) -> Vec<u8> {
        let mut w = Writer(vec![VERSION, 40]);
        w.u32(ops.len() as u32);
        ops.for_each(|op| w.op(op));
        w.0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(vec![VERSION]);
        match self {
            Message::Op(op) => return Message::encode_op(op),
            Message::Ops(ops) => return Message::encode_ops(ops.iter()),
            Message::Durable(applied) => {
                w.u8(20);
                w.u64(*applied);
            }
            Message::CommitFailed(applied) => {
                w.u8(21);
                w.u64(*applied);
            }
            Message::Snapshot(chunk) => {
                w.u8(30);
                w.u64(chunk.view);
                w.u32(chunk.index);
                w.u32(chunk.total);
                w.0.extend_from_slice(&chunk.bytes);
            }
        }
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(DecodeError("another version"));
        }
        let message = match r.u8()? {
            20 => Message::Durable(r.u64()?),
            21 => Message::CommitFailed(r.u64()?),
            30 => Message::Snapshot(Chunk {
                view: r.u64()?,
                index: r.u32()?,
                total: r.u32()?,
                bytes: std::mem::take(&mut r.0).to_vec(),
            }),
            40 => {
                let count = r.u32()?;
                // Every op takes at least its tag byte: a count past that is a lie.
                if count as usize > r.0.len() {
                    return Err(DecodeError("more ops than bytes"));
                }
                let mut ops = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let tag = r.u8()?;
                    ops.push(r.op(tag)?);
                }
                Message::Ops(ops)
            }
            tag => Message::Op(r.op(tag)?),
        };
        r.end()?;
        Ok(message)
    }
}

impl Snapshot {
    /// The snapshot of `state` and `holders` cut into chunks of at most `chunk_size` bytes,
    /// for `view`: encoded where they lie, since a state can be megabytes.
    pub fn chunks(
        state: &ClusterState,
        holders: &BTreeSet<Member>,
        view: u64,
        chunk_size: usize,
    ) -> Vec<Chunk> {
        let mut w = Writer(Vec::new());
        w.u32(state.region_count);
        w.u64(state.applied);
        w.bitmap(&state.out_of_sync);
        w.u32(state.marks.len() as u32);
        for (member, marks) in &state.marks {
            w.member(*member);
            w.bitmap(marks);
        }
        w.u32(state.recovering.len() as u32);
        for (region, member) in &state.recovering {
            w.u32(*region);
            w.member(*member);
        }
        w.u32(state.sync_search.len() as u32);
        for (member, search) in &state.sync_search {
            w.member(*member);
            w.u32(*search);
        }
        w.u32(holders.len() as u32);
        for member in holders {
            w.member(*member);
        }
        let pieces: Vec<&[u8]> = w.0.chunks(chunk_size.max(1)).collect();
        let total = pieces.len() as u32;
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| Chunk { view, index: i as u32, total, bytes: bytes.to_vec() })
            .collect()
    }

    /// The snapshot from its chunks' bytes, in order. One that names a region past its
    /// region count is refused: the state it would install could count more regions in sync
    /// than the log has, or hand out recovery past its end.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
        let mut r = Reader(bytes);
        let region_count = r.u32()?;
        let applied = r.u64()?;
        let out_of_sync = r.regions_of(region_count)?;
        let mut state = ClusterState {
            region_count,
            marks: Default::default(),
            out_of_sync,
            recovering: Default::default(),
            sync_search: Default::default(),
            applied,
        };
        let past_the_end = DecodeError("a region past the log's end");
        for _ in 0..r.u32()? {
            let member = r.member()?;
            state.marks.insert(member, r.regions_of(region_count)?);
        }
        for _ in 0..r.u32()? {
            let region = r.u32()?;
            if region >= region_count {
                return Err(past_the_end);
            }
            state.recovering.insert(region, r.member()?);
        }
        for _ in 0..r.u32()? {
            let member = r.member()?;
            let search = r.u32()?;
            if search > region_count {
                return Err(past_the_end.clone());
            }
            state.sync_search.insert(member, search);
        }
        let mut holders = BTreeSet::new();
        for _ in 0..r.u32()? {
            holders.insert(r.member()?);
        }
        r.end()?;
        Ok(Snapshot { state, holders })
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn member(&mut self, m: Member) {
        self.u32(m.node);
        self.u32(m.pid);
    }
    fn regions(&mut self, regions: &[u64]) {
        self.u32(regions.len() as u32);
        regions.iter().for_each(|r| self.u64(*r));
    }
    fn bitmap(&mut self, bitmap: &RoaringBitmap) {
        self.u32(bitmap.serialized_size() as u32);
        bitmap.serialize_into(&mut self.0).expect("writing to a Vec cannot fail");
    }
    fn op(&mut self, op: &Op) {
        match op {
            Op::Mark(regions) => {
                self.u8(1);
                self.regions(regions);
            }
            Op::Clear(regions) => {
                self.u8(2);
                self.regions(regions);
            }
            Op::Flush(regions) => {
                self.u8(3);
                self.regions(regions);
            }
            Op::GetResyncWork => self.u8(4),
            Op::SetRegionSync { region, in_sync } => {
                self.u8(5);
                self.u64(*region);
                self.u8(u8::from(*in_sync));
            }
            Op::Resume => self.u8(6),
            Op::Postsuspend => self.u8(7),
            Op::IsClean(region) => {
                self.u8(8);
                self.u64(*region);
            }
            Op::IsRemoteRecovering(region) => {
                self.u8(9);
                self.u64(*region);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) =
            self.0.split_first_chunk::<N>().ok_or(DecodeError("message too short"))?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn member(&mut self) -> Result<Member, DecodeError> {
        Ok(Member { node: self.u32()?, pid: self.u32()? })
    }
    fn regions(&mut self) -> Result<Vec<u64>, DecodeError> {
        let count = self.u32()? as usize;
        if count > self.0.len() / 8 {
            return Err(DecodeError("region list longer than the message"));
        }
        (0..count).map(|_| self.u64()).collect()
    }
    /// A bitmap of regions of a log of `count` regions.
    fn regions_of(&mut self, count: u32) -> Result<RoaringBitmap, DecodeError> {
        let regions = self.bitmap()?;
        match regions.max() {
            Some(last) if last >= count => Err(DecodeError("a region past the log's end")),
            _ => Ok(regions),
        }
    }
    fn bitmap(&mut self) -> Result<RoaringBitmap, DecodeError> {
        let len = self.u32()? as usize;
        let bytes = self.0.get(..len).ok_or(DecodeError("bitmap longer than the message"))?;
        self.0 = &self.0[len..];
        RoaringBitmap::deserialize_from(bytes).map_err(|_| DecodeError("bad bitmap"))
    }
    fn op(&mut self, tag: u8) -> Result<Op, DecodeError> {
        Ok(match tag {
            1 => Op::Mark(self.regions()?),
            2 => Op::Clear(self.regions()?),
            3 => Op::Flush(self.regions()?),
            4 => Op::GetResyncWork,
            5 => Op::SetRegionSync { region: self.u64()?, in_sync: self.u8()? != 0 },
            6 => Op::Resume,
            7 => Op::Postsuspend,
            8 => Op::IsClean(self.u64()?),
            9 => Op::IsRemoteRecovering(self.u64()?),
            _ => return Err(DecodeError("unknown message kind")),
        })
    }
    fn end(&self) -> Result<(), DecodeError> {
        self.0.is_empty().then_some(()).ok_or(DecodeError("trailing bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::LogArgs;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = Op> {
        let regions = proptest::collection::vec(any::<u64>(), 0..33);
        prop_oneof![
            regions.clone().prop_map(Op::Mark),
            regions.clone().prop_map(Op::Clear),
            regions.prop_map(Op::Flush),
            Just(Op::GetResyncWork),
            (any::<u64>(), any::<bool>())
                .prop_map(|(region, in_sync)| Op::SetRegionSync { region, in_sync }),
            Just(Op::Resume),
            Just(Op::Postsuspend),
            any::<u64>().prop_map(Op::IsClean),
            any::<u64>().prop_map(Op::IsRemoteRecovering),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip(op in op(), ops in proptest::collection::vec(op(), 0..5), applied in any::<u64>()) {
            let messages = [Message::Op(op), Message::Ops(ops), Message::Durable(applied), Message::CommitFailed(applied)];
            for message in messages {
                prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
            }
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::decode(&bytes);
            let _ = Snapshot::decode(&bytes);
        }
    }

    #[test]
    fn a_big_snapshot_survives_chunking() {
        let args: LogArgs = "134217728 clustered-core 8".parse().unwrap();
        let mut state = ClusterState::new(&args, args.initial_out_of_sync());
        let a = Member { node: 1, pid: 9 };
        let b = Member { node: 2, pid: 4 };
        for r in (0..16_000_000u64).step_by(3) {
            state.out_of_sync.remove(r as u32);
        }
        state.apply(a, &Op::Mark((0..32).map(|r| r * 1000).collect())).unwrap();
        state.apply(b, &Op::Resume).unwrap();
        state.apply(b, &Op::GetResyncWork).unwrap();
        let snapshot = Snapshot { state, holders: [a, b].into() };
        let chunks = Snapshot::chunks(&snapshot.state, &snapshot.holders, 77, 256 * 1024);
        assert!(chunks.len() > 4, "{} chunks", chunks.len());
        let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.clone()).collect();
        assert_eq!(Snapshot::decode(&bytes), Ok(snapshot));
        let chunk = Message::Snapshot(chunks[1].clone());
        assert_eq!(Message::decode(&chunk.encode()), Ok(chunk));
    }
}
