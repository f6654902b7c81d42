#!/usr/bin/python3
"""test_clients_hpoctl.py: hpoctl against the real hpod.

Usage: test_clients_hpoctl.py PATH/TO/hpod PATH/TO/hpoctl   (HPOD_TEST_ONLY=a,b runs a subset)

Covers every command with its table, --json and --csv output and its exit
code (0 ok, 1 API error with the message on stderr, 2 usage); HPOD_URL and
--url; and `hpoctl run`: params as HPO_PARAM_* and {name} placeholders,
intermediate reports, pruning (the command's process group is killed and the
trial told pruned), failing commands, --timeout, -j 4 running four at once,
-n, max_trials, heartbeats keeping a trial alive, and SIGINT failing the
running trials. Prints TAP.
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hpodtest import Daemon, Tap, check  # noqa: E402

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
    check(lines[0].split() == ["NAME", "DIRECTION", "SAMPLER", "PRUNER", "TRIALS", "RUNNING",
                               "COMPLETE", "BEST"], "studies header %r" % lines[0])
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
    check(ok(d, "--version").startswith("hpoctl "), "--version")

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
        ([os.path.join(tmp, "does-not-exist")], "exit status 127"),
    ]
    for argv, why in cases:
        rc, out, err = hpoctl(d, "run", "fails", "-n", "1", "--", *argv)
        check(rc == 0, "run %r rc %d: %s" % (argv, rc, err))
        check(why in err, "run %r: stderr %r lacks %r" % (argv, err, why))
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
    check(rc == 0, "rc %d: %s" % (rc, err))
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
