//! The codec's layout against the machine's own kernel headers: a C program compiled
//! against `<linux/dm-log-userspace.h>`, `<linux/connector.h>` and `<linux/netlink.h>`
//! prints every size, offset and constant, and each must equal the Rust side's.

use std::collections::BTreeMap;
use std::process::Command;

use dm_ulog_actors::wire::buffer::{
    connector_field, request_field, CN_MSG_LEN, NLMSGHDR_LEN, REQUEST_HEADER_LEN,
};
use dm_ulog_actors::wire::{self, RequestType};

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <linux/netlink.h>
#include <linux/connector.h>
#include <linux/dm-ioctl.h>
#include <linux/dm-log-userspace.h>

#define FIELD(type, f) printf(#type "." #f " %zu %zu\n", offsetof(struct type, f), sizeof(((struct type *)0)->f))
#define CONST(c) printf(#c " %lu 0\n", (unsigned long)(c))

int main(void) {
    printf("sizeof.nlmsghdr %zu 0\n", sizeof(struct nlmsghdr));
    printf("sizeof.cn_msg %zu 0\n", sizeof(struct cn_msg));
    printf("sizeof.dm_ulog_request %zu 0\n", sizeof(struct dm_ulog_request));
    FIELD(nlmsghdr, nlmsg_len); FIELD(nlmsghdr, nlmsg_type); FIELD(nlmsghdr, nlmsg_flags);
    FIELD(nlmsghdr, nlmsg_seq); FIELD(nlmsghdr, nlmsg_pid);
    FIELD(cn_msg, id.idx); FIELD(cn_msg, id.val); FIELD(cn_msg, seq); FIELD(cn_msg, ack);
    FIELD(cn_msg, len); FIELD(cn_msg, flags);
    printf("cn_msg.data %zu 0\n", offsetof(struct cn_msg, data));
    FIELD(dm_ulog_request, luid); FIELD(dm_ulog_request, uuid); FIELD(dm_ulog_request, padding);
    FIELD(dm_ulog_request, version); FIELD(dm_ulog_request, error); FIELD(dm_ulog_request, seq);
    FIELD(dm_ulog_request, request_type); FIELD(dm_ulog_request, data_size);
    printf("dm_ulog_request.data %zu 0\n", offsetof(struct dm_ulog_request, data));
    CONST(CN_IDX_DM); CONST(CN_VAL_DM_USERSPACE_LOG); CONST(CONNECTOR_MAX_MSG_SIZE);
    CONST(DM_UUID_LEN); CONST(DM_NAME_LEN); CONST(DM_ULOG_REQUEST_VERSION); CONST(DM_ULOG_REQUEST_MASK);
    CONST(NLMSG_DONE); CONST(NETLINK_CONNECTOR); CONST(NETLINK_ADD_MEMBERSHIP);
    CONST(DM_ULOG_CTR); CONST(DM_ULOG_DTR); CONST(DM_ULOG_PRESUSPEND); CONST(DM_ULOG_POSTSUSPEND);
    CONST(DM_ULOG_RESUME); CONST(DM_ULOG_GET_REGION_SIZE); CONST(DM_ULOG_IS_CLEAN);
    CONST(DM_ULOG_IN_SYNC); CONST(DM_ULOG_FLUSH); CONST(DM_ULOG_MARK_REGION);
    CONST(DM_ULOG_CLEAR_REGION); CONST(DM_ULOG_GET_RESYNC_WORK); CONST(DM_ULOG_SET_REGION_SYNC);
    CONST(DM_ULOG_GET_SYNC_COUNT); CONST(DM_ULOG_STATUS_INFO); CONST(DM_ULOG_STATUS_TABLE);
    CONST(DM_ULOG_IS_REMOTE_RECOVERING);
    return 0;
}
"#;

/// Compiles and runs the probe: name -> (offset or value, size).
fn kernel_facts() -> BTreeMap<String, (usize, usize)> {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("probe.c");
    let binary = dir.path().join("probe");
    std::fs::write(&source, PROBE).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc).arg("-o").arg(&binary).arg(&source).status();
    let status = status.unwrap_or_else(|e| panic!("{cc} (install gcc and linux-libc-dev): {e}"));
    assert!(status.success(), "the probe did not compile against the kernel headers");
    let output = Command::new(&binary).output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let name = parts.next().unwrap().to_owned();
            let a = parts.next().unwrap().parse().unwrap();
            let b = parts.next().unwrap().parse().unwrap();
            (name, (a, b))
        })
        .collect()
}

#[test]
fn codec_layout_matches_the_kernel_headers() {
    let facts = kernel_facts();
    let field =
        |name: &str| facts.get(name).copied().unwrap_or_else(|| panic!("probe lacks {name}"));
    let range = |r: std::ops::Range<usize>| (r.start, r.len());
    // The connector fields are named from the datagram's start; the C offsets from each struct's.
    let in_cn = |r: std::ops::Range<usize>| (r.start - NLMSGHDR_LEN, r.len());

    assert_eq!(field("sizeof.nlmsghdr").0, NLMSGHDR_LEN);
    assert_eq!(field("sizeof.cn_msg").0, CN_MSG_LEN);
    assert_eq!(field("sizeof.dm_ulog_request").0, REQUEST_HEADER_LEN);
    assert_eq!(field("nlmsghdr.nlmsg_len"), range(connector_field::NLMSG_LEN));
    assert_eq!(field("nlmsghdr.nlmsg_type"), range(connector_field::NLMSG_TYPE));
    assert_eq!(field("nlmsghdr.nlmsg_flags"), range(connector_field::NLMSG_FLAGS));
    assert_eq!(field("nlmsghdr.nlmsg_seq"), range(connector_field::NLMSG_SEQ));
    assert_eq!(field("nlmsghdr.nlmsg_pid"), range(connector_field::NLMSG_PID));
    assert_eq!(field("cn_msg.id.idx"), in_cn(connector_field::CN_IDX));
    assert_eq!(field("cn_msg.id.val"), in_cn(connector_field::CN_VAL));
    assert_eq!(field("cn_msg.seq"), in_cn(connector_field::CN_SEQ));
    assert_eq!(field("cn_msg.ack"), in_cn(connector_field::CN_ACK));
    assert_eq!(field("cn_msg.len"), in_cn(connector_field::CN_LEN));
    assert_eq!(field("cn_msg.flags"), in_cn(connector_field::CN_FLAGS));
    assert_eq!(field("cn_msg.data").0, CN_MSG_LEN);
    assert_eq!(field("dm_ulog_request.luid"), range(request_field::LUID));
    assert_eq!(field("dm_ulog_request.uuid"), range(request_field::UUID));
    assert_eq!(field("dm_ulog_request.padding"), range(request_field::PADDING));
    assert_eq!(field("dm_ulog_request.version"), range(request_field::VERSION));
    assert_eq!(field("dm_ulog_request.error"), range(request_field::ERROR));
    assert_eq!(field("dm_ulog_request.seq"), range(request_field::SEQ));
    assert_eq!(field("dm_ulog_request.request_type"), range(request_field::REQUEST_TYPE));
    assert_eq!(field("dm_ulog_request.data_size"), range(request_field::DATA_SIZE));
    assert_eq!(field("dm_ulog_request.data").0, REQUEST_HEADER_LEN);
}

#[test]
fn codec_constants_match_the_kernel_headers() {
    let facts = kernel_facts();
    let value =
        |name: &str| facts.get(name).unwrap_or_else(|| panic!("probe lacks {name}")).0 as u64;
    assert_eq!(value("CN_IDX_DM"), u64::from(wire::CN_IDX_DM));
    assert_eq!(value("CN_VAL_DM_USERSPACE_LOG"), u64::from(wire::CN_VAL_DM_USERSPACE_LOG));
    assert_eq!(value("CONNECTOR_MAX_MSG_SIZE"), wire::CONNECTOR_MAX_MSG_SIZE as u64);
    assert_eq!(value("DM_UUID_LEN"), wire::DM_UUID_LEN as u64);
    assert_eq!(value("DM_NAME_LEN"), wire::DM_NAME_LEN as u64);
    assert_eq!(value("DM_ULOG_REQUEST_VERSION"), u64::from(wire::DM_ULOG_REQUEST_VERSION));
    assert_eq!(value("DM_ULOG_REQUEST_MASK"), 0xFF);
    assert_eq!(value("NLMSG_DONE"), u64::from(wire::NLMSG_DONE));
    assert_eq!(value("NETLINK_CONNECTOR"), libc::NETLINK_CONNECTOR as u64);
    assert_eq!(value("NETLINK_ADD_MEMBERSHIP"), libc::NETLINK_ADD_MEMBERSHIP as u64);
    for kind in RequestType::ALL {
        let name = format!("DM_ULOG_{}", kind.name());
        assert_eq!(value(&name), kind as u64, "{name}");
    }
}
