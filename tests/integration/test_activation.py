#!/usr/bin/python3
"""test_activation.py: systemd socket activation through systemd-socket-activate.

hpod started by systemd-socket-activate (Debian's systemd) serves on the passed socket
(the --listen given is not used, nor bound: not even when it names the passed socket's own
address, as the shipped hpod.socket and hpod.conf both do), keeps the tokens rule, and drains and exits 0 on
SIGTERM; a passed socket on a non-loopback address without tokens is refused (exit 2).
Prints TAP.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Client, Tap, check, fail, mint_token  # noqa: E402

tap = Tap()
TMP = tempfile.TemporaryDirectory(prefix="hpod-activation-")
ACTIVATE = shutil.which("systemd-socket-activate")


def start(exe, host, args, log):
    """systemd-socket-activate on a free port (probe, then retry if someone took it);
    "{port}" in an argument becomes that port."""
    for _ in range(5):
        probe = socket.socket()
        probe.bind((host, 0))
        port = probe.getsockname()[1]
        probe.close()
        p = subprocess.Popen([ACTIVATE, "-l", "%s:%d" % (host, port), exe] +
                             [a.replace("{port}", str(port)) for a in args],
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return p, port
            except OSError:
                time.sleep(0.05)
        if p.poll() is None:
            p.kill()
        p.wait()
    fail("systemd-socket-activate did not listen")


def log_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


@tap.test
def serves_on_the_passed_socket(exe):
    if ACTIVATE is None:
        print("# skip: no systemd-socket-activate")
        return
    tokens = os.path.join(TMP.name, "tokens")
    secret, line = mint_token(exe, "ops:admin")
    with open(tokens, "w") as f:
        f.write(line + "\n")
    logp = os.path.join(TMP.name, "a.log")
    with open(logp, "wb") as log:
        p, port = start(exe, "127.0.0.1", ["--listen", "127.0.0.1:1", "--db",
                                           os.path.join(TMP.name, "a.db"), "--tokens", tokens],
                        log)
    try:
        c = Client(port)
        c.get("/healthz").expect(200)
        c.get("/v1/studies").expect_error(401, "unauthenticated")
        c.post("/v1/studies", {"name": "s", "params": [{"name": "x", "type": "float", "low": 0,
                                                         "high": 1}]},
               headers={"Authorization": "Bearer " + secret}).expect(201)
        c.close()
        text = log_text(logp)
        check("listening on http://127.0.0.1:%d" % port in text, "log: %s" % text)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
    check(rc == 0, "exit %d after SIGTERM: %s" % (rc, log_text(logp)))


@tap.test
def non_loopback_needs_tokens(exe):
    if ACTIVATE is None:
        print("# skip: no systemd-socket-activate")
        return
    logp = os.path.join(TMP.name, "b.log")
    with open(logp, "wb") as log:
        p, port = start(exe, "0.0.0.0", ["--db", os.path.join(TMP.name, "b.db")], log)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        fail("hpod kept running on 0.0.0.0 without tokens")
    check(rc == 2, "exit %d" % rc)
    check("refusing to listen on 0.0.0.0 without tokens" in log_text(logp),
          "log: %s" % log_text(logp))


@tap.test
def passed_socket_on_the_listen_address(exe):
    """hpod.socket and hpod.conf name the same address: systemd holds it, hpod must not bind it."""
    if ACTIVATE is None:
        print("# skip: no systemd-socket-activate")
        return
    logp = os.path.join(TMP.name, "c.log")
    with open(logp, "wb") as log:
        p, port = start(exe, "127.0.0.1", ["--listen", "127.0.0.1:{port}", "--db",
                                           os.path.join(TMP.name, "c.db")], log)
    try:
        c = Client(port)
        c.get("/healthz").expect(200)
        c.post("/v1/studies", {"name": "s", "params": [{"name": "x", "type": "float", "low": 0,
                                                         "high": 1}]}).expect(201)
        c.post("/v1/studies/s/ask").expect(201)
        c.close()
        text = log_text(logp)
        check("listening on http://127.0.0.1:%d" % port in text, "log: %s" % text)
        check("cannot bind" not in text, "log: %s" % text)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
    check(rc == 0, "exit %d after SIGTERM: %s" % (rc, log_text(logp)))


if __name__ == "__main__":
    tap.main(TMP.cleanup)
