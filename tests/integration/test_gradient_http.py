#!/usr/bin/python3
"""test_gradient_http.py: the gradient sampler over HTTP (issue 5):
docs/ALGORITHMS.md §7.7's worked examples with a client that computes the
closed-form hypergradient of the bilevel quadratic, a restart in the middle of
E1 that continues bit for bit, E6 through the binary endpoints, stale
gradients from interleaved clients, and bad gradients that change nothing.

Usage: test_gradient_http.py PATH/TO/hpod. Prints TAP.
"""

import math
import os
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, blob_refs, check, exe_from_argv  # noqa: E402

tap = Tap()
OCTET = {"Content-Type": "application/octet-stream"}
LAM = {"name": "lam", "type": "float", "low": 1e-3, "high": 1e3, "log": True}


def hypergrad(lam, a, b):
    """dL/dlam of L = 1/2 (w* - b)^2 with w* = a / (1 + lam)."""
    w = a / (1.0 + lam)
    return 0.5 * (w - b) ** 2, -(w - b) * a / (1.0 + lam) ** 2


def ask_vector(d, name):
    """Ask in study `name`; the trial's number and its vector lam, downloaded as bytes."""
    t = d.post("/v1/studies/%s/ask" % name).expect(201)
    return t["number"], d.get(t["params"]["lam"]["href"]).body


def upload(d, name, number, body):
    """PUT the gradient bytes of lam for trial `number`; expects 204."""
    r = d.request("PUT", "/v1/studies/%s/trials/%d/gradient/lam" % (name, number),
                  body=body, headers=OCTET)
    check(r.status == 204, "gradient upload: %d" % r.status)


def study(d, name, sampler, params=None):
    body = {"name": name, "params": params or [LAM], "sampler": dict({"type": "gradient"}, **sampler)}
    d.post("/v1/studies", body).expect(201)


def step(d, name, a=3.0, b=1.0):
    t = d.post("/v1/studies/%s/ask" % name).expect(201)
    lam = t["params"]["lam"]
    loss, g = hypergrad(lam, a, b)
    d.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]),
           {"value": loss, "gradient": {"lam": g}}).expect(200)
    return lam


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(b))


@tap.test
def e1_sgd_matches_the_table_and_survives_sigkill(exe):
    want = [1.0, 1.454991414618, 1.708782514620, 1.842073901316, 1.913451932998]
    with Daemon(exe) as d:
        study(d, "e1", {"optimizer": "sgd", "lr": 1.0, "seed": 1})
        got = [step(d, "e1") for _ in range(3)]
        d.kill()          # SIGKILL in the middle: every acknowledged tell is durable
        d.start()
        got += [step(d, "e1") for _ in range(2)]
        for k, (g, w) in enumerate(zip(got, want)):
            check(close(g, w), "E1 step %d: lam %.12f, want %.12f" % (k, g, w))
        st = d.get("/v1/studies/e1").expect(200)
        check(st["gradient"]["version"] == 5, "version after 5 tells: %r" % st["gradient"])
        # 36 steps in all reach |lam - 2| < 1e-9 (the table's note).
        lam = None
        for _ in range(36 - 5):
            lam = step(d, "e1")
        lam = d.post("/v1/studies/e1/ask").expect(201)["params"]["lam"]
        check(abs(lam - 2.0) < 1e-9, "after 36 steps |lam-2| = %g" % abs(lam - 2.0))


@tap.test
def e1_restart_is_bit_for_bit(exe):
    with Daemon(exe) as ref, Daemon(exe) as d:
        study(ref, "e", {"optimizer": "sgd", "lr": 1.0, "seed": 1})
        study(d, "e", {"optimizer": "sgd", "lr": 1.0, "seed": 1})
        a = [step(ref, "e") for _ in range(8)]
        b = [step(d, "e") for _ in range(4)]
        d.stop()
        d.start()
        b += [step(d, "e") for _ in range(4)]
        check(a == b, "restart changed the sequence:\n%r\n%r" % (a, b))


@tap.test
def e2_adam_and_e3_momentum(exe):
    e2 = [1.0, 1.105170915129, 1.220470055188, 1.345735043033, 1.480118560564,
          1.621861466923, 1.768131211202]
    e3 = [1.0, 1.206230249421, 1.632301000476, 2.251490698929, 2.933881528714]
    with Daemon(exe) as d:
        study(d, "e2", {"optimizer": "adam", "lr": 0.1})
        got = [step(d, "e2") for _ in range(len(e2))]
        for k, (g, w) in enumerate(zip(got, e2)):
            check(close(g, w), "E2 step %d: %.12f want %.12f" % (k, g, w))
        study(d, "e3", {"optimizer": "momentum", "lr": 0.5, "momentum": 0.9})
        got = [step(d, "e3") for _ in range(len(e3))]
        for k, (g, w) in enumerate(zip(got, e3)):
            check(close(g, w), "E3 step %d: %.12f want %.12f" % (k, g, w))


@tap.test
def e6_vector_through_binary_endpoints(exe):
    n = 5000
    a = [2.0 + (i % 5) for i in range(n)]
    want = {0: 1.0, 1: 1.105170915129, 2: 1.105170916970, 3: 1.105170917486, 4: 1.105170917707}
    with Daemon(exe) as d:
        study(d, "e6", {"optimizer": "adam", "lr": 0.1},
              params=[dict(LAM, size=n)])
        t = d.post("/v1/studies/e6/ask").expect(201)
        href = t["params"]["lam"]["href"]
        r = d.get(href)
        check(r.status == 200 and len(r.body) == 8 * n, "download %d bytes" % len(r.body))
        lam = struct.unpack("<%dd" % n, r.body)
        grad = [hypergrad(lam[i], a[i], 1.0)[1] for i in range(n)]
        # A body of the wrong length changes nothing.
        d.request("PUT", "/v1/studies/e6/trials/0/gradient/lam", body=struct.pack("<3d", 1, 2, 3),
                  headers=OCTET).expect_error(
            400, "invalid_argument", "gradient")
        # The first element that is not finite is named, wherever it is (blocks of 512).
        for places in ((7,), (511, 4000), (512,), (n - 1,), (3000, 1500)):
            bad = list(grad)
            for i, v in zip(places, (float("inf"), float("nan"), float("-inf"))):
                bad[i] = v
            err = d.request("PUT", "/v1/studies/e6/trials/0/gradient/lam",
                            body=struct.pack("<%dd" % n, *bad),
                            headers=OCTET).expect_error(
                400, "invalid_argument", "gradient")
            check(err["message"] == "element %d is not finite" % min(places),
                  "non-finite at %s: %r" % (places, err["message"]))
        r = d.request("PUT", "/v1/studies/e6/trials/0/gradient/lam",
                      body=struct.pack("<%dd" % n, *grad),
                      headers=OCTET)
        check(r.status == 204, "gradient upload: %d" % r.status)
        d.post("/v1/studies/e6/trials/0/tell", {"value": 0.0}).expect(200)
        t = d.post("/v1/studies/e6/ask").expect(201)
        lam1 = struct.unpack("<%dd" % n, d.get(t["params"]["lam"]["href"]).body)
        for i in range(10):
            check(close(lam1[i], want[i % 5]), "E6 lam[%d] = %.12f want %.12f"
                  % (i, lam1[i], want[i % 5]))
        check(all(close(lam1[i], want[i % 5]) for i in range(n)), "every element of E6")


@tap.test
def stale_gradient_is_scaled(exe):
    # Two workers ask version 0; the first tell steps to version 1; the second
    # gradient is one version stale and counts half (E7: 1/(1+tau)).
    with Daemon(exe) as d:
        study(d, "st", {"optimizer": "sgd", "lr": 1.0})
        t0 = d.post("/v1/studies/st/ask").expect(201)
        t1 = d.post("/v1/studies/st/ask").expect(201)
        check(t0["params"]["lam"] == t1["params"]["lam"] == 1.0, "both at version 0")
        g = hypergrad(1.0, 3.0, 1.0)[1]
        d.post("/v1/studies/st/trials/0/tell", {"value": 0.1, "gradient": {"lam": g}}).expect(200)
        d.post("/v1/studies/st/trials/1/tell", {"value": 0.1, "gradient": {"lam": g}}).expect(200)
        lam = d.post("/v1/studies/st/ask").expect(201)["params"]["lam"]
        u = 0.0 - 1.0 * (1.0 * g)          # step 1: fresh gradient, g = lam * G with lam = 1
        u = u - 1.0 * (1.0 * g) / 2.0      # step 2: stale by one version, scaled by 1/2
        check(close(lam, math.exp(u)), "lam %.12f want %.12f" % (lam, math.exp(u)))


@tap.test
def bad_gradients_change_nothing(exe):
    with Daemon(exe) as d:
        params = [LAM, {"name": "k", "type": "int", "low": 1, "high": 5},
                  {"name": "v", "type": "float", "low": 0, "high": 1, "size": 3}]
        study(d, "bad", {"optimizer": "sgd", "lr": 1.0}, params=params)
        d.post("/v1/studies/bad/ask").expect(201)
        before = d.snapshot()
        cases = [({"lam": [1.0]}, "gradient.lam"),
                 ({"v": [1.0, 2.0]}, "gradient.v"),
                 ({"k": 1.0}, "gradient.k"),
                 ({"nope": 1.0}, "gradient.nope"),
                 ({"v": [1.0, "x", 2.0]}, "gradient.v"),
                 ([1, 2], "gradient")]
        for grad, field in cases:
            d.post("/v1/studies/bad/trials/0/tell", {"value": 1.0, "gradient": grad}
                   ).expect_error(400, "invalid_argument", field)
        # NaN and infinity are not JSON; the body is rejected as a whole.
        d.post("/v1/studies/bad/trials/0/tell",
               '{"value": 1.0, "gradient": {"lam": NaN}}').expect_error(400, "invalid_json")
        check(d.snapshot() == before, "a rejected gradient changed state")


@tap.test
def extreme_gradients_survive_a_restart(exe):
    """Finite gradients near the largest double are valid input. Adam's second moment (g^2)
    and a momentum sum then overflow; before, the infinity was saved, the restart refused
    the state and the study's optimizer started over without a word (version back to 0).
    Now they saturate: the version and the iterate survive the restart."""
    with Daemon(exe) as d:
        study(d, "huge", {"optimizer": "adam", "lr": 0.1})
        study(d, "huge-m", {"optimizer": "momentum", "lr": 0.1})
        for name in ("huge", "huge-m"):
            for g in (0.5, 1.7e308, -1.7e308, 1e300, 0.5, 1.7e308, 0.5, 0.5):
                t = d.post("/v1/studies/%s/ask" % name).expect(201)
                d.post("/v1/studies/%s/trials/%d/tell" % (name, t["number"]),
                       {"value": 1.0, "gradient": {"lam": g}}).expect(200)
        before = {name: (d.get("/v1/studies/" + name).expect(200)["gradient"]["version"],
                         d.post("/v1/studies/%s/ask" % name).expect(201)["params"]["lam"])
                  for name in ("huge", "huge-m")}
        d.stop()
        d.start()
        for name in ("huge", "huge-m"):
            version = d.get("/v1/studies/" + name).expect(200)["gradient"]["version"]
            lam = d.post("/v1/studies/%s/ask" % name).expect(201)["params"]["lam"]
            check(before[name] == (8, lam) and version == 8,
                  "%s: version and iterate %r before the restart, %r after"
                  % (name, before[name], (version, lam)))
        check("does not load" not in d.log_text(), "a state was refused at the restart")



@tap.test
def refused_state_is_logged(exe):
    """A stored sampler state its sampler refuses at load (here: one with an infinite
    moment, as the build before saturation saved after an overflowing gradient) is said in
    the log, naming the study; the study still serves, its sampler started afresh."""
    import sqlite3
    with Daemon(exe) as d:
        study(d, "bad-state", {"optimizer": "adam", "lr": 0.1})
        for _ in range(3):
            step(d, "bad-state")
        d.stop()
        db = sqlite3.connect(d.db)
        try:
            blob = bytearray(db.execute("SELECT sampler_state FROM studies WHERE name = ?",
                                        ("bad-state",)).fetchone()[0])
            check(blob[:8] == b"HPOGRD01", "the state is not inline: %r" % bytes(blob[:16]))
            # Header (8 + 13 words + lr, a), then u, m, v: v's one element set to +inf.
            struct.pack_into("<d", blob, 8 + 13 * 8 + 16 + 2 * 8, float("inf"))
            db.execute("UPDATE studies SET sampler_state = ? WHERE name = ?",
                       (bytes(blob), "bad-state"))
            db.commit()
        finally:
            db.close()
        d.start()
        check("study 'bad-state': its stored gradient sampler state" in d.log_text() and
              "does not load" in d.log_text(), "no warning in the log:\n" + d.log_tail())
        st = d.get("/v1/studies/bad-state").expect(200)
        check(st["trials"]["complete"] == 3 and st["gradient"]["version"] == 0,
              "after the refused state: %r %r" % (st["trials"], st["gradient"]))
        step(d, "bad-state")


@tap.test
def big_state_rolls_back_from_disk(exe):
    """A state of over 1 MiB (adam on 60,000 elements) is kept only on disk: a tell whose
    write fails (another process holds the write lock) answers 503 and the sampler reads
    its committed state back, so the retried tell and the next ask give exactly what a
    study that never failed gives."""
    import sqlite3
    n = 60000
    a = [2.0 + (i % 5) for i in range(n)]

    with Daemon(exe) as d:
        for name in ("fails", "twin"):
            study(d, name, {"optimizer": "adam", "lr": 0.1, "seed": 7},
                  params=[dict(LAM, size=n)])
        rounds = []
        for name in ("fails", "twin"):
            number, raw = ask_vector(d, name)
            lam = struct.unpack("<%dd" % n, raw)
            grad = struct.pack("<%dd" % n, *[hypergrad(lam[i], a[i], 1.0)[1] for i in range(n)])
            upload(d, name, number, grad)
            d.post("/v1/studies/%s/trials/%d/tell" % (name, number), {"value": 1.0}).expect(200)
            rounds.append((number, raw, grad))
        check(rounds[0][1] == rounds[1][1], "the twins start at the same point")
        number, raw = ask_vector(d, "fails")
        lam = struct.unpack("<%dd" % n, raw)
        grad = struct.pack("<%dd" % n, *[hypergrad(lam[i], a[i], 1.0)[1] for i in range(n)])
        upload(d, "fails", number, grad)
        before = d.snapshot()
        db = sqlite3.connect(d.db, timeout=10, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            r = d.post("/v1/studies/fails/trials/%d/tell" % number, {"value": 1.0})
            r.expect_error(503, "unavailable", None, "tell while the database is locked")
            check(d.snapshot() == before, "the failed tell changed the state")
        finally:
            db.rollback()
            db.close()
        d.post("/v1/studies/fails/trials/%d/tell" % number, {"value": 1.0}).expect(200)
        twin_number, twin_raw = ask_vector(d, "twin")
        check(twin_raw == raw, "the twins' second points differ")
        upload(d, "twin", twin_number, grad)
        d.post("/v1/studies/twin/trials/%d/tell" % twin_number, {"value": 1.0}).expect(200)
        _, third = ask_vector(d, "fails")
        _, twin_third = ask_vector(d, "twin")
        check(third == twin_third, "after the rolled-back tell the iterate left the twin's path")
        check(third != raw, "the retried tell did not step")
        # The state file (written piecewise from the sampler's memory) loads back exactly:
        # after a restart the next ask hands out the same iterate again.
        d.restart()
        _, again = ask_vector(d, "fails")
        check(again == third, "after a restart the iterate changed")



@tap.test
def big_state_survives_sigkill(exe):
    """A 1.4 MB state (adam on 60,000 elements): the first tell writes it whole, the next
    ones append records (their gradients) to its file. SIGKILL right after an acknowledged
    tell, a partial record past the referenced length (a crash before a commit), restart,
    and the next ask hands out the iterate the last tell produced; afterwards the blob
    directory holds only files the database uses."""
    state_survives_sigkill(exe, 60000)


@tap.test
def deferred_step_survives_sigkill(exe):
    """The same at 70,000 elements (2^16 or more): each record tell's optimizer step runs on
    a thread of its own during the commit, one chunk at a time until the record is copied to
    its file, then split. The iterate after SIGKILL and the replay of the records at restart
    is the one the live steps produced, bit for bit."""
    state_survives_sigkill(exe, 70000)


def state_survives_sigkill(exe, n):
    import sqlite3
    a = [2.0 + (i % 5) for i in range(n)]
    with Daemon(exe) as d:
        study(d, "big", {"optimizer": "adam", "lr": 0.1, "seed": 3}, params=[dict(LAM, size=n)])
        last = None
        for _ in range(4):
            t = d.post("/v1/studies/big/ask").expect(201)
            lam = struct.unpack("<%dd" % n, d.get(t["params"]["lam"]["href"]).body)
            grad = struct.pack("<%dd" % n, *[hypergrad(lam[i], a[i], 1.0)[1] for i in range(n)])
            r = d.request("PUT", "/v1/studies/big/trials/%d/gradient/lam" % t["number"],
                          body=grad, headers=OCTET)
            check(r.status == 204, "upload: %d" % r.status)
            d.post("/v1/studies/big/trials/%d/tell" % t["number"], {"value": 1.0}).expect(200)
            last = lam
        t = d.post("/v1/studies/big/ask").expect(201)
        want = d.get(t["params"]["lam"]["href"]).body
        check(struct.unpack("<%dd" % n, want) != last, "the last tell did not step")
        d.kill()
        # Tells after the first are records appended to the state's file; a crash between
        # an append and its commit leaves bytes past the referenced length, which are ignored.
        db = sqlite3.connect(d.db)
        try:
            (ref,) = db.execute("SELECT sampler_state FROM studies WHERE name = 'big'").fetchone()
        finally:
            db.close()
        _, name, length, _ = ref.decode().split(":")
        path = os.path.join(d.db + ".blobs", name)
        check(int(length) > 4 * 8 * n, "state of %s bytes: no records after it?" % length)
        check(os.path.getsize(path) == int(length), "state file longer than referenced")
        with open(path, "ab") as f:
            f.write(b"HPOGREC1" + os.urandom(4000))
        d.start()
        t = d.post("/v1/studies/big/ask").expect(201)
        got = d.get(t["params"]["lam"]["href"]).body
        check(got == want, "after SIGKILL the iterate is not the last acknowledged one")
        st = d.get("/v1/studies/big").expect(200)
        check(st["gradient"]["version"] == 4, "version after 4 tells: %r" % st["gradient"])
        blob_dir = d.db + ".blobs"
        refs = blob_refs(d.db)
        files = set(os.listdir(blob_dir))
        check(files == refs, "blob files %s, referenced %s" % (sorted(files), sorted(refs)))


@tap.test
def lost_vector_is_rebuilt(exe):
    """An ask's vector file is made durable by the next write (the tell), not by its own
    commit: a power cut right after the ask may lose it. Modelled: SIGKILL after the ask and
    the running trial's side file cut short (data that never reached the disk). At restart
    the sampler rebuilds it, checked against the checksum its cell kept: the same bytes are
    served again and the tell goes on exactly as in a twin study that never stopped. A
    finished trial's file damaged the same way cannot be rebuilt: the daemon does not start."""
    import sqlite3
    import subprocess
    n = 140000  # a vector of over 1 MiB: its own side file
    a = [2.0 + (i % 5) for i in range(n)]

    def finish(d, name, number, raw):
        lam = struct.unpack("<%dd" % n, raw)
        grad = struct.pack("<%dd" % n, *[hypergrad(lam[i], a[i], 1.0)[1] for i in range(n)])
        upload(d, name, number, grad)
        d.post("/v1/studies/%s/trials/%d/tell" % (name, number), {"value": 1.0}).expect(200)

    def vector_file(d, number):
        db = sqlite3.connect(d.db)
        try:
            (ref,) = db.execute("SELECT p.value FROM params p JOIN studies s ON s.id = p.study_id"
                                " WHERE s.name = 'cut' AND p.number = ?", (number,)).fetchone()
        finally:
            db.close()
        return os.path.join(d.db + ".blobs", ref.decode().split(":")[1])

    with Daemon(exe) as d:
        for name in ("cut", "twin"):
            study(d, name, {"optimizer": "adam", "lr": 0.1, "seed": 5},
                  params=[dict(LAM, size=n)])
            for _ in range(3):
                finish(d, name, *ask_vector(d, name))
        number, raw = ask_vector(d, "cut")
        d.kill()
        with open(vector_file(d, number), "r+b") as f:
            f.truncate(1000)
        d.start()
        got = d.get("/v1/studies/cut/trials/%d/params/lam" % number).body
        check(got == raw, "the rebuilt vector differs from the one the ask handed out")
        twin_number, twin_raw = ask_vector(d, "twin")
        check(twin_raw == raw, "the twins' points differ")
        finish(d, "cut", number, got)
        finish(d, "twin", twin_number, twin_raw)
        _, nxt = ask_vector(d, "cut")
        _, twin_nxt = ask_vector(d, "twin")
        check(nxt == twin_nxt and nxt != raw, "after the rebuilt trial the iterate left the twin's")
        # The rebuilt vector was written again: a clean restart reads it from its new file.
        d.restart()
        check(d.get("/v1/studies/cut/trials/%d/params/lam" % number).body == raw,
              "the rebuilt vector was not stored again")
        d.kill()
        with open(vector_file(d, 1), "r+b") as f:
            f.truncate(1000)
        r = subprocess.run([exe, "--listen", "127.0.0.1:0", "--db", d.db], timeout=60,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        check(r.returncode != 0 and b"trial 1 " in r.stdout,
              "a finished trial's damaged file: rc %d, %r" % (r.returncode, r.stdout[-300:]))


@tap.test
def deferred_vector_file_survives_sigkill(exe):
    """Under --synchronous full an ask's vector file is named and checksummed before the
    ask commits but written after it, off the ask's path (storage/blob-syncer.c), from the
    trial's memory. The vector downloaded right after the ask is the one a twin study that
    never stopped hands out; a SIGKILL right after the ask's reply (the file written, in
    part or not at all) still gives that vector after the restart (rebuilt or from the
    file), and the file then holds it; a clean stop writes a pending file."""
    import sqlite3
    n = 1000000  # 8 MB: the write outlasts the reply

    def vector_file(d, name, number):
        db = sqlite3.connect(d.db)
        try:
            (ref,) = db.execute("SELECT p.value FROM params p JOIN studies s ON s.id = p.study_id"
                                " WHERE s.name = ? AND p.number = ?", (name, number)).fetchone()
        finally:
            db.close()
        return os.path.join(d.db + ".blobs", ref.decode().split(":")[1])

    with Daemon(exe, extra_args=("--synchronous", "full")) as d:
        for name in ("twin", "k0", "k1", "clean"):
            study(d, name, {"optimizer": "adam", "lr": 0.1, "seed": 9},
                  params=[dict(LAM, size=n)])
        number, want = ask_vector(d, "twin")
        check(len(want) == 8 * n, "downloaded %d bytes" % len(want))
        for name in ("k0", "k1"):
            t = d.post("/v1/studies/%s/ask" % name).expect(201)
            check(t["number"] == number, "trial number %d" % t["number"])
            if name == "k1":
                check(d.get(t["params"]["lam"]["href"]).body == want,
                      "the vector downloaded right after the ask differs from the twin's")
            d.kill()
            d.start()
            got = d.get("/v1/studies/%s/trials/%d/params/lam" % (name, number)).body
            check(got == want, "%s: the vector after SIGKILL differs from the one handed out" % name)
            with open(vector_file(d, name, number), "rb") as f:
                check(f.read(8 * n) == want, "%s: the side file does not hold the vector" % name)
        number, raw = ask_vector(d, "clean")
        check(raw == want, "the clean study's vector differs")
        d.restart()
        with open(vector_file(d, "clean", number), "rb") as f:
            check(f.read() == want, "a clean stop did not write the pending vector file")
        check("rebuilt the lost vector" not in d.log_text().split("stopped")[-1],
              "a cleanly stopped daemon rebuilt a vector")


def xxh64(data):
    """XXH64 (seed 0) of bytes: the checksum in a side file's reference (storage/blobs.c)."""
    p1, p2, p3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
    p4, p5, m = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5, (1 << 64) - 1

    def rotl(x, r):
        return ((x << r) | (x >> (64 - r))) & m

    def rnd(acc, lane):
        return rotl((acc + lane * p2) & m, 31) * p1 & m

    n, i = len(data), 0
    if n >= 32:
        v = [(p1 + p2) & m, p2, 0, (-p1) & m]
        words = struct.unpack_from("<%dQ" % (n // 32 * 4), data)
        for j in range(0, len(words), 4):
            v = [rnd(v[0], words[j]), rnd(v[1], words[j + 1]), rnd(v[2], words[j + 2]),
                 rnd(v[3], words[j + 3])]
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & m
        for x in v:
            h = ((h ^ rnd(0, x)) * p1 + p4) & m
        i = n // 32 * 32
    else:
        h = p5
    h = (h + n) & m
    while n - i >= 8:
        h = (rotl(h ^ rnd(0, struct.unpack_from("<Q", data, i)[0]), 27) * p1 + p4) & m
        i += 8
    if n - i >= 4:
        h = (rotl(h ^ (struct.unpack_from("<I", data, i)[0] * p1 & m), 23) * p2 + p3) & m
        i += 4
    while i < n:
        h = rotl(h ^ (data[i] * p5 & m), 11) * p1 & m
        i += 1
    h = (h ^ (h >> 33)) * p2 & m
    h = (h ^ (h >> 29)) * p3 & m
    return h ^ (h >> 32)


@tap.test
def enqueued_trial_gets_the_samplers_vector(exe):
    """A trial enqueued without its vector gets the sampler's at the ask (the sampler decodes
    it in the same pass as its unit point, the service keeps the enqueued scalar): the same
    bytes as a twin study's ask without the enqueue, the scalar as enqueued, the next ask
    (a fresh trial) the same in both, and all read back alike after a restart."""
    n = 140000  # a vector of over 1 MiB: its own side file
    a = [2.0 + (i % 1000) * 0.01 for i in range(n)]  # spread iterates
    params = [dict(LAM, size=n), {"name": "k", "type": "int", "low": 1, "high": 9}]

    def told(d, name, number, raw):
        lam = struct.unpack("<%dd" % n, raw)
        upload(d, name, number,
               struct.pack("<%dd" % n, *[hypergrad(lam[i], a[i], 1.0)[1] for i in range(n)]))
        d.post("/v1/studies/%s/trials/%d/tell" % (name, number), {"value": 1.0}).expect(200)

    with Daemon(exe) as d:
        for name in ("enq", "twin"):
            study(d, name, {"optimizer": "sgd", "lr": 0.01}, params=params)
            told(d, name, *ask_vector(d, name))
        d.post("/v1/studies/enq/trials", {"params": {"k": 7}}).expect(201)
        got = {}
        for name in ("enq", "twin"):
            t = d.post("/v1/studies/%s/ask" % name).expect(201)
            got[name] = (t["number"], t["params"]["k"], d.get(t["params"]["lam"]["href"]).body)
        check(got["enq"][1] == 7 and got["twin"][1] == 5, "k: %r" % [got[k][1] for k in got])
        check(got["enq"][2] == got["twin"][2], "the enqueued trial's vector differs")
        lam = struct.unpack("<%dd" % n, got["enq"][2])
        check(len(set(lam[:1000])) == 1000, "the iterate is not spread")
        nxt = {}
        for name in ("enq", "twin"):
            told(d, name, got[name][0], got[name][2])
            nxt[name] = ask_vector(d, name)
        check(nxt["enq"][1] == nxt["twin"][1] and nxt["enq"][1] != got["enq"][2],
              "the next asks differ")
        d.restart()
        for name in ("enq", "twin"):
            check(d.get("/v1/studies/%s/trials/%d/params/lam" % (name, got[name][0])).body ==
                  got["enq"][2], "%s: the first vector read back differs" % name)
            check(d.get("/v1/studies/%s/trials/%d/params/lam" % (name, nxt[name][0])).body ==
                  nxt["enq"][1], "%s: the second vector read back differs" % name)


@tap.test
def study_of_an_older_build_keeps_its_decode(exe):
    """A study whose state an older build saved (no decode flag: its asks decoded with libm's
    exp, docs/DESIGN.md "Storage and side files") keeps that decode after an upgrade: its vectors
    differ from a new study's where libm's exp and hpo_exp round apart, its records replay
    bit for bit, and a running trial's vector lost in a power cut is rebuilt to the checksum
    its cell kept. Modelled: the state's flag cleared (and its reference's checksum
    recomputed) while the daemon is stopped, after the first ask."""
    import sqlite3
    n = 140000  # a vector and a state of over 1 MiB: side files
    a = [2.0 + (i % 1000) * 0.001 for i in range(n)]  # distinct iterates per element

    def finish(d, name, number, raw):
        lam = struct.unpack("<%dd" % n, raw)
        grad = struct.pack("<%dd" % n, *[hypergrad(lam[i], a[i], 1.0)[1] for i in range(n)])
        upload(d, name, number, grad)
        d.post("/v1/studies/%s/trials/%d/tell" % (name, number), {"value": 1.0}).expect(200)

    def cell(d, sql, args):
        db = sqlite3.connect(d.db)
        try:
            return db.execute(sql, args).fetchone()[0]
        finally:
            db.close()

    def make_old(d, name):
        ref = cell(d, "SELECT sampler_state FROM studies WHERE name = ?", (name,)).decode()
        magic, fname, length, _ = ref.split(":")
        path = os.path.join(d.db + ".blobs", fname)
        with open(path, "r+b") as f:
            state = bytearray(f.read(int(length)))
            (flags,) = struct.unpack_from("<Q", state, 24)
            check(flags & 0x80, "a new study's state has no decode flag: %#x" % flags)
            struct.pack_into("<Q", state, 24, flags & ~0x80)
            f.seek(0)
            f.write(state)
        db = sqlite3.connect(d.db)
        try:
            db.execute("UPDATE studies SET sampler_state = ? WHERE name = ?",
                       (("%s:%s:%s:%016x" % (magic, fname, length, xxh64(bytes(state)))).encode(),
                        name))
            db.commit()
        finally:
            db.close()

    with Daemon(exe) as d:
        first = {}
        for name in ("old", "new"):
            study(d, name, {"optimizer": "sgd", "lr": 1.0, "seed": 5}, params=[dict(LAM, size=n)])
            first[name] = ask_vector(d, name)
        d.stop()
        make_old(d, "old")
        d.start()
        got = {}
        for name in ("old", "new"):
            finish(d, name, *first[name])
            got[name] = ask_vector(d, name)
        old, new = (struct.unpack("<%dd" % n, got[k][1]) for k in ("old", "new"))
        apart = sum(1 for x, y in zip(old, new) if x != y)
        check(0 < apart < n // 10 and all(abs(x - y) <= 4e-16 * x for x, y in zip(old, new)),
              "old and new decodes: %d of %d values apart" % (apart, n))
        finish(d, "old", *got["old"])
        for _ in range(2):
            finish(d, "old", *ask_vector(d, "old"))  # records, replayed at the next start
        number, raw = ask_vector(d, "old")
        d.kill()
        fname = cell(d, "SELECT p.value FROM params p JOIN studies s ON s.id = p.study_id"
                        " WHERE s.name = 'old' AND p.number = ?", (number,)).decode().split(":")[1]
        with open(os.path.join(d.db + ".blobs", fname), "r+b") as f:
            f.truncate(1000)
        d.start()  # fails should the replay or the rebuild decode otherwise
        check(d.get("/v1/studies/old/trials/%d/params/lam" % number).body == raw,
              "the rebuilt vector of the old study differs from the one its ask handed out")
        finish(d, "old", number, raw)
        check(d.get("/v1/studies/old").expect(200)["gradient"]["version"] == 5, "version")


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
