#!/usr/bin/env python3
"""Writes to many block devices at once, and checks what they hold, for the real-kernel
suite's case 10.

    writer.py write <passes> <bytes> <device>...
    writer.py check <byte> <bytes> <device>:<offset>...

`write`: each device gets `passes` rounds of `bytes` written from offset 0 with O_DIRECT (in
16 KiB writes), the round number in every byte of a round, from a pool of threads. Exits 0
when every write to every device completed, 1 on the first error (naming the device), so that
a mirror whose log server went away and came back shows as a write that completed, late.
`check`: reads `bytes` at each offset with O_DIRECT; exits 1, naming the first place that
holds anything but `byte` throughout.
"""
import mmap
import os
import sys
from concurrent.futures import ThreadPoolExecutor

CHUNK = 16 * 1024


def write_device(device, passes, length):
    buf = mmap.mmap(-1, CHUNK)  # page-aligned, as O_DIRECT wants
    fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
    try:
        for round_ in range(1, passes + 1):
            buf.seek(0)
            buf.write(bytes([round_]) * CHUNK)
            for offset in range(0, length, CHUNK):
                if os.pwritev(fd, [buf], offset) != CHUNK:
                    raise OSError(f"short write at {offset}")
    finally:
        os.close(fd)


def check(places, value, length):
    buf = mmap.mmap(-1, length)
    for place in places:
        device, offset = place.rsplit(":", 1)
        fd = os.open(device, os.O_RDONLY | os.O_DIRECT)
        try:
            os.preadv(fd, [buf], int(offset))
        finally:
            os.close(fd)
        if buf[:] != bytes([value]) * length:
            print(f"writer: {place} does not hold {value} throughout", file=sys.stderr)
            return 1
    print(f"writer: {len(places)} places hold {value} throughout")
    return 0


def main():
    if sys.argv[1] == "check":
        return check(sys.argv[4:], int(sys.argv[2]), int(sys.argv[3]))
    passes, length, devices = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = {pool.submit(write_device, d, passes, length): d for d in devices}
        for future, device in futures.items():
            try:
                future.result()
            except OSError as error:
                print(f"writer: {device}: {error}", file=sys.stderr)
                return 1
    print(f"writer: {len(devices)} devices, {passes} passes of {length} bytes, all written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
