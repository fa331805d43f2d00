#!/usr/bin/env python3
"""Power cuts for the real-kernel suite (cases 12 and 13): a writer whose acknowledged writes
survive the cut, a replay of a dm-log-writes recording up to a chosen entry, and the reboot
into what is left, checked.

    powercut.py write <mirror> <journal> <seconds> <seed> <batches file> [<leg failed flag>]
    powercut.py cuts <recording> <count> <seed>
    powercut.py end <recording>
    powercut.py reboot <name> <table> <slices prefix> <batches file> <region bytes>
                       [<recording> <image> <entries>...]

`write`: batches of 8 writes of 4 KiB with O_DIRECT to random blocks near a hot spot that
moves every 10 batches, as a busy volume's writes cluster. Each block holds (block number,
batch number) throughout. After each batch, fdatasync on the mirror (a FLUSH through the
mirror to both legs); then the batch's acknowledgement, one 512-byte record, goes to the
journal device with O_DIRECT | O_DSYNC (FUA). A record therefore exists on the journal only
if the batch's writes were made durable first, whatever is cut afterwards. The batches file
(outside what is cut) lists every batch, the one in flight at the cut included, with its start
time, and whether the flag file (which the suite creates once it has failed a leg) existed
when the batch started.

`cuts`: the entry counts to replay for `count` cuts between the recording's marks `start` and
`stop`: half just after a FLUSH or FUA entry (the state a disk that honours flushes shows
after losing power), half at a random entry (the disk also kept a prefix of what it had
cached since the last flush). `end`: the entry count through the mark `stop`.

`reboot`: for each entry count, fills <image> with zeros (as the recorded device started)
and writes that many entries of the dm-log-writes recording (its format:
drivers/md/dm-log-writes.c) onto it in place, under the slices `<prefix>a`, `b` (the legs),
`g` (the log) and `j` (the journal) that a loop device holds. Without a recording, the
devices are taken as they are (after a real power cut). Then the machine "reboots" into the
image: the log's unclean regions are read off its device, the mirror `<name>` is created
with <table>, and once the kernel has resynced it to N/N:
- the legs must be identical;
- every acknowledged batch must read back through the mirror (each of its blocks holds its
  block number and that batch or a later one throughout);
- every unclean region must be one the writer wrote (the mirror was created `nosync` on
  zeros, so no other region can differ);
- every region an acknowledged batch wrote while a leg was failed must be unclean (those
  writes reached one leg only).
One line per reboot, with the regions resynced set against the regions written in the last
second before the cut (the batch in flight included): keeping that small is the log's job.
Exit 1 at the first violation, its line saying what.
"""
import mmap
import os
import random
import struct
import subprocess
import sys
import time

BLOCK = 4096
BATCH = 8
RECORD = 512
JOURNAL_MAGIC = b"PCJ1"

LOG_MAGIC = 0x6A736677736872
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8
SUPER = struct.Struct("<QQQI")
ENTRY = struct.Struct("<QQQQ")

# The kernel's disk log (dm-log.c): "MiRr" (LE), then the clean bitmap at byte 1024.
MIRROR_MAGIC = 0x4D695272
BITMAP_AT = 1024

SYNC_DEADLINE = 120  # seconds for a resync to N/N
STALL = 60  # a resync that makes no progress for this long has stalled


class Violation(Exception):
    pass


def block_image(block, batch):
    return struct.pack("<QQ", block, batch) * (BLOCK // 16)


def device_size(fd):
    return os.lseek(fd, 0, os.SEEK_END)


def read_direct(path, length=None):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        size = device_size(fd) if length is None else length
        buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
        os.preadv(fd, [buf], 0)
        return buf
    finally:
        os.close(fd)


def write(mirror, journal, seconds, seed, batches_file, failed_flag=None):
    rng = random.Random(seed)
    data = os.open(mirror, os.O_WRONLY | os.O_DIRECT)
    acks = os.open(journal, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
    blocks = device_size(data) // BLOCK
    slots = device_size(acks) // RECORD
    buf = mmap.mmap(-1, BLOCK)
    rec = mmap.mmap(-1, RECORD)
    start = time.monotonic()
    batch = 0
    hot = 0
    with open(batches_file, "w", buffering=1) as listing:
        while time.monotonic() - start < seconds and batch + 1 < slots:
            batch += 1
            if batch % 10 == 1:
                hot = rng.randrange(blocks)
            chosen = sorted({(hot + rng.randrange(32)) % blocks for _ in range(BATCH)})
            elapsed = int((time.monotonic() - start) * 1000)
            failed = "F" if failed_flag and os.path.exists(failed_flag) else "-"
            listing.write(f"{batch} {elapsed} {failed} {' '.join(map(str, chosen))}\n")
            for block in chosen:
                buf.seek(0)
                buf.write(block_image(block, batch))
                os.pwritev(data, [buf], block * BLOCK)
            os.fdatasync(data)
            rec.seek(0)
            rec.write(b"\0" * RECORD)
            rec.seek(0)
            rec.write(JOURNAL_MAGIC + struct.pack("<QQI", batch, elapsed, len(chosen)))
            rec.write(struct.pack(f"<{len(chosen)}Q", *chosen))
            os.pwritev(acks, [rec], batch * RECORD)
    os.close(data)
    os.close(acks)
    print(f"powercut: {batch} batches in {time.monotonic() - start:.1f} s")
    return 0


def entries(recording):
    """The recording's entries: (index, flags, sector, sectors, data offset, mark name)."""
    with open(recording, "rb") as f:
        # Mapped, not read: the recording is a sparse file mostly beyond its last entry.
        raw = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    magic, version, count, sectorsize = SUPER.unpack_from(raw, 0)
    if magic != LOG_MAGIC or version != 1:
        raise SystemExit(f"powercut: {recording} is not a dm-log-writes recording")
    at = sectorsize
    found = []
    for index in range(count):
        sector, sectors, flags, data_len = ENTRY.unpack_from(raw, at)
        mark = raw[at + ENTRY.size : at + ENTRY.size + data_len].decode() if flags & MARK else ""
        at += sectorsize
        found.append((index, flags, sector, sectors, at, mark))
        if not flags & (DISCARD | MARK):
            at += sectors * sectorsize
    return raw, sectorsize, found


def marks(found):
    return {mark: index for index, _, _, _, _, mark in found if mark}


def end(recording):
    _, _, found = entries(recording)
    print(marks(found)["stop"] + 1)
    return 0


def cuts(recording, count, seed):
    _, _, found = entries(recording)
    first, last = marks(found)["start"] + 1, marks(found)["stop"]
    flushes = [i for i, flags, *_ in found[first:last] if flags & (FLUSH | FUA)]
    rng = random.Random(seed)
    at_flush = rng.sample(flushes, min(len(flushes), count // 2))
    picked = {i + 1 for i in at_flush}
    while len(picked) < count:
        picked.add(rng.randrange(first, last) + 1)
    print(" ".join(map(str, sorted(picked))))
    return 0


def replay(recording, image, upto):
    """Writes the first `upto` entries onto `image`, zeroed first; says what the last was."""
    raw, sectorsize, found = recording
    with open(image, "r+b") as out:
        size = out.seek(0, os.SEEK_END)
        out.seek(0)
        out.write(b"\0" * size)
        for _, flags, sector, sectors, data, _ in found[:upto]:
            if flags & MARK:
                continue
            length = sectors * sectorsize
            out.seek(sector * sectorsize)
            out.write(b"\0" * length if flags & DISCARD else raw[data : data + length])
    last = found[upto - 1][1] if upto else 0
    kind = "FLUSH" if last & FLUSH else "FUA" if last & FUA else "write" if upto else "nothing"
    return f"cut after entry {upto} of {len(found)}, a {kind}"


def unclean_regions(log, regions):
    image = read_direct(log, 64 * 1024)
    if struct.unpack_from("<I", image, 0)[0] != MIRROR_MAGIC:
        raise Violation("no disk-log header on the log device")
    bits = image[BITMAP_AT : BITMAP_AT + (regions + 7) // 8]
    return {r for r in range(regions) if not (bits[r // 8] >> (r % 8)) & 1}


def dmsetup(*args):
    print(f"+ dmsetup {' '.join(args)}", file=sys.stderr)
    done = subprocess.run(["dmsetup", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise Violation(f"dmsetup {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def wait_sync(name):
    """Until the mirror says N/N; a Violation at the deadline or when the resync stalls."""
    start = since = time.monotonic()
    last = None
    while True:
        ratio = dmsetup("status", name).split()[6]
        done, total = ratio.split("/")
        if done == total:
            return
        if ratio != last:
            last, since = ratio, time.monotonic()
        now = time.monotonic()
        if now - since > STALL or now - start > SYNC_DEADLINE:
            raise Violation(f"the resync of {name} stopped at {ratio}")
        time.sleep(0.2)


def remove(name):
    for _ in range(20):
        try:
            dmsetup("remove", name)
            return
        except Violation:
            time.sleep(0.5)  # briefly busy
    dmsetup("remove", name)


def acknowledged(journal):
    """The batches the journal holds, in order: (batch, elapsed ms, blocks)."""
    buf = read_direct(journal)
    acked = []
    for slot in range(1, len(buf) // RECORD):
        rec = buf[slot * RECORD : (slot + 1) * RECORD]
        if rec[:4] != JOURNAL_MAGIC:
            continue
        batch, elapsed, n = struct.unpack_from("<QQI", rec, 4)
        acked.append((batch, elapsed, struct.unpack_from(f"<{n}Q", rec, 24)))
    return sorted(acked)


def check(mirror, slices, region_bytes, listed, unclean):
    """The rules of `reboot`, on a mirror in sync; returns the summary."""
    leg_a, leg_b = read_direct(slices + "a"), read_direct(slices + "b")
    differ = [r for r in range(len(leg_a) // region_bytes)
              if leg_a[r * region_bytes : (r + 1) * region_bytes]
              != leg_b[r * region_bytes : (r + 1) * region_bytes]]
    if differ:
        raise Violation(f"regions {differ} differ after the resync; unclean were {sorted(unclean)}")
    acked = acknowledged(slices + "j")
    latest = {}
    for batch, _, blocks in acked:
        for block in blocks:
            latest[block] = batch
    data = read_direct(mirror)
    for block, batch in sorted(latest.items()):
        for off in range(block * BLOCK, (block + 1) * BLOCK, 16):
            got_block, got_batch = struct.unpack_from("<QQ", data, off)
            if got_block != block or got_batch < batch:
                raise Violation(f"block {block}, acknowledged in batch {batch}, reads back as "
                                f"block {got_block} of batch {got_batch}")
    region = lambda fields: {int(b) * BLOCK // region_bytes for b in fields[3:]}
    written = set().union(*(region(fields) for fields in listed))
    if not unclean <= written:
        raise Violation(f"regions {sorted(unclean - written)} unclean but never written")
    acked_batches = {batch for batch, _, _ in acked}
    one_leg = set().union(
        *(region(f) for f in listed if f[2] == "F" and int(f[0]) in acked_batches)
    )
    if not one_leg <= unclean:
        raise Violation(f"regions {sorted(one_leg - unclean)} written with a leg failed, clean")
    last_batch, last_ms = (acked[-1][0], acked[-1][1]) if acked else (0, 0)
    recent = set()
    for fields in listed:
        if int(fields[0]) <= last_batch + 1 and int(fields[1]) >= last_ms - 1000:
            recent |= region(fields)
    failed = f" ({len(one_leg)} written with a leg failed)" if one_leg else ""
    return (f"{len(unclean)} regions resynced{failed}, {len(recent)} written in the last "
            f"second; {len(acked)} acknowledged batches ({len(latest)} blocks) read back")


def reboot(name, table, slices, batches_file, region_bytes, cut_args):
    with open(batches_file) as listing:
        listed = [line.split() for line in listing if line.strip()]
    recording = entries(cut_args[0]) if cut_args else None
    points = [int(n) for n in cut_args[2:]] if cut_args else [None]
    regions = len(read_direct(slices + "a")) // region_bytes
    for upto in points:
        what = replay(recording, cut_args[1], upto) if recording else "after the power cut"
        try:
            if recording:
                # dm-ulogd reads the log device through the page cache: drop what it holds.
                subprocess.run(["blockdev", "--flushbufs", slices + "g"], check=True)
            unclean = unclean_regions(slices + "g", regions)
            dmsetup("create", name, "--table", table)
            wait_sync(name)
            summary = check(f"/dev/mapper/{name}", slices, region_bytes, listed, unclean)
            remove(name)
        except Violation as violation:
            print(f"{what}: {violation}")
            return 1
        print(f"{what}: {summary}", flush=True)
    return 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "write":
        flag = args[5] if len(args) > 5 else None
        return write(args[0], args[1], float(args[2]), int(args[3]), args[4], flag)
    if cmd == "cuts":
        return cuts(args[0], int(args[1]), int(args[2]))
    if cmd == "end":
        return end(args[0])
    if cmd == "reboot":
        return reboot(args[0], args[1], args[2], args[3], int(args[4]), args[5:])
    raise SystemExit(f"powercut: unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
