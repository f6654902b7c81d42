#!/usr/bin/python3
"""test_powercut.py: no acknowledged tell is lost to a power cut under synchronous full.

Usage: test_powercut.py PATH/TO/hpod PATH/TO/powercut-shim.so

A power cut keeps of each file what its last completed fsync/fdatasync
covered, and of each directory the entries its last completed flush
covered. The daemon runs with the LD_PRELOAD library powercut-shim.c, which
records, as they stand when a flush starts and only once it returned, each
flushed file's content (by inode) and each flushed directory's entries:
the records are what the disk would hold if the power failed at that moment
(writes after the last flush lost, a name created or renamed after its
directory's last flush as it was, a file whose name is durable but whose
data was never flushed empty). The load runs; the daemon is SIGKILLed while
it runs; a daemon without the shim then opens a state directory built from
the records alone (build_image), as after the power came back.

- full_default_keeps_acknowledged: with no --synchronous flag (full is the
  default), every acknowledged tell is in the recovered database, complete,
  with its exact value, and every acknowledged ask is there.
- normal_loses_unflushed: the control: under --synchronous normal the same
  procedure loses acknowledged tells (the WAL is synced only by
  checkpoints), so the model does catch a reply sent before its flush.
  Inconclusive (skipped) in the rare run where the last commit happened to
  be flushed by a checkpoint.

- gradient_side_files_survive: the same under full for a gradient study
  whose vectors (1.1 MB) and optimizer state live in side files under
  hpod.db.blobs/ (the ask's lazy vector file synced in the background, the
  uploaded gradient, the state file with appended records, spare files
  renamed into place): the daemon starts on the image, every acknowledged
  tell is there with its value, every acknowledged ask serves the bytes it
  served before, the optimizer counted each recovered tell once, and the
  next ask works.

What this proves and what it does not (docs/DESIGN.md, "Power cuts"): that
hpod never replies before a flush that covers the write (the ordering of
replies against fsync/fdatasync, including SQLite's own syncs at
checkpoints and the pipelined flusher's, and of side files' data and names
against the commits that refer to them), for the worst case in which every
unflushed write is lost. It does not test the drive or the kernel (a drive
that acknowledges a flush it did not do), nor torn or partially persisted
writes inside the unflushed tail (SQLite's WAL checksums are what handles
those).
docs/POWERCUT.md has the block-level manual procedure.

Prints TAP.
"""

import array
import os
import shutil
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Skip, Tap, blob_refs, check  # noqa: E402

tap = Tap()
SHIM = None

STUDY = {"name": "cut", "params": [{"name": "x", "type": "float", "low": -5, "high": 5},
                                   {"name": "c", "type": "categorical", "choices": ["a", "b"]}],
         "sampler": {"type": "random", "seed": 5}}
FILES = ("hpod.db", "hpod.db-wal")
OCTET = {"Content-Type": "application/octet-stream"}
N_VEC = 140000  # a vector of over 1 MiB: its own side file


def build_image(snap, image):
    """Fill `image` with what the disk holds after the cut, from the shim's records.

    Returns {path relative to the state directory: the record's inode identity}."""
    ids = {}

    def fill(rel, dest):
        listing = os.path.join(snap, "dir", rel.replace("/", "%") if rel else "%")
        if not os.path.exists(listing):
            return  # never flushed: its entries are not durable
        with open(listing) as f:
            entries = [line.rstrip("\n").rsplit(" ", 2) for line in f]
        for name, ident, kind in entries:
            path = os.path.join(dest, name)
            sub = name if not rel else rel + "/" + name
            if kind == "d":
                os.mkdir(path)
                fill(sub, path)
                continue
            data = os.path.join(snap, "ino", ident)
            if os.path.exists(data):
                shutil.copyfile(data, path)
            else:
                open(path, "wb").close()  # the name is durable, its data never was
            ids[sub] = ident

    fill("", image)
    return ids


def start_load(exe, tmp, extra_args):
    """The state, record and image directories, and the shim's environment."""
    state, snap, image = (os.path.join(tmp, p) for p in ("state", "snap", "image"))
    for p in (state, snap, image, os.path.join(snap, "ino"), os.path.join(snap, "dir")):
        os.mkdir(p)
    env = {"LD_PRELOAD": SHIM, "POWERCUT_DIR": state, "POWERCUT_SNAP": snap,
           # An ASan build: the shim comes before the sanitizer runtime in the link order.
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    return state, snap, image, env


def drive_then_cut(d, n_clients, round_trip, want_tells, max_iters, max_seconds):
    """The load, then the power cut (SIGKILL): round_trip(c, i, k, note) on n_clients
    threads, each on a connection of its own, at most max_iters times each, until
    want_tells tells are acknowledged or max_seconds passed. round_trip raises
    AssertionError on an unexpected answer and calls note(asked_one=(number, what it
    got)) for each acknowledged ask and note(told_one=(number, value)) for each tell.
    Returns ({number: what the ask got}, {number: told value})."""
    lock = threading.Lock()
    asked, told, errors = {}, {}, []
    stop = threading.Event()
    t_end = time.monotonic() + max_seconds

    def note(asked_one=None, told_one=None):
        with lock:
            if asked_one is not None:
                asked[asked_one[0]] = asked_one[1]
            if told_one is not None:
                told[told_one[0]] = told_one[1]

    def worker(i):
        c = d.client()
        try:
            for k in range(max_iters):
                if stop.is_set() or time.monotonic() > t_end:
                    return
                try:
                    round_trip(c, i, k, note)
                except OSError as e:
                    if not stop.is_set():
                        errors.append("thread %d: %s" % (i, e))
                    return  # the power went
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append("thread %d: %s: %s" % (i, type(e).__name__, e))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    while time.monotonic() < t_end and any(t.is_alive() for t in threads):
        with lock:
            if len(told) >= want_tells:
                break
        time.sleep(0.005)
    stop.set()  # before the cut: the errors it causes are not the load's
    d.kill()  # the power cut: nothing after this reaches the records
    for t in threads:
        t.join(30)
    check(not errors, "client errors before the cut: %s" % errors[:3])
    return asked, told


def load_then_cut(exe, tmp, extra_args, want_tells):
    """Run the load under the shim, SIGKILL, rebuild the disk from the copies.

    Returns (asked, told, stored trials by number, whether the copies equal the live files)."""
    state, snap, image, env = start_load(exe, tmp, extra_args)

    def round_trip(c, i, k, note):
        r = c.post("/v1/studies/cut/ask", {"worker": "w%d" % i})
        if r.status != 201:
            raise AssertionError("ask: %s" % r.describe())
        t = r.json
        note(asked_one=(t["number"], t["params"]))
        value = t["params"]["x"] + i * 1e-6 + k
        r = c.post("/v1/studies/cut/trials/%d/tell" % t["number"], {"value": value})
        if r.status != 200:
            raise AssertionError("tell: %s" % r.describe())
        note(told_one=(t["number"], value))

    with Daemon(exe, extra_args=extra_args, env=env, state_dir=state) as d:
        d.post("/v1/studies", STUDY).expect(201)
        asked, told = drive_then_cut(d, 8, round_trip, want_tells, 300, 20.0)
        check(len(told) >= 50, "only %d tells acknowledged before the cut" % len(told))
        ids = build_image(snap, image)
        same = True
        for f in FILES:
            if f not in ids:
                same = False
                continue
            with open(os.path.join(state, f), "rb") as a, open(os.path.join(image, f), "rb") as b:
                same = same and a.read() == b.read()
    with Daemon(exe, state_dir=image) as d:
        r = d.get("/v1/studies/cut/trials?limit=100000")
        if r.status == 404 and extra_args:
            # Under normal nothing may have been flushed, the study's creation included.
            by_no = {}
        else:
            by_no = {t["number"]: t for t in r.expect(200)["trials"]}
    return asked, told, by_no, same


def lost_tells(told, by_no):
    return [n for n in told if n not in by_no or by_no[n]["state"] != "complete" or
            by_no[n]["value"] != told[n]]


@tap.test
def full_default_keeps_acknowledged(exe):
    with tempfile.TemporaryDirectory(prefix="hpod-powercut-") as tmp:
        asked, told, by_no, _ = load_then_cut(exe, tmp, [], 600)
    lost = lost_tells(told, by_no)
    check(not lost, "%d of %d acknowledged tells lost to the power cut, e.g. %r"
          % (len(lost), len(told), [(n, told[n], by_no.get(n)) for n in lost[:3]]))
    missing = [n for n in asked if n not in by_no or by_no[n]["params"] != asked[n]]
    check(not missing, "acknowledged asks missing after the power cut: %r" % missing[:10])
    print("# full: %d asks and %d tells acknowledged before the cut; %d trials recovered"
          % (len(asked), len(told), len(by_no)))


@tap.test
def normal_loses_unflushed(exe):
    with tempfile.TemporaryDirectory(prefix="hpod-powercut-") as tmp:
        asked, told, by_no, same = load_then_cut(exe, tmp, ["--synchronous", "normal"], 600)
    lost = lost_tells(told, by_no)
    print("# normal: %d of %d acknowledged tells lost; %d trials recovered"
          % (len(lost), len(told), len(by_no)))
    if same:
        raise Skip("the last commit was flushed by a checkpoint: nothing to lose this time")
    check(lost, "under synchronous normal no acknowledged tell was lost although the WAL's "
          "tail was never flushed: the model would not catch a reply sent before its flush")


@tap.test
def gradient_side_files_survive(exe):
    n = N_VEC
    study = {"name": "g", "params": [{"name": "lam", "type": "float", "low": 1e-3, "high": 1e3,
                                      "log": True, "size": n}],
             "sampler": {"type": "gradient", "optimizer": "adam", "lr": 0.05, "seed": 11}}

    def round_trip(c, i, k, note):
        r = c.post("/v1/studies/g/ask", {"worker": "w%d" % i})
        if r.status != 201:
            raise AssertionError("ask: %s" % r.describe())
        number = r.json["number"]
        raw = c.get(r.json["params"]["lam"]["href"])
        if raw.status != 200 or len(raw.body) != 8 * n:
            raise AssertionError("download: %s" % raw.describe())
        note(asked_one=(number, raw.body))
        lam = array.array("d", raw.body)
        grad = array.array("d", [(v - 1.0) * 0.5 for v in lam]).tobytes()
        r = c.request("PUT", "/v1/studies/g/trials/%d/gradient/lam" % number, body=grad,
                      headers=OCTET)
        if r.status != 204:
            raise AssertionError("upload: %s" % r.describe())
        value = float(k) + i * 1e-3
        r = c.post("/v1/studies/g/trials/%d/tell" % number, {"value": value})
        if r.status != 200:
            raise AssertionError("tell: %s" % r.describe())
        note(told_one=(number, value))

    with tempfile.TemporaryDirectory(prefix="hpod-powercut-") as tmp:
        state, snap, image, env = start_load(exe, tmp, [])
        with Daemon(exe, env=env, state_dir=state) as d:
            d.post("/v1/studies", study).expect(201)
            asked, told = drive_then_cut(d, 3, round_trip, 12, 40, 25.0)
        check(len(told) >= 3, "only %d tells acknowledged before the cut" % len(told))
        ids = build_image(snap, image)
        check(any(p.startswith("hpod.db.blobs/") for p in ids),
              "no side file in the image: the load did not exercise them (%s)" % sorted(ids))
        with Daemon(exe, state_dir=image) as d:
            by_no = {t["number"]: t for t in
                     d.get("/v1/studies/g/trials?limit=100000").expect(200)["trials"]}
            lost = lost_tells(told, by_no)
            check(not lost, "%d of %d acknowledged tells lost, e.g. %r"
                  % (len(lost), len(told), [(x, told[x], by_no.get(x)) for x in lost[:3]]))
            for number, raw in sorted(asked.items()):
                check(number in by_no, "acknowledged ask %d missing" % number)
                got = d.get("/v1/studies/g/trials/%d/params/lam" % number)
                check(got.status == 200 and got.body == raw,
                      "trial %d's vector differs from the one served: %d, %d bytes"
                      % (number, got.status, len(got.body)))
            complete = sum(1 for t in by_no.values() if t["state"] == "complete")
            version = d.get("/v1/studies/g").expect(200)["gradient"]["version"]
            check(version == complete, "optimizer version %d after %d complete trials"
                  % (version, complete))
            t = d.post("/v1/studies/g/ask").expect(201)
            r = d.get(t["params"]["lam"]["href"])
            check(r.status == 200 and len(r.body) == 8 * n, "the next ask's vector: %s"
                  % r.describe()[:200])
            db_path = d.db
        refs = blob_refs(db_path)
        files = set(os.listdir(db_path + ".blobs"))
        check(refs <= files, "referenced side files missing: %s" % sorted(refs - files))
    print("# gradient: %d asks and %d tells acknowledged before the cut; %d trials, %d complete"
          % (len(asked), len(told), len(by_no), complete))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.stderr.write("usage: %s PATH/TO/hpod PATH/TO/powercut-shim.so\n" % sys.argv[0])
        sys.exit(2)
    SHIM = os.path.abspath(sys.argv[2])
    sys.exit(tap.run(sys.argv[1]))
