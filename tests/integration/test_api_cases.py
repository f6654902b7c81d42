#!/usr/bin/python3
"""test_api_cases.py: data-driven API cases (docs/STYLE.md rule 44) against the real hpod.

Usage: test_api_cases.py PATH/TO/hpod [CASE-NAME-SUBSTRING...]

Each directory tests/data/api/<case>/ holds:

  request   the request: a first line "METHOD /path", then optional header
            lines "Name: value", then a blank line and the body (bytes, sent
            as is; one trailing newline is dropped). No blank line: no body.
            Pseudo-headers starting with "@" are options of the runner:
              @body-size: N   pad the body with spaces to exactly N bytes
                              (still valid JSON), for the 1 MiB limit.
  expect    the exact answer: a first line with the status, optional header
            lines (Allow is compared as a set of methods, other headers
            exactly), then a blank line and the exact JSON body. No blank line:
            the body must be empty (204).
  setup     optional: requests run first on the fresh daemon, in the request
            format, separated by lines "----"; each must answer 2xx.

JSON bodies are compared exactly (same keys, same values; 1 and 1.0 are the
same number, true is not 1), with these placeholders as expected values:
  "<any>"        any value (the key must be present)
  "<timestamp>"  an RFC 3339 UTC time with milliseconds, 2026-01-02T03:04:05.678Z
  "<int>" "<number>" "<string>"   any value of that JSON type
An expected error object ({"error": {...}}) without "message" matches any
non-empty message: the daemon's messages are not part of docs/REFERENCE.md, so cases
compare code and field (field absent means the daemon must not send one).

Every case runs on its own fresh daemon (port 0, fresh database). For every
case, each response must carry a distinct X-Request-Id, and JSON bodies must be
served as application/json. For every case whose expected status is 4xx/5xx,
the whole state (study list, each study, each study's trials) is fetched before
and after the request and must be identical: a failing request changes nothing.

Prints TAP; exits non-zero when any case fails.
"""

import concurrent.futures
import json
import math
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hpodtest  # noqa: E402
from hpodtest import TIMESTAMP_RE, Daemon, TestFailure, fail, raw_request  # noqa: E402

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "api")
RAW_THRESHOLD = 64 * 1024


class Request:
    def __init__(self, method, path, headers, body, options):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.options = options


def parse_request(data, where):
    head, sep, body = data.partition(b"\n\n")
    lines = head.decode("utf-8").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 2:
        fail("%s: first line must be 'METHOD /path', got %r" % (where, lines[0]))
    headers, options = {}, {}
    for line in lines[1:]:
        if not line.strip():
            continue
        k, colon, v = line.partition(":")
        if not colon:
            fail("%s: bad header line %r" % (where, line))
        if k.startswith("@"):
            options[k[1:].strip()] = v.strip()
        else:
            headers[k.strip()] = v.strip()
    if not sep:
        body = None
    elif body.endswith(b"\n"):
        body = body[:-1]
    if "body-size" in options:
        n = int(options["body-size"])
        if body is None or len(body) > n:
            fail("%s: @body-size smaller than the body" % where)
        body = body + b" " * (n - len(body))
    return Request(parts[0], parts[1], headers, body, options)


def parse_expect(data, where):
    head, sep, body = data.partition(b"\n\n")
    lines = head.decode("utf-8").split("\n")
    status = int(lines[0].strip())
    headers = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        k, colon, v = line.partition(":")
        if not colon:
            fail("%s: bad header line %r" % (where, line))
        headers[k.strip().lower()] = v.strip()
    expected_body = None
    if sep and body.strip():
        try:
            expected_body = json.loads(body.decode("utf-8"))
        except ValueError as e:
            fail("%s: expected body is not JSON: %s" % (where, e))
    return status, headers, expected_body


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def match(expected, got, path, errors):
    """Append to errors every place where got does not match expected."""
    if isinstance(expected, str) and expected.startswith("<") and expected.endswith(">"):
        kind = expected[1:-1]
        ok = {
            "any": lambda: True,
            "timestamp": lambda: isinstance(got, str) and TIMESTAMP_RE.match(got) is not None,
            "int": lambda: isinstance(got, int) and not isinstance(got, bool),
            "number": lambda: is_number(got),
            "string": lambda: isinstance(got, str) and got != "",
        }.get(kind)
        if ok is None:
            errors.append("%s: unknown placeholder %s" % (path, expected))
        elif not ok():
            errors.append("%s: expected %s, got %s" % (path, expected, json.dumps(got)))
        return
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            errors.append("%s: expected an object, got %s" % (path, json.dumps(got)))
            return
        keys = set(expected)
        if path.endswith(".error") and "message" not in expected:
            msg = got.get("message")
            if not (isinstance(msg, str) and msg):
                errors.append("%s.message: expected a non-empty string, got %r" % (path, msg))
            keys.add("message")
        for k in sorted(keys - set(got)):
            errors.append("%s.%s: missing (expected %s)" % (path, k, json.dumps(expected.get(k))))
        for k in sorted(set(got) - keys):
            errors.append("%s.%s: unexpected key (value %s)" % (path, k, json.dumps(got[k])))
        for k in sorted(set(expected) & set(got)):
            match(expected[k], got[k], "%s.%s" % (path, k), errors)
        return
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            errors.append("%s: expected %s, got %s" % (path, json.dumps(expected), json.dumps(got)))
            return
        for i, (e, g) in enumerate(zip(expected, got)):
            match(e, g, "%s[%d]" % (path, i), errors)
        return
    if is_number(expected):
        if not is_number(got) or not (got == expected or (math.isnan(got) and math.isnan(expected))):
            errors.append("%s: expected %s, got %s" % (path, json.dumps(expected), json.dumps(got)))
        return
    if type(expected) is not type(got) or expected != got:
        errors.append("%s: expected %s, got %s" % (path, json.dumps(expected), json.dumps(got)))


def send(daemon, req, seen_ids, where):
    """Send a Request, check X-Request-Id and Content-Type; return the Response."""
    if req.body is not None and len(req.body) > RAW_THRESHOLD:
        resp = raw_request(daemon.port, req.method, req.path, req.headers, req.body)
    else:
        resp = daemon.request(req.method, req.path, body=req.body, headers=req.headers)
    rid = resp.header("X-Request-Id")
    if not rid:
        fail("%s: %s %s: response without X-Request-Id" % (where, req.method, req.path))
    if rid in seen_ids:
        fail("%s: %s %s: X-Request-Id %r repeats an earlier response's" % (where, req.method,
             req.path, rid))
    seen_ids.add(rid)
    if resp.body and resp.json is not None:
        ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/json":
            fail("%s: %s %s: JSON body served as Content-Type %r" % (where, req.method, req.path,
                 resp.header("Content-Type")))
    return resp


def methods_set(v):
    return sorted(m.strip().upper() for m in v.split(",") if m.strip())


def run_case(exe, name):
    case_dir = os.path.join(DATA_DIR, name)
    with open(os.path.join(case_dir, "request"), "rb") as f:
        req = parse_request(f.read(), name + "/request")
    with open(os.path.join(case_dir, "expect"), "rb") as f:
        status, exp_headers, exp_body = parse_expect(f.read(), name + "/expect")
    setup = []
    setup_path = os.path.join(case_dir, "setup")
    if os.path.exists(setup_path):
        with open(setup_path, "rb") as f:
            blocks = f.read().split(b"\n----\n")
        setup = [parse_request(b.strip(b"\n") + b"\n", "%s/setup[%d]" % (name, i))
                 for i, b in enumerate(blocks) if b.strip()]
    seen = set()
    d = Daemon(exe)
    try:
        d.start()
        for i, s in enumerate(setup):
            r = send(d, s, seen, "%s/setup[%d]" % (name, i))
            if not 200 <= r.status < 300:
                fail("setup[%d] failed: %s" % (i, r.describe()))
        before = d.snapshot() if status >= 400 else None
        r = send(d, req, seen, name)
        errors = []
        if r.status != status:
            errors.append("status: expected %d, got %d" % (status, r.status))
        for k, v in exp_headers.items():
            got = r.header(k)
            if got is None:
                errors.append("header %s: missing (expected %r)" % (k, v))
            elif k == "allow" and methods_set(got) != methods_set(v):
                errors.append("header Allow: expected %r, got %r" % (v, got))
            elif k != "allow" and got != v:
                errors.append("header %s: expected %r, got %r" % (k, v, got))
        if exp_body is None:
            if r.body:
                errors.append("body: expected empty, got %r" % r.body[:300])
        elif r.json is None:
            errors.append("body: expected JSON, got %r" % r.body[:300])
        else:
            match(exp_body, r.json, "body", errors)
        if before is not None:
            after = d.snapshot()
            if after != before:
                errors.append("state changed by a failing request:\n  before %s\n  after  %s"
                              % (json.dumps(before, sort_keys=True)[:1500],
                                 json.dumps(after, sort_keys=True)[:1500]))
        if errors:
            fail("%s %s\n%s\ngot body: %s" % (req.method, req.path, "\n".join(errors),
                 r.body[:1500].decode("utf-8", "replace")))
        d.stop()
    except BaseException:
        log = d.log_tail(15)
        d.close()
        raise TestFailure("%s\n--- hpod log ---\n%s" % (sys.exc_info()[1], log))
    d.close()


def main():
    exe = hpodtest.exe_from_argv()
    filters = sys.argv[2:]
    names = sorted(n for n in os.listdir(DATA_DIR)
                   if os.path.isfile(os.path.join(DATA_DIR, n, "request")))
    if filters:
        names = [n for n in names if any(f in n for f in filters)]
    print("1..%d" % len(names), flush=True)
    jobs = int(os.environ.get("HPOD_TEST_JOBS", "2"))
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_case, exe, n) for n in names]
        for i, (n, fut) in enumerate(zip(names, futures), 1):
            try:
                fut.result()
            except Exception as e:  # noqa: BLE001 - every failure is one "not ok"
                failed += 1
                print("not ok %d - %s" % (i, n))
                for line in str(e).splitlines():
                    print("#   " + line)
            else:
                print("ok %d - %s" % (i, n))
            sys.stdout.flush()
    if failed:
        print("# %d of %d cases failed" % (failed, len(names)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
