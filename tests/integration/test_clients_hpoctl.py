#!/usr/bin/python3
"""test_clients_hpoctl.py: hpoctl against the real hpod.

Usage: test_clients_hpoctl.py PATH/TO/hpod PATH/TO/hpoctl   (HPOD_TEST_ONLY=a,b runs a subset)

Covers every command with its table, --json and --csv output and its exit
code (0 ok, 1 API error with the message on stderr, 2 usage, 3 when `run`
completed no trial); `COMMAND --help` for every command; HPOD_URL and
--url; enqueue and attrs; and `hpoctl run`: params as HPO_PARAM_* and {name}
placeholders, intermediate reports, pruning (the command's process group is
killed and the trial told pruned), a block-buffering Python child pruned at
its first step (PYTHONUNBUFFERED), failing commands and the summary of why,
a missing command stopping the run, --max-failures, --timeout, -j 4 running
four at once, -n, max_trials, heartbeats keeping a trial alive, SIGINT
failing the running trials, progress lines off a terminal and the status
line on one. Also the README's quick start and curl walkthrough, run as
written, and the bash completion. Prints TAP.
"""

import csv
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from hpodtest import Daemon, Skip, Tap, check  # noqa: E402

tap = Tap()
HPOCTL = None
RUN_TIMEOUT = 60


def hpoctl(d, *args, env=None, url=True, timeout=RUN_TIMEOUT, stdin=None):
    """Run hpoctl; returns (rc, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("HPOD_URL", None)
    e.pop("HPOD_TOKEN", None)
    e.update(env or {})
    argv = [HPOCTL] + (["--url", "http://127.0.0.1:%d" % d.port] if url else []) + list(args)
    p = subprocess.run(argv, env=e, input=stdin, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def ok(d, *args, **kw):
    rc, out, err = hpoctl(d, *args, **kw)
    check(rc == 0, "hpoctl %s: rc %d, stderr %r" % (" ".join(args), rc, err))
    return out


def expect_rc(want, d, *args, stderr_has=None, **kw):
    rc, out, err = hpoctl(d, *args, **kw)
    check(rc == want, "hpoctl %s: rc %d, expected %d (stdout %r stderr %r)"
          % (" ".join(args), rc, want, out, err))
    if stderr_has is not None:
        for s in ([stderr_has] if isinstance(stderr_has, str) else stderr_has):
            check(s in err, "hpoctl %s: stderr %r lacks %r" % (" ".join(args), err, s))
    return out, err


def write(tmp, name, text, mode=0o644):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def create(d, tmp, spec):
    path = write(tmp, spec["name"] + ".json", json.dumps(spec))
    ok(d, "study", "create", "-f", path)


def trials(d, study):
    r = d.get("/v1/studies/%s/trials?limit=100000" % study).expect(200)
    return r["trials"]


def states(d, study):
    out = {}
    for t in trials(d, study):
        out[t["state"]] = out.get(t["state"], 0) + 1
    return out


SPACE = [
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
    {"name": "n-layers", "type": "int", "low": 1, "high": 5},
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]},
]


@tap.test
def commands_and_exit_codes(d, tmp):
    spec = {"name": "cli", "params": SPACE, "sampler": {"type": "random", "seed": 3}}
    path = write(tmp, "cli.json", json.dumps(spec))
    out = ok(d, "study", "create", "-f", path)
    check(out == "created study cli\n", "create said %r" % out)
    out = ok(d, "study", "create", "-f", path)
    check("exists" in out and "cli" in out, "re-create said %r" % out)
    out = ok(d, "study", "create", "-f", "-", stdin=json.dumps(spec))
    check("exists" in out, "create from stdin said %r" % out)
    other = write(tmp, "other.json", json.dumps(dict(spec, direction="maximize")))
    expect_rc(1, d, "study", "create", "-f", other, stderr_has="conflict")
    bad = write(tmp, "bad.json", json.dumps({"name": "bad", "params": [
        {"name": "x", "type": "float", "low": 2, "high": 1}]}))
    expect_rc(1, d, "study", "create", "-f", bad,
              stderr_has=["invalid_argument", "field params[0].low"])
    expect_rc(1, d, "study", "create", "-f", os.path.join(tmp, "missing.json"),
              stderr_has="cannot open")

    # studies: a table by default, the API's JSON with --json.
    out = ok(d, "studies")
    lines = out.splitlines()
    check(lines[0].split() == ["NAME", "DIRECTION", "SAMPLER", "PRUNER", "TRIALS", "WAITING",
                               "RUNNING", "COMPLETE", "PRUNED", "FAILED", "BEST"],
          "studies header %r" % lines[0])
    check(lines[1].split()[:5] == ["cli", "minimize", "random", "none", "0"], "row %r" % lines[1])
    j = json.loads(ok(d, "--json", "studies"))
    check([s["name"] for s in j["studies"]] == ["cli"], "studies json %r" % j)
    out = ok(d, "study", "show", "cli")
    check("name:" in out and "n-layers" in out and "choices=" in out, "show %r" % out)
    j = json.loads(ok(d, "study", "show", "cli", "--json"))
    check(j["name"] == "cli" and j["sampler"]["seed"] == 3, "show json %r" % j)

    # ask / report / tell / best / trials.
    t = json.loads(ok(d, "--json", "ask", "cli"))
    n = t["number"]
    check(t["state"] == "running" and set(t["params"]) == {"lr", "n-layers", "opt"}, "ask %r" % t)
    out = ok(d, "ask", "cli")
    check(out.startswith("trial %d (running)" % (n + 1)) and "  opt = " in out, "ask table %r" % out)
    check(ok(d, "report", "cli", str(n), "0", "0.5") == "continue\n", "report text")
    check(json.loads(ok(d, "--json", "report", "cli", str(n), "1", "-0.25")) == {"prune": False},
          "report json")
    out = ok(d, "tell", "cli", str(n), "-1.5")
    check(out.startswith("trial %d (complete) value -1.5" % n), "tell %r" % out)
    ok(d, "tell", "cli", str(n), "-1.5")  # the same result again is fine
    expect_rc(1, d, "tell", "cli", str(n), "2", stderr_has="conflict")
    ok(d, "tell", "cli", str(n + 1), "--failed")
    got = d.get("/v1/studies/cli/trials/%d" % n).expect(200)
    check(got["value"] == -1.5 and [s["value"] for s in got["intermediate"]] == [0.5, -0.25],
          "trial after tell %r" % got)
    check(d.get("/v1/studies/cli/trials/%d" % (n + 1)).expect(200)["state"] == "failed",
          "--failed")
    t2 = json.loads(ok(d, "--json", "ask", "cli"))
    ok(d, "report", "cli", str(t2["number"]), "0", "7")
    ok(d, "tell", "cli", str(t2["number"]), "--pruned")
    check(d.get("/v1/studies/cli/trials/%d" % t2["number"]).expect(200)["value"] == 7,
          "--pruned takes the last intermediate value")

    best = json.loads(ok(d, "--json", "best", "cli"))
    check(best["number"] == n and best["value"] == -1.5, "best %r" % best)
    out = ok(d, "best", "cli")
    check(out.startswith("trial %d (complete) value -1.5" % n), "best table %r" % out)
    out = ok(d, "trials", "cli")
    rows = [line.split() for line in out.splitlines()]
    check(rows[0] == ["NUMBER", "STATE", "VALUE", "lr", "n-layers", "opt"], "trials header %r" % rows[0])
    check([r[1] for r in rows[1:]] == ["complete", "failed", "pruned"], "trials rows %r" % rows)
    j = json.loads(ok(d, "trials", "cli", "--state", "failed", "--json"))
    check(j["total"] == 1 and j["trials"][0]["number"] == n + 1, "trials --state json %r" % j)
    rows = list(csv.reader(io.StringIO(ok(d, "trials", "cli", "--csv"))))
    check(rows[0][:6] == ["number", "state", "value", "lr", "n-layers", "opt"], "csv %r" % rows[0])
    check(len(rows) == 4 and float(rows[1][2]) == -1.5, "csv rows %r" % rows)
    rows = list(csv.reader(io.StringIO(ok(d, "trials", "cli", "--csv", "--state", "complete"))))
    check(len(rows) == 2, "csv --state rows %r" % rows)

    # Environment: HPOD_URL is used without --url; --url wins over it.
    e = {"HPOD_URL": "http://127.0.0.1:%d" % d.port}
    check("cli" in ok(d, "studies", url=False, env=e), "HPOD_URL")
    ok(d, "--url", "http://127.0.0.1:%d/v1/" % d.port, "studies", url=False,
       env={"HPOD_URL": "http://127.0.0.1:1"})

    # API errors: exit 1 with code and message on stderr.
    expect_rc(1, d, "study", "show", "nope", stderr_has="not_found")
    expect_rc(1, d, "ask", "nope", stderr_has="not_found")
    expect_rc(1, d, "best", "nope", stderr_has="not_found")
    expect_rc(1, d, "report", "cli", str(n), "5", "1", stderr_has="conflict")
    expect_rc(1, d, "studies", url=False, env={"HPOD_URL": "http://127.0.0.1:1"},
              stderr_has="transport")

    # Usage errors: exit 2.
    for args in ([], ["frobnicate"], ["tell", "cli", "0"], ["tell", "cli", "x", "1"],
                 ["tell", "cli", "0", "abc"], ["tell", "cli", "0", "1", "--failed"],
                 ["report", "cli", "0", "-1", "1"], ["trials", "cli", "--state", "done"],
                 ["studies", "--csv"], ["studies", "extra"], ["study"], ["study", "show"],
                 ["study", "create"], ["ask"], ["run", "cli"], ["run", "cli", "-j", "0", "--", "true"],
                 ["--bogus", "studies"], ["--url"], ["--url", "ftp://x", "studies"]):
        rc, out, err = hpoctl(d, *args)
        check(rc == 2, "hpoctl %s: rc %d, expected 2 (stderr %r)" % (" ".join(args), rc, err))
        check(err != "", "usage error without a message: %r" % args)
    out = ok(d, "--help")
    check("Usage: hpoctl" in out and "run STUDY" in out, "--help %r" % out)
    # hpod checks tokens now (issue 13): the help names the token and the CA file options.
    check("--token TOKEN  bearer token (default $HPOD_TOKEN)" in out and
          "--cacert FILE" in out and "does not check tokens" not in out,
          "--help on --token/--cacert: %r" % out)
    check(ok(d, "help") == out, "help")
    check(ok(d, "--version").startswith("hpoctl "), "--version")

    # studies: counts of every state, after the trials above (1 complete, 1 failed, 1 pruned).
    ok(d, "enqueue", "cli", "-p", "opt=adam")
    t3 = json.loads(ok(d, "--json", "ask", "cli"))  # the waiting one is handed out
    check(t3["params"]["opt"] == "adam", "enqueued trial asked %r" % t3)
    ok(d, "ask", "cli")
    ok(d, "enqueue", "cli", "-p", "opt=sgd")
    row = ok(d, "studies").splitlines()[1].split()
    check(row[:10] == ["cli", "minimize", "random", "none", "6", "1", "2", "1", "1", "1"]
          and float(row[10]) == -1.5, "studies row with counts %r" % row)

    ok(d, "study", "delete", "cli")
    expect_rc(1, d, "study", "delete", "cli", stderr_has="not_found")
    check(json.loads(ok(d, "--json", "studies")) == {"studies": []}, "deleted")


@tap.test
def trials_paging(d, tmp):
    # More trials than one page (1000): tables, JSON and CSV list them all, in order.
    create(d, tmp, {"name": "many", "params": [{"name": "x", "type": "int", "low": 0, "high": 3}]})
    for i in range(1003):
        d.post("/v1/studies/many/trials", {"params": {"x": i % 4}, "value": float(i)}).expect(201)
    rows = ok(d, "trials", "many").splitlines()
    check(len(rows) == 1004 and rows[-1].split()[:3] == ["1002", "complete", "1002"],
          "table: %d rows, last %r" % (len(rows), rows[-1]))
    j = json.loads(ok(d, "--json", "trials", "many"))
    check(j["total"] == 1003 and [t["number"] for t in j["trials"]] == list(range(1003)), "json")
    rows = list(csv.reader(io.StringIO(ok(d, "trials", "many", "--csv"))))
    check(len(rows) == 1004 and rows[-1][0] == "1002", "csv: %d rows" % len(rows))
    ok(d, "study", "delete", "many")


OBJECTIVE = r"""#!/bin/sh
# A small objective: reports three steps, then the value.
echo "start trial=$HPO_TRIAL study=$HPO_STUDY args=$*"
v=$(awk -v lr="$HPO_PARAM_LR" -v n="$HPO_PARAM_N_LAYERS" -v o="$HPO_PARAM_OPT" \
    'BEGIN { printf "%.17g", lr * 10 + n + (o == "sgd" ? 100 : 0) }')
for s in 1 2 3; do echo "hpo: report $s $((10 - s))"; done
echo "hpo: value $v"
"""


@tap.test
def run_reports_and_values(d, tmp):
    create(d, tmp, {"name": "run", "params": SPACE, "sampler": {"type": "random", "seed": 9}})
    obj = write(tmp, "obj.sh", OBJECTIVE, 0o755)
    env = {"HPO_PARAM_STALE": "1", "HPO_TRIAL": "stale"}
    rc, out, err = hpoctl(d, "run", "run", "-n", "5", "--", obj, "--lr={lr}", "{opt}", "{nope}",
                          "{trial}", env=env)
    check(rc == 0, "run rc %d: %s" % (rc, err))
    ts = trials(d, "run")
    check(len(ts) == 5 and all(t["state"] == "complete" for t in ts), "states %r" % ts)
    lines = [line for line in out.splitlines() if line.startswith("start ")]
    check(len(lines) == 5, "command output forwarded: %r" % out)
    for t, line in zip(ts, lines):
        p = t["params"]
        want = p["lr"] * 10 + p["n-layers"] + (100 if p["opt"] == "sgd" else 0)
        check(abs(t["value"] - want) <= 1e-12 * abs(want), "value %r for %r" % (t["value"], p))
        check([(i["step"], i["value"]) for i in t["intermediate"]] == [(1, 9), (2, 8), (3, 7)],
              "intermediate %r" % t["intermediate"])
        # Placeholders: exact shortest text of the value; unknown ones stay as written.
        words = line.split()
        check(words[1] == "trial=%d" % t["number"] and words[2] == "study=run", "env %r" % line)
        check(float(words[3].split("=", 2)[2]) == p["lr"], "placeholder lr %r" % line)
        check(words[4:] == [p["opt"], "{nope}", str(t["number"])], "placeholders %r" % line)
    check("complete" in err, "summary lines on stderr: %r" % err)


@tap.test
def run_env_cleaned(d, tmp):
    create(d, tmp, {"name": "envs", "params": [{"name": "a.b", "type": "int", "low": 1, "high": 1}],
                    "sampler": {"type": "random", "seed": 1}})
    script = write(tmp, "env.sh", "#!/bin/sh\nenv | grep '^HPO_' | sort > \"$OUT\"\n"
                   "echo 'hpo: value 1'\n", 0o755)
    out_file = os.path.join(tmp, "env.txt")
    ok(d, "run", "envs", "-n", "1", "--", script,
       env={"OUT": out_file, "HPO_PARAM_STALE": "x", "HPO_STUDY": "old"})
    with open(out_file) as f:
        got = f.read().split()
    check(got == ["HPO_PARAM_A_B=1", "HPO_STUDY=envs", "HPO_TRIAL=0"], "environment %r" % got)


PRUNE_OBJECTIVE = r"""#!/bin/sh
# Trial 0 is good; the others report bad values and would then sleep a long time.
echo $$ > "$PIDDIR/$HPO_TRIAL.pid"
sleep 30 &
echo $! > "$PIDDIR/$HPO_TRIAL.child"
if [ "$HPO_TRIAL" = 0 ]; then v=1; else v=50; fi
for s in 0 1 2 3; do
    echo "hpo: report $s $v"
    if [ "$HPO_TRIAL" != 0 ] && [ $s = 1 ]; then sleep 30; touch "$PIDDIR/$HPO_TRIAL.survived"; fi
done
kill $! 2>/dev/null
echo "hpo: value $v"
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def pid_from(path):
    with open(path) as f:
        return int(f.read().strip())


@tap.test
def run_pruning(d, tmp):
    create(d, tmp, {"name": "prune", "params": SPACE, "sampler": {"type": "random", "seed": 2},
                    "pruner": {"type": "median", "n_startup_trials": 1}})
    piddir = os.path.join(tmp, "pids")
    os.mkdir(piddir)
    obj = write(tmp, "prune.sh", PRUNE_OBJECTIVE, 0o755)
    t0 = time.monotonic()
    rc, out, err = hpoctl(d, "run", "prune", "-n", "3", "--", obj, env={"PIDDIR": piddir})
    elapsed = time.monotonic() - t0
    check(rc == 0, "run rc %d: %s" % (rc, err))
    check(elapsed < 20, "pruned commands were not killed (%.1f s)" % elapsed)
    ts = trials(d, "prune")
    check([t["state"] for t in ts] == ["complete", "pruned", "pruned"], "states %r" % ts)
    check(ts[0]["value"] == 1, "trial 0 value %r" % ts[0]["value"])
    for t in ts[1:]:
        # Pruned at the first step the median can judge, with that value as the trial's.
        check(t["value"] == 50 and len(t["intermediate"]) >= 1, "pruned trial %r" % t)
        n = t["number"]
        check(not os.path.exists(os.path.join(piddir, "%d.survived" % n)), "command survived")
        for f in ("%d.pid" % n, "%d.child" % n):
            pid = pid_from(os.path.join(piddir, f))
            check(not alive(pid), "process %s (%d) of a pruned trial still runs" % (f, pid))
    check("pruned" in err, "stderr %r" % err)


@tap.test
def run_failures(d, tmp):
    create(d, tmp, {"name": "fails", "params": SPACE, "sampler": {"type": "random", "seed": 4}})
    cases = [
        (["sh", "-c", "echo 'hpo: value 1'; exit 3"], "exit status 3"),
        (["sh", "-c", "echo no value here"], "no 'hpo: value' line"),
        (["sh", "-c", "echo 'hpo: value nan'"], "malformed"),
        (["sh", "-c", "kill -9 $$"], "signal 9"),
        ([os.path.join(tmp, "does-not-exist")], "command not found: " + tmp),
        (["sh", "-c", "exit 127"], "exit status 127"),
    ]
    for argv, why in cases:
        # No trial completed: exit status 3, and the summary says why.
        rc, out, err = hpoctl(d, "run", "fails", "-n", "1", "--", *argv)
        check(rc == 3, "run %r rc %d: %s" % (argv, rc, err))
        check(why in err, "run %r: stderr %r lacks %r" % (argv, err, why))
        check("hpoctl: summary: 1 trial in " in err and "0 complete, 0 pruned, 1 failed (1 " in err
              and "hpoctl: no trial completed" in err, "summary %r" % err)
    check(states(d, "fails") == {"failed": len(cases)}, "states %r" % states(d, "fails"))
    # A value line without a trailing newline still counts.
    ok(d, "run", "fails", "-n", "1", "--", "sh", "-c", "printf 'hpo: value 2.5'")
    check(trials(d, "fails")[-1]["value"] == 2.5, "last line without newline")


@tap.test
def run_timeout(d, tmp):
    create(d, tmp, {"name": "slow", "params": SPACE, "sampler": {"type": "random", "seed": 5}})
    piddir = os.path.join(tmp, "tpids")
    os.mkdir(piddir)
    # The shell ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    script = write(tmp, "slow.sh", "#!/bin/sh\ntrap '' TERM\nsleep 30 &\necho $! > \"$PIDDIR/child\"\n"
                   "echo 'hpo: report 0 1'\nwait\necho 'hpo: value 1'\n", 0o755)
    t0 = time.monotonic()
    rc, out, err = hpoctl(d, "run", "slow", "-n", "1", "--timeout", "0.5", "--", script,
                          env={"PIDDIR": piddir})
    elapsed = time.monotonic() - t0
    check(rc == 3, "rc %d: %s" % (rc, err))
    check("(1 timeout after 0.5 s)" in err, "summary %r" % err)
    check(0.5 <= elapsed < 10, "timeout took %.1f s" % elapsed)
    check("timeout after 0.5 s" in err, "stderr %r" % err)
    t = trials(d, "slow")[0]
    check(t["state"] == "failed" and t["intermediate"][0]["value"] == 1, "trial %r" % t)
    check(not alive(pid_from(os.path.join(piddir, "child"))), "the command's child survived")


@tap.test
def run_parallel(d, tmp):
    create(d, tmp, {"name": "par", "params": SPACE, "sampler": {"type": "random", "seed": 6}})
    logdir = os.path.join(tmp, "par")
    os.mkdir(logdir)
    script = write(tmp, "par.sh", "#!/bin/sh\ndate +%s.%N > \"$LOG/$HPO_TRIAL.start\"\n"
                   "echo line from $HPO_TRIAL\nsleep 1\ndate +%s.%N > \"$LOG/$HPO_TRIAL.end\"\n"
                   "echo \"hpo: value $HPO_TRIAL\"\n", 0o755)
    t0 = time.monotonic()
    rc, out, err = hpoctl(d, "run", "par", "-n", "8", "-j", "4", "--", script, env={"LOG": logdir})
    elapsed = time.monotonic() - t0
    check(rc == 0, "rc %d: %s" % (rc, err))
    ts = trials(d, "par")
    check(len(ts) == 8 and all(t["state"] == "complete" and t["value"] == t["number"] for t in ts),
          "trials %r" % [(t["number"], t["state"], t["value"]) for t in ts])
    spans = []
    for n in range(8):
        with open(os.path.join(logdir, "%d.start" % n)) as f:
            s = float(f.read())
        with open(os.path.join(logdir, "%d.end" % n)) as f:
            e = float(f.read())
        spans.append((s, e))
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    cur = peak = 0
    for _, delta in events:
        cur += delta
        peak = max(peak, cur)
    check(peak == 4, "at most and at least 4 commands at once, got %d" % peak)
    check(elapsed < 6, "8 one-second commands with -j 4 took %.1f s" % elapsed)
    # With -j > 1 forwarded lines carry the trial number.
    for n in range(8):
        check("[%d] line from %d" % (n, n) in out.splitlines(), "prefixed output %r" % out)


@tap.test
def run_stops_when_exhausted(d, tmp):
    create(d, tmp, {"name": "few", "params": SPACE, "max_trials": 3,
                    "sampler": {"type": "random", "seed": 7}})
    rc, out, err = hpoctl(d, "run", "few", "-j", "2", "--", "sh", "-c", "echo 'hpo: value 0'")
    check(rc == 0, "rc %d: %s" % (rc, err))
    check("exhausted" in err, "stderr %r" % err)
    check(states(d, "few") == {"complete": 3}, "states %r" % states(d, "few"))
    expect_rc(1, d, "run", "nope", "--", "true", stderr_has="not_found")


@tap.test
def run_heartbeats(d, tmp):
    # heartbeat_timeout 1 s: without heartbeats the daemon would fail this 2.5 s trial.
    create(d, tmp, {"name": "hb", "params": SPACE, "heartbeat_timeout": 1,
                    "sampler": {"type": "random", "seed": 8}})
    rc, out, err = hpoctl(d, "run", "hb", "-n", "1", "--", "sh", "-c",
                          "sleep 2.5; echo 'hpo: value 3'")
    check(rc == 0, "rc %d: %s" % (rc, err))
    t = trials(d, "hb")[0]
    check(t["state"] == "complete" and t["value"] == 3, "trial %r" % t)
    # The control: a trial nobody heartbeats is failed by the daemon meanwhile.
    t = d.post("/v1/studies/hb/ask").expect(201)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if d.get("/v1/studies/hb/trials/%d" % t["number"]).expect(200)["state"] == "failed":
            break
        time.sleep(0.2)
    else:
        check(False, "the daemon did not fail a silent trial: heartbeats were not needed")


@tap.test
def run_interrupt(d, tmp):
    create(d, tmp, {"name": "intr", "params": SPACE, "sampler": {"type": "random", "seed": 10}})
    piddir = os.path.join(tmp, "ipids")
    os.mkdir(piddir)
    script = write(tmp, "long.sh", "#!/bin/sh\necho $$ > \"$PIDDIR/$HPO_TRIAL\"\nsleep 60\n"
                   "echo 'hpo: value 1'\n", 0o755)
    e = dict(os.environ, PIDDIR=piddir)
    p = subprocess.Popen([HPOCTL, "--url", "http://127.0.0.1:%d" % d.port, "run", "intr", "-j", "3",
                          "--", script], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.monotonic() + 20
    while len(os.listdir(piddir)) < 3:
        check(time.monotonic() < deadline and p.poll() is None, "three commands did not start")
        time.sleep(0.05)
    check(states(d, "intr") == {"running": 3}, "states %r" % states(d, "intr"))
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    check(p.returncode == 130, "rc %d after SIGINT: %s" % (p.returncode, err))
    check(time.monotonic() - t0 < 5, "SIGINT took %.1f s" % (time.monotonic() - t0))
    check(states(d, "intr") == {"failed": 3}, "states %r" % states(d, "intr"))
    check(err.count("(interrupted)") == 3, "stderr %r" % err)
    for f in os.listdir(piddir):
        check(not alive(pid_from(os.path.join(piddir, f))), "command of trial %s survived" % f)


COMMANDS = ["studies", "study", "ask", "tell", "report", "trials", "best", "enqueue", "attrs",
            "run", "help"]


@tap.test
def help_per_command(d, tmp):
    general = ok(d, "--help")
    for cmd in COMMANDS:
        out = ok(d, cmd, "--help")
        check(out.startswith("Usage: hpoctl %s" % cmd) and out != general,
              "%s --help: %r" % (cmd, out))
        check(ok(d, "help", cmd) == out, "help %s" % cmd)
    # --help anywhere among the command's words; subcommands of study too.
    check(ok(d, "run", "demo", "-j", "2", "--help").startswith("Usage: hpoctl run"), "run ... --help")
    check(ok(d, "study", "create", "--help").startswith("Usage: hpoctl study create"), "study create")
    out = ok(d, "run", "--help")
    check("PYTHONUNBUFFERED=1" in out and "--max-failures" in out and "--progress" in out,
          "run --help %r" % out)
    # After "--" a --help belongs to the command being run, not to hpoctl.
    rc, out, err = hpoctl(d, "run", "nope", "--", "sh", "--help")
    check(rc == 1 and "not_found" in err, "run nope -- sh --help: rc %d %r" % (rc, err))
    expect_rc(2, d, "frobnicate", "--help", stderr_has="unknown command")
    expect_rc(2, d, "help", "frobnicate", stderr_has="unknown command")


PY_CHILD = r"""#!/usr/bin/python3
# Reports without flushing: with a pipe as stdout, Python buffers in blocks
# unless PYTHONUNBUFFERED is set.
import os, sys, time
d = os.environ["PIDDIR"]
n = os.environ["HPO_TRIAL"]
with open(os.path.join(d, n + ".env"), "w") as f:
    f.write(os.environ.get("PYTHONUNBUFFERED", "<unset>"))
with open(os.path.join(d, n + ".pid"), "w") as f:
    f.write(str(os.getpid()))
v = 1 if n == "0" else 50
for step in range(20):
    with open(os.path.join(d, n + ".step"), "w") as f:
        f.write(str(step))
    print("hpo: report %d %d" % (step, v))
    if n != "0" and not os.environ.get("FAST"):
        time.sleep(1)
with open(os.path.join(d, n + ".finished"), "w") as f:
    f.write("yes")
print("hpo: value %d" % v)
"""


def hpoctl_noenv(d, *args, env=None):
    """hpoctl with PYTHONUNBUFFERED removed from the environment it inherits."""
    e = dict(os.environ)
    e.pop("HPOD_URL", None)
    e.pop("HPOD_TOKEN", None)
    e.pop("PYTHONUNBUFFERED", None)
    e.update(env or {})
    argv = [HPOCTL, "--url", "http://127.0.0.1:%d" % d.port] + list(args)
    p = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return p.returncode, p.stdout, p.stderr


@tap.test
def run_python_child_unbuffered(d, tmp):
    create(d, tmp, {"name": "pyprune", "params": SPACE, "sampler": {"type": "random", "seed": 2},
                    "pruner": {"type": "median", "n_startup_trials": 1}})
    piddir = os.path.join(tmp, "pypids")
    os.mkdir(piddir)
    script = write(tmp, "child.py", PY_CHILD, 0o755)
    # hpoctl's environment has no PYTHONUNBUFFERED: it must set it for the child.
    rc, out, err = hpoctl_noenv(d, "run", "pyprune", "-n", "2", "--", script,
                                env={"PIDDIR": piddir})
    check(rc == 0, "run rc %d: %s" % (rc, err))
    ts = trials(d, "pyprune")
    check([t["state"] for t in ts] == ["complete", "pruned"], "states %r" % ts)
    # Pruned at step 0, its first report: only that one reached the daemon.
    t = ts[1]
    check([(i["step"], i["value"]) for i in t["intermediate"]] == [(0, 50)] and t["value"] == 50,
          "pruned trial %r" % t)
    check("hpoctl: trial 1 pruned (at step 0)" in err, "stderr %r" % err)
    # The child was stopped there, not run to the end (20 steps of 1 s).
    check(not os.path.exists(os.path.join(piddir, "1.finished")), "the child ran to the end")
    with open(os.path.join(piddir, "1.step")) as f:
        check(int(f.read()) < 19, "the child got to its last step")
    check(not alive(pid_from(os.path.join(piddir, "1.pid"))), "the pruned child still runs")
    for n in ("0", "1"):
        with open(os.path.join(piddir, n + ".env")) as f:
            check(f.read() == "1", "PYTHONUNBUFFERED in trial %s's environment" % n)


@tap.test
def run_python_child_keeps_user_setting(d, tmp):
    # A PYTHONUNBUFFERED the user set (non-empty) is kept; an empty one is replaced.
    create(d, tmp, {"name": "pyenv", "params": SPACE})
    piddir = os.path.join(tmp, "pyenv")
    os.mkdir(piddir)
    script = write(tmp, "child2.py", PY_CHILD, 0o755)
    for n, value, want in ((0, "yes", "yes"), (1, "", "1")):
        rc, out, err = hpoctl_noenv(d, "run", "pyenv", "-n", "1", "--", script,
                                    env={"PIDDIR": piddir, "FAST": "1", "PYTHONUNBUFFERED": value})
        check(rc == 0, "rc %d %s" % (rc, err))
        with open(os.path.join(piddir, "%d.env" % n)) as f:
            got = f.read()
        check(got == want, "PYTHONUNBUFFERED=%r gave %r" % (value, got))


@tap.test
def run_summary_and_exit_status(d, tmp):
    create(d, tmp, {"name": "mixed", "params": SPACE, "sampler": {"type": "random", "seed": 12}})
    # Even trials complete with value 10 - number, odd ones exit 2.
    script = write(tmp, "mixed.sh", "#!/bin/sh\nif [ $((HPO_TRIAL % 2)) = 1 ]; then exit 2; fi\n"
                   "echo \"hpo: value $((10 - HPO_TRIAL))\"\n", 0o755)
    rc, out, err = hpoctl(d, "run", "mixed", "-n", "5", "--", script)
    check(rc == 0, "some trials completed: rc %d %s" % (rc, err))
    lines = [x for x in err.splitlines() if x.startswith("hpoctl: summary: ")]
    check(len(lines) == 1, "one summary line: %r" % err)
    check(re.fullmatch(r"hpoctl: summary: 5 trials in \d+\.\d s: 3 complete, 0 pruned, 2 failed "
                       r"\(2 exit status 2\); best 6 \(trial 4\)", lines[0]) is not None,
          "summary %r" % lines[0])
    check("no trial completed" not in err, "stderr %r" % err)

    # A command that does not exist: the first trial fails, no other is started
    # (without -n, and with -j 4), the summary says why, and the exit status is 3.
    create(d, tmp, {"name": "nocmd", "params": SPACE})
    rc, out, err = hpoctl(d, "run", "nocmd", "-j", "4", "--", "./no-such-train.sh", "--lr", "{lr}")
    check(rc == 3, "rc %d: %s" % (rc, err))
    check(states(d, "nocmd") == {"failed": 1}, "states %r" % states(d, "nocmd"))
    check("cannot run './no-such-train.sh': No such file or directory; not starting more trials"
          in err, "stderr %r" % err)
    check("hpoctl: summary: 1 trial in " in err and
          "0 complete, 0 pruned, 1 failed (1 command not found: ./no-such-train.sh)" in err and
          err.rstrip().endswith("hpoctl: no trial completed"), "summary %r" % err)
    # A command that is not executable: the same, with the reason.
    noexec = write(tmp, "noexec.sh", "#!/bin/sh\necho 'hpo: value 1'\n", 0o644)
    rc, out, err = hpoctl(d, "run", "nocmd", "--", noexec)
    check(rc == 3 and "1 cannot run %s: Permission denied" % noexec in err, "rc %d %r" % (rc, err))

    # --max-failures: without -n a command that always fails stops after K in a row.
    create(d, tmp, {"name": "flaky", "params": SPACE})
    rc, out, err = hpoctl(d, "run", "flaky", "--max-failures", "3", "--", "sh", "-c", "exit 1")
    check(rc == 3 and states(d, "flaky") == {"failed": 3}, "rc %d states %r %r"
          % (rc, states(d, "flaky"), err))
    check("3 trials failed in a row: not starting more (--max-failures)" in err, "stderr %r" % err)
    rc, out, err = hpoctl(d, "run", "flaky", "-n", "12", "--", "sh", "-c", "exit 1")
    check(rc == 3 and states(d, "flaky") == {"failed": 13}, "default 10: %r" % states(d, "flaky"))
    rc, out, err = hpoctl(d, "run", "flaky", "-n", "12", "--max-failures", "0", "--",
                          "sh", "-c", "exit 1")
    check(rc == 3 and states(d, "flaky") == {"failed": 25}, "0: never %r" % states(d, "flaky"))
    for bad in (["--max-failures", "-1"], ["--progress", "x"], ["--progress", "-1"]):
        expect_rc(2, d, "run", "flaky", *bad, "--", "true")
    expect_rc(2, d, "studies", "--progress", "1")


PROGRESS_RE = re.compile(r"hpoctl: progress: (\d+) done \((\d+) complete, (\d+) pruned, "
                         r"(\d+) failed\), (\d+) running(, best \S+ \(trial \d+\))?, "
                         r"elapsed \d+\.\d s$")


@tap.test
def run_progress_lines(d, tmp):
    # Standard error is a pipe here: plain progress lines every --progress seconds.
    create(d, tmp, {"name": "prog", "params": SPACE, "sampler": {"type": "random", "seed": 13}})
    script = write(tmp, "prog.sh", "#!/bin/sh\nsleep 0.6\necho \"hpo: value $HPO_TRIAL\"\n", 0o755)
    rc, out, err = hpoctl(d, "run", "prog", "-n", "4", "-j", "2", "--progress", "0.2", "--", script)
    check(rc == 0, "rc %d %s" % (rc, err))
    lines = [x for x in err.splitlines() if x.startswith("hpoctl: progress:")]
    check(len(lines) >= 3, "progress lines %r" % err)
    seen = []
    for line in lines:
        m = PROGRESS_RE.match(line)
        check(m is not None, "progress line %r" % line)
        done, comp, pruned, failed, running = (int(m.group(i)) for i in range(1, 6))
        check(done == comp + pruned + failed and pruned == 0 and failed == 0 and
              1 <= running <= 2 and done <= 4, "counts in %r" % line)
        check((m.group(6) is not None) == (comp > 0), "best only once a trial completed: %r" % line)
        seen.append(done)
    check(seen == sorted(seen) and seen[0] == 0, "progress counts %r" % seen)
    check("\r" not in err and "\033" not in err, "no terminal control off a terminal: %r" % err)
    check("best 0 (trial 0)" in err, "summary %r" % err)
    # --progress 0: none.
    rc, out, err = hpoctl(d, "run", "prog", "-n", "1", "--progress", "0", "--", script)
    check(rc == 0 and "progress" not in err and "hpoctl: summary: 1 trial" in err, "%r" % err)


@tap.test
def run_status_line_on_a_terminal(d, tmp):
    # Standard error is a terminal: one status line, redrawn in place.
    create(d, tmp, {"name": "tty", "params": SPACE, "sampler": {"type": "random", "seed": 14}})
    script = write(tmp, "tty.sh", "#!/bin/sh\nsleep 0.4\necho out-$HPO_TRIAL\n"
                   "echo \"hpo: value $HPO_TRIAL\"\n", 0o755)
    master, slave = pty.openpty()
    e = dict(os.environ, TERM="xterm")
    e.pop("HPOD_URL", None)
    p = subprocess.Popen([HPOCTL, "--url", "http://127.0.0.1:%d" % d.port, "run", "tty", "-n", "3",
                          "--", script], env=e, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if p.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:
            break  # EIO: hpoctl exited and closed the terminal
        if not data:
            break
        chunks.append(data)
    out = p.stdout.read().decode()
    rc = p.wait(timeout=RUN_TIMEOUT)
    os.close(master)
    tty = b"".join(chunks).decode(errors="replace")
    check(rc == 0, "rc %d: %r" % (rc, tty))
    check("\r\033[K[tty] 0 done (0 complete, 0 pruned, 0 failed), 1 running, 0:00" in tty,
          "status line %r" % tty)
    check("[tty] 2 done (2 complete, 0 pruned, 0 failed), 1 running, best 0 (trial 0)" in tty,
          "status line with best %r" % tty)
    check("hpoctl: progress" not in tty, "plain lines on a terminal %r" % tty)
    # The status line is erased before the summary, which ends the output on a line of its own.
    last = tty.replace("\r\n", "\n").split("\r\033[K")[-1]
    check(last.startswith("hpoctl: trial 2 complete") or last.startswith("hpoctl: summary: 3"),
          "end of output %r" % last)
    check(tty.rstrip().endswith("best 0 (trial 0)"), "summary last %r" % tty)
    check(out.split() == ["out-0", "out-1", "out-2"], "stdout %r" % out)


SPACE_ALL = [
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
    {"name": "n", "type": "int", "low": 1, "high": 8},
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd", 3, True]},
    {"name": "v", "type": "float", "low": -1, "high": 1, "size": 3},
]


@tap.test
def enqueue(d, tmp):
    create(d, tmp, {"name": "enq", "params": SPACE_ALL, "sampler": {"type": "random", "seed": 15}})
    t = json.loads(ok(d, "--json", "enqueue", "enq", "-p", "lr=0.01", "--param", "n=3",
                      "-p", "opt=sgd", "--param=v=0.5,-0.25,1", "--attr", "src=manual",
                      "--attr", "k=2"))
    check(t["state"] == "waiting" and t["params"] == {"lr": 0.01, "n": 3, "opt": "sgd",
                                                      "v": [0.5, -0.25, 1]}, "enqueued %r" % t)
    check(t["user_attrs"] == {"src": "manual", "k": 2}, "attrs %r" % t["user_attrs"])
    out = ok(d, "enqueue", "enq", "-p", "opt=3", "-p", "n=2.0")
    check(out.startswith("trial 1 (waiting)") and "  n = 2" in out and "  opt = 3" in out,
          "table %r" % out)
    got = d.get("/v1/studies/enq/trials/1").expect(200)
    check(got["params"] == {"n": 2, "opt": 3}, "partial params, typed: %r" % got["params"])
    ok(d, "enqueue", "enq", "-p", "opt=true")
    check(d.get("/v1/studies/enq/trials/2").expect(200)["params"] == {"opt": True}, "bool choice")
    # The next asks hand them out in order, the missing params suggested.
    a = json.loads(ok(d, "--json", "ask", "enq"))
    check(a["number"] == 0 and a["state"] == "running" and a["params"]["lr"] == 0.01, "ask %r" % a)
    a = json.loads(ok(d, "--json", "ask", "enq"))
    check(a["number"] == 1 and a["params"]["n"] == 2 and set(a["params"]) == {"lr", "n", "opt", "v"},
          "ask fills missing %r" % a)
    # Errors: the type is checked here (usage), the domain by the daemon (API error with field).
    expect_rc(2, d, "enqueue", "enq", "-p", "n=abc", stderr_has="is an int")
    expect_rc(2, d, "enqueue", "enq", "-p", "lr=fast", stderr_has="is a float")
    expect_rc(2, d, "enqueue", "enq", "-p", "v=1,x", stderr_has="is a vector")
    expect_rc(2, d, "enqueue", "enq", "-p", "lr")
    expect_rc(2, d, "enqueue", "enq")
    expect_rc(2, d, "enqueue", "enq", "-p", "n=1", "--attr", "novalue")
    expect_rc(1, d, "enqueue", "enq", "-p", "n=99", stderr_has=["invalid_argument", "field params"])
    expect_rc(1, d, "enqueue", "enq", "-p", "opt=rmsprop", stderr_has="invalid_argument")
    expect_rc(1, d, "enqueue", "enq", "-p", "nope=1", stderr_has="invalid_argument")
    expect_rc(1, d, "enqueue", "missing", "-p", "n=1", stderr_has="not_found")
    expect_rc(2, d, "ask", "enq", "-p", "n=1", stderr_has="belong to 'enqueue'")
    check(len(trials(d, "enq")) == 3, "errors changed nothing")


def patch_supported(d):
    """Whether the daemon has PATCH on studies (405 until it does)."""
    return d.request("PATCH", "/v1/studies/nonexistent-probe", {"user_attrs": {}}).status != 405


@tap.test
def attrs(d, tmp):
    create(d, tmp, {"name": "att", "params": SPACE, "user_attrs": {"owner": "ml"},
                    "sampler": {"type": "random", "seed": 16}})
    t = json.loads(ok(d, "--json", "ask", "att"))
    # Showing needs no PATCH.
    check(ok(d, "attrs", "att") == "owner = ml\n", "study attrs")
    check(ok(d, "attrs", "att", str(t["number"])) == "", "no trial attrs")
    expect_rc(2, d, "attrs", "att", "x", "k=1", stderr_has="not an integer")
    expect_rc(2, d, "attrs", "att", "k", stderr_has="not an integer")
    expect_rc(2, d, "attrs", "att", "k=1", "--unset", "k", stderr_has="both set and unset")
    expect_rc(2, d, "trials", "att", "--unset", "k", stderr_has="belongs to 'attrs'")
    expect_rc(1, d, "attrs", "nope", stderr_has="not_found")
    if not patch_supported(d):
        raise Skip("the daemon answers 405 to PATCH /v1/studies/{study}: user attrs cannot be "
                   "changed after creation yet")
    out = ok(d, "attrs", "att", "note=first run", "epochs=20", "tags=[\"a\",\"b\"]", "ok=true")
    check(out == 'epochs = 20\nnote = first run\nok = true\nowner = ml\ntags = ["a","b"]\n',
          "set study attrs %r" % out)
    got = d.get("/v1/studies/att").expect(200)["user_attrs"]
    check(got == {"owner": "ml", "note": "first run", "epochs": 20, "tags": ["a", "b"], "ok": True},
          "stored %r" % got)
    j = json.loads(ok(d, "--json", "attrs", "att", "--unset", "note", "owner=null", "ok=\"true\""))
    check(j["name"] == "att" and j["user_attrs"] == {"epochs": 20, "tags": ["a", "b"], "ok": "true"},
          "merged, null and --unset remove: %r" % j["user_attrs"])
    n = str(t["number"])
    check(ok(d, "attrs", "att", n, "gpu=a100", "loss=0.5") == "gpu = a100\nloss = 0.5\n",
          "trial attrs")
    check(d.get("/v1/studies/att/trials/%s" % n).expect(200)["user_attrs"] ==
          {"gpu": "a100", "loss": 0.5}, "trial stored")
    ok(d, "tell", "att", n, "1")
    j = json.loads(ok(d, "--json", "attrs", "att", n, "--unset", "gpu"))
    check(j["number"] == t["number"] and j["state"] == "complete" and j["user_attrs"] == {"loss": 0.5},
          "finished trial's attrs %r" % j)
    expect_rc(1, d, "attrs", "att", "99", "k=1", stderr_has="not_found")
    expect_rc(1, d, "attrs", "nope", "k=1", stderr_has="not_found")


def readme_block(text, start, end):
    """The README between two marker lines (first match of each), as a string."""
    i = text.index(start)
    return text[i:text.index(end, i)]


@tap.test
def readme_walkthroughs(d, tmp):
    # The README's quick start (the ```sh block) and curl walkthrough, run as written,
    # against this daemon: every step must succeed (curl fails on any 4xx/5xx).
    with open(os.path.join(SRC, "README.md")) as f:
        readme = f.read()
    url = "http://127.0.0.1:%d" % d.port
    quick = readme_block(readme, "```sh\n", "\n```\n")[len("```sh\n"):]
    check("./examples/train.py" in quick and "./train.sh" not in quick, "quick start %r" % quick)
    script = []
    for line in quick.splitlines():
        if line.startswith("./build/daemon/hpod"):
            continue  # the test's daemon is already running
        script.append(line.replace("http://127.0.0.1:8080", url)
                      .replace("./build/client/hpoctl", HPOCTL)
                      .replace("./examples/", os.path.join(SRC, "examples") + "/"))
    work = os.path.join(tmp, "readme")
    os.mkdir(work)
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=work,
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PATH=os.environ.get("PATH", "/usr/bin:/bin")))
    check(p.returncode == 0, "quick start failed (rc %d):\n%s\n%s" % (p.returncode, p.stdout,
                                                                       p.stderr))
    st = states(d, "demo")
    check(sum(st.values()) == 40 and st.get("complete", 0) >= 1 and "failed" not in st,
          "demo trials %r" % st)
    with open(os.path.join(work, "results.csv")) as f:
        rows = list(csv.reader(f))
    check(len(rows) == 41 and rows[0][:5] == ["number", "state", "value", "lr", "layers"],
          "results.csv %r" % rows[:2])
    check("best" in p.stdout or "trial" in p.stdout, "best printed %r" % p.stdout)

    walk = readme_block(readme, "    H=http://127.0.0.1:8080", "\nKill the daemon")
    lines = [line[4:] if line.startswith("    ") else line for line in walk.splitlines()]
    body = "\n".join(lines).replace("http://127.0.0.1:8080", url)
    # -f turns an HTTP error into a failure; -S says which.
    prelude = 'curl() { command curl -fsS "$@"; echo; }\n'
    p = subprocess.run(["bash", "-eu", "-c", prelude + body], cwd=work, capture_output=True,
                       text=True, timeout=120)
    check(p.returncode == 0, "curl walkthrough failed (rc %d):\n%s\n%s"
          % (p.returncode, p.stdout[-3000:], p.stderr))
    check(d.get("/v1/studies/resnet-lr").status == 404, "the walkthrough ends deleting the study")
    check('"state":"failed"' in p.stdout.replace(" ", ""), "trial 1 told failed: %r" % p.stdout[-2000:])


def complete(words):
    """What the bash completion offers for `words` (the last one being completed)."""
    script = os.path.join(SRC, "client", "hpoctl", "hpoctl.bash")
    code = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
            '_hpoctl; printf "%s\\n" "${COMPREPLY[@]}"')
    p = subprocess.run(["bash", "-c", code, "comp", script, HPOCTL] + words,
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "completion failed: %r" % p.stderr)
    return sorted(x for x in p.stdout.splitlines() if x)


@tap.test
def bash_completion(d, tmp):
    create(d, tmp, {"name": "comp-one", "params": SPACE})
    create(d, tmp, {"name": "comp-two", "params": SPACE})
    create(d, tmp, {"name": "other", "params": SPACE})
    u = ["--url", "http://127.0.0.1:%d" % d.port]
    check(complete(["r"]) == ["report", "run"], "commands %r" % complete(["r"]))
    check(complete(["e"]) == ["enqueue"], "enqueue")
    check(complete(["ba"]) == ["backup"], "backup")
    check(complete(["backup", "/usr/bin/python3"]) != [], "backup FILE completes files")
    check(complete(["--j"]) == ["--json"], "global options")
    check(complete(u + ["best", "comp-"]) == ["comp-one", "comp-two"], "study names")
    every = complete(u + ["--json", "run", ""])
    check({"comp-one", "comp-two", "other"} <= set(every) and "NAME" not in every,
          "all studies %r" % every)
    check(complete(u + ["study", "show", "o"]) == ["other"], "study show NAME")
    check(complete(["study", "d"]) == ["delete"], "study subcommands")
    check(complete(["trials", "x", "--state", "p"]) == ["pruned"], "--state values")
    check(complete(["run", "x", "--ti"]) == ["--timeout"], "run options")
    check(complete(["attrs", "x", "--u"]) == ["--unset", "--url"], "attrs options")
    check(complete(["help", "stu"]) == ["studies", "study"], "help COMMAND")
    cmdline = complete(["run", "x", "--", "/usr/bin/python3"])
    check("/usr/bin/python3" in cmdline and len(set(cmdline)) == len(cmdline) and
          all(c.startswith("/usr/bin/python3") for c in cmdline), "after --: files %r" % cmdline)
    check(complete(["--url", "http://127.0.0.1:1", "best", ""]) == [], "daemon down: nothing")


MO_SPACE = [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}]


@tap.test
def multiobjective_commands(d, tmp):
    path = write(tmp, "mo.json", json.dumps({"name": "mo", "params": MO_SPACE,
                                             "sampler": {"type": "random", "seed": 4}}))
    out = ok(d, "study", "create", "-f", path, "--objective", "error",
             "--objective", "latency_ms:minimize", "--constraint", "memory_gb:max=16",
             "--constraint", "recall:min=0.5,max=1")
    check(out == "created study mo\n", "create %r" % out)
    s = d.get("/v1/studies/mo").expect(200)
    check(s["objectives"] == [{"name": "error", "direction": "minimize"},
                              {"name": "latency_ms", "direction": "minimize"}] and
          s["constraints"] == [{"name": "memory_gb", "max": 16},
                               {"name": "recall", "min": 0.5, "max": 1}], "study %r" % s)
    # The same flags again: the identical study.
    out = ok(d, "study", "create", "-f", path, "--objective", "error:minimize",
             "--objective", "latency_ms", "--constraint", "memory_gb:max=16",
             "--constraint", "recall:min=0.5,max=1")
    check(out.startswith("exists (identical)"), "identical create %r" % out)
    for bad in (["--objective", "e:up"], ["--constraint", "m"], ["--constraint", "m:max=x"],
                ["--constraint", "m:min=1,min=2"], ["--constraint", "m:cap=3"]):
        expect_rc(2, d, "study", "create", "-f", path, *bad)
    both = write(tmp, "both.json", json.dumps({"name": "mo2", "params": MO_SPACE,
                                               "objectives": [{"name": "a"}]}))
    expect_rc(2, d, "study", "create", "-f", both, "--objective", "b")
    expect_rc(2, d, "study", "show", "mo", "--objective", "b")
    for _ in range(4):
        ok(d, "ask", "mo")
    # 0, 1: the front; 2 dominates both but breaks memory; 3 is dominated and lacks recall.
    ok(d, "tell", "mo", "0", "--value", "error=0.1", "--value", "latency_ms=10",
       "--constraint", "memory_gb=8", "--constraint", "recall=0.9")
    out = ok(d, "tell", "mo", "1", "--value", "latency_ms=5", "--value", "error=0.2",
             "--constraint", "memory_gb=8", "--constraint", "recall=0.9")
    check(out.startswith("trial 1 (complete) values error=0.2 latency_ms=5 constraints "
                         "memory_gb=8 recall=0.9\n"), "tell output %r" % out)
    ok(d, "tell", "mo", "2", "--value", "error=0.05", "--value", "latency_ms=1",
       "--constraint", "memory_gb=20", "--constraint", "recall=0.9")
    expect_rc(1, d, "tell", "mo", "3", "--value", "error=0.3",
              stderr_has=["invalid_argument", "values.latency_ms"])
    expect_rc(1, d, "tell", "mo", "3", "--value", "0.3", stderr_has="invalid_argument")
    for bad in (["--value", "error=x"], ["--value", "error=nan"], ["--value", "=1"],
                ["--value", "1", "--value", "2"], ["--constraint", "memory_gb=1"],
                ["0.3", "--value", "error=1"], ["--value", "error=1", "--constraint", "m"]):
        expect_rc(2, d, "tell", "mo", "3", *bad)
    out = ok(d, "tell", "mo", "3", "--value", "error=0.3", "--value", "latency_ms=20",
             "--constraint", "memory_gb=1")
    check(" infeasible" in out.splitlines()[0], "infeasible shown: %r" % out)
    t3 = d.get("/v1/studies/mo/trials/3").expect(200)
    check(t3["values"] == {"error": 0.3, "latency_ms": 20} and
          t3["constraints"] == {"memory_gb": 1} and t3["feasible"] is False, "trial 3 %r" % t3)
    # A retry with the same values is fine; other values conflict.
    ok(d, "tell", "mo", "0", "--value", "error=0.1", "--value", "latency_ms=10",
       "--constraint", "memory_gb=8", "--constraint", "recall=0.9")
    expect_rc(1, d, "tell", "mo", "0", "--value", "error=0.1", "--value", "latency_ms=11",
              "--constraint", "memory_gb=8", "--constraint", "recall=0.9",
              stderr_has="conflict")

    out = ok(d, "best", "mo")
    check(out.splitlines() == ["NUMBER  error  latency_ms  memory_gb  recall  FEASIBLE",
                               "0       0.1    10          8          0.9     true",
                               "1       0.2    5           8          0.9     true"],
          "best table %r" % out)
    check([t["number"] for t in json.loads(ok(d, "--json", "best", "mo"))["trials"]] == [0, 1],
          "best --json")
    row = [line.split() for line in ok(d, "studies").splitlines() if line.startswith("mo ")]
    check(row and row[0][1:3] == ["2", "objectives"] and row[0][-3:] == ["front", "of", "2"],
          "studies row %r" % row)
    out = ok(d, "pareto", "mo")
    lines = out.splitlines()
    # Reference point: worst feasible + 10% of the range: error 0.2 + 0.01, latency 10 + 0.5.
    hv = (0.21 - 0.1) * (10.5 - 10) + (0.21 - 0.2) * (10 - 5)
    check(lines[:3] == ["NUMBER  error  latency_ms  memory_gb  recall  FEASIBLE",
                        "0       0.1    10          8          0.9     true",
                        "1       0.2    5           8          0.9     true"] and
          lines[3].startswith("hypervolume: ") and
          abs(float(lines[3].split()[1]) - hv) < 1e-12 and
          lines[4].startswith("reference point: error=0.21") and
          "latency_ms=10.5" in lines[4], "pareto %r" % out)
    p = json.loads(ok(d, "--json", "pareto", "mo"))
    check(abs(p["hypervolume"] - hv) < 1e-12 and [t["number"] for t in p["trials"]] == [0, 1],
          "pareto --json %r" % p)
    # trials: one column per objective and constraint, FEASIBLE; --feasible filters.
    out = ok(d, "trials", "mo", "--feasible", "false")
    rows = [line.split() for line in out.splitlines()]
    check(rows[0][:7] == ["NUMBER", "STATE", "error", "latency_ms", "memory_gb", "recall",
                          "FEASIBLE"] and [r[0] for r in rows[1:]] == ["2", "3"] and
          rows[2][5] == "-" and rows[2][6] == "false", "trials --feasible false %r" % out)
    out = ok(d, "trials", "mo", "--feasible", "true", "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    check([r[0] for r in rows[1:]] == ["0", "1"], "csv --feasible true %r" % out)
    expect_rc(2, d, "trials", "mo", "--feasible", "yes")
    expect_rc(2, d, "best", "mo", "--feasible", "true")

    # run: named values and constraints; a missing objective fails the trial with its name.
    child = write(tmp, "mo-child.sh", "#!/bin/sh\n"
                  "echo \"hpo: value error $HPO_PARAM_X\"\n"
                  "[ \"$1\" = partial ] || echo 'hpo: value latency_ms 3.5'\n"
                  "echo 'hpo: constraint memory_gb 4'\n"
                  "echo 'hpo: constraint recall 0.75'\n"
                  "echo 'hpo: constraint nosuch 1'\n", 0o755)
    rc, out, err = hpoctl(d, "run", "mo", "-n", "2", "--", child)
    check(rc == 0 and "no constraint 'nosuch'" in err, "run rc %d: %s" % (rc, err))
    for t in trials(d, "mo")[4:]:
        check(t["state"] == "complete" and t["values"] == {"error": t["params"]["x"],
                                                            "latency_ms": 3.5} and
              t["constraints"] == {"memory_gb": 4, "recall": 0.75} and t["feasible"] is True,
              "run trial %r" % t)
    rc, out, err = hpoctl(d, "run", "mo", "-n", "1", "--", child, "partial")
    check(rc == 3 and "no 'hpo: value NAME V' line for latency_ms" in err,
          "missing objective: rc %d %r" % (rc, err))
    check(trials(d, "mo")[6]["state"] == "failed", "missing objective fails the trial")

    # One objective with a constraint: plain `hpo: value V` and `tell --value V`.
    path = write(tmp, "oc.json", json.dumps({"name": "oc", "params": MO_SPACE,
                                             "sampler": {"type": "random", "seed": 4}}))
    ok(d, "study", "create", "-f", path, "--constraint", "mem:max=2")
    ok(d, "ask", "oc")
    out = ok(d, "tell", "oc", "0", "--value", "0.5", "--constraint", "mem=3")
    check(out.startswith("trial 0 (complete) value 0.5 constraints mem=3 infeasible"),
          "one objective tell %r" % out)
    child = write(tmp, "oc-child.sh", "#!/bin/sh\necho 'hpo: value 0.25'\n"
                  "echo 'hpo: constraint mem 1'\n", 0o755)
    rc, out, err = hpoctl(d, "run", "oc", "-n", "1", "--", child)
    t = trials(d, "oc")[1]
    check(rc == 0 and t["value"] == 0.25 and t["constraints"] == {"mem": 1} and t["feasible"],
          "one objective run %r %r" % (t, err))
    out = ok(d, "best", "oc")
    check(out.startswith("trial 1 (complete) value 0.25 constraints mem=1\n"), "best %r" % out)


def main():
    global HPOCTL
    if len(sys.argv) != 3:
        sys.stderr.write("usage: %s PATH/TO/hpod PATH/TO/hpoctl\n" % sys.argv[0])
        return 2
    HPOCTL = os.path.abspath(sys.argv[2])
    with Daemon(sys.argv[1]) as d, tempfile.TemporaryDirectory(prefix="hpoctl-test-") as tmp:
        rc = tap.run(d, tmp)
        d.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
