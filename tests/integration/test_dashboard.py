#!/usr/bin/python3
"""test_dashboard.py: the web dashboard in headless Chromium against the real hpod.

Usage: test_dashboard.py PATH/TO/hpod SCREENSHOT_DIR   (HPOD_TEST_ONLY=name,... runs a subset;
HPOD_DASH_TRIALS sets the big study's size, default 20000: see docs/DASHBOARD.md)

- static_files: /, /studies/x and the hashed assets: content types, no-cache page and
  immutable assets, the CSP, gzip when accepted (and only then), 304 on If-None-Match,
  HEAD without a body; a wrong asset tag, POST / and unknown /v1 paths stay 404 JSON.
- list_page: every study's counts by state and best value as the API gives them.
- study_page: counts, best value and trial count on the study page equal the API's;
  every view is drawn.
- brushing: a pointer drag on the parallel-coordinates axis "dropout" filters the table
  to exactly the trials whose dropout lies in the brushed range (first and last pages
  compared with the API's trials); unticking a state filters those out too.
- live_tell: an ask and a tell made while the page is open appear (counts, new best)
  within seconds, without a reload.
- trial_page: a trial with reports shows its params, intermediate values and worker.
- columns_endpoint, curves_endpoint (when this hpod has them): the binary columns equal
  the API's trials (states, values, params in values form, durations), the cursor stops at
  a running trial and moves past it once told; curves are evenly spaced and cut to the
  asked number of points; bad queries are invalid_argument.
- importances_endpoint (when this hpod has it): PED-ANOVA over the complete trials, the
  best 10% as the target, lr first for dashfill's objective (bench/dashboard/importances.py
  compares the figures with Optuna 4's evaluator).
- tokens: with --tokens the page asks for a token, then shows the studies, and the study
  page follows a tell made meanwhile (the event stream carries the token too).
- mo_study: the issue's study: MO_N trials (HPOD_DASH_MO_TRIALS, default 100,000), 2
  objectives, a constraint, 6 params, intermediate values on 300; most of it written
  into the database while hpod is stopped, see dashfill.fill_mo_direct): the counts, the number
  of trials and the Pareto front's size on the page equal the API's (/pareto), the
  binary columns carry both objectives, the constraint and feasibility as the API's
  trials have them, the contour is drawn, a tell shows up through the event stream (not
  polling) without a reload; a screenshot of each view.
- gradient_views: a gradient study with a vector param: versions on the page, and the
  histogram of the vector's current values.
Every page is checked for console errors; screenshots go to SCREENSHOT_DIR.

Prints TAP.
"""
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser  # noqa: E402
import dashfill  # noqa: E402
from hpodtest import Daemon, Skip, Tap, check, exe_from_argv, fail, raw_request  # noqa: E402

tap = Tap()
N = int(os.environ.get("HPOD_DASH_TRIALS", "20000"))
MO_N = int(os.environ.get("HPOD_DASH_MO_TRIALS", "100000"))
REPORTED = 200
STUDY = "big"
MO = "mo"
ctx = {}


def wait_for(what, fn, timeout=30.0):
    """Poll fn() every 0.1 s until it answers something true (bounded); answer it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - the page may be between renders
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    fail("timed out waiting for %s (last: %r)" % (what, last))


def no_console_errors(b, allow=()):
    errs = [m for lvl, m in b.console() if lvl == "SEVERE" and not any(a in m for a in allow)]
    check(not errs, "console errors: %r" % errs)


def shot(b, name):
    b.driver.save_screenshot(os.path.join(ctx["shots"], name + ".png"))


def js(b, code, *args):
    return b.driver.execute_script(code, *args)


def text(b, css):
    """An element's text, read in one script call (the page may redraw between calls)."""
    return js(b, "const e = document.querySelector(arguments[0]); return e ? e.textContent : null", css)


def api_trials(d):
    """Every trial of the big study from the CSV export: {number: (state, dropout)}."""
    r = d.get("/v1/studies/%s/trials?format=csv" % STUDY)
    r.expect(200, "csv")
    rows = list(csv.DictReader(io.StringIO(r.body.decode())))
    return {int(x["number"]): (x["state"], float(x["dropout"]) if x["dropout"] else None) for x in rows}


@tap.test
def static_files(d):
    r = raw_request(d.port, "GET", "/", {"Accept-Encoding": "identity"}, b"")
    check(r.status == 200 and r.header("Content-Type").startswith("text/html"), r.describe())
    check(r.header("Cache-Control") == "no-cache", r.header("Cache-Control"))
    csp = r.header("Content-Security-Policy") or ""
    check("default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, csp)
    check(r.header("Content-Encoding") is None, "no gzip unless accepted")
    html = r.body.decode()
    check("<script>" not in html and "onclick" not in html and "style=" not in html, "inline script or style in the page")
    start = html.index("/assets/")
    asset = html[start:html.index('"', start)].rsplit("/", 1)[0] + "/app.js"
    page_etag = r.header("ETag")
    r2 = raw_request(d.port, "GET", "/studies/some-study", {}, b"")
    check(r2.status == 200 and r2.body == r.body, "a study path serves the page")
    a = raw_request(d.port, "GET", asset, {"Accept-Encoding": "gzip, deflate"}, b"")
    check(a.status == 200 and a.header("Content-Encoding") == "gzip", a.describe())
    check(a.header("Content-Type").startswith("text/javascript"), a.header("Content-Type"))
    check("immutable" in a.header("Cache-Control"), a.header("Cache-Control"))
    import gzip
    plain = raw_request(d.port, "GET", asset, {"Accept-Encoding": "gzip;q=0"}, b"")
    check(plain.header("Content-Encoding") is None and gzip.decompress(a.body) == plain.body, "gzip copy")
    nm = raw_request(d.port, "GET", "/", {"If-None-Match": page_etag, "Accept-Encoding": "identity"}, b"")
    check(nm.status == 304 and nm.body == b"", nm.describe())
    h = raw_request(d.port, "HEAD", asset, {}, b"")
    check(h.status == 200 and h.body == b"" and h.header("ETag") == plain.header("ETag"), h.describe())
    # The page's paths answer GET and HEAD only (405 once they are rows of the route table).
    e = raw_request(d.port, "POST", "/", {"Content-Type": "application/json"}, b"{}")
    check((e.status, e.json["error"]["code"]) in ((404, "not_found"), (405, "method_not_allowed")), e.describe())
    check(e.status == 404 or e.header("Allow") == "GET, HEAD", e.describe())
    for method, path in (("GET", "/assets/000000000000/app.js"), ("GET", "/v1/nothing"),
                         ("GET", "/assets/" + asset.split("/")[2] + "/index.html")):
        e = raw_request(d.port, method, path, {"Content-Type": "application/json"}, b"{}" if method == "POST" else b"")
        check(e.status == 404 and e.json["error"]["code"] == "not_found", "%s %s: %s" % (method, path, e.describe()))


def columns(d, frm, study=STUDY):
    """GET .../columns?from=frm decoded: (header, {column: list})."""
    import struct
    r = d.get("/v1/studies/%s/columns?from=%d" % (study, frm))
    if r.status == 404 and "route" in r.json["error"]["message"]:
        raise Skip("this hpod has no columns endpoint")
    r.expect(200, "columns")
    check(r.header("Content-Type") == "application/octet-stream", r.header("Content-Type"))
    b = r.body
    check(b[:4] == b"HPOC", "magic")
    hlen = struct.unpack("<I", b[4:8])[0]
    head = json.loads(b[8:8 + hlen])
    off = 8 + hlen
    check(off % 8 == 0, "columns start aligned")
    k = head["count"]
    out = {}
    for name, typ in head["columns"]:
        check(typ in ("u8", "f64"), typ)
        if typ == "u8":
            out[name] = list(b[off:off + k])
            off += (k + 7) // 8 * 8
        else:
            out[name] = list(struct.unpack("<%dd" % k, b[off:off + 8 * k]))
            off += 8 * k
    check(off == len(b), "size %d, columns end at %d" % (len(b), off))
    return head, out


@tap.test
def columns_endpoint(d):
    import math
    total = d.get("/v1/studies/" + STUDY).expect(200)["trials"]["total"]
    frm = max(0, total - 700)
    head, cols = columns(d, frm)
    check((head["from"], head["count"], head["total"], head["cursor"]) == (frm, total - frm, total, total),
          "header %r" % head)
    check(head["params"] == [p["name"] for p in dashfill.PARAMS], head["params"])
    want = d.get("/v1/studies/%s/trials?offset=%d&limit=1000" % (STUDY, frm)).expect(200)["trials"]
    states = ["waiting", "running", "complete", "pruned", "failed"]
    choices = dashfill.PARAMS[4]["choices"]
    for i, t in enumerate(want):
        check(states[cols["state"][i]] == t["state"], "trial %d state" % t["number"])
        v = cols["value"][i]
        check((t["value"] is None and math.isnan(v)) or v == t["value"], "trial %d value %r %r" % (t["number"], v, t["value"]))
        for p in dashfill.PARAMS:
            got = cols[p["name"]][i]
            exp = t["params"][p["name"]]
            if p["type"] == "categorical":
                exp = choices.index(exp)
            check(got == exp, "trial %d %s: %r vs %r" % (t["number"], p["name"], got, exp))
        dur = cols["duration"][i]
        check(math.isnan(dur) == (t["started_at"] is None or t["completed_at"] is None), "duration %d" % t["number"])
    # A running trial holds the cursor back to it; past the end there is nothing.
    t = d.post("/v1/studies/%s/ask" % STUDY, {"worker": "cols"}).expect(201)
    head, cols = columns(d, total)
    check((head["count"], head["cursor"], cols["state"]) == (1, t["number"], [1]), "running: %r" % head)
    d.post("/v1/studies/%s/trials/%d/tell" % (STUDY, t["number"]), {"value": 3.5}).expect(200)
    head, cols = columns(d, head["cursor"])
    check((head["count"], head["cursor"], cols["state"], cols["value"]) == (1, total + 1, [2], [3.5]), "told: %r" % head)
    head, _ = columns(d, 10 ** 12)
    check((head["from"], head["count"]) == (total + 1, 0), "beyond the end: %r" % head)
    for q, field in (("from=-1", "from"), ("from=x", "from"), ("limit=3", "limit")):
        d.get("/v1/studies/%s/columns?%s" % (STUDY, q)).expect_error(400, "invalid_argument", field)
    d.get("/v1/studies/nope/columns").expect_error(404, "not_found")


@tap.test
def curves_endpoint(d):
    r = d.get("/v1/studies/%s/curves?trials=7&points=3" % STUDY)
    if r.status == 404 and "route" in r.json["error"]["message"]:
        raise Skip("this hpod has no curves endpoint")
    body = r.expect(200, "curves")
    check(body["with_reports"] == REPORTED, "with_reports %r" % body["with_reports"])
    got = [t["number"] for t in body["trials"]]
    everyone = d.get("/v1/studies/%s/trials?offset=%d&limit=%d" % (STUDY, N, REPORTED)).expect(200)["trials"]
    reported = [t for t in everyone if t["intermediate"]]
    check(got == [reported[j * REPORTED // 7]["number"] for j in range(7)], "evenly spaced: %r" % got)
    for c in body["trials"]:
        full = [t for t in reported if t["number"] == c["number"]][0]
        steps = [x["step"] for x in full["intermediate"]]
        check(c["reports"] == len(steps) and c["state"] == full["state"], "trial %d" % c["number"])
        n = len(steps)
        check(c["steps"] == [steps[int(j * (n - 1) / 2 + 0.5)] for j in range(3)],
              "trial %d steps %r of %r" % (c["number"], c["steps"], steps))
        check(c["values"] == [x["value"] for x in full["intermediate"] if x["step"] in c["steps"]], "values")
    whole = d.get("/v1/studies/%s/curves?trials=10000&points=100" % STUDY).expect(200)
    check(len(whole["trials"]) == REPORTED and all(len(t["steps"]) == t["reports"] for t in whole["trials"]), "all, uncut")
    # from=N: only trials numbered N and up (what a live page asks for).
    cut = reported[REPORTED // 2]["number"]
    part = d.get("/v1/studies/%s/curves?trials=10000&points=100&from=%d" % (STUDY, cut)).expect(200)
    check([t["number"] for t in part["trials"]] == [t["number"] for t in reported if t["number"] >= cut]
          and part["with_reports"] == len(part["trials"]), "from=%d: %r" % (cut, [t["number"] for t in part["trials"]][:5]))
    for q, field in (("points=1", "points"), ("trials=0", "trials"), ("trials=10001", "trials"), ("x=1", "x"), ("from=-1", "from")):
        d.get("/v1/studies/%s/curves?%s" % (STUDY, q)).expect_error(400, "invalid_argument", field)


@tap.test
def importances_endpoint(d):
    r = d.get("/v1/studies/%s/importances" % STUDY)
    if r.status == 404 and "route" in r.json["error"]["message"]:
        raise Skip("this hpod has no importances endpoint")
    body = r.expect(200, "importances")
    s = d.get("/v1/studies/" + STUDY).expect(200)
    check(body["method"] == "ped-anova" and body["trials"] == s["trials"]["complete"], "header %r" % body)
    # The best 10% (at least 2) of the complete trials, ties included.
    values = sorted(t["value"] for t in d.get("/v1/studies/%s/trials?state=complete&limit=1000000" % STUDY)
                    .expect(200)["trials"])
    cutoff = max(values[1], values[-(-len(values) // 10) - 1])
    check(body["top_trials"] == sum(v <= cutoff for v in values), "top trials %r" % body["top_trials"])
    imp = {e["param"]: e["importance"] for e in body["importances"]}
    check(sorted(imp) == sorted(p["name"] for p in dashfill.PARAMS) and all(v >= 0 for v in imp.values()), imp)
    # dashfill's objective varies most with lr (a parabola in log10(lr) over 5 decades).
    check(max(imp, key=imp.get) == "lr", "importances %r" % imp)
    d.get("/v1/studies/%s/importances?x=1" % STUDY).expect_error(400, "invalid_argument", "x")


@tap.test
def list_page(d):
    b = ctx["b"]
    b.driver.get(d.url + "/")
    studies = d.get("/v1/studies").expect(200)["studies"]
    # One snapshot of the table (it is redrawn every 2 s): {study: {column: text}}.
    snap = """const out = {};
        for (const tr of document.querySelectorAll('#study-table tbody tr')) {
            const row = {};
            for (const td of tr.querySelectorAll('td[data-col]')) row[td.dataset.col] = td.textContent;
            const b = tr.querySelector('td[data-best]');
            row.best = b ? b.dataset.best : null;
            row.front = b ? b.dataset.front : null;
            out[tr.dataset.study] = row;
        }
        return out;"""
    rows = wait_for("the list", lambda: (lambda r: r if len(r) == len(studies) else None)(js(b, snap)))
    for s in studies:
        row = rows[s["name"]]
        for st in ("waiting", "running", "complete", "pruned", "failed"):
            check(int(row[st]) == s["trials"][st], "%s %s: page %s, API %d" % (s["name"], st, row[st], s["trials"][st]))
        if "best_trials" in s:  # several objectives: the front's size
            want = len(d.get("/v1/studies/%s/pareto" % s["name"]).expect(200)["trials"])
            check(int(row["front"]) == want, "%s front: page %r, /pareto %d" % (s["name"], row["front"], want))
            continue
        want = s["best_trial"]["value"] if s["best_trial"] else None
        check((row["best"] == "" and want is None) or float(row["best"]) == want,
              "%s best: page %r, API %r" % (s["name"], row["best"], want))
    f = b.driver.find_element("id", "study-filter")
    f.send_keys("bi")
    wait_for("the filter", lambda: js(b, "return [...document.querySelectorAll('#study-table tbody tr')].map((e) => e.dataset.study)") == ["big"])
    shot(b, "list")
    no_console_errors(b)


def open_study(b, d):
    b.driver.get(d.url + "/studies/" + STUDY)
    wait_for("the study page", lambda: js(b, "const s = document.querySelector('.study'); return s && s.dataset.historyDrawn && s.dataset.trials"), 120)


@tap.test
def study_page(d):
    b = ctx["b"]
    open_study(b, d)
    s = d.get("/v1/studies/" + STUDY).expect(200)
    root = b.driver.find_element("css selector", ".study")
    check(int(root.get_attribute("data-trials")) == s["trials"]["total"], "trial count")
    check(int(root.get_attribute("data-filtered")) == s["trials"]["total"], "nothing filtered")
    for st in ("waiting", "running", "complete", "pruned", "failed", "total"):
        got = text(b, '#study-counts [data-state="%s"] b' % st)
        check(int(got) == s["trials"][st], "%s: page %s, API %d" % (st, got, s["trials"][st]))
    best = b.driver.find_element("id", "best-value")
    check(float(best.get_attribute("data-value")) == s["best_trial"]["value"], "best value")
    check(int(best.get_attribute("data-number")) == s["best_trial"]["number"], "best number")
    js(b, "document.querySelector('.study').__view.flush(true)")  # views off screen draw when scrolled to
    info = text(b, "#table-info")
    check(info.startswith("{:,} trials".format(s["trials"]["total"])), info)
    check(len(b.driver.find_elements("css selector", ".slices .uplot")) == 6, "six slice plots")
    check(len(b.driver.find_elements("css selector", "#intermediate .uplot")) == 1, "intermediate values")
    if d.get("/v1/studies/%s/importances" % STUDY).status == 200:
        first = wait_for("importances", lambda: js(b, "const r = document.querySelector('#importances tr'); return r && r.dataset.param"))
        check(first == "lr", "most important on the page: %r" % first)
    b.driver.set_window_size(1400, 3400)
    shot(b, "study")
    b.driver.set_window_size(1400, 1000)
    no_console_errors(b)


@tap.test
def brushing(d):
    from selenium.webdriver.common.action_chains import ActionChains
    b = ctx["b"]
    open_study(b, d)
    canvas = b.driver.find_element("id", "pcp-canvas")
    b.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    w = canvas.size["width"]
    h = canvas.size["height"]
    # The second of 7 axes (dropout): x = 60 + 1 * (w - 120) / 6 from the left edge.
    x = 60 + (w - 120) / 6.0 - w / 2.0
    ActionChains(b.driver).move_to_element_with_offset(canvas, int(x), int(-h / 2 + 80)).click_and_hold() \
        .move_by_offset(0, 60).move_by_offset(0, 40).release().perform()
    li = wait_for("the brush", lambda: b.driver.find_elements("css selector", '#active-filters li[data-key="dropout"]'))
    lo = float(li[0].get_attribute("data-lo"))
    hi = float(li[0].get_attribute("data-hi"))
    check(0 < lo < hi < 0.5, "brushed range %r..%r" % (lo, hi))
    trials = api_trials(d)
    want = [n for n, (st, dr) in sorted(trials.items()) if dr is not None and lo <= dr <= hi]
    check(0 < len(want) < len(trials), "the brush selects some trials")
    root = b.driver.find_element("css selector", ".study")
    wait_for("the filtered table", lambda: root.get_attribute("data-filtered") == str(len(want)))

    def page_numbers():
        return [int(e.get_attribute("data-number")) for e in b.driver.find_elements("css selector", "#trials-table tbody tr")]
    check(page_numbers() == want[:50], "first page: %r vs %r" % (page_numbers()[:5], want[:5]))
    shot(b, "brushed")
    b.driver.find_element("css selector", "button#page-next").click()
    check(page_numbers() == want[50:100], "second page")
    # Untick "complete": only the other states in the range remain.
    b.driver.find_element("css selector", 'input[data-state="complete"]').click()
    want2 = [n for n in want if trials[n][0] != "complete"]
    wait_for("the state filter", lambda: root.get_attribute("data-filtered") == str(len(want2)))
    check(page_numbers() == want2[:50], "state and range filters")
    # The CSV of the filtered rows, as the download button builds it.
    text = js(b, "return document.querySelector('.study').__view.table.csv()")
    rows = list(csv.DictReader(io.StringIO(text)))
    check([int(r["number"]) for r in rows] == want2, "CSV of the filtered trials")
    no_console_errors(b)


@tap.test
def live_tell(d):
    b = ctx["b"]
    open_study(b, d)
    js(b, "window.__sameDocument = 42")
    before = d.get("/v1/studies/" + STUDY).expect(200)
    t = d.post("/v1/studies/%s/ask" % STUDY, {"worker": "live"}).expect(201)
    root = b.driver.find_element("css selector", ".study")
    wait_for("the running trial", lambda: root.get_attribute("data-trials") == str(before["trials"]["total"] + 1), 10)
    d.post("/v1/studies/%s/trials/%d/tell" % (STUDY, t["number"]), {"value": 0.0005}).expect(200)
    best = wait_for("the new best", lambda: b.driver.find_element("id", "best-value").get_attribute("data-number") == str(t["number"]), 10)
    check(best, "best")
    after = d.get("/v1/studies/" + STUDY).expect(200)
    got = text(b, '#study-counts [data-state="complete"] b')
    check(int(got) == after["trials"]["complete"], "complete count after the tell")
    check(js(b, "return window.__sameDocument") == 42, "the page was reloaded")
    check(js(b, "return document.querySelector('.study').__view.data.streaming") is True, "not following the event stream")
    no_console_errors(b)


@tap.test
def trial_page(d):
    b = ctx["b"]
    lst = d.get("/v1/studies/%s/trials?offset=%d&limit=20" % (STUDY, N)).expect(200)["trials"]
    t = [x for x in lst if x["intermediate"]][0]
    b.driver.get(d.url + "/studies/%s/trials/%d" % (STUDY, t["number"]))
    wait_for("the trial page", lambda: b.driver.find_elements("css selector", "#trial .uplot"))
    for k, v in t["params"].items():
        cell = b.driver.find_element("css selector", '#trial td[data-key="%s"]' % k).text
        check(cell != "" , "param %s shown" % k)
    check(b.driver.find_element("css selector", '#trial td[data-key="worker"]').text == t["worker"], "worker")
    check("%d reports" % len(t["intermediate"]) in b.driver.page_source, "reports")
    shot(b, "trial")
    no_console_errors(b)


@tap.test
def tokens(d):
    help_text = subprocess.run([d.exe, "--help"], capture_output=True, text=True).stdout
    if "--tokens" not in help_text:
        raise Skip("this hpod has no --tokens")
    secret = "hpod_dashboardtesttokendashboardtesttokendash"
    writer = "hpod_dashboardwritertokendashboardwritertoke"
    path = os.path.join(d.state_dir, "tokens")
    with open(path, "w") as f:
        f.write("viewer read %s\n" % hashlib.sha256(secret.encode()).hexdigest())
        f.write("feeder write %s\n" % hashlib.sha256(writer.encode()).hexdigest())
    state = os.path.join(d.state_dir, "tokens-db")
    os.makedirs(state)
    with Daemon(d.exe, ["--tokens", path], state_dir=state) as td:
        td.url = "http://127.0.0.1:%d" % td.port
        auth = {"Authorization": "Bearer " + writer}
        td.post("/v1/studies", {"name": "secured", "params": dashfill.PARAMS[:2]}, headers=auth).expect(201)
        p = dashfill.params_for(1)
        td.post("/v1/studies/secured/trials", {"params": {"lr": p["lr"], "dropout": p["dropout"]}, "value": 0.25},
                headers=auth).expect(201)
        td.get("/v1/studies").expect_error(401, "unauthenticated")
        b = ctx["b"]
        b.driver.get(td.url + "/")
        wait_for("the token prompt", lambda: b.driver.find_element("id", "token-dialog").get_attribute("open") is not None)
        shot(b, "token")
        b.driver.find_element("id", "token-input").send_keys(secret)
        b.driver.find_element("css selector", "#token-form button").click()
        best = wait_for("the list", lambda: js(b, "const c = document.querySelector('#study-table tr[data-study=\"secured\"] td[data-best]'); return c && c.dataset.best"))
        check(float(best) == 0.25, "best %r" % best)
        # The study page reads with the same token (kept for the tab), no second prompt.
        b.driver.get(td.url + "/studies/secured")
        wait_for("the study page", lambda: js(b, "const s = document.querySelector('.study'); return s && s.dataset.historyDrawn"))
        check(b.driver.find_element("id", "token-dialog").get_attribute("open") is None, "asked again")
        # The event stream reads with the token as well: a trial recorded now shows up.
        td.post("/v1/studies/secured/trials", {"params": {"lr": p["lr"], "dropout": p["dropout"]}, "value": 0.125},
                headers=auth).expect(201)
        wait_for("the live update with a token", lambda: js(b, "return document.querySelector('.study').dataset.trials") == "2", 15)
        check(b.driver.find_element("id", "token-dialog").get_attribute("open") is None, "asked again")
        no_console_errors(b, allow=("401",))
        b.driver.get("about:blank")  # leave before this daemon goes (its stream would log an error)


def view_shots(b, prefix, ids):
    """Draw every view (they draw when scrolled to), then one screenshot per view."""
    js(b, "document.querySelector('.study').__view.flush(true)")
    for name, css in ids:
        els = b.driver.find_elements("css selector", css)
        check(els, "no %s on the page" % css)
        b.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", els[0])
        js(b, "document.querySelector('.study').__view.flush(true)")
        els[0].screenshot(os.path.join(ctx["shots"], "%s-%s.png" % (prefix, name)))


@tap.test
def mo_study(d):
    import math
    b = ctx["b"]
    b.driver.get(d.url + "/studies/" + MO)
    wait_for("the study page", lambda: js(b, "const s = document.querySelector('.study'); return s && s.dataset.historyDrawn && s.dataset.trials"), 180)
    s = d.get("/v1/studies/" + MO).expect(200)
    front = d.get("/v1/studies/%s/pareto" % MO).expect(200)["trials"]
    check(int(js(b, "return document.querySelector('.study').dataset.trials")) == s["trials"]["total"] == MO_N + 300, "trial count")
    for st in ("waiting", "running", "complete", "pruned", "failed", "total"):
        got = text(b, '#study-counts [data-state="%s"] b' % st)
        check(int(got) == s["trials"][st], "%s: page %s, API %d" % (st, got, s["trials"][st]))
    check(len(front) > 0, "an empty front")
    got = js(b, "return document.getElementById('front-size').dataset.front")
    check(int(got) == len(front), "front size: page %s, /pareto %d" % (got, len(front)))
    js(b, "document.querySelector('.study').__view.flush(true)")
    nums = wait_for("the Pareto view", lambda: js(b, "return document.getElementById('pareto').dataset.frontNumbers"))
    check([int(x) for x in nums.split(",")] == sorted(t["number"] for t in front)[:200], "front trials")
    check(int(js(b, "return document.getElementById('contour').dataset.cells")) > 100, "contour cells")
    check(b.driver.find_elements("css selector", "#intermediate .uplot"), "intermediate values without a pruner")
    # The columns carry every objective, the constraint and feasibility as the API has them.
    rep_from = min(MO_N, 2000)  # the trials with reports (dashfill.fill_mo_direct)
    head, cols = columns(d, rep_from, MO)
    check(head["objectives"] == ["loss", "cost"] and head["constraints"] == ["memory"], "header %r" % head)
    check([c[0] for c in head["columns"]][:5] == ["state", "feasible", "value", "value:1", "lr"], "columns %r" % head["columns"])
    want = d.get("/v1/studies/%s/trials?offset=%d&limit=300" % (MO, rep_from)).expect(200)["trials"]
    check(sum(1 for t in want if t["intermediate"]) == 300, "the trials with reports")
    for i, t in enumerate(want):
        for col, name in (("value", "loss"), ("value:1", "cost")):
            v = cols[col][i]
            check((name not in t["values"] and math.isnan(v)) or v == t["values"].get(name), "trial %d %s" % (t["number"], name))
        c = cols["constraint:0"][i]
        check((t["constraints"].get("memory") is None and math.isnan(c)) or c == t["constraints"]["memory"], "trial %d memory" % t["number"])
        check(cols["feasible"][i] == (1 if t["feasible"] else 0), "trial %d feasible" % t["number"])
    # Live: a trial recorded now comes through the event stream.
    check(js(b, "return document.querySelector('.study').__view.data.streaming") is True, "not following the event stream")
    js(b, "window.__sameDocument = 7")
    p = dashfill.params_for(10 ** 6)
    v, c = dashfill.results(p)
    d.post("/v1/studies/%s/trials" % MO, {"params": p, "values": v, "constraints": c}).expect(201)
    wait_for("the new trial", lambda: js(b, "return document.querySelector('.study').dataset.trials") == str(MO_N + 301), 15)
    check(js(b, "return window.__sameDocument") == 7, "the page was reloaded")
    b.driver.set_window_size(1400, 1000)
    view_shots(b, "mo", (("history", "#history"), ("pareto", "#pareto"), ("pcp", "#pcp-canvas"), ("slices", ".slices"),
                         ("contour", "#contour"), ("importances", "#importances"), ("intermediate", "#intermediate"),
                         ("table", "#trials-table")))
    no_console_errors(b)


@tap.test
def gradient_views(d):
    import struct
    b = ctx["b"]
    d.post("/v1/studies", {"name": "grad", "params": [{"name": "lam", "type": "float", "low": 1e-3, "high": 1e3, "log": True},
                                                      {"name": "w", "type": "float", "low": -1.0, "high": 1.0, "size": 64}],
                           "sampler": {"type": "gradient", "seed": 1}}).expect(201)
    for k in range(6):
        t = d.post("/v1/studies/grad/ask").expect(201)
        d.post("/v1/studies/grad/trials/%d/tell" % t["number"],
               {"value": 1.0 / (k + 1), "gradient": {"lam": 0.5, "w": [0.1 * ((i % 5) - 2) for i in range(64)]}}).expect(200)
    s = d.get("/v1/studies/grad").expect(200)
    b.driver.get(d.url + "/studies/grad")
    wait_for("the study page", lambda: js(b, "const s = document.querySelector('.study'); return s && s.dataset.trials"), 60)
    js(b, "document.querySelector('.study').__view.flush(true)")
    versions = wait_for("the versions", lambda: js(b, "const e = document.getElementById('versions'); return e && e.dataset.versions"))
    check(int(versions) == s["gradient"]["version"] + 1 or int(versions) >= 2, "versions %r, study %r" % (versions, s["gradient"]))
    b.driver.find_element("id", "vector-load").click()
    count = wait_for("the histogram", lambda: js(b, "const e = document.getElementById('vector-histogram'); return e && e.dataset.count"))
    raw = d.request("GET", "/v1/studies/grad/trials/5/params/w")
    check(int(count) == 64 and len(raw.body) == 64 * 8, "histogram over %r values" % count)
    view_shots(b, "gradient", (("versions", "#versions"), ("histogram", "#vector-histogram")))
    no_console_errors(b)


def main():
    exe = exe_from_argv()
    ctx["shots"] = sys.argv[2] if len(sys.argv) > 2 else "."
    os.makedirs(ctx["shots"], exist_ok=True)
    if not browser.available():
        print("1..0 # SKIP chromium, chromium-driver or python3-selenium missing (scripts/deps.sh --test)")
        return 0
    with Daemon(exe) as d:
        d.url = "http://127.0.0.1:%d" % d.port
        secs = dashfill.fill(d.port, STUDY, N, with_reports=REPORTED)
        print("# filled %d trials (+%d with reports) in %.1f s" % (N, REPORTED, secs), flush=True)
        if not os.environ.get("HPOD_TEST_ONLY") or "mo_study" in os.environ["HPOD_TEST_ONLY"]:
            # 2,000 through the API, the rest written into the database while hpod is stopped
            # (POST .../trials one by one takes minutes under ASan), then 300 with reports.
            secs = dashfill.fill_mo_direct(d, MO, MO_N, with_reports=300)
            d.url = "http://127.0.0.1:%d" % d.port
            print("# filled %d two-objective trials (+300 with reports) in %.1f s" % (MO_N, secs), flush=True)
        dashfill.create(d.port, "alpha")
        ctx["b"] = browser.Browser()
        try:
            return tap.run(d)
        finally:
            ctx["b"].close()


if __name__ == "__main__":
    sys.exit(main())
