#!/usr/bin/python3
"""test_tls.py: HTTPS through libmicrohttpd's GnuTLS support, against the real hpod.

A CA and server certificates are made in the test with Debian's openssl. Covered: curl
and Python (ssl with the CA file) over https with keep-alive and tokens; TLS 1.2 and 1.3
accepted, 1.1 refused; plain HTTP to the TLS port fails cleanly and the daemon goes on;
SIGHUP with a new certificate is picked up (the served fingerprint changes) while an
upload over TLS is in flight and completes; a broken pair on SIGHUP keeps the old one;
a key that does not match its certificate stops the start. Prints TAP.
"""

import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Response, Tap, check, exe_from_argv, fail  # noqa: E402

tap = Tap()
TMP = tempfile.TemporaryDirectory(prefix="hpod-tls-")


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


def make_ca(d):
    key, cert = os.path.join(d, "ca-key.pem"), os.path.join(d, "ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=hpod test CA")
    return cert, key


def make_server(d, name, ca):
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


def mint(exe, spec):
    out = subprocess.run([exe, "--new-token", spec], check=True, capture_output=True,
                         text=True, timeout=30).stdout.split("\n")
    return out[0], out[1]


class Setup:
    def __init__(self, exe):
        d = tempfile.mkdtemp(dir=TMP.name)
        self.dir = d
        self.ca = make_ca(d)
        self.cert, self.key = make_server(d, "server", self.ca)
        # The paths the daemon reads; SIGHUP tests replace the files behind them.
        self.cert_path, self.key_path = os.path.join(d, "live.pem"), os.path.join(d, "live-key.pem")
        self.install(self.cert, self.key)
        self.token, line = mint(exe, "ci:write")
        self.tokens = os.path.join(d, "tokens")
        with open(self.tokens, "w") as f:
            f.write(line + "\n")

    def install(self, cert, key):
        for src, dst in ((cert, self.cert_path), (key, self.key_path)):
            with open(src, "rb") as f:
                data = f.read()
            fd = os.open(dst + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(dst + ".tmp", dst)

    def args(self):
        return ["--tls-cert", self.cert_path, "--tls-key", self.key_path, "--tokens", self.tokens]

    def context(self, **kw):
        ctx = ssl.create_default_context(cafile=self.ca[0])
        for k, v in kw.items():
            setattr(ctx, k, v)
        return ctx


class TlsClient:
    """One keep-alive HTTPS connection (http.client with the test CA)."""

    def __init__(self, port, ctx, token):
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        self.token = token
        self.sock = None
        self.connects = 0

    def request(self, method, path, body=None, headers=None):
        h = {"Authorization": "Bearer " + self.token}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        elif body is None and method in ("POST", "PUT"):
            h["Content-Length"] = "0"
        h.update(headers or {})
        self.conn.request(method, path, body=body, headers=h)
        if self.conn.sock is not self.sock:
            self.sock = self.conn.sock
            self.connects += 1
        r = self.conn.getresponse()
        data = r.read()
        return Response(method, path, r.status, {k.lower(): v for k, v in r.getheaders()}, data)

    def fingerprint(self):
        return hashlib.sha256(self.conn.sock.getpeercert(binary_form=True)).hexdigest()

    def close(self):
        self.conn.close()


def served_fingerprint(port, ctx):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def cert_fingerprint(path):
    with open(path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def wait_log(d, text, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.log_text():
            return
        time.sleep(0.05)
    fail("no %r in the log:\n%s" % (text, d.log_tail()))


STUDY = {"name": "s", "params": [{"name": "x", "type": "float", "low": 0, "high": 1}],
         "sampler": {"type": "random", "seed": 3}}


@tap.test
def python_keepalive_and_versions(exe):
    s = Setup(exe)
    with Daemon(exe, extra_args=s.args()) as d:
        c = TlsClient(d.port, s.context(), s.token)
        c.request("POST", "/v1/studies", STUDY).expect(201)
        for i in range(20):
            t = c.request("POST", "/v1/studies/s/ask").expect(201)
            c.request("POST", "/v1/studies/s/trials/%d/tell" % t["number"],
                      {"value": i / 20}).expect(200)
        check(c.connects == 1, "%d connections for 41 requests (keep-alive)" % c.connects)
        check(c.conn.sock.version() == "TLSv1.3", "negotiated %s" % c.conn.sock.version())
        check(c.fingerprint() == cert_fingerprint(s.cert), "served an unexpected certificate")
        check("is readable by others" not in d.log_text(), "a 0600 key was warned about")
        # Tokens are still required over TLS.
        c.request("GET", "/v1/studies", headers={"Authorization": "Bearer nope"}).expect_error(
            401, "unauthenticated")
        c.request("GET", "/v1/studies").expect(200)
        c.close()
        # TLS 1.2 is accepted.
        c12 = TlsClient(d.port, s.context(maximum_version=ssl.TLSVersion.TLSv1_2), s.token)
        c12.request("GET", "/healthz").expect(200)
        check(c12.conn.sock.version() == "TLSv1.2", "negotiated %s" % c12.conn.sock.version())
        c12.close()
        # TLS 1.1 is refused by the server: a client that offers 1.0-1.2 gets 1.2, and the
        # same client capped at 1.1 gets no session.
        def old_client(top):
            ctx = s.context()
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = top
            return ctx
        with socket.create_connection(("127.0.0.1", d.port), timeout=30) as raw:
            with old_client(ssl.TLSVersion.TLSv1_2).wrap_socket(
                    raw, server_hostname="127.0.0.1") as tls:
                check(tls.version() == "TLSv1.2", "control: %s" % tls.version())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                served_fingerprint(d.port, old_client(ssl.TLSVersion.TLSv1_1))
            fail("a TLS 1.1 handshake succeeded")
        except (ssl.SSLError, ConnectionResetError):
            pass
        # A client that does not trust the CA fails verification.
        try:
            served_fingerprint(d.port, ssl.create_default_context())
            fail("verification passed without the CA")
        except ssl.SSLCertVerificationError:
            pass


@tap.test
def curl_with_cacert(exe):
    s = Setup(exe)
    with Daemon(exe, extra_args=s.args()) as d:
        base = "https://127.0.0.1:%d" % d.port
        r = subprocess.run(["curl", "-sS", "-v", "--cacert", s.ca[0], "-H",
                            "Authorization: Bearer " + s.token, base + "/v1/studies",
                            base + "/healthz"], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "curl: %d %s" % (r.returncode, r.stderr[-2000:]))
        check(r.stdout.startswith('{"studies":[]}{"status":"ok","version":'),
              "curl got %r" % r.stdout)
        check("Re-using existing connection" in r.stderr or "Reusing existing" in r.stderr,
              "curl did not keep the connection alive:\n%s" % r.stderr[-2000:])
        # Without the CA curl refuses (exit 60: peer certificate cannot be authenticated).
        r = subprocess.run(["curl", "-sS", base + "/healthz"], capture_output=True, text=True,
                           timeout=60)
        check(r.returncode == 60, "curl without the CA: %d %s" % (r.returncode, r.stderr))


@tap.test
def plain_http_fails_cleanly(exe):
    s = Setup(exe)
    with Daemon(exe, extra_args=s.args()) as d:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", d.port), timeout=30) as raw:
                raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                got = b""
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        chunk = raw.recv(4096)
                    except ConnectionResetError:
                        break
                    if not chunk:
                        break
                    got += chunk
                check(not got.startswith(b"HTTP/"), "plain HTTP got an HTTP answer: %r" % got)
        # Still serving TLS.
        c = TlsClient(d.port, s.context(), s.token)
        c.request("GET", "/healthz").expect(200)
        c.close()


def gradient_study(c, size):
    c.request("POST", "/v1/studies", {
        "name": "g", "params": [{"name": "w", "type": "float", "low": -1, "high": 1,
                                 "size": size}],
        "sampler": {"type": "gradient", "seed": 1}}).expect(201)
    return c.request("POST", "/v1/studies/g/ask").expect(201)["number"]


@tap.test
def sighup_swaps_certificate(exe):
    s = Setup(exe)
    new_cert, new_key = make_server(s.dir, "server2", s.ca)
    with Daemon(exe, extra_args=s.args()) as d:
        ctx = s.context()
        old_fp = served_fingerprint(d.port, ctx)
        check(old_fp == cert_fingerprint(s.cert), "start: unexpected certificate")
        keep = TlsClient(d.port, ctx, s.token)
        size = 1 << 20  # 8 MiB of float64, sent slowly
        number = gradient_study(keep, size)
        # A long upload on its own connection, in flight across the SIGHUP.
        body = struct.pack("<%dd" % size, *([0.5] * size))
        result = {}

        def upload():
            try:
                raw = socket.create_connection(("127.0.0.1", d.port), timeout=60)
                tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                head = ("PUT /v1/studies/g/trials/%d/gradient/w HTTP/1.1\r\nHost: x\r\n"
                        "Authorization: Bearer %s\r\nContent-Type: application/octet-stream\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n"
                        % (number, s.token, len(body)))
                tls.sendall(head.encode())
                step = len(body) // 16
                for i in range(16):
                    tls.sendall(body[i * step:(i + 1) * step])
                    if i == 3:
                        result["sent_quarter"] = time.monotonic()
                    time.sleep(0.1)
                tls.sendall(body[16 * step:])
                reply = b""
                while b"\r\n\r\n" not in reply:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
                result["status"] = reply.split(b"\r\n", 1)[0]
                result["done"] = time.monotonic()
                tls.close()
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                result["error"] = repr(e)

        th = threading.Thread(target=upload)
        th.start()
        deadline = time.monotonic() + 30
        while "sent_quarter" not in result and "error" not in result and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        s.install(new_cert, new_key)
        d.proc.send_signal(signal.SIGHUP)
        hup = time.monotonic()
        wait_log(d, "TLS certificate '%s' reloaded (SHA-256 %s)"
                 % (s.cert_path, cert_fingerprint(new_cert)))
        new_fp = served_fingerprint(d.port, ctx)
        th.join(60)
        check(not th.is_alive(), "upload thread stuck")
        check("error" not in result, "upload failed: %s" % result.get("error"))
        check(result["status"] == b"HTTP/1.1 204 No Content", "upload: %r" % result["status"])
        check(result["done"] > hup, "the upload was not in flight across the SIGHUP")
        check(new_fp == cert_fingerprint(new_cert) and new_fp != old_fp,
              "after SIGHUP served %s (old %s)" % (new_fp, old_fp))
        # The kept-alive connection made before goes on.
        keep.request("GET", "/v1/studies/g").expect(200)
        check(keep.connects == 1, "the old connection was dropped")
        keep.close()
        # A broken pair on SIGHUP: logged, the new-old certificate stays.
        with open(s.cert_path, "w") as f:
            f.write("not a certificate\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "keeping the certificate in use (SHA-256 %s)" % new_fp)
        check(served_fingerprint(d.port, ctx) == new_fp, "a broken pair replaced the certificate")
        # A key of another certificate: refused the same way.
        s.install(s.cert, new_key)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "does not belong to the certificate of")
        check(served_fingerprint(d.port, ctx) == new_fp, "a mismatched pair was taken")


@tap.test
def bad_pair_at_start(exe):
    s = Setup(exe)
    other_cert, other_key = make_server(s.dir, "other", s.ca)
    db = os.path.join(s.dir, "x.db")
    for args, msg in (
            (["--tls-cert", s.cert, "--tls-key", other_key],
             "tls-key '%s' does not belong to the certificate of '%s'" % (other_key, s.cert)),
            (["--tls-cert", s.cert], "tls-cert and tls-key go together"),
            (["--tls-cert", os.path.join(s.dir, "missing.pem"), "--tls-key", s.key],
             "tls-cert '%s': cannot read it" % os.path.join(s.dir, "missing.pem"))):
        r = subprocess.run([exe, "--listen", "127.0.0.1:0", "--db", db] + args,
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and msg in r.stderr, "%r: %d %r" % (args, r.returncode, r.stderr))
    # A key others can read is served, with a warning.
    os.chmod(s.key, 0o644)
    with Daemon(exe, extra_args=["--tls-cert", s.cert, "--tls-key", s.key]) as d:
        check("tls-key '%s' is readable by others (mode 644)" % s.key in d.log_text(),
              "no warning for a 0644 key: %s" % d.log_tail())


if __name__ == "__main__":
    try:
        rc = tap.run(exe_from_argv())
    finally:
        TMP.cleanup()
    sys.exit(rc)
