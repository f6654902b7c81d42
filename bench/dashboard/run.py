#!/usr/bin/python3
"""run.py: the dashboard at 100,000 trials in headless Chromium.

Usage: bench/dashboard/run.py [HPOD] [--trials 100000] [--state-dir DIR] [--runs 3] [--mo]

HPOD defaults to build/daemon/hpod. The study (6 params, median pruner) is filled by
tests/integration/dashfill.py: `trials` trials recorded with POST .../trials, then 300
run through ask/report/tell (8 reports each; some pruned, some failed). With --state-dir
the database is kept and reused.

Then, in a fresh headless Chromium (Debian's chromium + chromium-driver), for each run:
- first view: navigation start to the optimization-history chart drawn (a
  performance.mark set in uPlot's first draw hook with data), and the bytes transferred
  (Performance API transferSize of the page and every resource, i.e. on the wire,
  headers included), listed by resource;
- brushing: the time to apply a range on one axis and redraw every view (history,
  parallel coordinates, slices, intermediate curves, table), synchronously and to the
  next frame; three ranges;
- live update: one trial recorded while the page is open: the bytes fetched until the
  page shows it (the server-sent event's bytes, counted by the page, and the /columns
  delta), and the seconds it took.
optuna-dashboard cannot be measured side by side here: it is on PyPI only (Debian has
python3-optuna but no optuna-dashboard) and this machine reaches no PyPI.
Standard library, selenium; Debian's /usr/bin/python3.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
os.environ.setdefault("HPOD_TEST_READY_TIMEOUT", "900")
os.environ.setdefault("HPOD_TEST_REQUEST_TIMEOUT", "300")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import browser  # noqa: E402
import dashfill  # noqa: E402
from hpodtest import Daemon, check  # noqa: E402

STUDY = "big"


def wait(fn, what, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # noqa: BLE001 - between renders
            pass
        time.sleep(0.02)
    raise SystemExit("timed out: " + what)


def resources(drv):
    return drv.execute_script("""
        const out = [];
        for (const e of performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')))
            out.push({name: e.name.replace(location.origin, ''), size: e.transferSize, body: e.decodedBodySize, start: e.startTime, end: e.responseEnd});
        return out;""")


def browser_cpu_ms(b):
    """CPU time (user + system, ms) used so far by chromedriver's process tree (the browser,
    its renderer, GPU and utility processes), from /proc: a figure the machine's load does
    not inflate the way it inflates wall-clock time."""
    root = b.driver.service.process.pid
    kids = {}
    stats = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(st[1]), []).append(int(pid))
        stats[int(pid)] = int(st[11]) + int(st[12])
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0)
        todo.extend(kids.get(p, []))
    return total * 1000.0 / os.sysconf("SC_CLK_TCK")


BRUSH = """
    const [key, rng, done] = arguments;
    const v = document.querySelector('.study').__view;
    const t0 = performance.now();
    v.pcp.setBrush(key, rng);
    const sync = performance.now() - t0;
    requestAnimationFrame(() => setTimeout(() => done([sync, performance.now() - t0, v.table.rows.length]), 0));
"""
CLEAR = """
    const done = arguments[0];
    const v = document.querySelector('.study').__view;
    v.pcp.brush.clear(); v.ranges.clear(); v.refresh(false);
    requestAnimationFrame(() => setTimeout(() => done(1), 0));
"""


def one_run(d, b, url):
    drv = b.driver
    drv.get("about:blank")
    cpu0 = browser_cpu_ms(b)
    drv.get(url + "/studies/" + STUDY)
    wait(lambda: drv.execute_script("return performance.getEntriesByName('history-drawn').length"), "history drawn")
    first_cpu = browser_cpu_ms(b) - cpu0
    drawn = drv.execute_script("return performance.getEntriesByName('history-drawn')[0].startTime")
    wait(lambda: drv.execute_script("const s = document.querySelector('.study'); return s && s.dataset.version"), "ready")
    res = resources(drv)
    total = sum(r["size"] for r in res)
    # Brushing: a range on one axis, then every view redrawn.
    brush = []
    for key, rng in (("dropout", [0.1, 0.2]), ("lr", [1e-4, 1e-2]), ("value:0", [0, 1])):
        ms = drv.execute_async_script(BRUSH, key, rng)
        drv.execute_async_script(CLEAR)
        # Ten more of the same brush: the fastest wall time, and the browser's CPU time per
        # brush (each followed by a clear, which costs about the same: halved).
        walls = []
        cpu0 = browser_cpu_ms(b)
        for _ in range(10):
            walls.append(drv.execute_async_script(BRUSH, key, rng)[1])
            drv.execute_async_script(CLEAR)
        cpu = (browser_cpu_ms(b) - cpu0) / 20.0
        brush.append(ms + [min(walls), cpu])
    # Live update: one trial recorded while the page is open.
    n0 = int(drv.execute_script("return document.querySelector('.study').dataset.trials"))
    drv.execute_script("performance.clearResourceTimings(); performance.setResourceTimingBufferSize(10000);")
    time.sleep(1.5)
    idle = sum(r["size"] for r in resources(drv) if r["name"].startswith("/v1"))
    drv.execute_script("performance.clearResourceTimings();")
    ev0 = drv.execute_script("return document.querySelector('.study').__view.data.eventBytes || 0")
    p = dashfill.params_for(10 ** 7)
    if STUDY == "mo":
        v, c = dashfill.results(p)
        body = {"params": p, "values": v, "constraints": c}
    else:
        body = {"params": p, "value": dashfill.objective(p)}
    t0 = time.monotonic()
    d.post("/v1/studies/%s/trials" % STUDY, body).expect(201)
    wait(lambda: int(drv.execute_script("return document.querySelector('.study').dataset.trials")) == n0 + 1, "live update", 30)
    live_s = time.monotonic() - t0
    live = [r for r in resources(drv) if r["name"].startswith("/v1") and "/events" not in r["name"]]
    # The event that announced it: bytes of the stream (not in resource timing: it never ends).
    ev = drv.execute_script("return document.querySelector('.study').__view.data.eventBytes || 0") - ev0
    live.append({"name": "(event stream)", "size": ev})
    return {"drawn_ms": drawn, "first_cpu": first_cpu, "bytes": total, "res": res, "brush": brush, "idle_1_5s": idle,
            "live_bytes": sum(r["size"] for r in live), "live_req": [(r["name"], r["size"]) for r in live], "live_s": live_s}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hpod", nargs="?", default=os.path.join(ROOT, "build", "daemon", "hpod"))
    ap.add_argument("--trials", type=int, default=100000)
    ap.add_argument("--state-dir")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mo", action="store_true", help="the 2-objective study with a constraint (dashfill.fill_mo)")
    args = ap.parse_args()
    global STUDY
    if args.mo:
        STUDY = "mo"
    check(browser.available(), "needs chromium, chromium-driver and python3-selenium (scripts/deps.sh --test)")
    tmp = None
    state = args.state_dir
    if state is None:
        tmp = tempfile.TemporaryDirectory(prefix="hpod-bench-dash-")
        state = tmp.name
    os.makedirs(state, exist_ok=True)
    with Daemon(args.hpod, state_dir=state) as d:
        r = d.get("/v1/studies/" + STUDY)
        if r.status == 404:
            fill = dashfill.fill_mo if args.mo else dashfill.fill
            secs = fill(d.port, STUDY, args.trials, with_reports=300)
            print("filled %d trials (+300 with reports) in %.1f s" % (args.trials, secs))
        total = d.get("/v1/studies/" + STUDY).expect(200)["trials"]["total"]
        print("study %s: %d trials" % (STUDY, total))
        b = browser.Browser()
        try:
            url = "http://127.0.0.1:%d" % d.port
            runs = [one_run(d, b, url) for _ in range(args.runs)]
        finally:
            b.close()
    first = runs[0]
    print("first view, resources (run 1, cold cache):")
    for r in first["res"]:
        print("  %9d B on the wire  %10d B decoded  %7.0f ms  %s" % (r["size"], r["body"], r["end"], r["name"]))
    print("navigation -> history drawn: %s ms (median %.0f)" % (
        ", ".join("%.0f" % x["drawn_ms"] for x in runs), statistics.median(x["drawn_ms"] for x in runs)))
    print("browser CPU from navigation to history drawn (polled every 20 ms): %s ms" % ", ".join("%.0f" % x["first_cpu"] for x in runs))
    print("bytes transferred, first view: %s (run 1: %.2f MB)" % (
        ", ".join("%d" % x["bytes"] for x in runs), first["bytes"] / 1e6))
    for x in runs:
        print("brushing (sync ms / to next frame ms / rows / fastest of 10 to next frame / browser CPU ms per brush): %s"
              % "; ".join("%.0f / %.0f / %d / %.0f / %.0f" % tuple(bb) for bb in x["brush"]))
    print("idle, 1.5 s (event stream open, no change): %s bytes" % ", ".join(str(x["idle_1_5s"]) for x in runs))
    print("live update of one trial: %s bytes in %s s" % (
        ", ".join(str(x["live_bytes"]) for x in runs), ", ".join("%.2f" % x["live_s"] for x in runs)))
    print("  requests: %s" % json.dumps(first["live_req"]))
    print("optuna-dashboard: not measured (PyPI only; no PyPI access here, Debian has no package)")


if __name__ == "__main__":
    main()
