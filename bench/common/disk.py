"""disk.py: what the disk under a directory costs right now, for the benches' headers.

Figures that hang on the disk (issue 18's targets 3 and 6: every reply
under --synchronous full waits for an fdatasync, a 10^6 gradient round
trip writes and syncs side files of 8 MB) move with the machine's disk
more than with hpod: the same build gave full/normal 65% at 8 clients on
a disk syncing 4 KiB in ~0.1 ms and 39% on one taking ~0.2 ms. The
benches print these two figures beside their own so that runs on
different machines can be told apart. Standard library only.
"""
import os
import time


def fdatasync_ms(directory, n=100):
    """p50 and p90 of n fdatasyncs after a 4 KiB pwrite, in ms: what a flush costs right now."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    ts = []
    try:
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            ts.append(1e3 * (time.perf_counter() - t))
    finally:
        os.close(fd)
        os.unlink(path)
    ts.sort()
    return ts[n // 2], ts[n * 9 // 10]


def write_sync_mb_s(directory, nbytes, n=5):
    """Median MB/s of n rounds of one pwrite of nbytes over a file's same place plus fdatasync."""
    path = os.path.join(directory, "write-probe")
    data = b"\x01" * nbytes
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    ts = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.pwrite(fd, data, 0)
            os.fdatasync(fd)
            ts.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    ts.sort()
    return nbytes / 1e6 / ts[n // 2]
