#!/usr/bin/python3
"""test_bigtransfer.py: the 8 MB transfers of a 10^6-element gradient study
(issue 18, target 3) over plain sockets: the vector download arrives byte for
byte however the client reads it, even when the trial moved on while the
client paused; a client that stops reading a download or stops sending an
upload holds up no other request, even on the one HTTP thread; an upload's
elements are checked for finiteness as they arrive, wherever the reads cut
them, and the first bad one is named; a good upload sent in odd pieces is
taken whole (E6's first Adam step, docs/ALGORITHMS.md §7.7, to 1e-9).

Usage: test_bigtransfer.py PATH/TO/hpod. Prints TAP.
"""

import os
import socket
import struct
import sys
import time

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import REQUEST_TIMEOUT, Daemon, Tap, check  # noqa: E402

tap = Tap()
N = 1000000
OCTET = {"Content-Type": "application/octet-stream"}
E6_ADAM_ONE_STEP = [1.0, 1.105170915129, 1.105170916970, 1.105170917486, 1.105170917707]


def study(d, name):
    d.post("/v1/studies", {"name": name, "params": [
        {"name": "lam", "type": "float", "low": 1e-3, "high": 1e3, "log": True, "size": N}],
        "sampler": {"type": "gradient", "optimizer": "adam", "lr": 0.1, "seed": 1}}).expect(201)


def e6_grad(raw):
    """E6's closed-form hypergradient at the downloaded lam, as little-endian bytes."""
    lam = np.frombuffer(raw, dtype="<f8")
    a = 2.0 + (np.arange(lam.size) % 5)
    w = a / (1.0 + lam)
    return (-(w - 1.0) * a / (1.0 + lam) ** 2).astype("<f8").tobytes()


def vector(d, href):
    r = d.get(href)
    check(r.status == 200, "GET %s: %d %r" % (href, r.status, r.body[:300]))
    return r.body


def connect(d):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=REQUEST_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_head(s):
    """(status, headers, bytes of the body already read) of one response."""
    buf = b""
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while b"\r\n\r\n" not in buf:
        check(time.monotonic() < deadline, "no response head in time")
        chunk = s.recv(4096)
        check(chunk, "connection closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, rest


def read_body(s, n, have, piece=None, pause=0.0):
    """The rest of an n-byte body, read `piece` bytes at a time (None: as it comes)."""
    out = bytearray(have)
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while len(out) < n:
        check(time.monotonic() < deadline, "body not in after %d of %d bytes" % (len(out), n))
        chunk = s.recv(min(piece or 1 << 20, n - len(out)))
        check(chunk, "connection closed after %d of %d bytes" % (len(out), n))
        out += chunk
        if pause:
            time.sleep(pause)
    return bytes(out)


def get_raw(s, path, piece=None, pause=0.0):
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
    status, hdrs, rest = read_head(s)
    check(status == 200, "GET %s: %d" % (path, status))
    return read_body(s, int(hdrs["content-length"]), rest, piece, pause)


def put_raw(d, path, body, pieces=(), pause=0.0):
    """PUT body on a connection of its own: the first pieces of the given sizes one by
    one (pause between), then the rest at once. Returns (status, response body)."""
    s = connect(d)
    try:
        return put_on(s, path, body, pieces, pause)
    finally:
        s.close()


def put_on(s, path, body, pieces, pause):
    # After "100 Continue" (sent once the upload is accepted), so the pieces arrive apart.
    s.sendall(("PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream"
               "\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
               % (path, len(body))).encode())
    status, _, rest = read_head(s)
    check(status == 100 and rest == b"", "expected 100 Continue, got %d %r" % (status, rest))
    view = memoryview(body)
    off = 0
    for size in pieces:
        s.sendall(view[off:off + size])
        off += size
        time.sleep(pause)
    s.sendall(view[off:])
    status, hdrs, rest = read_head(s)
    return status, read_body(s, int(hdrs.get("content-length", "0")), rest)


@tap.test
def download_is_byte_exact_however_it_is_read(exe):
    with Daemon(exe) as d:
        study(d, "dl")
        t = d.post("/v1/studies/dl/ask").expect(201)
        href = t["params"]["lam"]["href"]
        whole = vector(d, href)
        check(len(whole) == 8 * N, "download of %d bytes" % len(whole))
        s = connect(d)
        try:
            # Small uneven reads with pauses: MHD sends what the socket takes, many times over.
            slow = get_raw(s, href, piece=65521, pause=0.0005)
            again = get_raw(s, href)  # the same connection, the next request
        finally:
            s.close()
        check(slow == whole, "a download read in small pieces differs")
        check(again == whole, "a second download on the connection differs")
        # The uploaded gradient steps the study; the next vector is E6's first step.
        r = d.request("PUT", "/v1/studies/dl/trials/%d/gradient/lam" % t["number"],
                      body=e6_grad(whole), headers=OCTET)
        check(r.status == 204, "upload: %d %r" % (r.status, r.body[:200]))
        d.post("/v1/studies/dl/trials/%d/tell" % t["number"], {"value": 0.0}).expect(200)
        t1 = d.post("/v1/studies/dl/ask").expect(201)
        lam1 = np.frombuffer(vector(d, t1["params"]["lam"]["href"]), dtype="<f8")
        want = np.array(E6_ADAM_ONE_STEP)[np.arange(N) % 5]
        err = float(np.max(np.abs(lam1 - want)))
        check(err < 1e-9, "E6 step 1: max |err| %.3g" % err)


@tap.test
def stalled_reader_holds_up_nothing(exe):
    # One HTTP thread: the stalled connection shares it with every other request.
    with Daemon(exe, ["--http-threads", "1"]) as d:
        study(d, "st")
        t = d.post("/v1/studies/st/ask").expect(201)
        href = t["params"]["lam"]["href"]
        whole = vector(d, href)
        stalled = connect(d)
        try:
            stalled.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % href).encode())
            status, hdrs, rest = read_head(stalled)
            check(status == 200 and int(hdrs["content-length"]) == 8 * N,
                  "stalled GET: %d %r" % (status, hdrs))
            # It reads no more while the study goes on: upload, tell, ask, download, others.
            d.get("/healthz").expect(200)
            r = d.request("PUT", "/v1/studies/st/trials/%d/gradient/lam" % t["number"],
                          body=e6_grad(whole), headers=OCTET)
            check(r.status == 204, "upload beside a stalled download: %d" % r.status)
            d.post("/v1/studies/st/trials/%d/tell" % t["number"], {"value": 0.0}).expect(200)
            t1 = d.post("/v1/studies/st/ask").expect(201)
            nxt = vector(d, t1["params"]["lam"]["href"])
            check(len(nxt) == 8 * N and nxt != whole, "the next trial's vector")
            # Then it reads on: the first trial's vector, as it was, though the trial finished.
            got = read_body(stalled, 8 * N, rest)
            check(got == whole, "the stalled download changed while it waited")
        finally:
            stalled.close()
        d.get("/healthz").expect(200)


@tap.test
def stalled_sender_holds_up_nothing(exe):
    with Daemon(exe, ["--http-threads", "1"]) as d:
        study(d, "up")
        t = d.post("/v1/studies/up/ask").expect(201)
        whole = vector(d, t["params"]["lam"]["href"])
        grad = e6_grad(whole)
        path = "/v1/studies/up/trials/%d/gradient/lam" % t["number"]
        stalled = connect(d)
        try:
            stalled.sendall(("PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                             "application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                             % (path, len(grad))).encode() + grad[:1000003])
            d.get("/healthz").expect(200)
            check(vector(d, t["params"]["lam"]["href"]) == whole,
                  "download beside a stalled upload")
            # The same trial's upload on another connection goes through meanwhile.
            r = d.request("PUT", path, body=grad, headers=OCTET)
            check(r.status == 204, "upload beside a stalled one: %d" % r.status)
        finally:
            stalled.close()  # cut mid-body: nothing of it is kept
        d.post("/v1/studies/up/trials/%d/tell" % t["number"], {"value": 0.0}).expect(200)
        t1 = d.post("/v1/studies/up/ask").expect(201)
        lam1 = np.frombuffer(vector(d, t1["params"]["lam"]["href"]), dtype="<f8")
        want = np.array(E6_ADAM_ONE_STEP)[np.arange(N) % 5]
        check(float(np.max(np.abs(lam1 - want))) < 1e-9, "E6 step 1 after the cut upload")


@tap.test
def upload_checked_as_it_arrives(exe):
    # Bad elements anywhere: in the first read, across reads' edges (the pieces below
    # end mid-element), in blocks of 512, at the end; the first one is named.
    pieces = (1, 7, 4093, 5, 65537, 3, 32768, 11)
    edges = []
    off = 0
    for p in pieces:
        off += p
        edges.append(off // 8)
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0x7ff0000000000001))[0]
    bad_sets = [(0,), (edges[2],), (edges[4], 3), (edges[6] - 1, edges[7]), (511, 512),
                (4095, 700000), (N - 1,)]
    with Daemon(exe) as d:
        study(d, "chk")
        t = d.post("/v1/studies/chk/ask").expect(201)
        whole = vector(d, t["params"]["lam"]["href"])
        grad = e6_grad(whole)
        path = "/v1/studies/chk/trials/%d/gradient/lam" % t["number"]
        values = (float("inf"), float("nan"), float("-inf"), nan_payload)
        for k, places in enumerate(bad_sets):
            bad = np.frombuffer(grad, dtype="<f8").copy()
            for i, p in enumerate(places):
                bad[p] = values[(k + i) % len(values)]
            status, body = put_raw(d, path, bad.tobytes(), pieces, pause=0.002)
            check(status == 400 and b"element %d is not finite" % min(places) in body,
                  "bad elements at %s: %d %r" % (places, status, body[:300]))
        # The good one in the same odd pieces: taken whole (the step below uses it).
        status, body = put_raw(d, path, grad, pieces, pause=0.002)
        check(status == 204, "good upload in pieces: %d %r" % (status, body[:300]))
        d.post("/v1/studies/chk/trials/%d/tell" % t["number"], {"value": 0.0}).expect(200)
        t1 = d.post("/v1/studies/chk/ask").expect(201)
        lam1 = np.frombuffer(vector(d, t1["params"]["lam"]["href"]), dtype="<f8")
        want = np.array(E6_ADAM_ONE_STEP)[np.arange(N) % 5]
        err = float(np.max(np.abs(lam1 - want)))
        check(err < 1e-9, "E6 step 1 after the uploads: max |err| %.3g" % err)


tap.main()
