#!/usr/bin/python3
"""test_access.py: tokens, roles and study scopes against the real hpod.

The access matrix is data: every route x {no token, wrong token, read, write, admin,
scoped in-prefix, scoped out-of-prefix} -> the exact status and error code, with the
whole state (every study and trial, read with the admin token) unchanged after every
refusal. Then: scoped lists, --new-token, the refusal to listen beyond loopback without
tokens, SIGHUP removing a token (its next request 401, others unaffected) and a bad
tokens file on SIGHUP keeping the running set, and the token's name in the log.
Prints TAP.
"""

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check, fail, mint_token, wait_log  # noqa: E402

tap = Tap()
TMP = tempfile.TemporaryDirectory(prefix="hpod-access-")

WRONG = "hpod_" + "A" * 43
IN, OUT = "team-a-s", "team-b-s"  # the scoped token's prefix is team-a-
PRINCIPALS = ["none", "wrong", "read", "write", "admin", "scoped_in", "scoped_out"]


class Tokens:
    """Four tokens minted by the daemon itself, written to a tokens file."""

    def __init__(self, exe, directory):
        self.path = os.path.join(directory, "tokens")
        self.secret, self.line = {}, {}
        for name, spec in (("read", "viewer:read"), ("write", "ci:write"),
                           ("admin", "ops:admin"), ("scoped", "team-a:write:team-a-")):
            self.secret[name], self.line[name] = mint_token(exe, spec)
        self.write(["read", "write", "admin", "scoped"])

    def write(self, names):
        with open(self.path + ".tmp", "w") as f:
            f.write("# test tokens\n")
            for n in names:
                f.write(self.line[n] + "\n")
        os.replace(self.path + ".tmp", self.path)

    def headers(self, who):
        if who == "none":
            return {}
        if who == "wrong":
            return {"Authorization": "Bearer " + WRONG}
        key = "scoped" if who.startswith("scoped") else who
        return {"Authorization": "Bearer " + self.secret[key]}


def space(vector=False):
    p = [{"name": "x", "type": "float", "low": 0, "high": 1}]
    if vector:
        p.append({"name": "w", "type": "float", "low": -1, "high": 1, "size": 4})
    return p


def study_def(name):
    return {"name": name, "params": space(True), "sampler": {"type": "gradient", "seed": 1}}


class World:
    """The state every cell starts from, kept with the admin token."""

    def __init__(self, d, tokens):
        self.d = d
        self.admin = tokens.headers("admin")

    def req(self, method, path, body=None, headers=None):
        return self.d.request(method, path, body=body, headers=headers or self.admin)

    def ensure(self, name):
        r = self.req("GET", "/v1/studies/" + name)
        if r.status == 404:
            self.req("POST", "/v1/studies", study_def(name)).expect(201, "create " + name)
            self.req("POST", "/v1/studies/%s/trials" % name,
                     {"params": {"x": 0.5, "w": [0, 0, 0, 0]}, "value": 1.0}).expect(201)
        else:
            r.expect(200)

    def running(self, name):
        return self.req("POST", "/v1/studies/%s/ask" % name).expect(201)["number"]

    def absent(self, name):
        r = self.req("DELETE", "/v1/studies/" + name)
        check(r.status in (204, 404), "delete %s: %s" % (name, r.describe()))

    def snapshot(self):
        studies = self.req("GET", "/v1/studies").expect(200)["studies"]
        out = {}
        for s in studies:
            n = s["name"]
            out[n] = (self.req("GET", "/v1/studies/" + n).expect(200),
                      self.req("GET", "/v1/studies/%s/trials" % n).expect(200))
        return out


# Route kinds: which principals are refused and how (status, code); None = the route's own answer.
def expectations(kind, ok):
    refuse401 = (401, "unauthenticated")
    e = {"none": refuse401, "wrong": refuse401}
    if kind == "open":
        return {p: (ok, None) for p in PRINCIPALS}
    if kind == "read":
        e.update({p: (ok, None) for p in ("read", "write", "admin", "scoped_in", "scoped_out")})
    elif kind == "read_study":
        e.update({p: (ok, None) for p in ("read", "write", "admin", "scoped_in")})
        e["scoped_out"] = (404, "not_found")
    elif kind == "write_study":
        e["read"] = (403, "permission_denied")
        e.update({p: (ok, None) for p in ("write", "admin", "scoped_in")})
        e["scoped_out"] = (404, "not_found")
    elif kind == "create":
        e["read"] = (403, "permission_denied")
        e.update({p: (ok, None) for p in ("write", "admin", "scoped_in")})
        e["scoped_out"] = (403, "permission_denied")
    elif kind == "admin":
        e.update({p: (403, "permission_denied")
                  for p in ("read", "write", "scoped_in", "scoped_out")})
        e["admin"] = (ok, None if ok < 400 else "not_found")
    else:
        fail("unknown kind " + kind)
    return e


def octets(n):
    import struct
    return struct.pack("<%dd" % n, *([0.25] * n))


# (name, kind, success status, method, path template, body, setup) -- {s}: the target study,
# {n}: a running trial of it (made by setup "running"), {new}: a study name made absent first.
ROUTES = [
    ("healthz", "open", 200, "GET", "/healthz", None, None),
    ("metrics", "read", 200, "GET", "/metrics", None, None),
    ("samplers", "read", 200, "GET", "/v1/samplers", None, None),
    ("list", "read", 200, "GET", "/v1/studies", None, None),
    ("create", "create", 201, "POST", "/v1/studies", "new", "new"),
    ("study", "read_study", 200, "GET", "/v1/studies/{s}", None, None),
    ("delete", "admin_study", 204, "DELETE", "/v1/studies/{s}", None, None),
    ("ask", "write_study", 201, "POST", "/v1/studies/{s}/ask", None, None),
    ("best", "read_study", 200, "GET", "/v1/studies/{s}/best", None, None),
    ("trials", "read_study", 200, "GET", "/v1/studies/{s}/trials", None, None),
    ("trials_csv", "read_study", 200, "GET", "/v1/studies/{s}/trials?format=csv", None, None),
    ("enqueue", "write_study", 201, "POST", "/v1/studies/{s}/trials",
     {"params": {"x": 0.25, "w": [0, 0, 0, 0]}}, None),
    ("record", "write_study", 201, "POST", "/v1/studies/{s}/trials",
     {"params": {"x": 0.75, "w": [0, 0, 0, 0]}, "value": 0.5}, None),
    ("trial", "read_study", 200, "GET", "/v1/studies/{s}/trials/0", None, None),
    ("param", "read_study", 200, "GET", "/v1/studies/{s}/trials/0/params/w", None, None),
    ("tell", "write_study", 200, "POST", "/v1/studies/{s}/trials/{n}/tell", {"value": 0.1},
     "running"),
    ("report", "write_study", 200, "POST", "/v1/studies/{s}/trials/{n}/report",
     {"step": 1, "value": 0.3}, "running"),
    ("heartbeat", "write_study", 204, "POST", "/v1/studies/{s}/trials/{n}/heartbeat", None,
     "running"),
    ("gradient", "write_study", 204, "PUT", "/v1/studies/{s}/trials/{n}/gradient/w", "octets",
     "running"),
    ("admin_backup", "admin", 200, "GET", "/v1/admin/backup", None, None),
]


@tap.test
def access_matrix(exe):
    """Every route x every kind of caller: exact status and code; refusals change nothing."""
    tokens = Tokens(exe, TMP.name)
    d = Daemon(exe, extra_args=["--tokens", tokens.path])
    with d:
        w = World(d, tokens)
        cells = 0
        for name, kind, ok, method, tmpl, body, setup in ROUTES:
            if kind == "admin_study":
                exp = expectations("admin", ok)
                exp["admin"] = (ok, None)
                exp["scoped_out"] = (403, "permission_denied")  # the role is checked first
            else:
                exp = expectations(kind, ok)
            for who in PRINCIPALS:
                target = OUT if who == "scoped_out" else IN
                w.ensure(IN)
                w.ensure(OUT)
                fields = {"s": target}
                data = body
                if setup == "running":
                    fields["n"] = w.running(target)
                if setup == "new":
                    new = ("team-b-new" if who == "scoped_out" else "team-a-new")
                    w.absent(new)
                    sd = study_def(new)
                    data = sd
                headers = dict(tokens.headers(who))
                if data == "octets":
                    data = octets(4)
                    headers["Content-Type"] = "application/octet-stream"
                path = tmpl.format(**fields)
                before = w.snapshot()
                r = d.request(method, path, body=data, headers=headers)
                status, code = exp[who]
                what = "%s as %s (%s %s)" % (name, who, method, path)
                if code is None:
                    r.expect(status, what)
                else:
                    r.expect_error(status, code, field="name" if (
                        name == "create" and code == "permission_denied" and
                        who == "scoped_out") else None, what=what)
                if status == 401:
                    check(r.header("www-authenticate") == "Bearer",
                          "%s: WWW-Authenticate is %r" % (what, r.header("www-authenticate")))
                if status >= 400:
                    after = w.snapshot()
                    check(after == before, "%s: the refusal changed the state" % what)
                cells += 1
        check(cells == len(ROUTES) * len(PRINCIPALS), "ran %d cells" % cells)


@tap.test
def scoped_lists_and_requests(exe):
    """A scoped token lists only its studies, with exact names; others see everything."""
    tokens = Tokens(exe, TMP.name)
    # Every request has its log line at debug (at info only 5xx, 401/403 and slow ones).
    with Daemon(exe, extra_args=["--tokens", tokens.path, "--log-level", "debug"]) as d:
        w = World(d, tokens)
        for n in ("team-a-1", "team-a-2", "team-b-1", "zeta"):
            w.ensure(n)
        names = lambda who: [s["name"] for s in d.get(
            "/v1/studies", headers=tokens.headers(who)).expect(200)["studies"]]
        check(names("scoped_in") == ["team-a-1", "team-a-2"], "scoped list %r" % names("scoped_in"))
        check(names("read") == ["team-a-1", "team-a-2", "team-b-1", "zeta"],
              "read list %r" % names("read"))
        # The name alone decides: a study named exactly like the prefix is in scope.
        d.post("/v1/studies", study_def("team-a-"), headers=tokens.headers("scoped")).expect(201)
        check(names("scoped_in") == ["team-a-", "team-a-1", "team-a-2"], "after create")
        # Out of scope looks like absent: the same body as a study that does not exist.
        a = d.get("/v1/studies/team-b-1", headers=tokens.headers("scoped")).expect_error(
            404, "not_found")
        b = d.get("/v1/studies/team-a-nope", headers=tokens.headers("scoped")).expect_error(
            404, "not_found")
        # /metrics labels only the token's studies for a scoped token.
        scoped_m = d.get("/metrics", headers=tokens.headers("scoped"))
        read_m = d.get("/metrics", headers=tokens.headers("read"))
        scoped_m.expect(200)
        read_m.expect(200)
        text = lambda r: r.body.decode("utf-8")
        check('study="team-a-1"' in text(scoped_m) and 'study="team-b-1"' not in text(scoped_m)
              and 'study="zeta"' not in text(scoped_m), "scoped /metrics labels")
        check('study="team-b-1"' in text(read_m) and 'study="zeta"' in text(read_m),
              "read /metrics labels")
        check(a["message"] == "no study named 'team-b-1'" and
              b["message"] == "no study named 'team-a-nope'", "messages %r %r" % (a, b))
        # Keep-alive survives refusals without a body.
        c = d.client()
        for _ in range(3):
            c.get("/v1/studies").expect_error(401, "unauthenticated")
            c.get("/v1/studies", headers=tokens.headers("read")).expect(200)
        check(c.reused, "the connection was not kept alive across 401s")
        c.close()
        log = d.log_text()
        named = lambda n: re.search(r" token=%s( |$)" % re.escape(n), log, re.M) is not None
        check(named("team-a") and named("viewer") and named("-"),
              "log lines do not name the tokens")
        # A refusal of credentials is logged at warning, so the default level shows it too.
        check(re.search(r" warning .* 401 \d+us token=- unauthenticated", log) is not None,
              "401 not logged at warning")
        check(tokens.secret["read"] not in log and tokens.secret["scoped"] not in log,
              "a secret appears in the log")


@tap.test
def encoded_paths(exe):
    """Routing decodes each segment (issue 11); access follows the route, not the raw path."""
    tokens = Tokens(exe, TMP.name)
    with Daemon(exe, extra_args=["--tokens", tokens.path]) as d:
        w = World(d, tokens)
        w.ensure("team-b-1")
        # "/%76%31/studies" is /v1/studies: a token is needed all the same.
        d.get("/%76%31/studies").expect_error(401, "unauthenticated")
        d.get("/%76%31/studies", headers=tokens.headers("read")).expect(200)
        # "/v1/%61dmin/backup" is the backup: admin only.
        for who in ("read", "write", "scoped"):
            d.get("/v1/%61dmin/backup", headers=tokens.headers(who)).expect_error(
                403, "permission_denied", what="encoded backup as %s" % who)
        # An encoded study name is still judged against the token's prefix.
        d.get("/v1/studies/team%2Db-1", headers=tokens.headers("scoped")).expect_error(
            404, "not_found")
        d.get("/v1/studies/team%2Db-1", headers=tokens.headers("read")).expect(200)


@tap.test
def scoped_admin_not_server_wide(exe):
    """An admin token scoped to a prefix may delete its own studies, but a backup holds every
    study: /v1/admin/ is refused to it (403), and to an unscoped admin it is 200."""
    tokens = Tokens(exe, TMP.name)
    secret, line = mint_token(exe, "team-a-ops:admin:team-a-")
    with open(tokens.path, "a") as f:
        f.write(line + "\n")
    scoped_admin = {"Authorization": "Bearer " + secret}
    with Daemon(exe, extra_args=["--tokens", tokens.path]) as d:
        w = World(d, tokens)
        w.ensure("team-a-1")
        w.ensure("team-b-1")
        e = d.get("/v1/admin/backup", headers=scoped_admin).expect_error(403, "permission_denied")
        check("server-wide" in e["message"], "message %r" % e)
        d.get("/v1/admin/backup", headers=tokens.headers("admin")).expect(200)
        d.request("DELETE", "/v1/studies/team-b-1", headers=scoped_admin).expect_error(
            404, "not_found")
        r = d.request("DELETE", "/v1/studies/team-a-1", headers=scoped_admin)
        check(r.status == 204, "scoped admin delete in scope: %d" % r.status)
        d.get("/v1/studies/team-b-1", headers=tokens.headers("read")).expect(200)


@tap.test
def loopback_rule(exe):
    """Without tokens: refuse 0.0.0.0 (exit 2, a clear message) unless --allow-unauthenticated."""
    state = TMP.name
    r = subprocess.run([exe, "--listen", "0.0.0.0:0", "--db", os.path.join(state, "x.db")],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 2, "exit %d" % r.returncode)
    check("refusing to listen on 0.0.0.0 without tokens" in r.stderr and
          "--allow-unauthenticated" in r.stderr, "message: %r" % r.stderr)
    check(not os.path.exists(os.path.join(state, "x.db")), "a database was created")
    # With the flag it starts (and says so); requests need no token.
    p = subprocess.Popen([exe, "--listen", "0.0.0.0:0", "--db", os.path.join(state, "x.db"),
                          "--allow-unauthenticated"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        port, seen, deadline = None, "", time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            if select.select([p.stderr], [], [], 1)[0]:
                line = p.stderr.readline()
                seen += line
                if "listening on http://0.0.0.0:" in line:
                    port = int(line.rsplit(":", 1)[1].split()[0])
            check(p.poll() is None, "hpod exited: %s" % seen)
        check(port is not None, "no listening line: %s" % seen)
        check("without tokens (--allow-unauthenticated)" in seen, "no warning: %s" % seen)
        from hpodtest import Client
        c = Client(port)
        c.get("/v1/studies").expect(200)
        c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        check(p.wait(timeout=30) == 0, "exit status %r" % p.returncode)
    # The flag's config-file spelling.
    conf = os.path.join(state, "hpod.conf")
    with open(conf, "w") as f:
        f.write("allow-unauthenticated maybe\n")
    r = subprocess.run([exe, "--config", conf, "--check-config"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 2 and "allow-unauthenticated: 'maybe' must be true or false"
          in r.stderr, "config: %d %r" % (r.returncode, r.stderr))


@tap.test
def new_token_errors(exe):
    for spec, msg in (("ci", "'ci' must be NAME:ROLE[:PREFIX]"),
                      ("ci:root", "role 'root' must be read, write or admin"),
                      ("c i:read", "token name must be")):
        r = subprocess.run([exe, "--new-token", spec], capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and msg in r.stderr and r.stdout == "",
              "%s: %d %r %r" % (spec, r.returncode, r.stdout, r.stderr))
    # A bad tokens file stops the start with the line named.
    p = os.path.join(TMP.name, "bad")
    with open(p, "w") as f:
        f.write("ok read " + "0" * 64 + "\nbad write xyz\n")
    r = subprocess.run([exe, "--tokens", p, "--listen", "127.0.0.1:0", "--db",
                        os.path.join(TMP.name, "y.db")], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 2 and "line 2: token 'bad': the digest must be 64 hex digits"
          in r.stderr, "%d %r" % (r.returncode, r.stderr))
    # --check-config loads the tokens file and the TLS pair as the start would.
    db = os.path.join(TMP.name, "y.db")
    r = subprocess.run([exe, "--check-config", "--tokens", p, "--listen", "127.0.0.1:0",
                        "--db", db], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "line 2: token 'bad'" in r.stderr,
          "--check-config, bad tokens: %d %r" % (r.returncode, r.stderr))
    r = subprocess.run([exe, "--check-config", "--tls-cert", p, "--listen", "127.0.0.1:0",
                        "--db", db], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "tls-cert and tls-key go together" in r.stderr,
          "--check-config, cert without key: %d %r" % (r.returncode, r.stderr))
    r = subprocess.run([exe, "--check-config", "--tls-cert", p, "--tls-key", p, "--listen",
                        "127.0.0.1:0", "--db", db], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and r.stdout == "", "--check-config, bad TLS pair: %d %r %r" % (
        r.returncode, r.stdout, r.stderr))
    r = subprocess.run([exe, "--check-config", "--listen", "0.0.0.0:0", "--db", db],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "without tokens" in r.stderr,
          "--check-config, open address without tokens: %d %r" % (r.returncode, r.stderr))
    check(not os.path.exists(db), "--check-config created the database")


@tap.test
def sighup_revokes(exe):
    """SIGHUP with a token removed: its next request is 401 on a kept-alive connection;
    the others go on; a broken file on SIGHUP keeps the running set."""
    tokens = Tokens(exe, TMP.name)
    with Daemon(exe, extra_args=["--tokens", tokens.path]) as d:
        w = World(d, tokens)
        w.ensure(IN)
        cw, cr = d.client(), d.client()
        cw.get("/v1/studies", headers=tokens.headers("write")).expect(200)
        cr.get("/v1/studies", headers=tokens.headers("read")).expect(200)
        tokens.write(["read", "admin", "scoped"])
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "tokens file '%s' reloaded (3 token(s))" % tokens.path)
        cw.post("/v1/studies/%s/ask" % IN, headers=tokens.headers("write")).expect_error(
            401, "unauthenticated")
        cr.get("/v1/studies", headers=tokens.headers("read")).expect(200)
        d.post("/v1/studies/%s/ask" % IN, headers=tokens.headers("scoped")).expect(201)
        # A broken file: logged, and the running set stays.
        with open(tokens.path, "w") as f:
            f.write("broken\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "line 1: expected NAME ROLE SHA256HEX [PREFIX], got 1 field; keeping the 3 "
                 "token(s) in use")
        cr.get("/v1/studies", headers=tokens.headers("read")).expect(200)
        cw.get("/v1/studies", headers=tokens.headers("write")).expect_error(401, "unauthenticated")
        # And back: the write token returns.
        tokens.write(["read", "write", "admin", "scoped"])
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "reloaded (4 token(s))")
        cw.get("/v1/studies", headers=tokens.headers("write")).expect(200)
        cw.close()
        cr.close()


if __name__ == "__main__":
    tap.main(TMP.cleanup)
