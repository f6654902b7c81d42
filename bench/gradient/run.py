#!/usr/bin/python3
"""bench/gradient: round-trip latency of the gradient sampler over HTTP.

One round = ask + download of the vector + upload of the gradient + tell,
on docs/ALGORITHMS.md §7.7 E6 (a_i = 2 + i mod 5, b = 1, per-coordinate closed-form
hypergradient, λ log in [1e-3, 1e3], adam lr 0.1). Modes:

  binary  N = 10^6: GET .../params/lam and PUT .../gradient/lam (float64 LE)
  json    N = 10^4: params via GET (a vector over 1000 elements is an href),
          gradient as a JSON array in the tell body
  json    N = 1000: params inline in the ask reply, gradient in the tell body

The binary round trip runs against a daemon under `--synchronous full` (the
default: every reply after its write is on disk) and one under `normal`, in
the same run; the JSON modes run under full only. The client is a plain
socket speaking HTTP/1.1 (one connection, TCP_NODELAY, the upload sent from
the array's own buffer, the download received into one preallocated buffer):
http.client's buffered reads and header handling cost milliseconds per 8 MB
here, which would be measured as the server's. The client's own numpy work
(the E6 gradient) is timed apart and left out of the round trip.

It also checks E6's first Adam step over HTTP to 1e-9, reports the daemon's
resident memory in vectors' worth (8N bytes) and runs the sampler-only micro
benchmark (bench-sampler.c, compiled here) for the sampler's own share.

It first prints what the disk under the temporary directory costs right
now (bench/common/disk.py: a 4 KiB fdatasync, and 8N bytes written and
fdatasync'd): under `full` the round trip writes and syncs side files of
that size, so its figure moves with the disk.

--baseline OTHER/hpod runs another build first in each mode (before/after in
one run: the machine's load moves every figure). --phases runs each mode once
more under `strace -f -T -ttt` and splits each phase of the round (ask,
download, upload, tell; the client's own numpy work left out) into the
daemon's system calls that started in it (socket receive and send, side-file
writes, fdatasync/fsync) and the rest (computing: decode, optimizer step,
hashing, page faults; waiting; the client's side of the transfer).

Usage: /usr/bin/python3 bench/gradient/run.py [--hpod build/daemon/hpod]
       [--n 1000000] [--rounds 30] [--modes full,normal] [--baseline B [--ab]] [--phases]
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "bench", "common"))
from disk import fdatasync_ms, write_sync_mb_s  # noqa: E402
E6_ADAM_ONE_STEP = [1.0, 1.105170915129, 1.105170916970, 1.105170917486, 1.105170917707]


class Daemon:
    def __init__(self, hpod, synchronous, trace=None):
        self.dir = tempfile.mkdtemp(prefix="hpod-bench-grad-")
        argv = [hpod, "--listen", "127.0.0.1:0", "--db", os.path.join(self.dir, "hpod.db"),
                "--synchronous", synchronous]
        if trace is not None:
            # Each syscall's time (-T) on every thread (-f); hpod's stderr stays on stderr.
            argv = ["strace", "-f", "-T", "-ttt", "-o", trace, "-e",
                    "trace=write,pwrite64,fdatasync,fsync,sync_file_range,recvfrom,sendmsg,"
                    "sendto"] + argv
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        self.port = None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.stop()
            raise SystemExit("hpod did not start")
        # Drain stderr so the daemon never blocks on a full pipe.
        self.drain = subprocess.Popen(["cat"], stdin=self.proc.stderr,
                                      stdout=subprocess.DEVNULL)

    def pid(self):
        """The daemon's pid (strace's child when traced)."""
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                kids = f.read().split()
        except OSError:
            kids = []
        return int(kids[0]) if kids and os.path.basename(
            os.readlink("/proc/%d/exe" % self.proc.pid)) == "strace" else self.proc.pid

    def rss_mb(self):
        fields = {}
        with open("/proc/%d/status" % self.pid()) as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        return (int(fields["VmRSS"].split()[0]) / 1024.0,
                int(fields["VmHWM"].split()[0]) / 1024.0)

    def cpu_ms(self):
        """User + system CPU time the daemon used so far, in ms."""
        with open("/proc/%d/stat" % self.pid()) as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")

    def stop(self):
        pid = self.pid()
        if pid != self.proc.pid:
            # Traced: stop hpod itself and let strace exit with it (a signalled strace
            # detaches and may leave hpod stopped, holding this script's stdout).
            os.kill(pid, signal.SIGTERM)
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if pid != self.proc.pid:
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """HTTP/1.1 over one plain socket: Content-Length bodies only (all hpod sends here)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = port
        self.buf = b""

    def _head(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def _body(self, n):
        body = bytearray(n)
        view = memoryview(body)
        got = min(n, len(self.buf))
        view[:got] = self.buf[:got]
        self.buf = self.buf[got:]
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise RuntimeError("connection closed")
            got += k
        return body

    def call(self, method, path, body=None, raw=None, ctype="application/json"):
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
        elif raw is not None:
            data = raw
        head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (method, path, self.port))
        if body is not None or raw is not None:
            head += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, len(data))
        head = (head + "\r\n").encode()
        if len(data) < 65536:
            self.sock.sendall(head + bytes(data))
        else:
            self.sock.sendall(head)
            self.sock.sendall(data)
        status, headers = self._head()
        payload = self._body(int(headers.get("content-length", "0")))
        if status >= 300:
            raise RuntimeError("%s %s -> %d %s" % (method, path, status, bytes(payload[:300])))
        if headers.get("content-type", "").startswith("application/json"):
            return json.loads(payload)
        return payload


def e6_grad(lam):
    a = 2.0 + (np.arange(lam.size) % 5)
    w = a / (1.0 + lam)
    g = -(w - 1.0) * a / (1.0 + lam) ** 2
    return g, float(0.5 * np.sum((w - 1.0) ** 2))


def study_body(name, n):
    return {"name": name, "params": [{"name": "lam", "type": "float", "low": 1e-3,
                                      "high": 1e3, "log": True, "size": n}],
            "sampler": {"type": "gradient", "optimizer": "adam", "lr": 0.1, "seed": 1}}


def one_round(cli, name, mode):
    """One round: (lam handed out, phase bounds t0..t5 on perf_counter)."""
    t0 = time.perf_counter()
    trial = cli.call("POST", "/v1/studies/%s/ask" % name, {})
    t1 = time.perf_counter()
    p = trial["params"]["lam"]
    if isinstance(p, dict):
        lam = np.frombuffer(cli.call("GET", p["href"]), dtype="<f8")
    else:
        lam = np.asarray(p, dtype=float)
    t2 = time.perf_counter()
    g, loss = e6_grad(lam)
    t3 = time.perf_counter()
    base = "/v1/studies/%s/trials/%d" % (name, trial["number"])
    if mode == "binary":
        # The array's own buffer (float64, little-endian here): no copy on the client.
        cli.call("PUT", base + "/gradient/lam", raw=memoryview(np.ascontiguousarray(g, "<f8")).cast("B"),
                 ctype="application/octet-stream")
        t4 = time.perf_counter()
        cli.call("POST", base + "/tell", {"value": loss})
    else:
        t4 = time.perf_counter()
        cli.call("POST", base + "/tell", {"value": loss, "gradient": {"lam": g.tolist()}})
    t5 = time.perf_counter()
    return lam, (t0, t1, t2, t3, t4, t5)


def add_times(times, t):
    t0, t1, t2, t3, t4, t5 = t
    for k, v in (("ask", t1 - t0), ("get", t2 - t1), ("grad", t3 - t2), ("put", t4 - t3),
                 ("tell", t5 - t4), ("total", t5 - t0 - (t3 - t2))):
        times.setdefault(k, []).append(v * 1e3)


def report(times, mode, label, n, rounds, first_step_err):
    med = {k: statistics.median(v) for k, v in times.items()}
    print("%-6s %-7s N=%-8d rounds=%d  median ms: round trip %.1f (ask %.1f, download %.1f, "
          "upload %.1f, tell %.1f; client numpy %.1f)  E6 step-1 max|err| %.2e"
          % (mode, label, n, rounds, med["total"], med["ask"], med["get"], med["put"], med["tell"],
             med["grad"], first_step_err))
    return med


def step_err(lam, n):
    want = np.array(E6_ADAM_ONE_STEP)[np.arange(n) % 5]
    return float(np.max(np.abs(lam - want)))


def run(cli, name, n, rounds, mode, label="", marks=None):
    cli.call("POST", "/v1/studies", study_body(name, n))
    times = {}
    first_step_err = None
    for r in range(rounds):
        lam, t = one_round(cli, name, mode)
        if marks is not None:
            # The phases' bounds on the wall clock strace stamps (-ttt).
            off = time.time() - time.perf_counter()
            marks.append([x + off for x in t])
        if r == 1:
            first_step_err = step_err(lam, n)
        add_times(times, t)
    return report(times, mode, label, n, rounds, first_step_err)


def run_ab(clis, labels, name, n, rounds):
    """The binary round on two daemons, round by round in turn (before, after, after,
    before, ...), so both see the same load on a shared machine; medians of each and the
    median of the per-pair ratios after/before."""
    for cli in clis:
        cli.call("POST", "/v1/studies", study_body(name, n))
    times = [{}, {}]
    errs = [None, None]
    for r in range(rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            lam, t = one_round(clis[i], name, "binary")
            if r == 1:
                errs[i] = step_err(lam, n)
            add_times(times[i], t)
    meds = [report(times[i], "binary", labels[i], n, rounds, errs[i]) for i in (0, 1)]
    ratio = {k: statistics.median(a / b for a, b in zip(times[1][k], times[0][k]))
             for k in ("total", "ask", "get", "put", "tell")}
    print("  after/before, median of the round pairs: round trip %.2f (ask %.2f, download %.2f, "
          "upload %.2f, tell %.2f)" % (ratio["total"], ratio["ask"], ratio["get"], ratio["put"],
                                       ratio["tell"]))
    return meds


# A whole call, or the end of one another thread's call interrupted in the log.
SYSCALL = re.compile(r"^\d+\s+([\d.]+)\s+(\w+)\((\d+)?.*= (-?\d+).*<([\d.]+)>$")
RESUMED = re.compile(r"^\d+\s+([\d.]+)\s+<\.\.\. (\w+) resumed>.*= (-?\d+).*<([\d.]+)>$")
KINDS = ("receive", "send", "file write", "writeback", "fdatasync")


def phases(trace, marks):
    """Per phase of the round, the daemon's system calls that started in it, by kind, from
    an strace -f -T -ttt log, and the rest of the phase's wall time (mean ms a round)."""
    names = ("ask", "download", "upload", "tell")
    edges = ((0, 1), (1, 2), (3, 4), (4, 5))  # indexes into a round's marks
    ms = {p: dict.fromkeys(KINDS, 0.0) for p in names}
    count = {p: dict.fromkeys(KINDS, 0) for p in names}
    written = dict.fromkeys(names, 0)
    calls = []
    with open(trace) as f:
        for line in f:
            line = line.strip()
            m = SYSCALL.match(line)
            if m is not None:
                start, name, ret, t = (float(m.group(1)), m.group(2), int(m.group(4)),
                                       float(m.group(5)))
            else:
                m = RESUMED.match(line)
                if m is None:
                    continue
                t = float(m.group(4))
                start, name, ret = float(m.group(1)) - t, m.group(2), int(m.group(3))
            kind = {"recvfrom": "receive", "sendmsg": "send", "sendto": "send",
                    "sync_file_range": "writeback", "fdatasync": "fdatasync",
                    "fsync": "fdatasync"}.get(name)
            if name in ("write", "pwrite64") and ret >= 65536:
                kind = "file write"
            if kind is not None:
                calls.append((start, kind, t * 1e3, ret))
    wall = dict.fromkeys(names, 0.0)
    for mk in marks:
        for (a, b), p in zip(edges, names):
            lo, hi = mk[a], mk[b]
            wall[p] += (hi - lo) * 1e3
            for start, kind, t, ret in calls:
                if lo <= start < hi:
                    ms[p][kind] += t
                    count[p][kind] += 1
                    if kind == "file write":
                        written[p] += ret
    rounds = len(marks)
    print("  per phase, mean ms a round under strace -f -T (slower than untraced): wall = "
          "daemon syscalls by kind + the rest (computing, page faults, waiting, the client)")
    for p in names:
        sys_ms = sum(ms[p].values()) / rounds
        parts = ", ".join("%s %.1f (%.1f calls)" % (k, ms[p][k] / rounds, count[p][k] / rounds)
                          for k in KINDS if count[p][k])
        print("    %-8s wall %5.1f = syscalls %5.1f [%s; %.1f MB to side files] + rest %.1f"
              % (p, wall[p] / rounds, sys_ms, parts, written[p] / rounds / 2 ** 20,
                 (wall[p] - sum(ms[p].values())) / rounds))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hpod", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--n", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--modes", default="full,normal",
                    help="--synchronous modes to run the binary round trip under")
    ap.add_argument("--baseline", help="another hpod binary, run before --hpod in each mode")
    ap.add_argument("--ab", action="store_true",
                    help="with --baseline: run the two daemons side by side, round by round in "
                         "turn (binary round only; memory and CPU of each)")
    ap.add_argument("--phases", action="store_true",
                    help="also run each mode once under strace for the daemon's syscall time")
    args = ap.parse_args()

    # The meson target bench/bench-sampler of the build that holds --hpod, when there is one;
    # otherwise one cc command over the sampler and every core source.
    build = os.path.dirname(os.path.dirname(os.path.abspath(args.hpod)))
    exe = os.path.join(build, "bench", "bench-sampler")
    if not os.path.exists(os.path.join(build, "build.ninja")) or subprocess.call(
            ["ninja", "-C", build, "bench/bench-sampler"], stdout=subprocess.DEVNULL) != 0:
        exe = os.path.join(tempfile.gettempdir(), "hpod-bench-gradient-sampler")
        core = sorted(glob.glob(os.path.join(ROOT, "core", "*.c")))
        subprocess.check_call(
            ["cc", "-O2", "-D_GNU_SOURCE", "-o", exe, os.path.join(HERE, "bench-sampler.c"),
             os.path.join(ROOT, "samplers", "gradient.c"),
             os.path.join(ROOT, "samplers", "gradient-step.c")] + core +
            ["-ljansson", "-lm", "-lpthread"])
    # E6 at N: sgd lr 1.0 must bring every element within 1e-9 of lam* in 100 steps.
    for opt, rounds in (("adam", args.rounds), ("sgd", 100)):
        subprocess.check_call([exe, str(args.n), str(rounds), opt])

    # The disk the daemons' side files go to (the temporary directory): under `full` the
    # round trip waits for it (bench/common/disk.py).
    p50, _ = fdatasync_ms(tempfile.gettempdir())
    print("disk here: fdatasync of 4 KiB p50 %.3f ms; %d MB written and fdatasync'd at %.0f MB/s"
          % (p50, 8 * args.n // 10 ** 6, write_sync_mb_s(tempfile.gettempdir(), 8 * args.n)),
          flush=True)
    meds = {}
    if args.ab and args.baseline:
        for sync in args.modes.split(","):
            ds = []
            try:
                for hpod in (args.baseline, args.hpod):
                    ds.append(Daemon(hpod, sync))
                rss0 = [d.rss_mb()[0] for d in ds]
                cpu0 = [d.cpu_ms() for d in ds]
                got = run_ab([Client(d.port) for d in ds], [sync + " before", sync + " after"],
                             "bench-bin", args.n, args.rounds)
                vec_mb = 8.0 * args.n / 2 ** 20
                for i, d in enumerate(ds):
                    rss1, hwm1 = d.rss_mb()
                    print("  %s: daemon CPU %.1f ms a round; RSS %.0f MB before the study, "
                          "%.0f MB after, peak %.0f MB (+%.1f vectors of %.1f MB)"
                          % (("before", "after")[i], (d.cpu_ms() - cpu0[i]) / args.rounds,
                             rss0[i], rss1, hwm1, (hwm1 - rss0[i]) / vec_mb, vec_mb))
                    meds[sync + (" before", " after")[i]] = got[i]
            finally:
                for d in ds:
                    d.stop()
        args.modes = ""
    runs = [("before", args.baseline)] if args.baseline else []
    runs.append(("after" if args.baseline else "", args.hpod))
    for sync in filter(None, args.modes.split(",")):
        for label, hpod in runs:
            tag = (sync + " " + label).strip()
            d = Daemon(hpod, sync)
            try:
                cli = Client(d.port)
                rss0, _ = d.rss_mb()
                cpu0 = d.cpu_ms()
                meds[tag] = run(cli, "bench-bin", args.n, args.rounds, "binary", tag)
                cpu1 = d.cpu_ms()
                rss1, hwm1 = d.rss_mb()
                print("  daemon CPU: %.1f ms a round (user + system, all threads)"
                      % ((cpu1 - cpu0) / args.rounds))
                vec_mb = 8.0 * args.n / 2 ** 20
                print("  daemon memory: RSS %.0f MB before the study, %.0f MB after (+%.1f "
                      "vectors of %.1f MB), peak %.0f MB (+%.1f vectors)"
                      % (rss0, rss1, (rss1 - rss0) / vec_mb, vec_mb, hwm1,
                         (hwm1 - rss0) / vec_mb))
                if sync == "full" and hpod == args.hpod:
                    run(cli, "bench-json-1e4", 10000, args.rounds, "json", sync)
                    run(cli, "bench-json-1e3", 1000, args.rounds, "json", sync)
            finally:
                d.stop()
            if args.phases and shutil.which("strace"):
                trace = os.path.join(tempfile.gettempdir(), "hpod-bench-gradient.strace")
                d = Daemon(hpod, sync, trace)
                marks = []
                try:
                    run(Client(d.port), "bench-bin", args.n, args.rounds, "binary",
                        tag + " (traced)", marks)
                finally:
                    d.stop()
                phases(trace, marks)
                os.unlink(trace)
    for tag, med in meds.items():
        verdict = "PASS" if med["total"] <= 20.0 else "OVER"
        print("target: <= 20 ms median per round trip at N=%d under --synchronous %s: "
              "%.1f ms, %s" % (args.n, tag, med["total"], verdict))

if __name__ == "__main__":
    sys.exit(main())
