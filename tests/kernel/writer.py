#!/usr/bin/env python3
"""Writes to many block devices at once, and checks what they hold, for the real-kernel
suite's cases 10 and 14.

    writer.py write <passes> <bytes> <device>...
    writer.py check <byte> <bytes> <device>:<offset>...
    writer.py latency <stop file> <records> <progress> <stride> <bytes> <pause> <device>...
    writer.py stalls <records> <devices> <from> <to>

`write`: each device gets `passes` rounds of `bytes` written from offset 0 with O_DIRECT (in
16 KiB writes), the round number in every byte of a round, from a pool of threads. Exits 0
when every write to every device completed, 1 on the first error (naming the device), so that
a mirror whose log server went away and came back shows as a write that completed, late.
`check`: reads `bytes` at each offset with O_DIRECT; exits 1, naming the first place that
holds anything but `byte` throughout.
`latency`: one thread per device writes 4 KiB with O_DIRECT, one `stride` apart (a new region
each write, so that every write costs the log a mark and a clear), round and round `bytes`,
`pause` seconds after each write (so that the writers leave the guest's CPUs some room, and a
process started meanwhile is not made to wait for one), until the stop file appears; it records each write's start (wall clock) and duration in
`records`, keeps per-device completion counts in `progress` (`<time> <count>...`, rewritten
every 0.2 s) and exits 1 on the first I/O error.
`stalls`: from the records, the longest write of each device among those in progress at any
time between `from` and `to` (wall clock): prints the largest and the median in ms.
"""
import mmap
import os
import statistics
import sys
import threading
import time
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


def latency(stop_file, records_path, progress_path, stride, length, pause, devices):
    stop = threading.Event()
    counts = [0] * len(devices)
    records = [[] for _ in devices]
    errors = []

    def run(i, device):
        buf = mmap.mmap(-1, 4096)
        fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
        offset = 0
        try:
            while not stop.is_set():
                buf.seek(0)
                buf.write(counts[i].to_bytes(8, "little"))
                start = time.time()
                os.pwritev(fd, [buf], offset)
                records[i].append((start, time.time() - start))
                counts[i] += 1
                offset = (offset + stride) % length
                stop.wait(pause)
        except OSError as error:
            errors.append(f"{device}: {error}")
            stop.set()
        finally:
            os.close(fd)

    threads = [threading.Thread(target=run, args=(i, d)) for i, d in enumerate(devices)]
    for thread in threads:
        thread.start()
    while not stop.is_set():
        with open(progress_path + ".new", "w") as out:
            out.write(" ".join([f"{time.time():.3f}"] + [str(c) for c in counts]) + "\n")
        os.rename(progress_path + ".new", progress_path)
        if os.path.exists(stop_file):
            stop.set()
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    with open(records_path, "w") as out:
        for i, device in enumerate(records):
            out.writelines(f"{i} {start:.6f} {took:.6f}\n" for start, took in device)
    if errors:
        print(f"writer: {errors[0]}", file=sys.stderr)
        return 1
    print(f"writer: {sum(counts)} writes to {len(devices)} devices, none failed")
    return 0


def stalls(records_path, devices, since, until):
    longest = [0.0] * devices
    with open(records_path) as records:
        for line in records:
            i, start, took = line.split()
            start, took = float(start), float(took)
            if start <= until and start + took >= since:
                longest[int(i)] = max(longest[int(i)], took)
    print(f"{max(longest) * 1000:.0f} {statistics.median(longest) * 1000:.0f}")
    return 0


def main():
    if sys.argv[1] == "latency":
        stride, length, pause = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
        return latency(sys.argv[2], sys.argv[3], sys.argv[4], stride, length, pause, sys.argv[8:])
    if sys.argv[1] == "stalls":
        return stalls(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
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
