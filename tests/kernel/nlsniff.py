#!/usr/bin/env python3
"""Diagnostics only (KTEST_SNIFF=1): print every dm-log-userspace request the kernel sends.

Joins the connector group CN_IDX_DM (7) as a second, passive listener and never replies. One
line per request: time, seq, request type, luid, data size and a short view of the data.

Caveat: while this listener exists the kernel's send never fails with -ESRCH ("no listener"),
so with the daemon dead the kernel times out (15 s) and re-sends instead of starting its
reconnect loop at once. The reconnect then starts from the restarted daemon's -ESRCH reply.
"""
import socket
import struct
import sys
import time

NETLINK_CONNECTOR = 11
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
CN_IDX_DM = 7
NAMES = {1: "CTR", 2: "DTR", 3: "PRESUSPEND", 4: "POSTSUSPEND", 5: "RESUME",
         6: "GET_REGION_SIZE", 7: "IS_CLEAN", 8: "IN_SYNC", 9: "FLUSH", 10: "MARK_REGION",
         11: "CLEAR_REGION", 12: "GET_RESYNC_WORK", 13: "SET_REGION_SYNC",
         14: "GET_SYNC_COUNT", 15: "STATUS_INFO", 16: "STATUS_TABLE",
         17: "IS_REMOTE_RECOVERING"}


def main():
    out = open(sys.argv[1], "a", buffering=1) if len(sys.argv) > 1 else sys.stdout
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, CN_IDX_DM)
    while True:
        try:
            buf = sock.recv(65536)
        except OSError as error:  # ENOBUFS: the socket overflowed, requests were lost
            out.write("%.3f LOST requests: %s\n" % (time.monotonic(), error))
            continue
        # nlmsghdr (16) + cn_msg (20) + dm_ulog_request (160) + data
        req = buf[36:]
        if len(req) < 160:
            continue
        luid = struct.unpack_from("<Q", req, 0)[0]
        uuid = req[8:137].split(b"\0")[0].decode(errors="replace")
        _ver, _err, seq, rtype, dsize = struct.unpack_from("<IiIII", req, 140)
        data = req[160:160 + dsize]
        if rtype in (8, 10, 11, 13, 17, 9) and dsize % 8 == 0 and dsize:
            view = ",".join(str(v) for v in struct.unpack_from("<%dQ" % (dsize // 8), data))
        else:
            view = data[:60].decode(errors="replace").replace("\0", "\\0")
        out.write("%.3f seq=%d %s uuid=%s luid=%x in=%d %s\n" % (
            time.monotonic(), seq, NAMES.get(rtype & 0xff, str(rtype)), uuid, luid, dsize, view))


if __name__ == "__main__":
    main()
