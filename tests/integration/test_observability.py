#!/usr/bin/python3
"""test_observability.py: what an operator reads: log lines and /metrics.

Usage: test_observability.py PATH/TO/hpod      (HPOD_TEST_ONLY=name,name runs a subset)

Logs: at the default level (info) a request that succeeds or fails with a
4xx is not logged, a 5xx is (at err, with its request id, code and message,
the same id as the reply's X-Request-Id); at debug every request is; slow
requests (over --slow-request-ms) are logged at notice with "slow", and not
at all with 0; outside journald every line starts with an RFC 3339 UTC
timestamp with milliseconds and the level's name, with no <N> prefix; under
journald (JOURNAL_STREAM naming stderr's device and inode) every line starts
with <N> and carries no timestamp, while a JOURNAL_STREAM that names another
file is ignored; a decoded path cannot forge a log line.

/metrics after a known sequence of requests: exact request counts by route
template, method and status class; histogram buckets cumulative with the
+Inf bucket equal to _count (and to the matching request counter); ask
latency by sampler; tells by state, reports; trials by state per study, and
the "(other)" bucket past --metrics-max-studies; storage commit histograms
consistent with the commit counters; build info; process_* series. The text
passes `promtool check metrics` (Debian's prometheus package) and a strict
format check of our own. Prints TAP.
"""

import math
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, exe_from_argv, fail  # noqa: E402

tap = Tap()

SPACE = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]
# After the level: the source file and line, or the library a message comes from.
WHERE = r"(\S+:\d+|libmicrohttpd): "
TS_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (err|warning|notice|info|debug) "
                     + WHERE)
PRIO_LINE = re.compile(r"^<([0-7])>" + WHERE)
LEVELS = {"err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}


def study(name, sampler="random"):
    return {"name": name, "params": SPACE, "sampler": {"type": sampler, "seed": 1}}


def oversized_header(port):
    """A request whose header is over libmicrohttpd's memory limit (answered 431 by it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        head = s.recv(64)
    except OSError:
        head = b""
    finally:
        s.close()
    check(head.startswith(b"HTTP/1.1 4"), "oversized header answered %r" % head)


def log_lines(d):
    return [ln for ln in d.log_text().splitlines() if ln.strip()]


def lines_with(lines, text):
    return [ln for ln in lines if text in ln]


def check_timestamped(lines):
    """Every line: RFC 3339 UTC with ms, then the level name; never a <N> prefix."""
    check(lines, "no log lines at all")
    now = time.time()
    for ln in lines:
        check(TS_LINE.match(ln), "log line without timestamp and level: %r" % ln)
        ts = time.mktime(time.strptime(ln[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        check(abs(ts - now) < 3600, "timestamp %r is not UTC now (%.0f s off)" % (ln[:24], ts - now))


def level_of(ln):
    m = TS_LINE.match(ln)
    if m:
        return LEVELS[m.group(1)]
    m = PRIO_LINE.match(ln)
    return int(m.group(1)) if m else None


@tap.test
def default_level_logs_errors_only(exe):
    """At info: 2xx and 4xx unlogged, 5xx logged at err with the reply's X-Request-Id."""
    with Daemon(exe) as d:
        hz = d.get("/healthz")
        hz.expect(200)
        ok = d.post("/v1/studies", study("s"))
        ok.expect(201)
        r404 = d.get("/v1/studies/nope")
        r404.expect_error(404, "not_found")
        r405 = d.request("PUT", "/v1/studies/s")
        check(r405.status == 405, "PUT on a study: %s" % r405.describe())
        r400 = d.post("/v1/studies/s/ask", {"bogus": 1})
        r400.expect_error(400, "invalid_argument", "bogus")
        quiet_ids = [r.header("X-Request-Id") for r in (hz, ok, r404, r405, r400)]
        check(all(quiet_ids) and len(set(quiet_ids)) == 5, "replies lack distinct "
              "X-Request-Id: %r" % quiet_ids)
        # A 503: another process holds the write lock past the daemon's busy timeout, and a
        # study's creation commits to the database itself (asks would be acknowledged from
        # the redo log).
        db = sqlite3.connect(d.db, timeout=10, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            r503 = d.post("/v1/studies", study("t"))
            r503.expect_error(503, "unavailable")
        finally:
            db.rollback()
            db.close()
        rid = r503.header("X-Request-Id")
        check(rid, "503 without X-Request-Id")
        oversized_header(d.port)  # libmicrohttpd's message about it is debug
        d.stop()
        lines = log_lines(d)
        check_timestamped(lines)
        for q in quiet_ids:
            check(not lines_with(lines, q), "request %s logged at the default level:\n%s"
                  % (q, "\n".join(lines)))
        mine = lines_with(lines, "req=" + rid)
        check(len(mine) == 1, "the 503 is not logged once:\n%s" % "\n".join(lines))
        ln = mine[0]
        check(level_of(ln) == 3, "the 503 is not logged at err: %r" % ln)
        check(" POST /v1/studies 503 " in ln and "unavailable: " in ln,
              "the 503 line lacks method, path, status, code or message: %r" % ln)
        requests = [x for x in lines if " req=" in x]
        check(requests == mine, "other requests logged at info: %r" % requests)
        check(not lines_with(lines, "libmicrohttpd"), "a client's bad request logged at info: %r"
              % lines_with(lines, "libmicrohttpd"))


@tap.test
def debug_level_logs_every_request(exe):
    with Daemon(exe, extra_args=["--log-level", "debug"]) as d:
        ids = {}
        ids["200 GET /healthz"] = d.get("/healthz").header("X-Request-Id")
        ids["201 POST /v1/studies"] = d.post("/v1/studies", study("s")).header("X-Request-Id")
        ids["404 GET /v1/studies/nope"] = d.get("/v1/studies/nope").header("X-Request-Id")
        ids["404 GET /nope"] = d.get("/nope").header("X-Request-Id")
        oversized_header(d.port)
        d.stop()
        lines = log_lines(d)
        check_timestamped(lines)
        for ln in lines_with(lines, "libmicrohttpd: "):
            check(level_of(ln) == 7, "libmicrohttpd's message on one request not at debug: %r"
                  % ln)
        for what, rid in ids.items():
            status, method, path = what.split(" ")
            mine = lines_with(lines, "req=%s " % rid)
            check(len(mine) == 1, "%s (%s) not logged once:\n%s" % (what, rid, "\n".join(lines)))
            check(level_of(mine[0]) == 7, "%s not at debug: %r" % (what, mine[0]))
            check(" %s %s %s " % (method, path, status) in mine[0], "line for %s: %r"
                  % (what, mine[0]))
        nf = lines_with(lines, ids["404 GET /v1/studies/nope"])[0]
        check("not_found: no study named 'nope'" in nf, "a 4xx line lacks its error: %r" % nf)


@tap.test
def slow_requests(exe):
    """--slow-request-ms 1 and asks that take >= 50 ms: logged at notice with "slow";
    --slow-request-ms 0 logs none."""
    env = {"HPOD_TEST_SUGGEST_DELAY_MS": "50"}
    with Daemon(exe, extra_args=["--slow-request-ms", "1"], env=env) as d:
        d.post("/v1/studies", study("s")).expect(201)
        rid = d.post("/v1/studies/s/ask").header("X-Request-Id")
        d.stop()
        lines = log_lines(d)
        mine = lines_with(lines, "req=%s " % rid)
        check(len(mine) == 1, "slow ask not logged once:\n%s" % "\n".join(lines))
        check(level_of(mine[0]) == 5 and " slow" in mine[0]
              and " POST /v1/studies/s/ask 201 " in mine[0], "slow line: %r" % mine[0])
        us = int(re.search(r" 201 (\d+)us", mine[0]).group(1))
        check(us >= 50000, "slow line says %d us for an ask that slept 50 ms" % us)
    with Daemon(exe, extra_args=["--slow-request-ms", "0"], env=env) as d:
        d.post("/v1/studies", study("s")).expect(201)
        rid = d.post("/v1/studies/s/ask").header("X-Request-Id")
        d.stop()
        lines = log_lines(d)
        check(not lines_with(lines, rid), "--slow-request-ms 0 logged a request:\n%s"
              % "\n".join(lines))
    bad = subprocess.run([exe, "--slow-request-ms", "-1", "--check-config"],
                         capture_output=True, timeout=10)
    check(bad.returncode != 0 and b"slow-request-ms" in bad.stderr,
          "--slow-request-ms -1: rc %d %r" % (bad.returncode, bad.stderr))


@tap.test
def journald_prefixes(exe):
    """JOURNAL_STREAM naming stderr: <N> prefixes and no timestamps; naming another file:
    timestamps (systemd.exec(5): compare the device and inode with stderr's)."""
    state = tempfile.mkdtemp(prefix="hpodtest-journal-")
    try:
        # The harness opens hpod-1.log (truncating, same inode) as the daemon's stderr.
        log_path = os.path.join(state, "hpod-1.log")
        open(log_path, "wb").close()
        st = os.stat(log_path)
        env = {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}
        d = Daemon(exe, extra_args=["--log-level", "debug"], env=env, state_dir=state)
        try:
            d.start()
            rid = d.get("/v1/studies/nope").header("X-Request-Id")
            d.stop()
        finally:
            d.close()
        check(d.log_path == log_path, "the harness logged to %r" % d.log_path)
        lines = log_lines(d)
        check(lines, "no log lines")
        for ln in lines:
            check(PRIO_LINE.match(ln), "line without a <N> prefix under journald: %r" % ln)
            check(not re.search(r"\d{4}-\d\d-\d\dT\d\d:", ln), "timestamp under journald: %r" % ln)
        mine = lines_with(lines, "req=%s " % rid)
        check(len(mine) == 1 and mine[0].startswith("<7>"), "the 404 under journald: %r" % mine)
        check(any(ln.startswith("<5>") and "listening on" in ln for ln in lines),
              "no <5> listening line: %r" % lines)
        # The variable inherited, stderr elsewhere: the daemon must not use prefixes.
        other = os.path.join(state, "other")
        open(other, "wb").close()
        st = os.stat(other)
        d = Daemon(exe, env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)},
                   state_dir=state)
        try:
            d.start()
            d.stop()
        finally:
            d.close()
        check_timestamped(log_lines(d))
    finally:
        shutil.rmtree(state, ignore_errors=True)


@tap.test
def log_line_cannot_be_forged(exe):
    """A %0A in the path never starts a log line: the router logs the path as
    sent (still percent-encoded), and any raw control byte would be \\xHH."""
    with Daemon(exe, extra_args=["--log-level", "debug"]) as d:
        rid = d.get("/v1/studies/x%0A2026-01-01T00:00:00.000Z%20err%20forged").header("X-Request-Id")
        d.stop()
        lines = log_lines(d)
        check_timestamped(lines)
        mine = lines_with(lines, "req=%s " % rid)
        check(len(mine) == 1 and "x%0A2026-01-01T00:00:00.000Z%20err%20forged" in mine[0],
              "escaped path: %r" % mine)
        check(not any(" err forged" in line or line.startswith("2026-01-01T00:00:00.000Z")
                      for line in lines), "a forged line: %r" % lines)


# ---- /metrics ---------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)')


def parse_labels(text, line):
    out = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        check(m is not None, "bad label set in %r" % line)
        check(m.group(1) not in out, "repeated label in %r" % line)
        out[m.group(1)] = m.group(2)
        pos = m.end()
        if m.group(3) == "" and pos != len(text):
            fail("bad label set in %r" % line)
    return out


def parse_metrics(text):
    """A strict reading of Prometheus text format 0.0.4: HELP and TYPE once per family,
    before its samples; a family's samples together; no repeated series; values numbers;
    histograms with cumulative buckets, +Inf equal to _count, and _sum; counters end in
    _total. Returns {family: {"type", "samples": [(name, labels, value)]}}."""
    check(text.endswith("\n"), "exposition does not end with a newline")
    families = {}
    current = None
    seen = set()
    for line in text.split("\n")[:-1]:
        check(line != "", "empty line in the exposition")
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            check(help_text, "HELP without text: %r" % line)
            check(name not in families, "family %s declared twice" % name)
            families[name] = {"help": help_text, "type": None, "samples": []}
            current = name
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            check(name == current and families[name]["type"] is None,
                  "TYPE %s not right after its HELP" % name)
            check(typ in ("counter", "gauge", "histogram"), "type %r" % typ)
            families[name]["type"] = typ
            continue
        check(not line.startswith("#"), "stray comment %r" % line)
        m = SAMPLE.match(line)
        check(m is not None, "bad sample line %r" % line)
        name, labels, value = m.group(1), parse_labels(m.group(3) or "", line), m.group(4)
        fam = families.get(current)
        check(fam is not None and fam["type"] is not None, "sample before TYPE: %r" % line)
        typ = fam["type"]
        if typ == "histogram":
            check(name in (current + "_bucket", current + "_sum", current + "_count"),
                  "sample %s outside its family %s" % (name, current))
            check((name == current + "_bucket") == ("le" in labels), "le misuse: %r" % line)
        else:
            check(name == current, "sample %s outside its family %s" % (name, current))
        if typ == "counter":
            check(name.endswith("_total"), "counter without _total: %s" % name)
        try:
            v = float(value)
        except ValueError:
            fail("value %r is not a number in %r" % (value, line))
        check(not math.isnan(v), "NaN in %r" % line)
        key = (name, tuple(sorted(labels.items())))
        check(key not in seen, "series repeated: %r" % line)
        seen.add(key)
        fam["samples"].append((name, labels, v))
    for name, fam in families.items():
        check(fam["type"] is not None, "family %s without TYPE" % name)
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    groups = {}
    for n, labels, v in samples:
        key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        g = groups.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if n.endswith("_bucket"):
            le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            g["buckets"].append((le, v))
        elif n.endswith("_sum"):
            g["sum"] = v
        else:
            g["count"] = v
    for key, g in groups.items():
        b = g["buckets"]
        check(b and b[-1][0] == math.inf, "%s%r: no +Inf bucket" % (name, key))
        check(all(b[i][0] < b[i + 1][0] for i in range(len(b) - 1)),
              "%s%r: bounds not ascending" % (name, key))
        check(all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)),
              "%s%r: buckets not cumulative: %r" % (name, key, b))
        check(g["count"] is not None and g["sum"] is not None, "%s%r: no _sum/_count" % (name, key))
        check(b[-1][1] == g["count"], "%s%r: +Inf %r != _count %r" % (name, key, b[-1][1], g["count"]))
        check(g["sum"] >= 0, "%s%r: negative sum" % (name, key))


def promtool_check(text):
    """`promtool check metrics` when Debian's prometheus package is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        print("# promtool not installed: only the strict format check ran")
        return
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60)
    check(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
          "promtool check metrics: rc %d\n%s%s" % (p.returncode, p.stdout.decode(),
                                                   p.stderr.decode()))


def value(fams, family, name=None, **labels):
    fam = fams.get(family)
    check(fam is not None, "no family %s" % family)
    name = name or family
    found = [v for n, ls, v in fam["samples"] if n == name and ls == labels]
    check(len(found) == 1, "%s%r: %d samples" % (name, labels, len(found)))
    return found[0]


def has_series(fams, family, **labels):
    return any(all(ls.get(k) == v for k, v in labels.items())
               for _, ls, _ in fams.get(family, {"samples": []})["samples"])


def get_metrics(d):
    r = d.get("/metrics")
    r.expect(200)
    check(r.header("Content-Type").startswith("text/plain; version=0.0.4"),
          "Content-Type %r" % r.header("Content-Type"))
    text = r.body.decode("utf-8")
    promtool_check(text)
    return parse_metrics(text)


@tap.test
def metrics_after_known_requests(exe):
    with Daemon(exe) as d:
        version = d.get("/healthz").expect(200)["version"]
        d.post("/v1/studies", study("s1")).expect(201)
        d.post("/v1/studies", study("s2", "tpe")).expect(201)
        for _ in range(4):
            d.post("/v1/studies/s1/ask").expect(201)
        d.post("/v1/studies/s2/ask").expect(201)
        d.post("/v1/studies/s1/trials/0/tell", {"value": 1.0}).expect(200)
        d.post("/v1/studies/s1/trials/1/report", {"step": 1, "value": 2.0}).expect(200)
        d.post("/v1/studies/s1/trials/1/tell", {"state": "pruned"}).expect(200)
        d.post("/v1/studies/s1/trials/2/tell", {"state": "failed"}).expect(200)
        d.post("/v1/studies/s1/trials/3/report", {"step": 1, "value": 2.0}).expect(200)
        d.post("/v1/studies/s1/trials/3/report", {"step": 2, "value": 2.0}).expect(200)
        d.post("/v1/studies/s1/trials/9/tell", {"value": 1.0}).expect_error(404, "not_found")
        for _ in range(3):
            d.get("/v1/studies/nope").expect_error(404, "not_found")
        d.get("/no/such/route").expect_error(404, "not_found")
        d.request("DELETE", "/v1/studies/s1/ask").expect_error(405, "method_not_allowed")
        fams = get_metrics(d)

        def requests(route, method, cls):
            return value(fams, "hpod_requests_total", route=route, method=method, **{"class": cls})

        check(requests("/healthz", "GET", "2xx") == 1, "healthz count")
        check(requests("/v1/studies", "POST", "2xx") == 2, "create count")
        check(requests("/v1/studies/{study}/ask", "POST", "2xx") == 5, "ask count")
        tell = "/v1/studies/{study}/trials/{number}/tell"
        check(requests(tell, "POST", "2xx") == 3, "tell 2xx count")
        check(requests(tell, "POST", "4xx") == 1, "tell 4xx count")
        check(requests("/v1/studies/{study}/trials/{number}/report", "POST", "2xx") == 3,
              "report count")
        check(requests("/v1/studies/{study}", "GET", "4xx") == 3, "study 404 count")
        check(requests("unmatched", "GET", "4xx") == 1, "unmatched count")
        check(requests("/v1/studies/{study}/ask", "DELETE", "4xx") == 1, "405 count")
        check(not has_series(fams, "hpod_requests_total", route="/metrics"),
              "the /metrics request counted before it finished")
        total = sum(v for _, _, v in fams["hpod_requests_total"]["samples"])
        check(total == 1 + 2 + 5 + 4 + 3 + 3 + 1 + 1, "requests in all: %r" % total)
        # Every request series has its histogram, with the same count.
        for _, ls, v in fams["hpod_requests_total"]["samples"]:
            c = value(fams, "hpod_request_duration_seconds", "hpod_request_duration_seconds_count",
                      **ls)
            check(c == v, "duration count %r != requests %r for %r" % (c, v, ls))
        check(value(fams, "hpod_ask_duration_seconds", "hpod_ask_duration_seconds_count",
                    sampler="random") == 4, "random asks")
        check(value(fams, "hpod_ask_duration_seconds", "hpod_ask_duration_seconds_count",
                    sampler="tpe") == 1, "tpe asks")
        check(not has_series(fams, "hpod_ask_duration_seconds", sampler="gp"), "gp never asked")
        for state, n in (("complete", 1), ("pruned", 1), ("failed", 1)):
            check(value(fams, "hpod_tells_total", state=state) == n, "tells %s" % state)
        check(value(fams, "hpod_reports_total") == 3, "reports")
        check(value(fams, "hpod_reports_pruned_total") == 0, "pruned reports (no pruner)")
        expect = {"s1": {"waiting": 0, "running": 1, "complete": 1, "pruned": 1, "failed": 1},
                  "s2": {"waiting": 0, "running": 1, "complete": 0, "pruned": 0, "failed": 0}}
        for s, states in expect.items():
            for state, n in states.items():
                check(value(fams, "hpod_study_trials", study=s, state=state) == n,
                      "study %s %s" % (s, state))
        check(not has_series(fams, "hpod_study_trials", study="(other)"), "(other) under the cap")
        check(value(fams, "hpod_trials", state="running") == 2, "running trials")
        check(value(fams, "hpod_studies") == 2, "studies")
        # Storage: every committed batch observed once; no failures here.
        commits = value(fams, "hpod_storage_commits_total")
        writes = value(fams, "hpod_storage_writes_total")
        check(commits >= 1 and writes >= 13, "commits %r writes %r" % (commits, writes))
        check(value(fams, "hpod_storage_commit_duration_seconds",
                    "hpod_storage_commit_duration_seconds_count") == commits, "commit durations")
        check(value(fams, "hpod_storage_commit_writes", "hpod_storage_commit_writes_count")
              == commits, "batch count")
        check(value(fams, "hpod_storage_commit_writes", "hpod_storage_commit_writes_sum")
              == writes, "batch sizes sum to the writes")
        check(value(fams, "hpod_storage_commit_failures_total") == 0, "commit failures")
        check(value(fams, "hpod_build_info", version=version) == 1, "build info")
        check(value(fams, "hpod_open_connections") >= 1, "open connections")
        check(value(fams, "process_resident_memory_bytes") > 1 << 20, "rss")
        check(value(fams, "process_open_fds") >= 3, "fds")
        check(value(fams, "process_cpu_seconds_total") > 0, "cpu")
        start = value(fams, "process_start_time_seconds")
        check(abs(start - time.time()) < 600, "start time %r vs now %r" % (start, time.time()))
        # The first /metrics request is in the next scrape.
        fams = get_metrics(d)
        check(value(fams, "hpod_requests_total", route="/metrics", method="GET",
                    **{"class": "2xx"}) == 1, "the first scrape counted")


@tap.test
def metrics_study_cap(exe):
    """--metrics-max-studies 2: the first two studies by name have their series, the rest
    are summed into study="(other)"; with 0 everything is "(other)"."""
    with Daemon(exe, extra_args=["--metrics-max-studies", "2"]) as d:
        asks = {"d": 1, "a": 1, "c": 3, "b": 2}
        for name, n in asks.items():
            d.post("/v1/studies", study(name)).expect(201)
            for _ in range(n):
                d.post("/v1/studies/%s/ask" % name).expect(201)
        d.post("/v1/studies/d/trials/0/tell", {"value": 0.5}).expect(200)
        fams = get_metrics(d)
        check(value(fams, "hpod_study_trials", study="a", state="running") == 1, "a")
        check(value(fams, "hpod_study_trials", study="b", state="running") == 2, "b")
        for s in ("c", "d"):
            check(not has_series(fams, "hpod_study_trials", study=s), "%s past the cap" % s)
        check(value(fams, "hpod_study_trials", study="(other)", state="running") == 3, "other run")
        check(value(fams, "hpod_study_trials", study="(other)", state="complete") == 1,
              "other complete")
        check(len(fams["hpod_study_trials"]["samples"]) == 3 * 5, "series: %r"
              % fams["hpod_study_trials"]["samples"])
    with Daemon(exe, extra_args=["--metrics-max-studies", "0"]) as d:
        d.post("/v1/studies", study("a")).expect(201)
        d.post("/v1/studies/a/ask").expect(201)
        fams = get_metrics(d)
        check(not has_series(fams, "hpod_study_trials", study="a"), "a with cap 0")
        check(value(fams, "hpod_study_trials", study="(other)", state="running") == 1, "cap 0")


if __name__ == "__main__":
    sys.exit(tap.run(exe_from_argv()))
