"""hpodtest.py: a harness that runs the real hpod binary for integration tests.

A Daemon starts `hpod --listen 127.0.0.1:0 --db <tmp>/hpod.db` with its own
NOTIFY_SOCKET (an AF_UNIX datagram socket bound in the temp dir), waits for
READY=1 (bounded, no sleep-and-poll) and reads the port from STATUS. Requests go
through Client objects, each holding one keep-alive connection. stop() sends
SIGTERM and requires exit 0; kill() sends SIGKILL; start() again reuses the
same database.

With HPOD_TEST_BACKEND=pg every Daemon's --db is a fresh database of one
throwaway PostgreSQL cluster per test process (pgtest.py) instead of
<state dir>/hpod.db; Daemons sharing a state directory share the database.

With HPOD_TEST_KEEP_LOGS=DIR every Daemon's logs (stderr, one file per start)
are copied to DIR when it is closed, before its state directory goes.

Standard library only; runs on Debian's /usr/bin/python3.
"""

import glob
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

READY_TIMEOUT = float(os.environ.get("HPOD_TEST_READY_TIMEOUT", "30"))
STOP_TIMEOUT = float(os.environ.get("HPOD_TEST_STOP_TIMEOUT", "30"))
REQUEST_TIMEOUT = float(os.environ.get("HPOD_TEST_REQUEST_TIMEOUT", "30"))
BACKEND = os.environ.get("HPOD_TEST_BACKEND", "sqlite")
_pg_databases = {}


def pg_database(state_dir):
    """The PostgreSQL URI standing for <state_dir>/hpod.db (HPOD_TEST_BACKEND=pg)."""
    import pgtest
    key = os.path.realpath(state_dir)
    if key not in _pg_databases:
        _pg_databases[key] = pgtest.shared().new_database()
    return _pg_databases[key]

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class TestFailure(AssertionError):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


class Response:
    """An HTTP response: status, headers (lower-case names), raw body, parsed JSON."""

    def __init__(self, method, path, status, headers, body):
        self.method = method
        self.path = path
        self.status = status
        self.headers = headers
        self.body = body
        self._json = None
        self._parsed = False

    @property
    def json(self):
        if not self._parsed:
            self._parsed = True
            try:
                self._json = json.loads(self.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                self._json = None
        return self._json

    def header(self, name):
        return self.headers.get(name.lower())

    def describe(self):
        text = self.body[:2000].decode("utf-8", "replace")
        return "%s %s -> %d %s" % (self.method, self.path, self.status, text)

    def expect(self, status, what=""):
        """Require a status; return the parsed JSON body (or None for no body)."""
        if self.status != status:
            fail("%sexpected %d, got: %s" % (what + ": " if what else "", status, self.describe()))
        return self.json

    def expect_error(self, status, code, field=None, what=""):
        """Require an API error with this status, code and field (None: no field)."""
        j = self.expect(status, what)
        err = (j or {}).get("error") if isinstance(j, dict) else None
        check(isinstance(err, dict) and err.get("code") == code and err.get("field") == field,
              "%sexpected error %d %s field=%r, got: %s"
              % (what + ": " if what else "", status, code, field, self.describe()))
        check(isinstance(err.get("message"), str) and err["message"] != "",
              "error without a message: %s" % self.describe())
        return err


def encode_body(body):
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, allow_nan=True).encode("utf-8")


class Client:
    """One keep-alive HTTP/1.1 connection to the daemon (not thread-safe: one per thread)."""

    def __init__(self, port, host="127.0.0.1", timeout=REQUEST_TIMEOUT):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.reused = False

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reused = False

    def request(self, method, path, body=None, headers=None):
        """Send one request; body is a dict/list (JSON), str or bytes. Returns a Response.

        Retries once on a fresh connection only when a reused keep-alive
        connection turned out to be closed before any byte of a response came
        back (the server closed an idle connection), which cannot have changed
        any state on the server.
        """
        data = encode_body(body)
        hdrs = {"Connection": "keep-alive"}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        elif method in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = "0"
        hdrs.update(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self._connect()
            was_reused = self.reused
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if was_reused and attempt == 0:
                    continue
                raise
            rh = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self.close()
            else:
                self.reused = True
            return Response(method, path, resp.status, rh, payload)
        raise AssertionError("unreachable")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def raw_request(port, method, path, headers, body, timeout=REQUEST_TIMEOUT):
    """Send a request over a fresh socket, watching for an early answer while sending.

    Used for oversized bodies: the server may answer 413 after the headers and
    close, so the body is sent in chunks and sending stops as soon as the
    response starts arriving. Returns a Response.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (method, path, port)
        for k, v in headers.items():
            head += "%s: %s\r\n" % (k, v)
        head += "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        out = head.encode("latin-1") + body
        sent = 0
        deadline = time.monotonic() + timeout
        sock.setblocking(False)
        while sent < len(out):
            left = deadline - time.monotonic()
            if left <= 0:
                fail("%s %s: timed out sending the body" % (method, path))
            r, w, _ = select.select([sock], [sock], [], left)
            if r:
                break
            if w:
                try:
                    sent += sock.send(out[sent:sent + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        sock.settimeout(timeout)
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            hdr_end = buf.find(b"\r\n\r\n")
            if hdr_end >= 0:
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", buf[:hdr_end], re.I)
                if m and len(buf) >= hdr_end + 4 + int(m.group(1)):
                    break
    finally:
        sock.close()
    hdr_end = buf.find(b"\r\n\r\n")
    check(hdr_end >= 0, "%s %s: no complete response (got %r)" % (method, path, buf[:200]))
    lines = buf[:hdr_end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    rh = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        rh[k.strip().lower()] = v.strip()
    payload = buf[hdr_end + 4:]
    if "content-length" in rh:
        payload = payload[:int(rh["content-length"])]
    return Response(method, path, status, rh, payload)


class Daemon:
    """The real hpod on 127.0.0.1, a free port, with a fresh state directory."""

    def __init__(self, exe, extra_args=(), env=None, state_dir=None):
        self.exe = os.path.abspath(exe)
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self._tmp = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hpodtest-")
            state_dir = self._tmp.name
        self.state_dir = state_dir
        self.db = os.path.join(state_dir, "hpod.db")
        if BACKEND == "pg":
            self.db = pg_database(state_dir)
        self.proc = None
        self.port = None
        self.notify = None
        self.notify_path = None
        self.log_path = None
        self.starts = 0
        self._client = None

    # -- process control ----------------------------------------------------

    def start(self):
        """Start the daemon and wait for READY=1; returns self."""
        check(self.proc is None, "daemon already running")
        self.starts += 1
        self.notify_path = os.path.join(self.state_dir, "notify-%d.sock" % self.starts)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.log_path = os.path.join(self.state_dir, "hpod-%d.log" % self.starts)
        env = dict(os.environ)
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        env["NOTIFY_SOCKET"] = self.notify_path
        env.update(self.extra_env)
        args = [self.exe, "--listen", "127.0.0.1:0", "--db", self.db] + self.extra_args
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        self.port = None
        deadline = time.monotonic() + READY_TIMEOUT
        ready = False
        while not (ready and self.port is not None):
            left = deadline - time.monotonic()
            if left <= 0:
                self._abort("no READY=1 with a STATUS port within %.0f s" % READY_TIMEOUT)
            # Wake at least every 0.5 s to notice an early exit of the child.
            r, _, _ = select.select([self.notify], [], [], min(left, 0.5))
            if not r:
                if self.proc.poll() is not None:
                    self._abort("hpod exited with %d before READY=1" % self.proc.returncode)
                continue
            msg = self.notify.recv(4096).decode("utf-8", "replace")
            for line in msg.split("\n"):
                if line == "READY=1":
                    ready = True
                m = re.match(r"STATUS=.*listening on (?:http://)?127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
        check(0 < self.port < 65536, "bad port %r in STATUS" % self.port)
        return self

    def _abort(self, msg):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        fail("%s\n--- hpod log ---\n%s" % (msg, self.log_tail()))

    def _close_notify(self):
        if self.notify is not None:
            self.notify.close()
            self.notify = None
            try:
                os.unlink(self.notify_path)
            except FileNotFoundError:
                pass

    def notify_messages(self):
        """Drain and return every notify datagram received so far."""
        out = []
        while self.notify is not None:
            r, _, _ = select.select([self.notify], [], [], 0)
            if not r:
                break
            out.append(self.notify.recv(4096).decode("utf-8", "replace"))
        return out

    def stop(self, expect_rc=0):
        """SIGTERM; wait (bounded); require exit status expect_rc and STOPPING=1."""
        check(self.proc is not None, "daemon not running")
        self.close_clients()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._abort("hpod did not exit within %.0f s of SIGTERM" % STOP_TIMEOUT)
        msgs = "\n".join(self.notify_messages())
        self.proc = None
        self._close_notify()
        if rc != expect_rc:
            fail("hpod exited with %d after SIGTERM, expected %d\n--- hpod log ---\n%s"
                 % (rc, expect_rc, self.log_tail()))
        check("STOPPING=1" in msgs.split("\n"),
              "no STOPPING=1 on the notify socket after SIGTERM (got %r)" % msgs)
        return rc

    def kill(self):
        """SIGKILL and reap."""
        check(self.proc is not None, "daemon not running")
        self.close_clients()
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self._close_notify()

    def restart(self):
        """stop() then start() on the same database."""
        self.stop()
        return self.start()

    def close(self):
        """Kill the daemon if it still runs and remove the state dir."""
        if self.proc is not None:
            self.kill()
        self._close_notify()
        keep = os.environ.get("HPOD_TEST_KEEP_LOGS")
        if keep and self._tmp is not None:
            os.makedirs(keep, exist_ok=True)
            for f in glob.glob(os.path.join(self.state_dir, "hpod-*.log")):
                shutil.copy(f, os.path.join(keep, "%s-%s" % (os.path.basename(self.state_dir),
                                                             os.path.basename(f))))
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is not None and self.proc is not None:
            sys.stderr.write("--- hpod log (test failed) ---\n%s\n" % self.log_tail())
        self.close()
        return False

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except (OSError, TypeError):
            return "(no log)"
        return "\n".join(lines[-n:])

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    # -- requests -----------------------------------------------------------

    def client(self):
        check(self.port is not None, "daemon not running")
        return Client(self.port)

    def close_clients(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def request(self, method, path, body=None, headers=None):
        """A request through the daemon's shared keep-alive client (main thread only)."""
        if self._client is None or self._client.port != self.port:
            self.close_clients()
            self._client = self.client()
        return self._client.request(method, path, body=body, headers=headers)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- helpers ------------------------------------------------------------

    def snapshot(self):
        """Every study and every trial, for "a failing request changes nothing" checks."""
        r = self.get("/v1/studies")
        studies = r.expect(200, "snapshot list")["studies"]
        snap = {"studies": studies, "detail": {}}
        for s in studies:
            name = s["name"]
            d = self.get("/v1/studies/%s" % name).expect(200, "snapshot study")
            t = self.get("/v1/studies/%s/trials?limit=1000000" % name).expect(200, "snapshot trials")
            snap["detail"][name] = {"study": d, "trials": t}
        return snap


def build_curl_tool(source, outdir):
    """Compile a small C + libcurl program (the benchmarks' load generators) into outdir."""
    exe = os.path.join(outdir, os.path.splitext(os.path.basename(source))[0])
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libcurl"], check=True,
                           capture_output=True, text=True).stdout.split()
    subprocess.run(["cc", "-std=gnu17", "-O2", "-Wall", "-Wextra", "-o", exe, source] + flags +
                   ["-pthread", "-lm"], check=True)
    return exe


def mint_token(exe, spec):
    """`hpod --new-token SPEC`: returns (secret, tokens-file line)."""
    out = subprocess.run([exe, "--new-token", spec], check=True, capture_output=True,
                         text=True, timeout=30).stdout.split("\n")
    check(len(out) >= 2 and out[0].startswith("hpod_") and len(out[0]) == 48,
          "--new-token printed %r" % out)
    return out[0], out[1]


def wait_log(d, text, timeout=10):
    """Wait (bounded) until `text` appears in Daemon d's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.log_text():
            return
        time.sleep(0.05)
    fail("no %r in the log:\n%s" % (text, d.log_tail()))


def recv_until_close(sock, limit=None):
    """Read from a raw socket until the peer closes it (EOF or reset), or `limit` bytes."""
    buf = b""
    while limit is None or len(buf) < limit:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        buf += b
    return buf


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


def make_ca(d):
    """A P-256 test CA in directory d; returns (cert, key) paths."""
    key, cert = os.path.join(d, "ca-key.pem"), os.path.join(d, "ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=hpod test CA")
    return cert, key


def make_server_cert(d, name, ca):
    """A server certificate for 127.0.0.1 signed by the CA; returns (cert, key) paths."""
    key, csr, cert = (os.path.join(d, name + s) for s in ("-key.pem", ".csr", ".pem"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)
    os.chmod(key, 0o600)
    return cert, key


def blob_refs(db_path):
    """The side files (names under <db>.blobs/) the SQLite database at db_path references."""
    import sqlite3
    db = sqlite3.connect(db_path)
    try:
        refs = set()
        for (v,) in db.execute("SELECT sampler_state FROM studies UNION ALL "
                               "SELECT value FROM params"):
            if isinstance(v, bytes) and v.startswith(b"HPOBLOB1:"):
                refs.add(v[len(b"HPOBLOB1:"):].split(b":")[0].decode())
    finally:
        db.close()
    return refs


def exe_from_argv():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: %s PATH/TO/hpod\n" % sys.argv[0])
        sys.exit(2)
    return sys.argv[1]


class Skip(Exception):
    """Raised by a test that cannot run against this daemon: reported as `ok ... # SKIP why`."""


class Tap:
    """Minimal TAP producer: run named test functions, print ok/not ok, exit status."""

    def __init__(self):
        self.tests = []

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def run(self, *args):
        only = os.environ.get("HPOD_TEST_ONLY")
        tests = [t for t in self.tests if not only or t.__name__ in only.split(",")]
        if BACKEND == "pg":
            import pgtest
            why = pgtest.available()
            if why is not None:
                print("1..0 # SKIP %s" % why, flush=True)
                return 0
        print("1..%d" % len(tests), flush=True)
        failed = 0
        for i, t in enumerate(tests, 1):
            t0 = time.monotonic()
            try:
                t(*args)
            except Skip as e:
                print("ok %d - %s # SKIP %s" % (i, t.__name__, e))
            except Exception as e:  # noqa: BLE001 - report every failure as not ok
                failed += 1
                print("not ok %d - %s" % (i, t.__name__))
                for line in ("%s: %s" % (type(e).__name__, e)).splitlines():
                    print("# " + line)
                import traceback
                for line in traceback.format_exc().splitlines()[-8:]:
                    print("# " + line)
            else:
                print("ok %d - %s # %.2f s" % (i, t.__name__, time.monotonic() - t0))
            sys.stdout.flush()
        return 1 if failed else 0

    def main(self, cleanup=None):
        """Run every test against the hpod named on the command line, then cleanup(); exit."""
        try:
            rc = self.run(exe_from_argv())
        finally:
            if cleanup is not None:
                cleanup()
        sys.exit(rc)
