#!/usr/bin/python3
"""test_views.py: what hpod writes back: numbers, CSV export, list paging, user attrs.

Usage: test_views.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)

- shortest_numbers: 0.1, a stepped grid value and /v1/samplers come back as
  the shortest text that reads back to the same double, in JSON and CSV
  (the raw bytes, not the parsed value); 0.30000000000000004 keeps 17 digits.
- csv_all_rows: a 2,503-trial study exports every row as CSV without a limit
  (with X-Total-Count), in order, with exact values; pandas-style parsing
  with the csv module reads them all.
- csv_columns: duration, user_attrs_<key> (sorted, quoted as needed) and
  ?intermediate=true's JSON cell, with the old columns first in their order.
- paging_headers: JSON and CSV pages carry X-Total-Count and Link rel="next"
  (same filters) while more remain; following the links visits every
  matching trial exactly once; the last page has no Link.
- csv_stream_while_writing: a CSV export of 3,000 trials runs while other
  clients tell and ask: rows are exactly trials 0..N-1 of the snapshot.
- csv_study_deleted_midway: the study is deleted while its 8,000-row export
  is being read: the export still ends with every row of its snapshot.
- patch_user_attrs_durable: PATCH on a trial (any state) and on a study
  merges user_attrs (null removes a key); it survives a restart and a
  SIGKILL; an identical re-create still answers 200 after the study's
  attrs changed.

Prints TAP.
"""

import csv
import http.client
import io
import json
import os
import re
import sys
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, exe_from_argv  # noqa: E402

tap = Tap()

FLOAT_STUDY = {"name": "f", "params": [{"name": "x", "type": "float", "low": 0, "high": 1},
                                       {"name": "g", "type": "float", "low": 0, "high": 1,
                                        "step": 0.05}],
               "sampler": {"type": "random", "seed": 7}}


def parse_csv(body):
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    return rows[0], rows[1:]


def fill(d, name, n, attrs_every=0):
    """Record n complete trials through POST .../trials with value = number / 8."""
    c = d.client()
    for i in range(n):
        body = {"params": {"x": (i % 97) / 97.0, "g": 0.05 * (i % 20)}, "value": i / 8.0}
        if attrs_every and i % attrs_every == 0:
            body["user_attrs"] = {"i": i}
        c.post("/v1/studies/%s/trials" % name, body).expect(201)
    c.close()


@tap.test
def shortest_numbers(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", FLOAT_STUDY).expect(201)
        r = d.post("/v1/studies/f/trials", {"params": {"x": 0.1, "g": 0.35}, "value": 0.1})
        r.expect(201)
        check(b'"x":0.1,' in r.body and b'"g":0.35}' in r.body and b'"value":0.1,' in r.body,
              "trial reply is not shortest: %r" % r.body[:300])
        r = d.post("/v1/studies/f/trials", {"params": {"x": 0.5, "g": 0.05},
                                            "value": 0.30000000000000004}).expect(201)
        r = d.get("/v1/studies/f/trials/1")
        check(b'"value":0.30000000000000004' in r.body, "17 digits lost: %r" % r.body[:300])
        study = d.get("/v1/studies/f")
        check(b'"step":0.05' in study.body, "step not shortest: %r" % study.body[:400])
        # A stepped grid value handed out by ask.
        for _ in range(20):
            t = d.post("/v1/studies/f/ask").expect(201)
            raw = d.get("/v1/studies/f/trials/%d" % t["number"]).body.decode()
            g = re.search(r'"g":([-0-9.e+]+)', raw).group(1)
            check(repr(float(g)) == g or g == "%d" % float(g), "grid value %s not shortest" % g)
            check(len(g) <= 4, "grid value %s longer than the grid's 0.05 steps" % g)
        samplers = d.get("/v1/samplers").expect(200)
        raw = d.get("/v1/samplers").body.decode()
        for m in re.finditer(r'(?<![A-Za-z_"])(-?[0-9]+\.[0-9]+(?:e[-+]?[0-9]+)?)', raw):
            text = m.group(1)
            check(repr(float(text)) == text, "/v1/samplers number %s is not shortest" % text)
        check(samplers["samplers"], "no samplers listed")
        head, rows = parse_csv(d.get("/v1/studies/f/trials?format=csv").body)
        check(rows[0][2] == "0.1" and rows[0][3] == "0.1" and rows[0][4] == "0.35",
              "CSV row 0 not shortest: %r" % rows[0])
        check(rows[1][2] == "0.30000000000000004", "CSV row 1: %r" % rows[1])


@tap.test
def csv_all_rows(exe):
    n = 2503
    with Daemon(exe) as d:
        d.post("/v1/studies", FLOAT_STUDY).expect(201)
        fill(d, "f", n)
        r = d.get("/v1/studies/f/trials?format=csv")
        check(r.status == 200, r.describe())
        check(r.header("content-type").startswith("text/csv"), "type %r" % r.header("content-type"))
        check(r.header("x-total-count") == str(n), "X-Total-Count %r" % r.header("x-total-count"))
        check(r.header("link") is None, "a complete CSV has no next link: %r" % r.header("link"))
        head, rows = parse_csv(r.body)
        check(head[:7] == ["number", "state", "value", "x", "g", "created_at", "completed_at"],
              "header %r" % head)
        check(len(rows) == n, "%d CSV rows, expected %d" % (len(rows), n))
        for i, row in enumerate(rows):
            check(int(row[0]) == i and row[1] == "complete" and float(row[2]) == i / 8.0,
                  "row %d: %r" % (i, row[:3]))
            check(float(row[3]) == (i % 97) / 97.0, "row %d x %r" % (i, row[3]))
        # The same through Accept: text/csv.
        r2 = d.get("/v1/studies/f/trials", headers={"Accept": "text/csv"})
        check(r2.body == r.body, "Accept: text/csv differs from format=csv")
        # An explicit limit still pages.
        r3 = d.get("/v1/studies/f/trials?format=csv&limit=10")
        check(len(parse_csv(r3.body)[1]) == 10, "limit=10 did not page")


@tap.test
def csv_columns(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", FLOAT_STUDY).expect(201)
        for _ in range(3):
            d.post("/v1/studies/f/ask").expect(201)
        d.post("/v1/studies/f/trials/0/report", {"step": 0, "value": 0.5}).expect(200)
        d.post("/v1/studies/f/trials/0/report", {"step": 4, "value": 0.25}).expect(200)
        d.post("/v1/studies/f/trials/0/tell",
               {"value": 1.5, "user_attrs": {"zeta": 'say "hi", bye', "alpha": 2.5}}).expect(200)
        d.request("PATCH", "/v1/studies/f/trials/1", {"user_attrs": {"mid": {"k": [1, 0.1]}}}
                  ).expect(200)
        trials = d.get("/v1/studies/f/trials").expect(200)["trials"]
        r = d.get("/v1/studies/f/trials?format=csv&intermediate=true")
        head, rows = parse_csv(r.body)
        check(head == ["number", "state", "value", "x", "g", "created_at", "completed_at",
                       "duration", "user_attrs_alpha", "user_attrs_mid", "user_attrs_zeta",
                       "intermediate"], "header %r" % head)
        t0 = trials[0]
        check(rows[0][5] == t0["created_at"] and rows[0][6] == t0["completed_at"], "times %r" % rows[0])
        check(rows[0][8] == "2.5" and rows[0][9] == "" and rows[0][10] == 'say "hi", bye',
              "attr cells %r" % rows[0])
        check(json.loads(rows[0][11]) == {"0": 0.5, "4": 0.25}, "intermediate %r" % rows[0][11])
        check(rows[1][9] == '{"k":[1,0.1]}' and rows[1][6] == "" and rows[1][7] == "",
              "row 1 %r" % rows[1])
        check(rows[2][11] == "{}", "no reports: %r" % rows[2][11])
        # duration: completed - started in seconds (ms precision).
        def ms(ts):
            return time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(ts[20:23])
        want = (ms(t0["completed_at"]) - ms(t0["started_at"])) / 1000.0
        check(abs(float(rows[0][7]) - want) < 1e-9, "duration %r, want %r" % (rows[0][7], want))
        # Without intermediate=true: no such column; a bad value is invalid_argument.
        head2, _ = parse_csv(d.get("/v1/studies/f/trials?format=csv").body)
        check(head2 == head[:-1], "header without intermediate %r" % head2)
        d.get("/v1/studies/f/trials?format=csv&intermediate=yes").expect_error(
            400, "invalid_argument", "intermediate")


def follow(d, first, csv_mode):
    """Follow Link rel=next from `first`; return (numbers seen, pages, totals)."""
    seen, pages, totals = [], 0, set()
    url = first
    for _ in range(100):
        r = d.get(url)
        check(r.status == 200, r.describe())
        totals.add(r.header("x-total-count"))
        pages += 1
        if csv_mode:
            seen += [int(row[0]) for row in parse_csv(r.body)[1]]
        else:
            seen += [t["number"] for t in r.json["trials"]]
        link = r.header("link")
        if link is None:
            return seen, pages, totals
        m = re.fullmatch(r'<([^>]+)>; rel="next"', link)
        check(m is not None, "Link %r" % link)
        url = m.group(1)
        q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
        check(q.get("state") == ["complete"], "next link lost the filter: %r" % link)
    raise AssertionError("more than 100 pages")


@tap.test
def paging_headers(exe):
    with Daemon(exe) as d:
        d.post("/v1/studies", FLOAT_STUDY).expect(201)
        fill(d, "f", 1205)
        for _ in range(7):
            d.post("/v1/studies/f/ask").expect(201)  # running: filtered out below
        r = d.get("/v1/studies/f/trials")
        check(r.header("x-total-count") == "1212", "total %r" % r.header("x-total-count"))
        check(r.header("link") == '</v1/studies/f/trials?offset=1000&limit=1000>; rel="next"',
              "link %r" % r.header("link"))
        seen, pages, totals = follow(d, "/v1/studies/f/trials?state=complete&limit=500", False)
        check(seen == list(range(1205)) and pages == 3 and totals == {"1205"},
              "JSON pages: %d rows, %d pages, totals %r" % (len(seen), pages, totals))
        seen, pages, totals = follow(d, "/v1/studies/f/trials?state=complete&limit=400&format=csv",
                                     True)
        check(seen == list(range(1205)) and pages == 4 and totals == {"1205"},
              "CSV pages: %d rows, %d pages, totals %r" % (len(seen), pages, totals))
        r = d.get("/v1/studies/f/trials?offset=1300")
        check(r.header("x-total-count") == "1212" and r.header("link") is None,
              "past the end: %r %r" % (r.header("x-total-count"), r.header("link")))


@tap.test
def csv_stream_while_writing(exe):
    n = 3000
    with Daemon(exe) as d:
        d.post("/v1/studies", FLOAT_STUDY).expect(201)
        fill(d, "f", n, attrs_every=500)
        stop = threading.Event()
        errors = []

        def writer():
            c = d.client()
            try:
                for _ in range(400):
                    if stop.is_set():
                        return
                    t = c.post("/v1/studies/f/ask").expect(201)
                    c.post("/v1/studies/f/trials/%d/tell" % t["number"], {"value": 1.0}).expect(200)
                    c.request("PATCH", "/v1/studies/f/trials/%d" % (t["number"] % n),
                              {"user_attrs": {"w": t["number"]}}).expect(200)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
            finally:
                c.close()

        threads = [threading.Thread(target=writer) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for _ in range(5):
                r = d.get("/v1/studies/f/trials?format=csv")
                total = int(r.header("x-total-count"))
                head, rows = parse_csv(r.body)
                check(total >= n, "total %d" % total)
                check([int(row[0]) for row in rows] == list(range(total)),
                      "rows are not trials 0..%d: %d rows" % (total - 1, len(rows)))
                check(all(len(row) == len(head) for row in rows), "ragged CSV")
                check(all(float(row[2]) == i / 8.0 for i, row in enumerate(rows[:n])),
                      "values changed")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        check(not errors, "writer errors: %r" % errors[:3])


@tap.test
def csv_study_deleted_midway(exe):
    n = 8000
    with Daemon(exe) as d:
        d.post("/v1/studies", FLOAT_STUDY).expect(201)
        fill(d, "f", n)
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
        conn.request("GET", "/v1/studies/f/trials?format=csv")
        resp = conn.getresponse()
        check(resp.status == 200, "export %d" % resp.status)
        first = resp.read(4096)
        d.delete("/v1/studies/f").expect(204)
        rest = resp.read()
        conn.close()
        head, rows = parse_csv(first + rest)
        check(len(rows) == n and [int(r[0]) for r in rows] == list(range(n)),
              "export cut by the delete: %d rows" % len(rows))
        d.get("/v1/studies/f").expect_error(404, "not_found")
        check(d.get("/healthz").status == 200, "healthz after the export")


@tap.test
def patch_user_attrs_durable(exe):
    study = {"name": "p", "params": [{"name": "x", "type": "float", "low": 0, "high": 1}],
             "sampler": {"type": "random", "seed": 3}, "user_attrs": {"owner": "ml", "n": 1}}
    with Daemon(exe) as d:
        d.post("/v1/studies", study).expect(201)
        for _ in range(3):
            d.post("/v1/studies/p/ask").expect(201)
        d.post("/v1/studies/p/trials/0/tell", {"value": 1, "user_attrs": {"a": 1, "b": 2}}).expect(200)
        d.post("/v1/studies/p/trials/1/tell", {"state": "failed"}).expect(200)
        t = d.request("PATCH", "/v1/studies/p/trials/0", {"user_attrs": {"b": None, "c": 0.1}})
        check(t.expect(200)["user_attrs"] == {"a": 1, "c": 0.1}, "merged %r" % t.json)
        d.request("PATCH", "/v1/studies/p/trials/1", {"user_attrs": {"why": "oom"}}).expect(200)
        d.request("PATCH", "/v1/studies/p/trials/2", {"user_attrs": {"epoch": 3}}).expect(200)
        d.request("PATCH", "/v1/studies/p/trials/2", {"user_attrs": {"epoch": 4}}).expect(200)
        s = d.request("PATCH", "/v1/studies/p", {"user_attrs": {"owner": None, "note": "x"}})
        check(s.expect(200)["user_attrs"] == {"n": 1, "note": "x"}, "study %r" % s.json)
        d.request("PATCH", "/v1/studies/p", {"user_attrs": {"x": 1}, "name": "q"}).expect_error(
            400, "invalid_argument", "name")
        r = d.request("DELETE", "/v1/studies/p/trials/0")
        check(r.status == 405 and set(r.header("allow").split(", ")) == {"GET", "HEAD", "PATCH"},
              "trial Allow %r" % r.header("allow"))
        r = d.request("PUT", "/v1/studies/p")
        check(r.status == 405 and set(r.header("allow").split(", ")) == {"GET", "HEAD", "PATCH", "DELETE"},
              "study Allow %r" % r.header("allow"))
        want = {0: {"a": 1, "c": 0.1}, 1: {"why": "oom"}, 2: {"epoch": 4}}

        def verify(what):
            for number, attrs in want.items():
                got = d.get("/v1/studies/p/trials/%d" % number).expect(200)["user_attrs"]
                check(got == attrs, "%s: trial %d attrs %r, want %r" % (what, number, got, attrs))
            got = d.get("/v1/studies/p").expect(200)["user_attrs"]
            check(got == {"n": 1, "note": "x"}, "%s: study attrs %r" % (what, got))

        d.stop()
        d.start()
        verify("after restart")
        d.request("PATCH", "/v1/studies/p/trials/2", {"user_attrs": {"epoch": None, "k": "v"}}
                  ).expect(200)
        want[2] = {"k": "v"}
        d.kill()
        d.start()
        verify("after SIGKILL")
        # The original create body still matches: user_attrs are not part of the identity.
        r = d.post("/v1/studies", study)
        check(r.expect(200)["user_attrs"] == {"n": 1, "note": "x"}, "re-create %r" % r.json)
        other = dict(study, direction="maximize")
        r = d.post("/v1/studies", other)
        check(r.expect(409)["error"]["code"] == "conflict", "other definition: %s" % r.describe())


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
