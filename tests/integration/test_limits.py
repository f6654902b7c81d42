#!/usr/bin/python3
"""test_limits.py: connection limits against the real hpod.

1,000 idle connections held while ask/tell and /healthz from new connections work;
200 connections trickling a request head byte by byte are closed by the head deadline
(not reset by the bytes) while others are served, and an idle connection is not; so
are heads trickled on connections that already served a request, whose idle
neighbour is kept; at
max-connections a new connection gets 503 except for /healthz and /metrics (the
reserve), and past the reserve it is refused; the per-client cap refuses one address
while another is served. Prints TAP.
"""

import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Client, Daemon, Tap, check, exe_from_argv, raw_request  # noqa: E402

tap = Tap()

STUDY = {"name": "s", "params": [{"name": "x", "type": "float", "low": 0, "high": 1}],
         "sampler": {"type": "random", "seed": 5}}


def want_files(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def connect(port, source="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_peer(s):
    """Whether the server closed the socket (EOF or reset waiting to be read), without waiting."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def trickle(socks):
    """One more byte of a head on each socket the server has not closed; those it went out on."""
    sent = []
    for s in socks:
        if closed_by_peer(s):
            continue
        try:
            s.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            continue
        sent.append(s)
    return sent


def ask_tell(c, n):
    for i in range(n):
        t = c.post("/v1/studies/s/ask").expect(201)
        c.post("/v1/studies/s/trials/%d/tell" % t["number"], {"value": i / n}).expect(200)


def get_to_close(s, path):
    """GET path with Connection: close on socket s; every byte until the server closes."""
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def http_once(port, path, source="127.0.0.1"):
    """One request on a new connection; the status, or None when the server closed first."""
    s = connect(port, source)
    try:
        data = get_to_close(s, path)
    finally:
        s.close()
    if not data.startswith(b"HTTP/1.1 "):
        return None, data
    return int(data.split(b" ", 2)[1]), data


def served_once(port):
    """A keep-alive connection that has had one /healthz answered (the whole reply read)."""
    s = connect(port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = [int(x.split(b":")[1]) for x in head.split(b"\r\n")
              if x.lower().startswith(b"content-length:")][0]
    while len(body) < length:
        body += s.recv(65536)
    check(head.startswith(b"HTTP/1.1 200"), "the served request: %r" % head[:100])
    return s


@tap.test
def idle_connections_held(exe):
    want_files(1300)
    with Daemon(exe, extra_args=["--max-connections-per-client", "1100"]) as d:
        d.post("/v1/studies", STUDY).expect(201)
        held = [connect(d.port) for _ in range(1000)]
        try:
            c = d.client()
            ask_tell(c, 50)
            for _ in range(5):
                status, body = http_once(d.port, "/healthz")
                check(status == 200, "/healthz from a new connection: %r" % body[:200])
            c.get("/v1/studies/s").expect(200)
            check(d.get("/v1/studies/s").expect(200)["trials"]["complete"] == 50, "trials")
            dropped = sum(closed_by_peer(s) for s in held)
            check(dropped == 0, "%d of the 1000 idle connections were closed" % dropped)
            c.close()
        finally:
            for s in held:
                s.close()


@tap.test
def slow_headers_closed(exe):
    want_files(600)
    args = ["--max-connections-per-client", "500", "--request-head-timeout", "2",
            "--connection-timeout", "60"]
    with Daemon(exe, extra_args=args) as d:
        d.post("/v1/studies", STUDY).expect(201)
        idle = connect(d.port)
        slow = [connect(d.port) for _ in range(200)]
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        c = d.client()
        start = time.monotonic()
        open_ = list(slow)
        answered = 0
        # One byte every 0.5 s on each; the idle timeout (60 s) would never fire.
        while open_ and time.monotonic() - start < 20:
            still = []
            for s in trickle(open_):
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    try:
                        data = s.recv(16, socket.MSG_PEEK)
                    except ConnectionResetError:
                        continue
                    answered += data.startswith(b"HTTP/")
                    if not data:
                        continue
                still.append(s)
            open_ = still
            ask_tell(c, 2)
            time.sleep(0.5)
        elapsed = time.monotonic() - start
        check(not open_, "%d slow connections still open after %.0f s" % (len(open_), elapsed))
        check(answered == 0, "%d slow connections got an answer" % answered)
        check(not closed_by_peer(idle), "an idle connection (no bytes) was closed")
        check("whose request head took over 2 s" in d.log_text(), "no log line")
        ask_tell(c, 5)
        c.close()
        idle.close()
        for s in slow:
            s.close()


@tap.test
def slow_head_after_a_request_closed(exe):
    # The deadline of a head that begins on a connection which already served a
    # request: it starts at the first data after that request's end (conns.c).
    args = ["--request-head-timeout", "2", "--connection-timeout", "60"]
    with Daemon(exe, extra_args=args) as d:
        idle = served_once(d.port)
        slow = [served_once(d.port) for _ in range(5)]
        time.sleep(0.1)
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start = time.monotonic()
        open_ = list(slow)
        while open_ and time.monotonic() - start < 15:
            open_ = trickle(open_)
            time.sleep(0.5)
        elapsed = time.monotonic() - start
        check(not open_, "%d slow heads after a request still open after %.0f s"
              % (len(open_), elapsed))
        check(elapsed >= 1.5, "closed after %.1f s, before the 2 s deadline" % elapsed)
        check(not closed_by_peer(idle), "an idle connection that served a request was closed")
        # The idle one still serves.
        got = get_to_close(idle, "/healthz")
        check(got.startswith(b"HTTP/1.1 200"), "the idle connection's next request: %r" % got[:100])
        idle.close()
        for s in slow:
            s.close()


@tap.test
def limit_and_reserve(exe):
    args = ["--max-connections", "20", "--max-connections-per-client", "100"]
    with Daemon(exe, extra_args=args) as d:
        d.post("/v1/studies", STUDY).expect(201)
        d.close_clients()
        held = [Client(d.port) for _ in range(20)]
        try:
            for h in held:
                h.get("/v1/studies").expect(200)
            # The 21st connection: 503 for the API, then closed; health checks answer.
            r = raw_request(d.port, "GET", "/v1/studies", {}, b"")
            r.expect_error(503, "unavailable")
            check(r.header("connection") == "close", "503 without Connection: close")
            for path in ("/healthz", "/metrics"):
                status, body = http_once(d.port, path)
                check(status == 200, "%s at the limit: %r" % (path, body[:200]))
            # The held connections keep working.
            for h in held[:5]:
                h.get("/v1/studies/s").expect(200)
            # Fill the reserve too (8): the next connection is refused without an answer.
            extra = [connect(d.port) for _ in range(8)]
            status, body = http_once(d.port, "/healthz")
            check(status is None, "past the reserve a connection was served: %r" % body[:200])
            for s in extra:
                s.close()
            held[0].get("/v1/studies").expect(200)
        finally:
            for h in held:
                h.close()


@tap.test
def per_client_cap(exe):
    with Daemon(exe, extra_args=["--max-connections", "40"]) as d:  # a quarter: 10
        d.close_clients()
        held = [Client(d.port) for _ in range(10)]
        try:
            for h in held:
                h.get("/healthz").expect(200)
            status, body = http_once(d.port, "/healthz")
            check(status is None, "an 11th connection from one address was served")
            status, body = http_once(d.port, "/healthz", source="127.0.0.2")
            check(status == 200, "another address was refused: %r" % body[:200])
            held[3].get("/healthz").expect(200)
        finally:
            for h in held:
                h.close()


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
