#!/usr/bin/python3
"""test_clients_backup.py: `hpoctl backup FILE` and the Python client's Client.backup(path).

Usage: test_clients_backup.py PATH/TO/hpod PATH/TO/hpoctl

- hpoctl_backup_under_load: with a tokens file, 3 clients ask/tell while `hpoctl backup
  out.tar` (admin token) runs; it exits 0, prints the size, leaves out.tar (and no
  out.tar.tmp); the archive untars to a database that passes integrity_check; hpod
  started on it has every tell acknowledged before the backup was started.
- hpoctl_backup_streams: a 40 MB archive (32 vectors of 1.2 MB) through hpoctl: its peak
  RSS (wait4) grows by less than an eighth of it over an empty backup's; the side
  files are all in it.
- hpoctl_backup_refused: no token (401), a write token (403)
  exit 1 with the daemon's error and a line saying what is needed; FILE and FILE.tmp are
  not left behind and an existing FILE is untouched; a FILE.tmp in a missing directory
  is a clear error; usage errors exit 2; `hpoctl backup --help` describes it.
- pyclient_backup: Client.backup(path) saves the same archive under load (every earlier
  tell restored); a write token raises HpodError("permission_denied") and leaves
  nothing behind.

Prints TAP.
"""

import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "client", "python"))
from hpodtest import Client, Daemon, Tap, check  # noqa: E402
import hpod_client  # noqa: E402

tap = Tap()
HPOCTL = None
TMP = tempfile.TemporaryDirectory(prefix="hpod-clients-backup-")
STUDY = {"name": "s", "params": [{"name": "x", "type": "float", "low": 0, "high": 1}],
         "sampler": {"type": "random", "seed": 3}}


def mint(exe, spec):
    out = subprocess.run([exe, "--new-token", spec], check=True, capture_output=True,
                         text=True, timeout=30).stdout.split("\n")
    return out[0], out[1]


class Env:
    """A daemon's tokens file with an admin and a write token."""

    def __init__(self, exe):
        self.exe = exe
        self.admin, a = mint(exe, "ops:admin")
        self.write, w = mint(exe, "ci:write")
        self.tokens = os.path.join(TMP.name, "tokens")
        with open(self.tokens, "w") as f:
            f.write(a + "\n" + w + "\n")


def hpoctl(d, *args, token=None):
    env = dict(os.environ)
    env.pop("HPOD_TOKEN", None)
    env.pop("HPOD_URL", None)
    if token is not None:
        env["HPOD_TOKEN"] = token
    return subprocess.run([HPOCTL, "--url", "http://127.0.0.1:%d" % d.port] + list(args),
                          env=env, capture_output=True, text=True, timeout=120)


class Writers:
    """3 clients ask/tell until stopped (bounded), recording acknowledged tells with times."""

    def __init__(self, d, token):
        self.lock = threading.Lock()
        self.acked = []
        self.errors = []
        self.stop = threading.Event()
        hdr = {"Authorization": "Bearer " + token}

        def run(k):
            c = Client(d.port)
            try:
                for i in range(20000):
                    if self.stop.is_set():
                        return
                    t = c.post("/v1/studies/s/ask", headers=hdr).expect(201)
                    v = k + i / 1e6
                    c.post("/v1/studies/s/trials/%d/tell" % t["number"], {"value": v},
                           headers=hdr).expect(200)
                    with self.lock:
                        self.acked.append((t["number"], v, time.monotonic()))
            except Exception as e:  # noqa: BLE001 - reported by finish()
                self.errors.append(repr(e))
            finally:
                c.close()

        self.threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(self.acked) < 100 and time.monotonic() < deadline and not self.errors:
            time.sleep(0.05)

    def snapshot(self):
        with self.lock:
            return list(self.acked)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        check(not self.errors, "writers failed: %s" % self.errors[:3])


def check_restore(env, archive, before, what):
    restore = tempfile.mkdtemp(prefix="restore-", dir=TMP.name)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        check(names and names[0] == "hpod.db", "%s: members %r" % (what, names[:5]))
        tar.extractall(restore)
    con = sqlite3.connect(os.path.join(restore, "hpod.db"))
    try:
        check(con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check")
    finally:
        con.close()
    with Daemon(env.exe, extra_args=["--tokens", env.tokens], state_dir=restore) as d2:
        trials = d2.get("/v1/studies/s/trials?limit=1000000",
                        headers={"Authorization": "Bearer " + env.admin}).expect(200)["trials"]
        by_number = {t["number"]: t for t in trials}
        lost = [(n, v) for n, v, _ in before
                if n not in by_number or by_number[n]["state"] != "complete" or
                by_number[n]["value"] != v]
        check(not lost, "%s: %d of %d tells acknowledged before the backup are missing: %r"
              % (what, len(lost), len(before), lost[:3]))
        return len(trials)


@tap.test
def hpoctl_backup_under_load(env):
    with Daemon(env.exe, extra_args=["--tokens", env.tokens]) as d:
        d.post("/v1/studies", STUDY,
               headers={"Authorization": "Bearer " + env.write}).expect(201)
        w = Writers(d, env.write)
        try:
            before = w.snapshot()
            out = os.path.join(TMP.name, "out.tar")
            p = hpoctl(d, "backup", out, token=env.admin)
        finally:
            w.finish()
        check(p.returncode == 0, "hpoctl backup rc %d: %s" % (p.returncode, p.stderr))
        size = os.path.getsize(out)
        check(p.stdout == "backup saved to %s (%d bytes)\n" % (out, size), "stdout %r" % p.stdout)
        check(not os.path.exists(out + ".tmp"), "out.tar.tmp left behind")
        check(len(before) >= 100, "only %d tells before the backup" % len(before))
    n = check_restore(env, out, before, "hpoctl backup")
    print("# hpoctl backup: %d bytes, %d tells acknowledged before it, %d trials restored"
          % (size, len(before), n))


def peak_rss(d, env, out):
    """Run `hpoctl backup out`; (exit code, its peak RSS in bytes, stderr) from wait4."""
    p = subprocess.Popen([HPOCTL, "--url", "http://127.0.0.1:%d" % d.port, "backup", out],
                         env=dict(os.environ, HPOD_TOKEN=env.admin), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    err = p.stderr.read().decode()  # small; EOF when hpoctl exits
    p.stderr.close()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, usage.ru_maxrss * 1024, err


@tap.test
def hpoctl_backup_streams(env):
    """A 40 MB archive (side files of a vector study) passes through hpoctl without
    hpoctl's peak RSS growing by more than an eighth of it (compared with the backup of
    an empty database); the side files are all in it."""
    size, n = 150000, 32  # 1.2 MB per vector, 32 vectors
    with Daemon(env.exe, extra_args=["--tokens", env.tokens]) as d:
        hdr = {"Authorization": "Bearer " + env.write}
        base = peak_rss(d, env, os.path.join(TMP.name, "base.tar"))[1]
        d.post("/v1/studies", {"name": "g", "params": [
            {"name": "w", "type": "float", "low": -1, "high": 1, "size": size}],
            "sampler": {"type": "gradient", "seed": 2}}, headers=hdr).expect(201)
        for _ in range(n):
            t = d.post("/v1/studies/g/ask", headers=hdr).expect(201)
            d.post("/v1/studies/g/trials/%d/tell" % t["number"], {"value": 1.0},
                   headers=hdr).expect(200)
        out = os.path.join(TMP.name, "big.tar")
        rc, rss, err = peak_rss(d, env, out)
        check(rc == 0, "hpoctl backup rc %d: %s" % (rc, err))
        total = os.path.getsize(out)
        check(total > n * 8 * size, "archive of %d bytes" % total)
        with tarfile.open(out) as tar:
            blobs = [m for m in tar.getmembers() if m.name.startswith("hpod.db.blobs/") and
                     m.isfile()]
            check(sum(m.size for m in blobs) >= n * 8 * size, "side files: %d bytes"
                  % sum(m.size for m in blobs))
        check(rss - base < total // 8, "hpoctl peak RSS %d KiB for a %d-byte archive, %d KiB "
              "for a small one" % (rss // 1024, total, base // 1024))
        print("# %d-byte archive: hpoctl peak RSS %d KiB (%d KiB for a %d-byte one)"
              % (total, rss // 1024, base // 1024, os.path.getsize(os.path.join(TMP.name,
                                                                                 "base.tar"))))


@tap.test
def hpoctl_backup_refused(env):
    with Daemon(env.exe, extra_args=["--tokens", env.tokens]) as d:
        out = os.path.join(TMP.name, "refused.tar")
        p = hpoctl(d, "backup", out)
        check(p.returncode == 1, "no token: rc %d" % p.returncode)
        check("unauthenticated" in p.stderr and "HPOD_TOKEN" in p.stderr,
              "no token: stderr %r" % p.stderr)
        for token in (env.write,):
            p = hpoctl(d, "backup", out, token=token)
            check(p.returncode == 1, "non-admin: rc %d" % p.returncode)
            check("permission_denied" in p.stderr and "admin role" in p.stderr,
                  "non-admin: stderr %r" % p.stderr)
        check(not os.path.exists(out) and not os.path.exists(out + ".tmp"), "files left behind")
        # An existing FILE is untouched by a refused backup.
        with open(out, "w") as f:
            f.write("keep")
        p = hpoctl(d, "backup", out, token=env.write)
        check(p.returncode == 1 and open(out).read() == "keep", "existing FILE changed")
        p = hpoctl(d, "backup", os.path.join(TMP.name, "no", "such", "dir.tar"), token=env.admin)
        check(p.returncode == 1 and "cannot create" in p.stderr, "missing dir: %r" % p.stderr)
        for args in (["backup"], ["backup", "a", "b"], ["backup", ""]):
            p = hpoctl(d, *args, token=env.admin)
            check(p.returncode == 2 and "usage: hpoctl backup FILE" in p.stderr,
                  "%r: rc %d %r" % (args, p.returncode, p.stderr))
        p = hpoctl(d, "backup", "--help")
        check(p.returncode == 0 and p.stdout.startswith("Usage: hpoctl backup FILE\n") and
              "admin" in p.stdout, "backup --help %r" % p.stdout[:200])
        p = hpoctl(d, "--help")
        check("backup FILE" in p.stdout, "backup missing from hpoctl --help")


@tap.test
def pyclient_backup(env):
    with Daemon(env.exe, extra_args=["--tokens", env.tokens]) as d:
        url = "http://127.0.0.1:%d" % d.port
        d.post("/v1/studies", STUDY,
               headers={"Authorization": "Bearer " + env.write}).expect(201)
        out = os.path.join(TMP.name, "py.tar")
        denied = os.path.join(TMP.name, "py-denied.tar")
        try:
            hpod_client.Client(url, token=env.write, retries=0).backup(denied)
            check(False, "a write token's backup succeeded")
        except hpod_client.HpodError as e:
            check(e.code == "permission_denied" and e.status == 403, "error %r" % e)
        check(not os.path.exists(denied) and not os.path.exists(denied + ".tmp"),
              "files left after a refused backup")
        w = Writers(d, env.write)
        try:
            before = w.snapshot()
            n = hpod_client.Client(url, token=env.admin).backup(out)
        finally:
            w.finish()
        check(n == os.path.getsize(out) and n > 0, "backup returned %r, file has %d"
              % (n, os.path.getsize(out)))
        check(not os.path.exists(out + ".tmp"), "py.tar.tmp left behind")
    count = check_restore(env, out, before, "Client.backup")
    print("# Client.backup: %d bytes, %d tells before it, %d trials restored"
          % (n, len(before), count))


def main():
    global HPOCTL
    if len(sys.argv) != 3:
        sys.stderr.write("usage: %s PATH/TO/hpod PATH/TO/hpoctl\n" % sys.argv[0])
        return 2
    HPOCTL = os.path.abspath(sys.argv[2])
    return tap.run(Env(os.path.abspath(sys.argv[1])))


if __name__ == "__main__":
    sys.exit(main())
