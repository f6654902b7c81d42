#!/usr/bin/python3
"""test_process.py: the daemon as a process: one daemon per database (the lock
file, a stale one after SIGKILL), its name after the huge-page re-exec, the
command line and --check-config, /healthz while side files cannot be written
(a full tmpfs), and the memory of big vectors (the --max-vector-memory cap,
and RSS returned after a study goes). Prints TAP.
"""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()
RUN_TIMEOUT = 30


def run(exe, *args, env=None):
    """Run hpod to completion (bounded); returns (rc, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("NOTIFY_SOCKET", None)
    e.update(env or {})
    p = subprocess.run([exe] + list(args), env=e, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=RUN_TIMEOUT)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def vector_study(name, size, seed=1):
    return {"name": name, "sampler": {"type": "random", "seed": seed},
            "params": [{"name": "v", "type": "float", "low": 0.0, "high": 1.0, "size": size}]}


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


@tap.test
def one_daemon_per_database(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", {"name": "s", "params": [
            {"name": "x", "type": "float", "low": 0.0, "high": 1.0}]}).expect(201)
        d.post("/v1/studies/s/ask").expect(201)
        before = d.snapshot()
        pid = d.proc.pid
        with open(d.db + ".lock") as f:
            check(f.read().strip() == str(pid), "the lock file holds the daemon's pid")
        rc, out, err = run(exe, "--listen", "127.0.0.1:0", "--db", d.db)
        check(rc != 0, "a second daemon on the same database must not start (rc %d)" % rc)
        check("pid %d" % pid in err and "in use" in err,
              "the refusal names the running daemon's pid %d: %r" % (pid, err))
        check("listening" not in err, "the second daemon never listened: %r" % err)
        # The first one still serves, and its data is intact.
        d.get("/healthz").expect(200)
        check(d.snapshot() == before, "the second daemon changed nothing")
        d.post("/v1/studies", {"name": "s2", "params": [
            {"name": "x", "type": "float", "low": 0.0, "high": 1.0}]}).expect(201)
        # A lock left by SIGKILL does not block the next start.
        d.kill()
        check(os.path.exists(d.db + ".lock"), "the lock file stays after SIGKILL")
        d.start()
        d.get("/v1/studies/s").expect(200)
        d.get("/v1/studies/s2").expect(200)
        with open(d.db + ".lock") as f:
            check(f.read().strip() == str(d.proc.pid), "the new daemon's pid in the lock file")
        # --check-config reads only: it runs beside the daemon and takes no lock.
        rc, out, err = run(exe, "--check-config", "--db", d.db, "--listen", "127.0.0.1:0")
        check(rc == 0 and out.strip() == "configuration ok",
              "--check-config beside a running daemon: %d %r %r" % (rc, out, err))
        d.get("/healthz").expect(200)


@tap.test
def process_name_after_reexec(exe):
    with Daemon(exe, env={"HPOD_NO_REEXEC": "0"}) as d:
        pid = d.proc.pid
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = f.read().split(b"\0")
        check(b"HPOD_NO_REEXEC=1" in env, "the daemon re-executed itself (marker set)")
        with open("/proc/%d/comm" % pid) as f:
            comm = f.read().strip()
        check(comm == os.path.basename(exe)[:15] == "hpod", "comm is hpod, got %r" % comm)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        check(argv[0].decode() == d.exe, "argv[0] kept: %r" % argv[:3])
        check(argv[1:5] == [b"--listen", b"127.0.0.1:0", b"--db", d.db.encode()],
              "the arguments kept: %r" % argv)
        d.get("/healthz").expect(200)


@tap.test
def command_line_errors(exe):
    with tempfile.TemporaryDirectory(prefix="hpodtest-") as tmp:
        for args in (["--bogus"], ["--bogus", "1"], ["--bogus=1"]):
            rc, out, err = run(exe, *args)
            check(rc == 2, "%s: exit 2, got %d" % (args, rc))
            check(err.strip() == "hpod: unknown option --bogus", "%s: %r" % (args, err))
        rc, out, err = run(exe, "--threads")
        check(rc == 2 and err.strip() == "hpod: --threads needs a value", "missing value: %r" % err)
        db = os.path.join(tmp, "x.db")
        afile = os.path.join(tmp, "afile")
        with open(afile, "w") as f:
            f.write("not a database\n")
        bad = [
            (["--db", "/nonexistent-hpod-dir/x.db"], "directory '/nonexistent-hpod-dir'"),
            (["--db", os.path.join(afile, "x.db")], "Not a directory"),
            (["--db", tmp], "is not a regular file"),
            (["--db", afile], "is not an SQLite database"),
            (["--db", db, "--listen", "example.com:8080"], "'example.com' is not a numeric IPv4"),
            (["--db", db, "--listen", "[fe80::zz]:8080"], "is not a numeric IPv6"),
            # TEST-NET-1 (RFC 5737): an address of no interface here.
            (["--db", db, "--listen", "192.0.2.1:8080"], "cannot bind 192.0.2.1"),
        ]
        for args, text in bad:
            rc, out, err = run(exe, "--check-config", *args)
            check(rc != 0 and text in err, "--check-config %s: rc %d, %r" % (args, rc, err))
            check(out == "", "nothing on stdout: %r" % out)
            # The daemon itself fails the same way, before it creates anything
            # (on port 0 where no address is given: 8080 may be anyone's).
            rc2, out2, err2 = run(exe, *(args if "--listen" in args
                                         else args + ["--listen", "127.0.0.1:0"]))
            check(rc2 != 0 and text in err2, "hpod %s: rc %d, %r" % (args, rc2, err2))
            check(sorted(os.listdir(tmp)) == ["afile"],
                  "%s created nothing: %r" % (args, os.listdir(tmp)))
        # A directory that takes no new files: read-only (root passes permission bits).
        ro = os.path.join(tmp, "ro")
        os.mkdir(ro)
        if os.geteuid() != 0:
            os.chmod(ro, 0o555)
            mounted = True
        else:
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro],
                                     capture_output=True, timeout=RUN_TIMEOUT).returncode == 0
        try:
            if mounted:
                for args in (["--check-config"], ["--listen", "127.0.0.1:0"]):
                    rc, out, err = run(exe, *args, "--db", os.path.join(ro, "x.db"))
                    check(rc == 2 and "cannot create '%s/x.db' in directory" % ro in err,
                          "%s read-only directory: %d %r" % (args, rc, err))
                    check(os.listdir(ro) == [], "nothing created in %s" % ro)
            else:
                print("# read-only directory case skipped: cannot mount a tmpfs here")
        finally:
            if os.geteuid() == 0 and mounted:
                subprocess.run(["umount", ro], capture_output=True, timeout=RUN_TIMEOUT)
            os.rmdir(ro)
        rc, out, err = run(exe, "--check-config", "--db", db, "--listen", "127.0.0.1:0",
                           "--max-vector-memory", "2G")
        check(rc == 0 and out == "configuration ok\n", "a good configuration: %d %r" % (rc, err))
        check(sorted(os.listdir(tmp)) == ["afile"], "--check-config created nothing")
        for v in ("0", "12Q", "-5", "G", ""):
            rc, out, err = run(exe, "--check-config", "--db", db, "--max-vector-memory", v)
            check(rc == 2 and "max-vector-memory: '%s' must be a positive size" % v in err,
                  "--max-vector-memory %r: %r" % (v, err))


@tap.test
def healthz_while_side_files_fail(exe):
    """/healthz says 503 while side files cannot be written (ENOSPC), 200 again after."""
    with tempfile.TemporaryDirectory(prefix="hpodtest-") as tmp:
        mnt = os.path.join(tmp, "fs")
        os.mkdir(mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt],
                           capture_output=True, timeout=RUN_TIMEOUT)
        if r.returncode != 0:
            print("# skipped: cannot mount a tmpfs here (%s)"
                  % r.stderr.decode("utf-8", "replace").strip())
            return
        try:
            with Daemon(exe, state_dir=mnt) as d:
                n = 262144  # 2 MiB vectors: side files
                d.post("/v1/studies", vector_study("v", n)).expect(201)
                d.post("/v1/studies/v/ask").expect(201)
                d.get("/healthz").expect(200)
                # Fill the file system, leaving 1 MiB: room for SQLite, none for a vector.
                st = os.statvfs(mnt)
                filler = os.path.join(mnt, "filler")
                with open(filler, "wb") as f:
                    left = st.f_bavail * st.f_frsize - (1 << 20)
                    while left > 0:
                        chunk = min(left, 1 << 20)
                        f.write(b"\0" * chunk)
                        left -= chunk
                before = d.snapshot()
                r = d.post("/v1/studies/v/ask")
                r.expect_error(503, "unavailable")
                check(d.snapshot() == before, "the failed ask changed nothing")
                h = d.get("/healthz")
                check(h.status == 503, "/healthz after %s: %s" % (r.describe(), h.describe()))
                h.expect_error(503, "unavailable")
                # Writes without side files still work, and do not hide the failure.
                d.post("/v1/studies/v/trials/0/report", {"step": 1, "value": 0.5}).expect(200)
                d.get("/healthz").expect_error(503, "unavailable")
                # Room again: healthy before any request tries a side file.
                os.unlink(filler)
                d.get("/healthz").expect(200)
                d.post("/v1/studies/v/ask").expect(201)
                d.get("/healthz").expect(200)
                d.stop()
        finally:
            subprocess.run(["umount", mnt], capture_output=True, timeout=RUN_TIMEOUT)


@tap.test
def vector_memory_cap(exe):
    n = 4000000  # a point of 2 * 8 * n bytes = 64 MB (values and unit coordinates)
    with Daemon(exe, extra_args=["--max-vector-memory", "100M"]) as d:
        d.post("/v1/studies", vector_study("m", n)).expect(201)
        d.post("/v1/studies/m/ask").expect(201)
        before = d.snapshot()
        r = d.post("/v1/studies/m/ask")
        r.expect_error(503, "unavailable")
        check("max-vector-memory" in r.json["error"]["message"], "names the cap: %r" % r.json)
        check(d.snapshot() == before, "a refused ask changes nothing")
        d.get("/healthz").expect(200)
        # Once the running trial is told, its memory serves the next ask.
        d.post("/v1/studies/m/trials/0/tell", {"value": 1.0}).expect(200)
        t = d.post("/v1/studies/m/ask").expect(201)
        check(t["number"] == 1, "the next ask is trial 1: %r" % t["number"])
        # Small studies are not affected by the cap.
        d.post("/v1/studies", {"name": "small", "params": [
            {"name": "x", "type": "float", "low": 0.0, "high": 1.0}]}).expect(201)
        d.post("/v1/studies/small/ask").expect(201)


@tap.test
def upload_within_vector_memory_cap(exe):
    n = 1000000  # a point of 16 MB, an upload of 8 MB
    lam = {"name": "lam", "type": "float", "low": 1e-3, "high": 1e3, "log": True, "size": n}
    octet = {"Content-Type": "application/octet-stream"}
    body = bytes(8 * n)  # zeros: finite float64s
    for cap, status in (("20M", 503), ("30M", 204)):
        with Daemon(exe, extra_args=["--max-vector-memory", cap]) as d:
            d.post("/v1/studies", {"name": "g", "params": [lam], "sampler": {
                "type": "gradient", "optimizer": "sgd", "lr": 0.1, "seed": 1}}).expect(201)
            d.post("/v1/studies/g/ask").expect(201)
            before = d.snapshot()
            r = d.request("PUT", "/v1/studies/g/trials/0/gradient/lam", body=body, headers=octet)
            check(r.status == status, "cap %s: upload %s" % (cap, r.describe()))
            if status == 503:
                r.expect_error(503, "unavailable")
                check(d.snapshot() == before, "a refused upload changes nothing")
            d.post("/v1/studies/g/trials/0/tell", {"value": 1.0}).expect(200)


@tap.test
def big_vector_memory_returned(exe):
    n = 4000000  # 64 MB per point
    # Under ASan freed blocks wait in its quarantine first: make it release them at once.
    asan = os.environ.get("ASAN_OPTIONS", "")
    asan = (asan + ":" if asan else "") + "quarantine_size_mb=0"
    with Daemon(exe, env={"ASAN_OPTIONS": asan}) as d:
        pid = d.proc.pid
        d.get("/healthz").expect(200)
        base = rss_kib(pid)
        d.post("/v1/studies", vector_study("m", n)).expect(201)
        for i in range(3):
            d.post("/v1/studies/m/ask").expect(201)
            d.post("/v1/studies/m/trials/%d/tell" % i, {"value": float(i)}).expect(200)
        peak = rss_kib(pid)
        check(peak > base + 50 * 1024, "a 64 MB point shows in RSS (%d -> %d KiB)" % (base, peak))
        d.delete("/v1/studies/m").expect(204)
        after = rss_kib(pid)
        check(after < base + 24 * 1024,
              "RSS back near %d KiB after the study went, got %d KiB" % (base, after))
        # Without a delete: a told trial's point is freed within seconds when no ask reuses it.
        d.post("/v1/studies", vector_study("k", n)).expect(201)
        d.post("/v1/studies/k/ask").expect(201)
        d.post("/v1/studies/k/trials/0/tell", {"value": 1.0}).expect(200)
        deadline = time.monotonic() + 20
        while rss_kib(pid) > base + 24 * 1024 and time.monotonic() < deadline:
            time.sleep(0.25)
        check(rss_kib(pid) < base + 24 * 1024,
              "an unused cached point goes back within 20 s (RSS %d KiB, base %d)"
              % (rss_kib(pid), base))


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
