"""hpod_client: a Python client for the hpod hyperparameter-optimization daemon.

One file, standard library only (urllib, json, threading): install it with
hpod (meson puts it in Python's site directory) or copy it next to your code.

    import hpod_client

    client = hpod_client.Client("http://127.0.0.1:8080")
    study = client.create_study({
        "name": "quadratic",
        "params": [{"name": "x", "type": "float", "low": -10, "high": 10}],
        "pruner": {"type": "median"},
    })

    def objective(trial):
        x = trial.params["x"]
        for step in range(10):
            if trial.report(step, (x - 2) ** 2 + 1 / (step + 1)):
                raise hpod_client.TrialPruned()
        return (x - 2) ** 2

    study.optimize(objective, n_trials=50, n_jobs=4)
    print(study.best().params)

Errors from the daemon raise HpodError, with the API's code ("not_found",
"conflict", ...), HTTP status, message and field. Connection failures and
503 answers are retried with exponential backoff; timeouts after a request
was sent are retried only for calls that are safe to repeat (everything but
ask, enqueue and delete). The REST API is docs/REFERENCE.md.
"""

import json
import math
import os
import random
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["Client", "Study", "Trial", "HpodError", "TrialPruned"]
__version__ = "0.1.0"


class HpodError(Exception):
    """An error answer from hpod, or a failure to reach it.

    code: the API's code ("invalid_argument", "not_found", "conflict",
    "exhausted", ...), or "transport" / "bad_response" for failures on the
    client's side. status: the HTTP status (0 without a response). field:
    the one field at fault, or None.
    """

    def __init__(self, code, message, status=0, field=None):
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))
        self.code = code
        self.message = message
        self.status = status
        self.field = field


class TrialPruned(Exception):
    """Raise from an objective to end the trial as pruned (like Optuna's)."""


def _quote(segment):
    return urllib.parse.quote(str(segment), safe="")


class Client:
    """A connection to one hpod daemon. Safe to share between threads.

    url defaults to $HPOD_URL, else http://127.0.0.1:8080; token to
    $HPOD_TOKEN. timeout is per request, in seconds. retries is how many
    further attempts a retryable failure gets, waiting backoff seconds
    before the first and doubling up to max_backoff.
    """

    def __init__(self, url=None, token=None, timeout=60.0, retries=5, backoff=0.1,
                 max_backoff=5.0, worker=None):
        url = url or os.environ.get("HPOD_URL") or "http://127.0.0.1:8080"
        url = url.rstrip("/")
        if url.endswith("/v1"):
            url = url[:-3]
        if not url.startswith(("http://", "https://")):
            raise ValueError("the URL must start with http:// or https://")
        self.url = url
        self.token = token if token is not None else os.environ.get("HPOD_TOKEN")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.worker = worker

    def request(self, method, path, body=None, idempotent=True, data=None,
                content_type="application/json", accept="application/json"):
        """Send one request; returns the decoded JSON (None for 204), or bytes
        when accept is not JSON. Raises HpodError."""
        if data is None and body is not None:
            # NaN and infinities are not JSON: refuse them here (ValueError).
            data = json.dumps(body, allow_nan=False).encode()
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        attempt = 0
        while True:
            req = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = resp.read()
                    status = resp.status
                break
            except urllib.error.HTTPError as e:
                payload = e.read()
                if e.code == 503 and attempt < self.retries:
                    self._sleep(attempt)
                    attempt += 1
                    continue
                raise self._api_error(e.code, payload) from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                before_send = isinstance(reason, (ConnectionRefusedError, FileNotFoundError)) \
                    or (isinstance(reason, OSError) and getattr(reason, "errno", None) in (111, -2, -3))
                if attempt < self.retries and (before_send or idempotent):
                    self._sleep(attempt)
                    attempt += 1
                    continue
                raise HpodError("transport", f"{method} {self.url}{path}: {reason}") from None
        if status == 204 or not payload:
            return None
        if not accept.startswith("application/json"):
            return payload
        try:
            return json.loads(payload)
        except ValueError as e:
            raise HpodError("bad_response", f"response is not JSON: {e}", status) from None

    def _sleep(self, attempt):
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        time.sleep(delay * random.uniform(0.5, 1.0))

    @staticmethod
    def _api_error(status, payload):
        try:
            err = json.loads(payload)["error"]
            return HpodError(err.get("code", "internal"), err.get("message", ""), status,
                             err.get("field"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return HpodError("bad_response", f"HTTP status {status}", status)

    def create_study(self, spec=None, **fields):
        """Create a study (a dict as in docs/REFERENCE.md, or keyword fields), or load the
        identical one of that name. A different study of that name raises
        HpodError("conflict")."""
        body = dict(spec or {})
        body.update(fields)
        # Creating an identical study again answers 200: safe to retry.
        return Study(self, self.request("POST", "/v1/studies", body, idempotent=True))

    def load_study(self, name):
        """The existing study called name; HpodError("not_found") if none."""
        return Study(self, self.request("GET", "/v1/studies/" + _quote(name)))

    def studies(self):
        """Every study's summary (dicts, as the API returns them), by name."""
        return self.request("GET", "/v1/studies")["studies"]

    def delete_study(self, name):
        self.request("DELETE", "/v1/studies/" + _quote(name), idempotent=False)

    def health(self):
        return self.request("GET", "/healthz")


class Study:
    """A study: name, direction and the definition and summary in info."""

    def __init__(self, client, info):
        self.client = client
        self.info = info
        self.name = info["name"]

    def __repr__(self):
        return f"Study({self.name!r})"

    @property
    def direction(self):
        return self.info.get("direction", "minimize")

    def _path(self, rest=""):
        return "/v1/studies/" + _quote(self.name) + rest

    def refresh(self):
        """Fetch the study again (its trial counts and best trial change)."""
        self.info = self.client.request("GET", self._path())
        return self.info

    def ask(self):
        """Start a trial; HpodError("exhausted") once max_trials is reached."""
        body = {"worker": self.client.worker} if self.client.worker else None
        return Trial(self, self.client.request("POST", self._path("/ask"), body,
                                               idempotent=False))

    def best(self):
        """The best complete trial, or None when there is none yet."""
        try:
            return Trial(self, self.client.request("GET", self._path("/best")))
        except HpodError as e:
            if e.code == "not_found":
                return None
            raise

    @property
    def best_params(self):
        best = self.best()
        return best.params if best else None

    @property
    def best_value(self):
        best = self.best()
        return best.value if best else None

    def trials(self, state=None):
        """Every trial (optionally only those in state), in order of number."""
        out, offset = [], 0
        while True:
            query = {"limit": 1000, "offset": offset}
            if state:
                query["state"] = state
            page = self.client.request("GET", self._path("/trials?" + urllib.parse.urlencode(query)))
            out.extend(Trial(self, t) for t in page["trials"])
            offset += len(page["trials"])
            if not page["trials"] or offset >= page["total"]:
                return out

    def trial(self, number):
        return Trial(self, self.client.request("GET", self._path(f"/trials/{int(number)}")))

    def enqueue(self, params):
        """Queue params to be tried next (a waiting trial)."""
        return Trial(self, self.client.request("POST", self._path("/trials"),
                                               {"params": params}, idempotent=False))

    def add_trial(self, params, value):
        """Record a result obtained elsewhere (a complete trial)."""
        return Trial(self, self.client.request("POST", self._path("/trials"),
                                               {"params": params, "value": value},
                                               idempotent=False))

    def delete(self):
        self.client.delete_study(self.name)

    def optimize(self, fn, n_trials=None, n_jobs=1, catch=(), timeout=None):
        """Run fn(trial) -> value for n_trials trials (None: until the study
        is exhausted), n_jobs at once in threads.

        fn returns the value (a finite number), raises TrialPruned (the trial
        is told pruned) or another exception: one listed in catch fails the
        trial and the loop goes on; any other fails the trial, stops the
        loop and is raised here once the running trials end. A result that
        is None or not finite fails the trial. While trials run, a thread
        sends heartbeats when the study has a heartbeat_timeout. timeout
        (seconds) stops asking for new trials after that long. Ctrl-C fails
        the running trials and raises KeyboardInterrupt.
        """
        if n_jobs < 1:
            raise ValueError("n_jobs must be >= 1")
        state = _Optimize(self, fn, n_trials, catch, timeout)
        hb_timeout = self.info.get("heartbeat_timeout") or 0
        hb = None
        if hb_timeout > 0:
            hb = threading.Thread(target=state.heartbeats, args=(max(0.2, hb_timeout / 3),),
                                  daemon=True)
            hb.start()
        try:
            if n_jobs == 1:
                state.worker()
            else:
                threads = [threading.Thread(target=state.worker, daemon=True)
                           for _ in range(n_jobs)]
                for t in threads:
                    t.start()
                for t in threads:
                    while t.is_alive():
                        t.join(0.1)
        except KeyboardInterrupt:
            state.interrupt()
            raise
        finally:
            state.stop.set()
            if hb is not None:
                hb.join()
        if state.error is not None:
            raise state.error


class _Optimize:
    """The shared state of one Study.optimize call."""

    def __init__(self, study, fn, n_trials, catch, timeout):
        self.study = study
        self.fn = fn
        self.n_trials = n_trials
        self.catch = tuple(catch)
        self.deadline = time.monotonic() + timeout if timeout else None
        self.lock = threading.Lock()
        self.started = 0
        self.active = {}
        self.stop = threading.Event()
        self.error = None

    def _next(self):
        with self.lock:
            if self.stop.is_set():
                return False
            if self.n_trials is not None and self.started >= self.n_trials:
                return False
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return False
            self.started += 1
            return True

    def _fail_all(self, error):
        with self.lock:
            if self.error is None:
                self.error = error
        self.stop.set()

    def worker(self):
        while self._next():
            try:
                trial = self.study.ask()
            except HpodError as e:
                if e.code != "exhausted":
                    self._fail_all(e)
                self.stop.set()
                return
            with self.lock:
                self.active[trial.number] = trial
            try:
                self._run(trial)
            finally:
                with self.lock:
                    self.active.pop(trial.number, None)

    def _run(self, trial):
        try:
            value = self.fn(trial)
        except TrialPruned:
            trial.prune()
            return
        except KeyboardInterrupt:
            _quietly(trial.fail)
            raise
        except self.catch:
            trial.fail()
            return
        except BaseException as e:  # noqa: B902 - fail the trial, then stop everything
            _quietly(trial.fail)
            self._fail_all(e)
            return
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            trial.fail()
            return
        trial.tell(value)

    def heartbeats(self, every):
        while not self.stop.wait(every):
            with self.lock:
                trials = list(self.active.values())
            for t in trials:
                _quietly(t.heartbeat)

    def interrupt(self):
        self.stop.set()
        with self.lock:
            trials = list(self.active.values())
        for t in trials:
            _quietly(t.fail)


def _quietly(call):
    try:
        call()
    except HpodError:
        pass


class Trial:
    """One trial: number, state, params (a dict), value, intermediate."""

    def __init__(self, study, info):
        self.study = study
        self.info = info
        self.number = info["number"]
        self.params = info.get("params", {})
        self._prune = False

    def __repr__(self):
        return f"Trial({self.study.name!r}, {self.number}, {self.state!r})"

    def __getitem__(self, name):
        return self.params[name]

    @property
    def state(self):
        return self.info.get("state")

    @property
    def value(self):
        return self.info.get("value")

    @property
    def intermediate(self):
        return self.info.get("intermediate", [])

    def _path(self, rest):
        return self.study._path(f"/trials/{self.number}{rest}")

    def report(self, step, value):
        """Report an intermediate value; returns the pruner's decision (True:
        stop and raise TrialPruned). Also a heartbeat. A value that is not
        finite raises ValueError."""
        if not math.isfinite(value):
            raise ValueError("a reported value must be finite, got %r" % value)
        answer = self.study.client.request("POST", self._path("/report"),
                                           {"step": int(step), "value": float(value)})
        self._prune = bool(answer["prune"])
        return self._prune

    def should_prune(self):
        """The decision of the last report (Optuna's spelling)."""
        return self._prune

    def heartbeat(self):
        self.study.client.request("POST", self._path("/heartbeat"))

    def tell(self, value, gradient=None, user_attrs=None):
        """Complete the trial with value (and optionally a gradient dict).
        A value that is not finite raises ValueError: use fail() instead."""
        if not math.isfinite(value):
            raise ValueError("a trial's value must be finite, got %r" % value)
        body = {"value": float(value)}
        if gradient is not None:
            body["gradient"] = gradient
        if user_attrs is not None:
            body["user_attrs"] = user_attrs
        self.info = self.study.client.request("POST", self._path("/tell"), body)

    def fail(self):
        self.info = self.study.client.request("POST", self._path("/tell"), {"state": "failed"})

    def prune(self):
        self.info = self.study.client.request("POST", self._path("/tell"), {"state": "pruned"})

    def put_gradient(self, name, values):
        """Upload one parameter's gradient as little-endian float64, for the
        tell that follows."""
        data = struct.pack(f"<{len(values)}d", *values)
        self.study.client.request("PUT", self._path("/gradient/" + _quote(name)), data=data,
                                  content_type="application/octet-stream")

    def vector(self, name):
        """A vector param's values as a list, fetching large ones (given as
        an href) in binary."""
        v = self.params[name]
        if isinstance(v, list):
            return v
        raw = self.study.client.request("GET", v["href"], accept="application/octet-stream")
        return list(struct.unpack(f"<{len(raw) // 8}d", raw))
