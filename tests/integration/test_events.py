#!/usr/bin/python3
"""test_events.py: the dashboard's server-sent events (GET /v1/studies/{s}/events).

Usage: test_events.py PATH/TO/hpod

- stream: text/event-stream; the first event is the study as the API has it (counts,
  total, cursor, best); an ask and a tell each bring an event with the new counts, and
  `from` is the previous event's cursor (where /columns must be asked again).
- resume: reconnecting with Last-Event-ID gets no event while nothing changed; after a
  change, at once, with `from` taken from the id; a malformed id is a fresh start.
- errors: unknown query keys and a bad `from` are invalid_argument, an unknown study
  not_found, HEAD has no body; a study deleted while streamed ends the stream with
  `event: gone`.
- limit: 64 streams at most, the 65th is 503 unavailable; closing one makes room.
- tokens: no token is 401, a read token scoped to another prefix sees no such study
  (404, as every read), a read token scoped to the study streams, and a token reload
  (SIGHUP) ends the stream; a read token
  scoped to the study streams.
- shutdown: SIGTERM with open streams: hpod exits 0 well before its 30 s stop deadline
  and every stream ends cleanly (the chunked terminator, no reset).

Prints TAP.
"""
import http.client
import json
import os
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, exe_from_argv, fail, mint_token  # noqa: E402

tap = Tap()
PARAMS = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]


class Stream:
    """One event stream over its own connection; events read with a bounded wait."""

    def __init__(self, port, path, headers=None, timeout=10.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def body(self):
        return self.resp.read()

    def event(self, timeout=10.0):
        """The next event as {id, event, data} (comments skipped), or None at the end."""
        self.conn.sock.settimeout(timeout)
        ev = {"id": None, "event": "message", "data": None}
        seen = False
        while True:
            line = self.resp.readline()
            if line == b"":
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if seen and ev["data"] is not None:
                    return ev
                seen = False
                continue
            if line.startswith(":"):
                continue
            seen = True
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "data":
                ev["data"] = json.loads(v) if v.startswith("{") else v
            elif k in ("id", "event"):
                ev[k] = v

    def quiet(self, seconds):
        """True when no event comes for `seconds` (heartbeats are comments)."""
        try:
            self.event(timeout=seconds)
        except (socket.timeout, TimeoutError):
            return True
        return False

    def close(self):
        self.conn.close()


def counts(d, name):
    s = d.get("/v1/studies/" + name).expect(200)
    t = dict(s["trials"])
    total = t.pop("total")
    return t, total


@tap.test
def stream(d):
    d.post("/v1/studies", {"name": "ev", "params": PARAMS, "sampler": {"type": "random", "seed": 1}}).expect(201)
    for i in range(3):
        d.post("/v1/studies/ev/trials", {"params": {"x": i / 10}, "value": i + 1.0}).expect(201)
    s = Stream(d.port, "/v1/studies/ev/events")
    check(s.status == 200, "status %d" % s.status)
    check(s.resp.getheader("Content-Type") == "text/event-stream", s.resp.getheader("Content-Type"))
    check(s.resp.getheader("Cache-Control") == "no-cache", "Cache-Control")
    e = s.event()
    t, total = counts(d, "ev")
    check(e["event"] == "study", "event %r" % e)
    check(e["data"]["trials"] == t and e["data"]["total"] == total == 3, "first event %r, API %r" % (e, t))
    check((e["data"]["from"], e["data"]["cursor"], e["data"]["best"]) == (0, 3, 0), "first %r" % e["data"])
    check(e["id"].startswith("3.") and len(e["id"]) == 2 + 16, "id %r" % e["id"])
    a = d.post("/v1/studies/ev/ask", {}).expect(201)
    e = s.event()
    check(e["data"]["trials"]["running"] == 1 and e["data"]["total"] == 4, "after ask %r" % e)
    check((e["data"]["from"], e["data"]["cursor"]) == (3, a["number"]), "cursor at the running trial %r" % e["data"])
    d.post("/v1/studies/ev/trials/%d/tell" % a["number"], {"value": 0.5}).expect(200)
    e = s.event()
    t, total = counts(d, "ev")
    check(e["data"]["trials"] == t and e["data"]["best"] == a["number"], "after tell %r" % e)
    check((e["data"]["from"], e["data"]["cursor"]) == (a["number"], 4), "from the last cursor %r" % e["data"])
    s.close()


@tap.test
def resume(d):
    s = Stream(d.port, "/v1/studies/ev/events")
    last = s.event()
    s.close()
    r = Stream(d.port, "/v1/studies/ev/events", {"Last-Event-ID": last["id"]})
    check(r.status == 200, "status")
    check(r.quiet(2.5), "an event although nothing changed")
    r.close()
    d.post("/v1/studies/ev/trials", {"params": {"x": 0.9}, "value": 9.0}).expect(201)
    r = Stream(d.port, "/v1/studies/ev/events", {"Last-Event-ID": last["id"]})
    e = r.event()
    check(e["data"]["from"] == int(last["id"].split(".")[0]) and e["data"]["total"] == last["data"]["total"] + 1,
          "resumed %r after %r" % (e, last))
    r.close()
    # A malformed id: a fresh start (an event at once, from the query's `from`).
    r = Stream(d.port, "/v1/studies/ev/events?from=2", {"Last-Event-ID": "garbage"})
    e = r.event()
    check(e["data"]["from"] == 2, "fresh start %r" % e)
    r.close()


@tap.test
def errors(d):
    d.get("/v1/studies/ev/events?x=1").expect_error(400, "invalid_argument", "x")
    d.get("/v1/studies/ev/events?from=-1").expect_error(400, "invalid_argument", "from")
    d.get("/v1/studies/ev/events?from=a").expect_error(400, "invalid_argument", "from")
    d.get("/v1/studies/nope/events").expect_error(404, "not_found")
    r = d.request("POST", "/v1/studies/ev/events", {})
    check(r.status == 405 and r.header("Allow") == "GET, HEAD", r.describe())
    h = d.request("HEAD", "/v1/studies/ev/events")
    check(h.status == 200 and h.body == b"", h.describe())
    d.post("/v1/studies", {"name": "gone", "params": PARAMS}).expect(201)
    s = Stream(d.port, "/v1/studies/gone/events")
    s.event()
    d.delete("/v1/studies/gone").expect(204)
    e = s.event()
    check(e is not None and e["event"] == "gone", "gone %r" % e)
    check(s.event() is None, "the stream ends")
    s.close()


@tap.test
def limit(d0):
    state = os.path.join(d0.state_dir, "limit")
    os.makedirs(state)
    d = Daemon(d0.exe, state_dir=state)
    d.start()
    d.post("/v1/studies", {"name": "ev", "params": PARAMS}).expect(201)
    streams = []
    try:
        for _ in range(64):
            s = Stream(d.port, "/v1/studies/ev/events")
            check(s.status == 200, "stream %d: %d" % (len(streams), s.status))
            streams.append(s)
        over = Stream(d.port, "/v1/studies/ev/events")
        check(over.status == 503 and json.loads(over.body())["error"]["code"] == "unavailable", "65th: %d" % over.status)
        over.close()
        streams.pop().close()
        deadline = time.monotonic() + 10
        while True:
            s = Stream(d.port, "/v1/studies/ev/events")
            if s.status == 200:
                streams.append(s)
                break
            s.close()
            check(time.monotonic() < deadline, "no room after a stream closed")
            d.post("/v1/studies/ev/trials", {"params": {"x": 0.5}, "value": 5.0}).expect(201)  # a write wakes the streams
            time.sleep(0.2)
    finally:
        for s in streams:
            s.close()
        d.close()


@tap.test
def tokens(d):
    state = os.path.join(d.state_dir, "tok")
    os.makedirs(state)
    rsec, rline = mint_token(d.exe, "reader:read:ev")
    osec, oline = mint_token(d.exe, "other:read:zz")
    wsec, wline = mint_token(d.exe, "writer:write")
    path = os.path.join(state, "tokens")
    with open(path, "w") as f:
        f.write("\n".join([rline, oline, wline]) + "\n")
    with Daemon(d.exe, ["--tokens", path], state_dir=state) as td:
        td.post("/v1/studies", {"name": "ev1", "params": PARAMS}, headers={"Authorization": "Bearer " + wsec}).expect(201)
        td.get("/v1/studies/ev1/events").expect_error(401, "unauthenticated")
        # Out of the token's scope is invisible, as for every read: not_found.
        td.get("/v1/studies/ev1/events", headers={"Authorization": "Bearer " + osec}).expect_error(404, "not_found")
        s = Stream(td.port, "/v1/studies/ev1/events", {"Authorization": "Bearer " + rsec})
        check(s.status == 200 and s.event()["data"]["total"] == 0, "scoped reader")
        # A token reload (SIGHUP) ends the streams: they were authorized with the old tokens.
        td.proc.send_signal(signal.SIGHUP)
        check(s.event(timeout=15) is None, "the stream outlived a token reload")
        s.close()
        td.get("/v1/studies/ev1/events?from=x", headers={"Authorization": "Bearer " + rsec}).expect_error(400, "invalid_argument", "from")


@tap.test
def shutdown(d):
    state = os.path.join(d.state_dir, "stop")
    os.makedirs(state)
    sd = Daemon(d.exe, state_dir=state)
    sd.start()
    try:
        sd.post("/v1/studies", {"name": "s", "params": PARAMS}).expect(201)
        streams = [Stream(sd.port, "/v1/studies/s/events") for _ in range(3)]
        for s in streams:
            check(s.event()["event"] == "study", "first event")
        t0 = time.monotonic()
        sd.stop()  # SIGTERM, exit 0 required (bounded wait)
        took = time.monotonic() - t0
        check(took < 10, "hpod took %.1f s to stop with open streams (it waited for them)" % took)
        for s in streams:
            try:
                check(s.event(timeout=5) is None, "an event after SIGTERM")
            except (http.client.IncompleteRead, ConnectionError) as e:
                fail("the stream was cut, not ended: %r" % e)
            s.close()
    finally:
        sd.close()


def main():
    with Daemon(exe_from_argv()) as daemon:
        return tap.run(daemon)


if __name__ == "__main__":
    sys.exit(main())
