#!/usr/bin/python3
"""test_backup.py: GET /v1/admin/backup under load, and restoring from it.

8 clients ask/tell while the backup streams; the archive holds the database and the
side files it references, nothing else; the database passes PRAGMA integrity_check;
hpod started on the extracted copy has every tell acknowledged before the backup
request was sent, and the vectors of a gradient study read back bit for bit. Prints TAP.
"""

import io
import os
import sqlite3
import struct
import sys
import tarfile
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Client, Daemon, Tap, check, mint_token  # noqa: E402

tap = Tap()
TMP = tempfile.TemporaryDirectory(prefix="hpod-backup-")
SIZE = 150000  # 1.2 MB per vector: above the 1 MiB side-file threshold


@tap.test
def backup_under_load_and_restore(exe):
    admin, aline = mint_token(exe, "ops:admin")
    write, wline = mint_token(exe, "ci:write")
    tokens = os.path.join(TMP.name, "tokens")
    with open(tokens, "w") as f:
        f.write(aline + "\n" + wline + "\n")
    A = {"Authorization": "Bearer " + admin}
    W = {"Authorization": "Bearer " + write}
    with Daemon(exe, extra_args=["--tokens", tokens]) as d:
        d.post("/v1/studies", {"name": "s", "params": [
            {"name": "x", "type": "float", "low": 0, "high": 1}],
            "sampler": {"type": "random", "seed": 2}}, headers=W).expect(201)
        d.post("/v1/studies", {"name": "g", "params": [
            {"name": "w", "type": "float", "low": -1, "high": 1, "size": SIZE}],
            "sampler": {"type": "gradient", "seed": 2}}, headers=W).expect(201)
        vectors = {}
        for _ in range(3):
            t = d.post("/v1/studies/g/ask", headers=W).expect(201)
            vectors[t["number"]] = d.get("/v1/studies/g/trials/%d/params/w" % t["number"],
                                         headers=W).body
            check(len(vectors[t["number"]]) == 8 * SIZE, "vector size")
        lock = threading.Lock()
        acked = []  # (number, value, time acknowledged)
        stop = threading.Event()
        errors = []

        def client(k):
            c = Client(d.port)
            i = 0
            try:
                while not stop.is_set() and i < 100000:
                    t = c.post("/v1/studies/s/ask", headers=W).expect(201)
                    v = k + i / 1e6
                    c.post("/v1/studies/s/trials/%d/tell" % t["number"], {"value": v},
                           headers=W).expect(200)
                    with lock:
                        acked.append((t["number"], v, time.monotonic()))
                    i += 1
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                c.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < 200 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        with lock:
            before = list(acked)
        sent = time.monotonic()
        r = Client(d.port, timeout=120).get("/v1/admin/backup", headers=A)
        with lock:
            during = sum(1 for a in acked if a[2] > sent)
        stop.set()
        for t in threads:
            t.join(60)
        check(not errors, "clients failed: %s" % errors[:3])
        r.expect(200, "backup")
        check(r.header("content-type") == "application/x-tar", "type %r" % r.header("content-type"))
        check(len(before) >= 200, "only %d tells before the backup" % len(before))
        # Writers were not held up: tells were acknowledged while the backup ran.
        print("# %d tells before the backup request, %d acknowledged while it ran"
              % (len(before), during))
    restore = os.path.join(TMP.name, "restore")
    os.mkdir(restore)
    with tarfile.open(fileobj=io.BytesIO(r.body)) as tar:
        names = tar.getnames()
        check(names[0] == "hpod.db", "first member %r" % names[0])
        check(all(n == "hpod.db" or n == "hpod.db.blobs" or n.startswith("hpod.db.blobs/")
                  for n in names), "unexpected members %r" % names)
        check(not any(n.endswith("-wal") or n.endswith("-shm") for n in names), "wal in archive")
        check(sum(n.startswith("hpod.db.blobs/") for n in names) >= 1, "side files %r" % names)
        tar.extractall(restore)
    db = os.path.join(restore, "hpod.db")
    con = sqlite3.connect(db)
    check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check")
    con.close()
    with Daemon(exe, extra_args=["--tokens", tokens], state_dir=restore) as d2:
        check(d2.db == db, "restored daemon uses %s" % d2.db)
        trials = d2.get("/v1/studies/s/trials?limit=1000000", headers=A).expect(200)["trials"]
        by_number = {t["number"]: t for t in trials}
        for number, value, _ in before:
            t = by_number.get(number)
            check(t is not None and t["state"] == "complete" and t["value"] == value,
                  "trial %d (told %r before the backup) restored as %r" % (number, value, t))
        for number, data in vectors.items():
            got = d2.get("/v1/studies/g/trials/%d/params/w" % number, headers=A).body
            check(got == data, "vector of trial %d differs after restore" % number)
        # The restored daemon takes writes.
        d2.post("/v1/studies/s/ask", headers=W).expect(201)


@tap.test
def backup_of_an_empty_database(exe):
    admin, aline = mint_token(exe, "ops:admin")
    tokens = os.path.join(TMP.name, "tokens-empty")
    with open(tokens, "w") as f:
        f.write(aline + "\n")
    with Daemon(exe, extra_args=["--tokens", tokens]) as d:
        r = d.get("/v1/admin/backup", headers={"Authorization": "Bearer " + admin})
        r.expect(200)
    with tarfile.open(fileobj=io.BytesIO(r.body)) as tar:
        check(tar.getnames() == ["hpod.db"], "members %r" % tar.getnames())
        data = tar.extractfile("hpod.db").read()
    check(data[:16] == b"SQLite format 3\x00", "not a database")
    path = os.path.join(TMP.name, "empty.db")
    with open(path, "wb") as f:
        f.write(data)
    con = sqlite3.connect(path)
    check(con.execute("SELECT count(*) FROM studies").fetchone()[0] == 0, "studies")
    con.close()


@tap.test
def restore_beside_an_old_redo_log(exe):
    """A backup restored over its database, the old redo log left beside it: the log's
    records (acknowledged after the backup, never applied) are not applied to the copy."""
    admin, aline = mint_token(exe, "ops:admin")
    tokens = os.path.join(TMP.name, "tokens-redo")
    with open(tokens, "w") as f:
        f.write(aline + "\n")
    A = {"Authorization": "Bearer " + admin}
    state = os.path.join(TMP.name, "redo-state")
    os.mkdir(state)
    d = Daemon(exe, extra_args=["--tokens", tokens], state_dir=state)
    d.start()
    try:
        d.post("/v1/studies", {"name": "s", "params": [
            {"name": "x", "type": "float", "low": 0, "high": 1}]}, headers=A).expect(201)
        for i in range(2):
            d.post("/v1/studies/s/ask", headers=A).expect(201)
            d.post("/v1/studies/s/trials/%d/tell" % i, {"value": i}, headers=A).expect(200)
        r = d.get("/v1/admin/backup", headers=A)
        r.expect(200)
        # Three more trials acknowledged from the log while another process holds the
        # database's lock, then the daemon dies: they stay in hpod.db.redo only.
        con = sqlite3.connect(d.db, timeout=10, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        for i in range(2, 5):
            d.post("/v1/studies/s/ask", headers=A).expect(201)
            d.post("/v1/studies/s/trials/%d/tell" % i, {"value": i}, headers=A).expect(200)
        d.kill()
        con.rollback()
        con.close()
        check(os.path.getsize(d.db + ".redo") > 0, "no records in the log")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(d.db + suffix):
                os.unlink(d.db + suffix)
        with tarfile.open(fileobj=io.BytesIO(r.body)) as tar:
            tar.extractall(state)
        d.start()
        lst = d.get("/v1/studies/s/trials", headers=A).expect(200)["trials"]
        check([(t["number"], t["value"]) for t in lst] == [(0, 0), (1, 1)],
              "the restored copy took the old log's records: %r" % lst)
        check(d.post("/v1/studies/s/ask", headers=A).expect(201)["number"] == 2, "next number")
        d.stop()
        check(os.path.getsize(d.db + ".redo") == 0, "the old log's records are still there")
    finally:
        d.close()


if __name__ == "__main__":
    tap.main(TMP.cleanup)
