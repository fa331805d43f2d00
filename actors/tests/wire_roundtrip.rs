//! The codec round trip (emit, parse, same value) for every request and reply type, and
//! the decoder's promise: no panic and no read past the frame, whatever the bytes.

use dm_ulog_actors::units::RegionIndex;
use dm_ulog_actors::wire::reply::{decode_reply, reply_capacity};
use dm_ulog_actors::wire::{
    decode_frame, emit_ack, emit_reply, Errno, RegionBatch, ReplyPayload, Request, RequestHeader,
    RequestType, Uuid, MAX_REPLY_FRAME, MAX_REQUEST_FRAME,
};
use proptest::prelude::*;

fn uuid() -> impl Strategy<Value = Uuid> {
    "[A-Za-z0-9-]{0,128}".prop_map(|s| Uuid::new(&s).unwrap())
}

fn header() -> impl Strategy<Value = RequestHeader> {
    (any::<u64>(), uuid(), prop_oneof![Just(0u32), Just(1), Just(2), Just(3)], any::<u32>())
        .prop_map(|(luid, uuid, version, seq)| RequestHeader {
            luid,
            uuid,
            version,
            seq,
            request_type: 0,
        })
}

fn region() -> impl Strategy<Value = RegionIndex> {
    any::<u64>().prop_map(RegionIndex)
}

fn batch(min: usize) -> impl Strategy<Value = RegionBatch> {
    prop::collection::vec(any::<u64>(), min..=32)
        .prop_map(|v| RegionBatch::from_regions(&v).unwrap())
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        ("[ -~]{0,300}", any::<bool>())
            .prop_map(|(args, reconnect)| Request::Ctr { args, reconnect }),
        Just(Request::Dtr),
        Just(Request::Presuspend),
        Just(Request::Postsuspend),
        Just(Request::Resume),
        Just(Request::GetRegionSize),
        region().prop_map(Request::IsClean),
        region().prop_map(Request::InSync),
        batch(0).prop_map(Request::Flush),
        batch(1).prop_map(Request::MarkRegion),
        batch(1).prop_map(Request::ClearRegion),
        Just(Request::GetResyncWork),
        (region(), any::<bool>())
            .prop_map(|(region, in_sync)| Request::SetRegionSync { region, in_sync }),
        Just(Request::GetSyncCount),
        Just(Request::StatusInfo),
        Just(Request::StatusTable),
        region().prop_map(Request::IsRemoteRecovering),
    ]
}

/// A request type with a payload that fits it.
fn reply_case() -> impl Strategy<Value = (Request, ReplyPayload)> {
    prop_oneof![
        Just((Request::Dtr, ReplyPayload::Empty)),
        any::<u64>().prop_map(|n| (Request::GetRegionSize, ReplyPayload::Count(n))),
        any::<u64>().prop_map(|n| (Request::GetSyncCount, ReplyPayload::Count(n))),
        any::<bool>().prop_map(|b| (Request::InSync(RegionIndex(0)), ReplyPayload::Flag(b))),
        any::<bool>().prop_map(|b| (Request::IsClean(RegionIndex(0)), ReplyPayload::Flag(b))),
        prop::option::of(region())
            .prop_map(|w| (Request::GetResyncWork, ReplyPayload::ResyncWork(w))),
        (any::<bool>(), region()).prop_map(|(recovering, in_sync_hint)| (
            Request::IsRemoteRecovering(RegionIndex(0)),
            ReplyPayload::RemoteRecovering { recovering, in_sync_hint }
        )),
        "[!-~]{1,127}".prop_map(|name| (
            Request::Ctr { args: String::new(), reconnect: false },
            ReplyPayload::DeviceName(name)
        )),
        "[ -~]{1,200}".prop_map(|line| (Request::StatusInfo, ReplyPayload::Status(line))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_round_trips(mut header in header(), request in request()) {
        let mut buf = [0u8; MAX_REQUEST_FRAME + 64];
        header.request_type = request.kind() as u32;
        let len = request.emit(&header, &mut buf);
        let frame = decode_frame(&buf[..len]).unwrap();
        prop_assert_eq!(&frame.header, &header);
        prop_assert_eq!(frame.request().unwrap(), request);
    }

    #[test]
    fn reply_round_trips(mut header in header(), (request, payload) in reply_case(), errno in prop::option::of(1i32..200)) {
        header.version = 3;
        header.request_type = request.kind() as u32;
        let reply = errno.map_or(Ok(payload.clone()), |e| Err(Errno(e)));
        let mut buf = [0u8; MAX_REPLY_FRAME];
        let len = emit_reply(&header, reply_capacity(&request, header.version), &reply, &mut buf);
        let seen = decode_reply(&buf[..len]).unwrap();
        prop_assert_eq!(seen.seq, header.seq);
        match errno {
            Some(e) => {
                prop_assert_eq!(seen.error, -e);
                prop_assert!(seen.data.is_empty());
            }
            None => {
                prop_assert_eq!(seen.error, 0);
                prop_assert_eq!(ReplyPayload::decode(request.kind(), seen.data), Some(payload));
            }
        }
    }

    #[test]
    fn ack_round_trips(seq in any::<u32>(), errno in prop::option::of(1i32..200)) {
        let mut buf = [0u8; MAX_REPLY_FRAME];
        let len = emit_ack(seq, errno.map(Errno), &mut buf);
        let seen = decode_reply(&buf[..len]).unwrap();
        prop_assert_eq!((seen.seq, seen.error, seen.data.len()), (seq, -errno.unwrap_or(0), 0));
    }

    /// Arbitrary bytes: decoding returns, whatever it returns.
    #[test]
    fn decoder_survives_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(frame) = decode_frame(&bytes) {
            let _ = frame.request();
        }
        let _ = decode_reply(&bytes);
    }

    /// A valid frame with bytes flipped and its tail cut: still no panic, and every field
    /// the decoder hands back lies inside the bytes it was given.
    #[test]
    fn decoder_survives_mutated_frames(
        mut header in header(),
        request in request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = [0u8; MAX_REQUEST_FRAME + 64];
        header.request_type = request.kind() as u32;
        let len = request.emit(&header, &mut buf);
        for (at, value) in flips {
            buf[at.index(len)] = value;
        }
        let cut = cut.index(len + 1);
        if let Ok(frame) = decode_frame(&buf[..cut]) {
            if let Ok(Request::Ctr { args, .. }) = frame.request() {
                prop_assert!(args.len() <= cut);
            }
        }
    }
}

#[test]
fn payload_rules_give_einval_with_the_header_in_hand() {
    let header = RequestHeader {
        luid: 7,
        uuid: Uuid::new("u").unwrap(),
        version: 3,
        seq: 41,
        request_type: RequestType::MarkRegion as u32,
    };
    let mut buf = [0u8; MAX_REQUEST_FRAME];
    let len =
        Request::MarkRegion(RegionBatch::from_regions(&[1, 2]).unwrap()).emit(&header, &mut buf);
    // A MARK whose size is not a multiple of 8: cut cn.len and data_size by 3.
    let frame = &mut buf[..len - 3];
    let cn_len = u16::from_ne_bytes([frame[32], frame[33]]) - 3;
    frame[32..34].copy_from_slice(&cn_len.to_ne_bytes());
    frame[36 + 156..36 + 160].copy_from_slice(&13u32.to_ne_bytes());
    let decoded = decode_frame(frame).unwrap();
    assert_eq!(decoded.header.seq, 41);
    assert_eq!(decoded.request().unwrap_err().errno(), Errno::EINVAL);
}

#[test]
fn frames_without_a_request_header_get_the_eagain_ack_or_nothing() {
    assert_eq!(decode_frame(&[0u8; 10]).unwrap_err().ack_seq(), None);
    let mut frame = [0u8; 36 + 100];
    frame[16..20].copy_from_slice(&7u32.to_ne_bytes());
    frame[20..24].copy_from_slice(&1u32.to_ne_bytes());
    frame[24..28].copy_from_slice(&99u32.to_ne_bytes());
    frame[32..34].copy_from_slice(&100u16.to_ne_bytes());
    // cn.len 100 < 160: no request header to answer, so ack cn.seq with EAGAIN.
    assert_eq!(decode_frame(&frame).unwrap_err().ack_seq(), Some(99));
    // Not device-mapper's connector id: not ours, not answered.
    frame[16..20].copy_from_slice(&1u32.to_ne_bytes());
    assert_eq!(decode_frame(&frame).unwrap_err().ack_seq(), None);
}

#[test]
fn request_type_uses_the_low_eight_bits() {
    assert_eq!(RequestType::from_raw(0x0100 | 9), Some(RequestType::Flush));
    assert_eq!(RequestType::from_raw(0), None);
    assert_eq!(RequestType::from_raw(18), None);
}

#[test]
fn over_capacity_payloads_become_enospc_and_device_names_drop_where_there_is_no_room() {
    let header = RequestHeader {
        luid: 1,
        uuid: Uuid::new("u").unwrap(),
        version: 1,
        seq: 5,
        request_type: 1,
    };
    let mut buf = [0u8; MAX_REPLY_FRAME];
    let ctr = Request::Ctr { args: "8 disk /dev/x 2".into(), reconnect: false };
    let name = Ok(ReplyPayload::DeviceName("/dev/x".into()));
    // Version 1 gives CTR no reply buffer: the name is left out, the CTR still succeeds.
    let len = emit_reply(&header, reply_capacity(&ctr, 1), &name, &mut buf);
    let seen = decode_reply(&buf[..len]).unwrap();
    assert_eq!((seen.error, seen.data.len()), (0, 0));
    // Version 3 has room for it, NUL included.
    let len = emit_reply(&header, reply_capacity(&ctr, 3), &name, &mut buf);
    assert_eq!(decode_reply(&buf[..len]).unwrap().data, b"/dev/x\0");
    // A status line longer than the capacity is -ENOSPC, never an oversized reply.
    let long = Ok(ReplyPayload::Status("x".repeat(300)));
    let len = emit_reply(&header, reply_capacity(&Request::StatusInfo, 3), &long, &mut buf);
    let seen = decode_reply(&buf[..len]).unwrap();
    assert_eq!((seen.error, seen.data.len()), (-libc::ENOSPC, 0));
}
