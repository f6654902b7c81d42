#!/usr/bin/python3
"""test_diskfull.py: hpod's database on a file system that fills up or turns read-only.

Usage: test_diskfull.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)

The database lives on a 4 MiB tmpfs mounted by the test (CI runs as root). When the
mount is refused, the test says so and falls back to RLIMIT_FSIZE: the running hpod's
limit is lowered to 1 byte with prlimit (every write fails with EFBIG) and lifted again
to free it.

- disk_full_under_load: 3 clients ask/tell in bounded loops while the test fills the
  file system. Every write answers 2xx or 503 `unavailable` (with the error body);
  GETs and /metrics keep answering 200; /healthz answers 503 while a commit fails; a
  tell that got 503 left its trial running. Once the filler is removed, writes
  succeed again with no restart, the told-back trials complete, /healthz is 200.
  After a restart every acknowledged ask and tell is stored with its exact value,
  numbers are 0..N-1 (a failed ask used none up), and PRAGMA integrity_check is ok.
- file_size_limit_under_load: the same with the RLIMIT_FSIZE method whatever the
  mount does (SQLite's I/O errors rather than SQLITE_FULL; hpod survives SIGXFSZ).
- healthz_recovers_without_a_write: on an idle daemon, a write on the full file
  system answers 503 and /healthz 503; after freeing space /healthz is 200 before
  any write tries (hpod watches the free space), then the refused tell succeeds and
  the next ask gets the next unused number.
- read_only_remount: `mount -o remount,ro` of the database's file system under a
  running hpod (skipped, with the kernel's reason, when the kernel refuses it while
  hpod holds files open for writing): same promises, recovery after remount,rw.

Prints TAP.
"""

import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Skip, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()
FS_BYTES = 4 << 20
STUDY = {"name": "s", "params": [{"name": "x", "type": "float", "low": -5, "high": 5},
                                 {"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}],
         "sampler": {"type": "random", "seed": 5}}


class Storage:
    """A small file system for the database: a tmpfs, or (fsize=True, or when the mount
    is refused) a plain directory where a full disk is played by lowering the running
    hpod's RLIMIT_FSIZE to 1 byte (prlimit): every write then fails with EFBIG."""

    def __init__(self, exe, fsize=False):
        self.tmp = tempfile.TemporaryDirectory(prefix="hpod-diskfull-")
        self.dir = os.path.join(self.tmp.name, "fs")
        os.mkdir(self.dir)
        self.exe = exe
        self.pid = None
        self.limit = None  # hpod's RLIMIT_FSIZE before fill() lowered it
        self.mounted = False
        if fsize:
            return
        if os.environ.get("HPOD_TEST_NO_MOUNT"):
            r = subprocess.CompletedProcess([], 1, "", "HPOD_TEST_NO_MOUNT is set")
        else:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % FS_BYTES, "tmpfs",
                                self.dir], capture_output=True, text=True)
        self.mounted = r.returncode == 0
        if not self.mounted:
            print("# mount -t tmpfs failed (%s): falling back to RLIMIT_FSIZE"
                  % r.stderr.strip())

    def fill(self):
        """Fill the file system up to ENOSPC (or cap hpod's file size); returns bytes written."""
        n = 0
        if not self.mounted:
            # hpod ignores SIGXFSZ itself: the signal would otherwise kill it here.
            self.limit = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
            # The soft limit only: raising a hard limit again needs CAP_SYS_RESOURCE.
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (1, self.limit[1]))
            return 0
        path = os.path.join(self.dir, "filler")
        with open(path, "ab", buffering=0) as f:
            for size in (1 << 16, 4096, 512, 64, 1):
                chunk = b"\0" * size
                for _ in range(FS_BYTES // size + 1):
                    try:
                        f.write(chunk)
                    except OSError:
                        break
                    n += size
        return n

    def free(self):
        if not self.mounted:
            if self.limit is not None:
                try:
                    resource.prlimit(self.pid, resource.RLIMIT_FSIZE, self.limit)
                except ProcessLookupError:
                    pass
            return
        path = os.path.join(self.dir, "filler")
        if os.path.exists(path):
            os.unlink(path)

    def close(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.dir], capture_output=True)
        self.tmp.cleanup()


class StorageDaemon(Daemon):
    """hpod with its database in storage.dir (its log and notify socket stay outside)."""

    def __init__(self, storage):
        super().__init__(storage.exe)
        self.storage = storage
        self.db = os.path.join(storage.dir, "hpod.db")

    def start(self):
        super().start()
        self.storage.pid = self.proc.pid
        return self


def daemon_on(storage):
    return StorageDaemon(storage)


def expect_write(r, ok_status, what):
    """A write answers ok_status or 503 unavailable with the error body; True if it worked."""
    if r.status == ok_status:
        return True
    r.expect_error(503, "unavailable", None, what)
    return False


class Load:
    """Clients that ask and tell in bounded loops, recording what was acknowledged."""

    def __init__(self, d, nclients=3, iters=2000, seconds=60.0):
        self.d = d
        self.lock = threading.Lock()
        self.asked = {}   # number -> params
        self.told = {}    # number -> value
        self.refused = 0  # 503 answers
        self.errors = []
        self.stop = threading.Event()
        self.t_end = time.monotonic() + seconds
        self.iters = iters
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(nclients)]
        for t in self.threads:
            t.start()

    def run(self, i):
        c = self.d.client()
        pending = []  # trials asked but whose tell got 503
        try:
            for k in range(self.iters):
                if self.stop.is_set() or time.monotonic() > self.t_end:
                    return
                if pending:
                    number = pending[-1]
                else:
                    r = c.post("/v1/studies/s/ask", {"worker": "w%d" % i})
                    if not expect_write(r, 201, "ask"):
                        with self.lock:
                            self.refused += 1
                        time.sleep(0.01)
                        continue
                    number = r.json["number"]
                    with self.lock:
                        check(number not in self.asked, "number %d handed out twice" % number)
                        self.asked[number] = r.json["params"]
                value = i + k * 1e-3 + 1.0000000000000002
                r = c.post("/v1/studies/s/trials/%d/tell" % number, {"value": value})
                if expect_write(r, 200, "tell"):
                    if pending:
                        pending.pop()
                    with self.lock:
                        self.told[number] = value
                    continue
                with self.lock:
                    self.refused += 1
                if not pending:
                    pending.append(number)
                # The refused tell changed nothing: the trial still runs.
                t = c.get("/v1/studies/s/trials/%d" % number).expect(200, "GET while full")
                check(t["state"] == "running", "trial %d is %s after a refused tell"
                      % (number, t["state"]))
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.errors.append("client %d: %s: %s" % (i, type(e).__name__, e))
        finally:
            c.close()

    def refusals(self):
        with self.lock:
            return self.refused

    def acked(self):
        with self.lock:
            return len(self.told)

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        check(not self.errors, "client errors: %s" % self.errors[:3])


def wait_for(cond, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    check(False, "timed out waiting for %s" % what)


def verify_after_restart(d, load):
    d.restart()
    lst = d.get("/v1/studies/s/trials?limit=100000").expect(200)
    by_no = {t["number"]: t for t in lst["trials"]}
    check(sorted(by_no) == list(range(len(by_no))), "numbers stored are not 0..N-1: %r"
          % sorted(by_no)[:20])
    lost = [n for n, v in load.told.items()
            if n not in by_no or by_no[n]["state"] != "complete" or by_no[n]["value"] != v]
    check(not lost, "%d acknowledged tells lost, e.g. %r" % (len(lost), lost[:5]))
    missing = [n for n, p in load.asked.items() if n not in by_no or by_no[n]["params"] != p]
    check(not missing, "acknowledged asks missing: %r" % missing[:5])
    d.stop()
    db = sqlite3.connect(d.db)
    try:
        res = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()
    check(res == [("ok",)], "integrity_check: %r" % res[:5])
    return len(by_no)


def full_phase(d, storage, load, make_full, make_writable, what):
    """Common part: storage stops writing, writes are refused, reads work, then it comes back."""
    wait_for(lambda: load.acked() >= 20, 30, "20 tells before %s" % what)
    make_full()
    # The clients go on; wait until writes are refused (bounded).
    wait_for(lambda: load.refusals() >= 10, 30, "refused writes after %s" % what)
    d.get("/healthz").expect_error(503, "unavailable", None, "healthz while storage cannot write")
    d.get("/v1/studies/s").expect(200, "GET study while %s" % what)
    d.get("/v1/studies/s/trials?limit=5").expect(200, "GET trials while %s" % what)
    d.get("/metrics").expect(200, "metrics while %s" % what)
    refused_before = load.refusals()
    acked_before = load.acked()
    make_writable()
    # No restart: the clients' next writes succeed and /healthz recovers.
    wait_for(lambda: load.acked() >= acked_before + 20, 30, "tells after recovery")
    load.join()
    d.get("/healthz").expect(200, "healthz after recovery")
    t = d.post("/v1/studies/s/ask").expect(201, "ask after recovery")
    d.post("/v1/studies/s/trials/%d/tell" % t["number"], {"value": 0.5}).expect(200)
    load.asked[t["number"]] = t["params"]
    load.told[t["number"]] = 0.5
    running = [x for x in d.get("/v1/studies/s/trials?limit=100000").expect(200)["trials"]
               if x["state"] == "running"]
    check(not running, "trials left running after the clients ended: %r"
          % [x["number"] for x in running][:5])
    n = verify_after_restart(d, load)
    print("# %s: %d tells acknowledged, %d writes refused with 503 (%d before recovery), "
          "%d trials stored" % (what, len(load.told), load.refusals(), refused_before, n))


@tap.test
def disk_full_under_load(exe):
    storage = Storage(exe)
    try:
        d = daemon_on(storage)
        with d:
            d.post("/v1/studies", STUDY).expect(201)
            load = Load(d)
            try:
                filled = []
                full_phase(d, storage, load, lambda: filled.append(storage.fill()),
                           storage.free, "disk full")
            finally:
                load.stop.set()
                storage.free()
    finally:
        storage.close()


@tap.test
def file_size_limit_under_load(exe):
    """The same under load with SQLite's I/O errors instead of SQLITE_FULL: the running
    hpod's RLIMIT_FSIZE drops to 1 byte (every write fails with EFBIG, which hpod must
    survive: SIGXFSZ is ignored), then is lifted again."""
    storage = Storage(exe, fsize=True)
    try:
        d = daemon_on(storage)
        with d:
            d.post("/v1/studies", STUDY).expect(201)
            load = Load(d)
            try:
                full_phase(d, storage, load, storage.fill, storage.free, "RLIMIT_FSIZE 1 byte")
            finally:
                load.stop.set()
                storage.free()
    finally:
        storage.close()


@tap.test
def healthz_recovers_without_a_write(exe):
    """Idle daemon: a write on the full file system fails, /healthz says 503; once
    space is freed /healthz says 200 before any write tries, and the refused tell
    then succeeds."""
    storage = Storage(exe)
    try:
        if not storage.mounted:
            raise Skip("no tmpfs mount here (after EFBIG /healthz waits for a commit)")
        d = daemon_on(storage)
        with d:
            d.post("/v1/studies", STUDY).expect(201)
            t = d.post("/v1/studies/s/ask").expect(201)
            storage.fill()
            refused = None
            # Each write may still fit in pages SQLite already holds: try until one fails.
            for i in range(500):
                r = d.post("/v1/studies/s/ask")
                if r.status != 201:
                    refused = r
                    break
            check(refused is not None, "500 asks on a full file system all succeeded")
            refused.expect_error(503, "unavailable", None, "ask on a full file system")
            before = d.snapshot()
            d.post("/v1/studies/s/trials/%d/tell" % t["number"], {"value": 2.5}).expect_error(
                503, "unavailable", None, "tell on a full file system")
            d.get("/healthz").expect_error(503, "unavailable", None, "healthz while full")
            check(d.snapshot() == before, "a refused tell changed the state")
            storage.free()
            wait_for(lambda: d.get("/healthz").status == 200, 10, "/healthz 200 after freeing")
            d.post("/v1/studies/s/trials/%d/tell" % t["number"], {"value": 2.5}).expect(200)
            n = d.post("/v1/studies/s/ask").expect(201)["number"]
            check(n == i + 1, "ask after recovery got number %d, expected %d" % (n, i + 1))
    finally:
        storage.free()
        storage.close()


@tap.test
def read_only_remount(exe):
    storage = Storage(exe)
    try:
        if not storage.mounted:
            raise Skip("no tmpfs mount here")
        d = daemon_on(storage)
        refused = []
        with d:
            d.post("/v1/studies", STUDY).expect(201)
            load = Load(d)
            try:
                def ro():
                    r = subprocess.run(["mount", "-o", "remount,ro", storage.dir],
                                       capture_output=True, text=True)
                    if r.returncode != 0:
                        load.join()
                        refused.append(" ".join(r.stderr.split()))
                        raise StopIteration

                def rw():
                    subprocess.run(["mount", "-o", "remount,rw", storage.dir], check=True)
                try:
                    full_phase(d, storage, load, ro, rw, "read-only remount")
                except StopIteration:
                    pass
            finally:
                load.stop.set()
                subprocess.run(["mount", "-o", "remount,rw", storage.dir], capture_output=True)
    finally:
        storage.close()
    if refused:
        # Linux refuses it while a file is open for writing (hpod holds the database).
        raise Skip("remount,ro refused: %s" % refused[0])


if __name__ == "__main__":
    tap.run(exe_from_argv())
