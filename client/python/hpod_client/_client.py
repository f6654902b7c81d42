"""Client, Study and Trial: the REST API of docs/API.md in Python, Optuna-shaped."""

from __future__ import annotations

import array
import datetime
import enum
import gc
import json
import logging
import math
import numbers
import os
import random
import sys
import threading
import time
import urllib.parse
import uuid
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple,
                    Type, Union)

from ._errors import DuplicatedStudyError, HpodError, SearchSpaceError, TrialPruned
from ._http import Sink, Transport, TransportError, env_cafile

_log = logging.getLogger("hpod_client")

JSON = Any
Params = Dict[str, Any]


def _quote(segment: Any) -> str:
    return urllib.parse.quote(str(segment), safe="")


# Buffer formats of a native float64 (numpy gives "<d" for an explicit little-endian dtype).
_F64_FORMATS = ("d", "@d", "=d", "<d") if sys.byteorder == "little" else ()


def _float64_wire(values: Any) -> Union[bytes, memoryview]:
    """values as little-endian float64 bytes for a binary upload. A C-contiguous
    float64 buffer (a numpy array, array.array("d"), a memoryview) on a
    little-endian host is sent from its own memory, not copied; anything else
    (a list, other dtypes) is converted once, in C (array.array)."""
    try:
        view = memoryview(values)
    except TypeError:
        view = None
    if view is not None and view.format in _F64_FORMATS and view.c_contiguous:
        return view.cast("B")
    converted = array.array("d", values)
    if sys.byteorder != "little":
        converted.byteswap()
    return memoryview(converted).cast("B")


def _float64_sink(nbytes: int) -> Optional["array.array[float]"]:
    """The array.array("d") a binary vector download is read into (a Transport sink)."""
    return array.array("d", [0.0]) * (nbytes // 8) if nbytes % 8 == 0 else None


class TrialState(str, enum.Enum):
    """A trial's state. Members compare equal to the API's strings
    (TrialState.COMPLETE == "complete"); names follow Optuna's (FAIL)."""

    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "failed"

    def __str__(self) -> str:
        return self.value

    def is_finished(self) -> bool:
        """complete, pruned or failed."""
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class StudyDirection(str, enum.Enum):
    """A study's direction; members compare equal to "minimize"/"maximize"."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    def __str__(self) -> str:
        return self.value


# ---------------------------------------------------------------------------
# Client


class Client:
    """A connection to one hpod daemon. Safe to share between threads: each
    thread keeps one persistent (keep-alive) connection of its own.

    url defaults to $HPOD_URL, else http://127.0.0.1:8080 (a trailing /v1 is
    dropped). token defaults to $HPOD_TOKEN and is sent as
    ``Authorization: Bearer``. cafile (default $HPOD_CACERT) is the CA bundle
    that verifies an https:// daemon (else the system's). timeout is per
    request, in seconds. retries is how many further attempts a retryable
    failure gets (503 answers, connection failures, lost answers of requests
    that are safe to repeat), waiting backoff seconds before the first and
    doubling up to max_backoff. worker is sent with every ask.
    keep_alive=False opens a new connection per request (the behaviour
    before 0.2; for comparisons).
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 60.0, retries: int = 5, backoff: float = 0.1,
                 max_backoff: float = 5.0, worker: Optional[str] = None, *,
                 cafile: Optional[str] = None, keep_alive: bool = True) -> None:
        url = url or os.environ.get("HPOD_URL") or "http://127.0.0.1:8080"
        url = url.rstrip("/")
        if url.endswith("/v1"):
            url = url[:-3]
        if not url.startswith(("http://", "https://")):
            raise ValueError("the URL must start with http:// or https://")
        self.url = url
        self.token = token if token is not None else (os.environ.get("HPOD_TOKEN") or None)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.worker = worker
        self.transport = Transport(url, timeout, env_cafile(cafile), keep_alive)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept connections (a later request opens a new one)."""
        self.transport.close()

    # -- requests -----------------------------------------------------------

    def request(self, method: str, path: str, body: Optional[JSON] = None, idempotent: bool = True,
                data: Optional[Union[bytes, memoryview]] = None,
                content_type: str = "application/json",
                accept: str = "application/json", sink: Optional[Sink] = None) -> Any:
        """Send one request; returns the decoded JSON (None for 204 or an
        empty body), or bytes when accept is not JSON. Raises HpodError.

        idempotent: whether the request may be sent again when its answer
        was lost (see _http.py); requests that certainly did not arrive are
        always resent. sink: see Transport.send (a binary body read into
        the buffer it gives)."""
        return self.call(method, path, body, idempotent, data, content_type, accept, sink)[1]

    def call(self, method: str, path: str, body: Optional[JSON] = None, idempotent: bool = True,
             data: Optional[Union[bytes, memoryview]] = None,
             content_type: str = "application/json",
             accept: str = "application/json",
             sink: Optional[Sink] = None) -> Tuple[int, Any]:
        """As request(), returning (HTTP status, decoded body)."""
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
            try:
                status, rhdrs, payload = self.transport.send(method, path, headers, data,
                                                             retry_safe=idempotent, sink=sink)
            except TransportError as e:
                if attempt < self.retries and (not e.sent or idempotent):
                    self._sleep(attempt)
                    attempt += 1
                    continue
                raise HpodError("transport", str(e)) from None
            if status == 503 and attempt < self.retries:
                # unavailable: nothing was changed, so any request may be resent.
                self._sleep(attempt)
                attempt += 1
                continue
            if status >= 400:
                raise self._api_error(status, payload, rhdrs.get("x-request-id"))
            break
        if status == 204 or not payload:
            return status, None
        if not accept.startswith("application/json"):
            return status, payload
        try:
            return status, json.loads(payload)
        except ValueError as e:
            raise HpodError("bad_response", f"response is not JSON: {e}", status) from None

    def _sleep(self, attempt: int) -> None:
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        time.sleep(delay * random.uniform(0.5, 1.0))

    @staticmethod
    def _api_error(status: int, payload: bytes, request_id: Optional[str] = None) -> HpodError:
        try:
            err = json.loads(payload)["error"]
            return HpodError(err.get("code", "internal"), err.get("message", ""), status,
                             err.get("field"), request_id)
        except (ValueError, KeyError, TypeError, AttributeError):
            return HpodError("bad_response", f"HTTP status {status}", status, None, request_id)

    # -- studies ------------------------------------------------------------

    def create_study(self, spec: Optional[Mapping[str, Any]] = None, **fields: Any) -> "Study":
        """Create a study (a dict as in docs/REFERENCE.md, or keyword fields), or load the
        identical one of that name. A different study of that name raises
        HpodError("conflict") naming the field that differs. params may
        also be a mapping of name to spec (see hpod_client.distributions)."""
        body = dict(spec or {})
        body.update(fields)
        if "params" in body:
            body["params"] = _normalize_space(body["params"])
        # Creating an identical study again answers 200: safe to retry.
        return Study(self, self.request("POST", "/v1/studies", body, idempotent=True))

    def load_study(self, name: str) -> "Study":
        """The existing study called name; HpodError("not_found") if none."""
        return Study(self, self.request("GET", "/v1/studies/" + _quote(name)))

    def studies(self) -> List[Dict[str, Any]]:
        """Every study's summary (dicts, as the API returns them), by name."""
        return self.request("GET", "/v1/studies")["studies"]

    def delete_study(self, name: str) -> None:
        """Delete a study and its trials (not_found if there is none)."""
        self.request("DELETE", "/v1/studies/" + _quote(name), idempotent=False)

    def backup(self, path: str) -> int:
        """Save an online backup (GET /v1/admin/backup: a tar of the database and
        the side files it references; needs an admin token) as path. The
        archive is streamed to path + ".tmp", synced, then renamed to path, so
        path is complete or untouched. Returns its size in bytes. Raises
        HpodError (unauthenticated, permission_denied, transport, ...)."""
        headers = {"Accept": "application/x-tar"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        tmp = path + ".tmp"
        attempt = 0
        try:
            while True:
                with open(tmp, "wb") as out:
                    try:
                        status, rhdrs, payload, n = self.transport.stream("/v1/admin/backup",
                                                                          headers, out)
                    except TransportError as e:
                        if attempt < self.retries and not e.sent:
                            status, rhdrs, payload, n = 0, {}, b"", 0
                        else:
                            raise HpodError("transport", str(e)) from None
                    if 200 <= status <= 299:
                        out.flush()
                        os.fsync(out.fileno())
                        break
                if status >= 400 and not (status == 503 and attempt < self.retries):
                    raise self._api_error(status, payload, rhdrs.get("x-request-id"))
                self._sleep(attempt)
                attempt += 1
            os.rename(tmp, path)
            return n
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def health(self) -> Dict[str, Any]:
        """GET /healthz: {"status": "ok", "version": ...}."""
        return self.request("GET", "/healthz")


def _normalize_space(params: Any) -> List[Dict[str, Any]]:
    """params as a list of specs: a list as in docs/REFERENCE.md, or {name: spec}."""
    if isinstance(params, Mapping):
        return [dict(spec, name=name) for name, spec in params.items()]
    return [dict(p) for p in params]


# ---------------------------------------------------------------------------
# Study


class Study:
    """A study: name, direction, the definition and summary in info, and
    Optuna's surface (optimize, best_trial, trials, trials_dataframe, ...)."""

    def __init__(self, client: Client, info: Dict[str, Any]) -> None:
        self.client = client
        self.info = info
        self.name: str = info["name"]
        self._space: Dict[str, Dict[str, Any]] = {p["name"]: p for p in info.get("params", [])}
        self._optimizing: Optional[_Optimize] = None

    def __repr__(self) -> str:
        return f"Study({self.name!r})"

    @property
    def study_name(self) -> str:
        """The study's name (Optuna's spelling)."""
        return self.name

    @property
    def direction(self) -> StudyDirection:
        """minimize or maximize (a StudyDirection, equal to its string).
        RuntimeError for a study with several objectives (as Optuna): use
        directions."""
        objs = self._objectives()
        if len(objs) > 1:
            raise RuntimeError("study %r has several objectives: use study.directions"
                               % self.name)
        return StudyDirection(objs[0].get("direction", "minimize"))

    def _objectives(self) -> List[Dict[str, Any]]:
        objs = self.info.get("objectives")
        if objs:
            return list(objs)
        # A hpod 1.0 daemon: one unnamed objective.
        return [{"name": "value", "direction": self.info.get("direction", "minimize")}]

    @property
    def directions(self) -> List[StudyDirection]:
        """One StudyDirection per objective, in the study's order (Optuna's)."""
        return [StudyDirection(o.get("direction", "minimize")) for o in self._objectives()]

    @property
    def objective_names(self) -> List[str]:
        """The objectives' names, in order (a study created with direction: ["value"])."""
        return [o["name"] for o in self._objectives()]

    @property
    def constraints(self) -> List[Dict[str, Any]]:
        """The declared constraints: [{"name", "min"?, "max"?}, ...] ([] when none)."""
        return [dict(c) for c in self.info.get("constraints") or []]

    @property
    def is_multi_objective(self) -> bool:
        """Whether the study has several objectives."""
        return len(self._objectives()) > 1

    @property
    def space(self) -> Dict[str, Dict[str, Any]]:
        """The declared params by name, each as the study echoes it."""
        return dict(self._space)

    def _path(self, rest: str = "") -> str:
        return "/v1/studies/" + _quote(self.name) + rest

    def refresh(self) -> Dict[str, Any]:
        """Fetch the study again (its trial counts and best trial change)."""
        self.info = self.client.request("GET", self._path())
        self._space = {p["name"]: p for p in self.info.get("params", [])}
        return self.info

    # -- attributes ---------------------------------------------------------

    @property
    def user_attrs(self) -> Dict[str, Any]:
        """The study's user attrs, as stored now (fetched)."""
        return dict(self.refresh().get("user_attrs") or {})

    @property
    def system_attrs(self) -> Dict[str, Any]:
        """Always {} (hpod keeps no system attrs; here for Optuna code)."""
        return {}

    def set_user_attr(self, key: str, value: Any) -> None:
        """Set one user attr of the study (PATCH, merged with the others;
        None removes the key)."""
        self.set_user_attrs({key: value})

    def set_user_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Merge attrs into the study's user attrs (None values remove keys)."""
        answer = self.client.request("PATCH", self._path(), {"user_attrs": dict(attrs)})
        if isinstance(answer, dict) and "name" in answer:
            self.info = answer
            self._space = {p["name"]: p for p in answer.get("params", [])}

    # -- trials -------------------------------------------------------------

    def ask(self) -> "Trial":
        """Start a trial; HpodError("exhausted") once max_trials is reached.
        Never resent after it may have reached the daemon (a second ask
        would start a second trial)."""
        body = {"worker": self.client.worker} if self.client.worker else None
        return Trial(self, self.client.request("POST", self._path("/ask"), body,
                                               idempotent=False))

    def tell(self, trial: Union["Trial", int], value: Any = None,
             state: Optional[Union[TrialState, str]] = None, values: Any = None,
             constraints: Optional[Union[Mapping[str, float], Sequence[float]]] = None
             ) -> "Trial":
        """Finish a trial (Optuna's Study.tell): a finite value completes it;
        state=TrialState.PRUNED or FAIL prunes or fails it; no state and no
        (or a non-finite) value fails it, as in Optuna. With several
        objectives, value (or values=, Optuna's keyword) is a sequence in the
        objectives' order or a dict by name; constraints a dict by name or a
        sequence in the declared order. Returns it."""
        t = trial if isinstance(trial, Trial) else Trial(self, {"number": int(trial)})
        st = TrialState(state) if state is not None else None
        if values is not None:
            if value is not None:
                raise ValueError("give value or values, not both")
            value = values
        if st == TrialState.PRUNED:
            t.prune()
        elif st == TrialState.FAIL:
            t.fail()
        elif (st is None or st == TrialState.COMPLETE) and (
                isinstance(value, (Mapping, list, tuple)) or self.is_multi_objective):
            named, why = self._values_by_name(value)
            if named is not None:
                t.tell(named, constraints=constraints)
            elif st is None:
                _log.warning("trial %d failed: %s", t.number, why)
                t.fail()
            else:
                raise ValueError(why)
        elif st is None or st == TrialState.COMPLETE:
            try:
                v = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                v = math.nan
            if math.isfinite(v):
                t.tell(v, constraints=constraints)
            elif st is None:
                # As Optuna: no value, or not a finite number, fails the trial.
                _log.warning("trial %d failed: told %r, not a finite number", t.number, value)
                t.fail()
            else:
                raise ValueError("state COMPLETE needs a finite value, got %r" % (value,))
        else:
            raise ValueError("tell takes state COMPLETE, PRUNED or FAIL, not %s" % st)
        return t

    def _values_by_name(self, value: Any) -> Tuple[Optional[Dict[str, float]], str]:
        """An objective's result as {name: finite value} in the study's order, or
        (None, why) when it does not fit the objectives."""
        names = self.objective_names
        if isinstance(value, Mapping):
            if set(value) != set(names):
                return None, ("the objective returned values for %s; the study's objectives "
                              "are %s" % (sorted(value), names))
            seq = [value[n] for n in names]
        elif isinstance(value, (list, tuple)):
            if len(value) != len(names):
                return None, ("the objective returned %d values; the study has %d objectives "
                              "(%s)" % (len(value), len(names), ", ".join(names)))
            seq = list(value)
        elif len(names) > 1:
            return None, ("the objective returned %r; the study has %d objectives: return a "
                          "tuple or a dict" % (value, len(names)))
        else:
            seq = [value]
        out: Dict[str, float] = {}
        for n, v in zip(names, seq):
            try:
                x = float(v)
            except (TypeError, ValueError):
                return None, "objective %r is %r, not a number" % (n, v)
            if not math.isfinite(x):
                return None, "objective %r is %r, not a finite number" % (n, v)
            out[n] = x
        return out, ""

    def best(self) -> Optional["Trial"]:
        """The best complete trial, or None when there is none yet.
        RuntimeError with several objectives: use best_trials."""
        if self.is_multi_objective:
            raise RuntimeError("study %r has several objectives: use study.best_trials"
                               % self.name)
        try:
            return Trial(self, self.client.request("GET", self._path("/best")))
        except HpodError as e:
            if e.code == "not_found":
                return None
            raise

    @property
    def best_trial(self) -> "Trial":
        """The best complete trial; ValueError when none is complete (as in
        Optuna)."""
        best = self.best()
        if best is None:
            raise ValueError(f"no trial of study {self.name!r} is complete yet")
        return best

    @property
    def best_trials(self) -> List["Trial"]:
        """The feasible Pareto front, in order of number (Optuna's
        best_trials): complete, feasible trials no other feasible trial
        dominates. One objective: every best feasible trial (ties). [] while
        none is feasible."""
        return self.pareto()["trials"]

    def pareto(self) -> Dict[str, Any]:
        """GET .../pareto: {"trials": [Trial...], "hypervolume": h,
        "reference_point": {name: value} or None}."""
        answer = self.client.request("GET", self._path("/pareto"))
        answer["trials"] = [Trial(self, t) for t in answer.get("trials", [])]
        return answer

    @property
    def best_params(self) -> Optional[Params]:
        """The best trial's params; None when no trial is complete (unlike
        Optuna, which raises: kept from hpod_client 0.1)."""
        best = self.best()
        return best.params if best else None

    @property
    def best_value(self) -> Optional[float]:
        """The best trial's value; None when no trial is complete."""
        best = self.best()
        return best.value if best else None

    def _fetch_trials(self, state: Optional[str] = None,
                      feasible: Optional[bool] = None) -> "TrialList":
        out, offset = TrialList(), 0
        while True:
            query: Dict[str, Any] = {"limit": 1000, "offset": offset}
            if state:
                query["state"] = str(state)
            if feasible is not None:
                query["feasible"] = "true" if feasible else "false"
            page = self.client.request("GET", self._path("/trials?" + urllib.parse.urlencode(query)))
            out.extend(Trial(self, t) for t in page["trials"])
            offset += len(page["trials"])
            if not page["trials"] or offset >= page["total"]:
                return out

    @property
    def trials(self) -> "TrialList":
        """Every trial, in order of number (fetched on each access).

        The list is also callable for code written for hpod_client 0.1:
        study.trials() and study.trials(state="failed")."""
        return self._fetch_trials()

    def get_trials(self, deepcopy: bool = False,
                   states: Optional[Iterable[Union[TrialState, str]]] = None) -> List["Trial"]:
        """Trials, optionally only those in states (Optuna's get_trials)."""
        del deepcopy  # every call fetches fresh objects
        if states is None:
            return list(self._fetch_trials())
        wanted = {TrialState(s) for s in states}
        if len(wanted) == 1:
            return list(self._fetch_trials(next(iter(wanted)).value))
        return [t for t in self._fetch_trials() if t.state in wanted]

    def feasible_trials(self, feasible: bool = True) -> List["Trial"]:
        """The complete trials within every constraint (GET .../trials?feasible=true);
        feasible=False: all the others."""
        return list(self._fetch_trials(feasible=feasible))

    def trial(self, number: int) -> "Trial":
        """One trial by number."""
        return Trial(self, self.client.request("GET", self._path(f"/trials/{int(number)}")))

    def enqueue(self, params: Params, user_attrs: Optional[Mapping[str, Any]] = None) -> "Trial":
        """Queue params to be tried next (a waiting trial; missing params
        are suggested by the sampler when it is handed out)."""
        body: Dict[str, Any] = {"params": dict(params)}
        if user_attrs:
            body["user_attrs"] = dict(user_attrs)
        return Trial(self, self.client.request("POST", self._path("/trials"), body,
                                               idempotent=False))

    def enqueue_trial(self, params: Params, user_attrs: Optional[Mapping[str, Any]] = None,
                      skip_if_exists: bool = False) -> None:
        """Optuna's enqueue_trial: the next ask gets these params (partial
        params are completed by the sampler). skip_if_exists: do nothing
        when a trial with exactly these params exists in any state."""
        if skip_if_exists:
            for t in self._fetch_trials():
                if all(k in t.params and _same_value(t.params[k], v) for k, v in params.items()):
                    return
        self.enqueue(params, user_attrs)

    def add_trial(self, params: Union[Params, "FrozenTrial"], value: Optional[float] = None) -> "Trial":
        """Record a result obtained elsewhere (a complete trial): add_trial(
        params, value), or Optuna's add_trial(frozen_trial) with a complete
        trial (its params, value and user attrs are copied)."""
        body: Dict[str, Any]
        if isinstance(params, FrozenTrial):
            ft = params
            if ft.state != TrialState.COMPLETE or ft.value is None:
                raise ValueError("add_trial takes a complete trial with a value")
            body = {"params": dict(ft.params), "value": float(ft.value)}
            if ft.user_attrs:
                body["user_attrs"] = dict(ft.user_attrs)
        else:
            if value is None:
                raise ValueError("add_trial(params, value) needs the value")
            body = {"params": dict(params), "value": float(value)}
        return Trial(self, self.client.request("POST", self._path("/trials"), body,
                                               idempotent=False))

    def delete(self) -> None:
        """Delete this study and its trials."""
        self.client.delete_study(self.name)

    def trials_dataframe(self, attrs: Sequence[str] = ("number", "value", "datetime_start",
                                                       "datetime_complete", "duration", "params",
                                                       "user_attrs", "system_attrs", "state"),
                         multi_index: bool = False) -> Any:
        """The trials as a pandas DataFrame, one row per trial, with Optuna's
        columns: number, value, datetime_start, datetime_complete, duration,
        params_<name>, user_attrs_<key>, system_attrs_<key> (worker,
        retry_of), state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING as in
        Optuna); attrs may add "intermediate_values" (one column per step).
        With several objectives "value" becomes values_<name> per objective,
        and constraints add constraints_<name> columns after it.
        multi_index=True gives two-level columns ("params", "x"). Needs
        pandas (ImportError naming the package otherwise)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("trials_dataframe() needs pandas: apt-get install python3-pandas "
                              "(Debian) or pip install pandas") from e
        trials = self._fetch_trials()
        nested = ("params", "user_attrs", "system_attrs", "intermediate_values")
        keys: Dict[str, List[Any]] = {a: [] for a in attrs if a in nested}
        for t in trials:
            for a in keys:
                for k in getattr(t, a):
                    if k not in keys[a]:
                        keys[a].append(k)
        columns: List[Tuple[str, Any]] = []
        for a in attrs:
            if a == "value" and (self.is_multi_objective or self.constraints):
                # Several objectives or constraints: one column per objective
                # (values_<name>) and per constraint (constraints_<name>).
                if self.is_multi_objective:
                    columns.extend(("values", n) for n in self.objective_names)
                else:
                    columns.append(("value", ""))
                columns.extend(("constraints", c["name"]) for c in self.constraints)
            elif a in keys:
                columns.extend((a, k) for k in (sorted(keys[a]) if a != "params" else keys[a]))
            else:
                columns.append((a, ""))
        rows = []
        for t in trials:
            row = []
            for a, k in columns:
                if a == "state":
                    row.append(t.state.name)
                elif a == "values":
                    row.append(t.values_dict.get(k))
                elif a == "constraints":
                    row.append(t.constraints.get(k))
                elif a in keys:
                    row.append(getattr(t, a).get(k))
                else:
                    row.append(getattr(t, a))
            rows.append(row)
        if multi_index:
            index = pd.MultiIndex.from_tuples(columns)
            return pd.DataFrame(rows, columns=index)
        names = [a if k == "" else f"{a}_{k}" for a, k in columns]
        return pd.DataFrame(rows, columns=names)

    # -- optimize -----------------------------------------------------------

    def optimize(self, func: Callable[["Trial"], Any], n_trials: Optional[int] = None,
                 timeout: Optional[float] = None, n_jobs: int = 1,
                 catch: Union[Iterable[Type[BaseException]], Type[BaseException]] = (),
                 callbacks: Optional[Iterable[Callable[["Study", "FrozenTrial"], None]]] = None,
                 gc_after_trial: bool = False, show_progress_bar: bool = False) -> None:
        """Run func(trial) -> value for n_trials trials (None: until the study
        is exhausted, timeout passes or stop() is called), n_jobs at once in
        threads (-1: one per CPU). Optuna's semantics:

        func returns the value (a finite number; with several objectives a
        tuple/list in the objectives' order or a dict by name), raises
        TrialPruned (the
        trial is told pruned) or another exception: one listed in catch
        fails the trial and the loop goes on; any other fails the trial,
        stops the loop and is raised here once the running trials end. A
        result that is None or not a finite number fails the trial (logged
        as a warning). callbacks are called as cb(study, frozen_trial) after
        each trial that ends (complete, pruned, or failed and caught), in
        the worker's thread. timeout (seconds) stops asking for new trials
        after that long. While trials run, a thread sends heartbeats when
        the study has a heartbeat_timeout. show_progress_bar: tqdm when
        installed, else one line per trial on stderr. Ctrl-C fails the
        running trials and raises KeyboardInterrupt.
        """
        if n_jobs == -1:
            n_jobs = os.cpu_count() or 1
        if n_jobs < 1:
            raise ValueError("n_jobs must be >= 1 (or -1: one per CPU)")
        if isinstance(catch, type):
            catch = (catch,)
        state = _Optimize(self, func, n_trials, tuple(catch), timeout, list(callbacks or ()),
                          gc_after_trial, _Progress(n_trials, self) if show_progress_bar else None)
        self._optimizing = state
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
            if state.progress is not None:
                state.progress.close()
            self._optimizing = None
        if state.error is not None:
            raise state.error

    def stop(self) -> None:
        """Stop the running optimize() after the running trials (Optuna's
        Study.stop, callable from a callback or the objective)."""
        if self._optimizing is None:
            raise RuntimeError("Study.stop() is meant for a running optimize()")
        self._optimizing.stop.set()


class _Progress:
    """optimize(show_progress_bar=True): tqdm if installed, else lines."""

    def __init__(self, total: Optional[int], study: Study) -> None:
        self.study = study
        self.done = 0
        self.total = total
        self.best: Optional[float] = None
        self.bar: Any = None
        try:
            import tqdm  # type: ignore[import-not-found]
            self.bar = tqdm.tqdm(total=total, unit="trial")
        except ImportError:
            self.bar = None

    def update(self, t: "FrozenTrial") -> None:
        self.done += 1
        if t.state == TrialState.COMPLETE and t.value is not None:
            better = (self.best is None or (t.value > self.best if self.study.direction ==
                                            StudyDirection.MAXIMIZE else t.value < self.best))
            if better:
                self.best = t.value
        if self.bar is not None:
            self.bar.set_postfix_str(f"best {self.best!r}", refresh=False)
            self.bar.update(1)
        else:
            total = f"/{self.total}" if self.total else ""
            sys.stderr.write(f"[{self.done}{total}] trial {t.number} {t.state.name.lower()}"
                             f" value={t.value!r} best={self.best!r}\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Optimize:
    """The shared state of one Study.optimize call."""

    def __init__(self, study: Study, fn: Callable[["Trial"], Any], n_trials: Optional[int],
                 catch: Tuple[Type[BaseException], ...], timeout: Optional[float],
                 callbacks: List[Callable[[Study, "FrozenTrial"], None]], gc_after_trial: bool,
                 progress: Optional[_Progress]) -> None:
        self.study = study
        self.fn = fn
        self.n_trials = n_trials
        self.catch = catch
        self.deadline = time.monotonic() + timeout if timeout else None
        self.callbacks = callbacks
        self.gc_after_trial = gc_after_trial
        self.progress = progress
        self.lock = threading.Lock()
        self.started = 0
        self.active: Dict[int, Trial] = {}
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None

    def _next(self) -> bool:
        with self.lock:
            if self.stop.is_set():
                return False
            if self.n_trials is not None and self.started >= self.n_trials:
                return False
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return False
            self.started += 1
            return True

    def _fail_all(self, error: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = error
        self.stop.set()

    def worker(self) -> None:
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
                finished = self._run(trial)
            finally:
                with self.lock:
                    self.active.pop(trial.number, None)
            if self.gc_after_trial:
                gc.collect()
            if finished:
                self._after(trial)

    def _after(self, trial: "Trial") -> None:
        if self.progress is not None:
            with self.lock:
                self.progress.update(trial)
        for cb in self.callbacks:
            try:
                cb(self.study, trial)
            except BaseException as e:  # noqa: B902 - a callback's error stops the loop
                self._fail_all(e)
                return

    def _run(self, trial: "Trial") -> bool:
        """Run one trial; True when it ended in a way callbacks see."""
        try:
            value = self.fn(trial)
        except TrialPruned:
            trial.prune()
            return True
        except KeyboardInterrupt:
            _quietly(trial.fail)
            raise
        except self.catch as e:
            _log.warning("trial %d failed (caught %s: %s)", trial.number, type(e).__name__, e)
            trial.fail()
            return True
        except BaseException as e:  # noqa: B902 - fail the trial, then stop everything
            _quietly(trial.fail)
            self._fail_all(e)
            return False
        if isinstance(value, (Mapping, list, tuple)) or self.study.is_multi_objective:
            named, why = self.study._values_by_name(value)
            if named is None:
                _log.warning("trial %d failed: %s", trial.number, why)
                trial.fail()
                return True
            trial.tell(named)
            return True
        try:
            value = float(value)
        except (TypeError, ValueError):
            _log.warning("trial %d failed: the objective returned %r, not a number",
                         trial.number, value)
            value = math.nan
        if not math.isfinite(value):
            if not math.isnan(value):
                _log.warning("trial %d failed: the objective returned %r", trial.number, value)
            trial.fail()
            return True
        trial.tell(value)
        return True

    def heartbeats(self, every: float) -> None:
        while not self.stop.wait(every):
            with self.lock:
                trials = list(self.active.values())
            for t in trials:
                _quietly(t.heartbeat)

    def interrupt(self) -> None:
        self.stop.set()
        with self.lock:
            trials = list(self.active.values())
        for t in trials:
            _quietly(t.fail)


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except HpodError:
        pass


class TrialList(list):  # type: ignore[type-arg]
    """A list of trials that can also be called, for hpod_client 0.1 code:
    trials() is the list itself, trials(state="failed") those in a state."""

    def __call__(self, state: Optional[Union[TrialState, str]] = None) -> "TrialList":
        if state is None:
            return self
        st = TrialState(state)
        return TrialList(t for t in self if t.state == st)


# ---------------------------------------------------------------------------
# Trials


def _parse_time(text: Optional[str]) -> Optional[datetime.datetime]:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class FrozenTrial:
    """A trial as the daemon last returned it (Optuna's FrozenTrial fields).

    info holds the API's JSON. Datetimes are timezone-aware (UTC).
    """

    def __init__(self, study: Study, info: Dict[str, Any]) -> None:
        self.study = study
        self.info = info
        self.number: int = info["number"]
        self.params: Params = info.get("params", {})
        self._constraints: Optional[Dict[str, float]] = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.study.name!r}, {self.number}, {self.state.value!r})"

    def __getitem__(self, name: str) -> Any:
        return self.params[name]

    @property
    def state(self) -> TrialState:
        """The trial's state (a TrialState, equal to the API's string)."""
        return TrialState(self.info.get("state", "running"))

    @property
    def value(self) -> Optional[float]:
        """The value (complete trials; a pruned trial's last report), or None."""
        return self.info.get("value")

    @property
    def values(self) -> Optional[List[float]]:
        """The objectives' values in the study's order (one objective:
        [value]), or None until complete (Optuna's spelling)."""
        told = self.info.get("values")
        if told:
            names = self.study.objective_names
            if all(n in told for n in names):
                return [told[n] for n in names]
            return None
        v = self.value
        return None if v is None else [v]

    @property
    def values_dict(self) -> Dict[str, float]:
        """The objectives' values by name ({} until complete)."""
        told = self.info.get("values")
        if told is not None:
            return dict(told)
        v = self.value
        return {} if v is None else {self.study.objective_names[0]: v}

    @property
    def constraints(self) -> Dict[str, float]:
        """The told constraint values by name ({} when none)."""
        return dict(self.info.get("constraints") or {})

    @property
    def feasible(self) -> bool:
        """Complete and within every declared constraint (the API's
        "feasible"; a study without constraints: every complete trial)."""
        f = self.info.get("feasible")
        if isinstance(f, bool):
            return f
        return self.state == TrialState.COMPLETE

    @property
    def intermediate(self) -> List[Dict[str, Any]]:
        """Reports as the API lists them: [{"step": s, "value": v}, ...]."""
        return self.info.get("intermediate", [])

    @property
    def intermediate_values(self) -> Dict[int, float]:
        """Reports as {step: value} (Optuna's)."""
        return {r["step"]: r["value"] for r in self.intermediate}

    @property
    def last_step(self) -> Optional[int]:
        """The highest reported step, or None."""
        steps = [r["step"] for r in self.intermediate]
        return max(steps) if steps else None

    @property
    def user_attrs(self) -> Dict[str, Any]:
        """The trial's user attrs."""
        return self.info.get("user_attrs") or {}

    @property
    def system_attrs(self) -> Dict[str, Any]:
        """The daemon's bookkeeping that is set: worker, retry_of."""
        return {k: self.info[k] for k in ("worker", "retry_of") if self.info.get(k) is not None}

    @property
    def datetime_start(self) -> Optional[datetime.datetime]:
        """When the trial was handed out (None while waiting)."""
        return _parse_time(self.info.get("started_at"))

    @property
    def datetime_complete(self) -> Optional[datetime.datetime]:
        """When it finished (None while not finished)."""
        return _parse_time(self.info.get("completed_at"))

    @property
    def duration(self) -> Optional[datetime.timedelta]:
        """datetime_complete - datetime_start, or None."""
        a, b = self.datetime_start, self.datetime_complete
        return b - a if a is not None and b is not None else None

    @property
    def distributions(self) -> Dict[str, Dict[str, Any]]:
        """The declared spec (a dict as in docs/REFERENCE.md) of each param the trial has."""
        return {k: self.study._space[k] for k in self.params if k in self.study._space}


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _same_number(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = float(a), float(b)
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def _same_value(a: Any, b: Any) -> bool:
    """JSON equality, numbers by value, booleans only equal to booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, numbers.Number) and isinstance(b, numbers.Number):
        return float(a) == float(b)  # type: ignore[arg-type]
    return bool(type(a) is type(b) and a == b)


class Trial(FrozenTrial):
    """A trial being run: Optuna's suggest_*/report/should_prune/
    set_user_attr, and tell/fail/prune/heartbeat for explicit control.

    The daemon assigned every param at ask: suggest_* returns that value
    after checking that the call matches the study's declared param."""

    def __init__(self, study: Study, info: Dict[str, Any]) -> None:
        super().__init__(study, info)
        self._prune = False

    def _path(self, rest: str) -> str:
        return self.study._path(f"/trials/{self.number}{rest}")

    # -- suggest --------------------------------------------------------------

    def _declared(self, name: str, kind: str, call: str) -> Dict[str, Any]:
        spec = self.study._space.get(name)
        if spec is None:
            declared = ", ".join(sorted(self.study._space)) or "none"
            raise SearchSpaceError(f"{call}: study {self.study.name!r} declares no param {name!r} "
                                   f"(declared: {declared})")
        if spec.get("type") != kind:
            raise SearchSpaceError(f"{call}: param {name!r} of study {self.study.name!r} is "
                                   f"declared {spec.get('type')}, not {kind}: {_show(spec)}")
        if spec.get("size") is not None:
            raise SearchSpaceError(f"{call}: param {name!r} is a vector of {spec['size']} floats: "
                                   f"read it with trial.vector({name!r})")
        if name not in self.params:
            raise SearchSpaceError(f"{call}: param {name!r} is inactive in trial {self.number}: "
                                   f"its condition {json.dumps(spec.get('when'))} does not hold "
                                   f"for this trial's params {json.dumps(self.params)}")
        return spec

    def _mismatch(self, call: str, name: str, what: str, spec: Dict[str, Any]) -> SearchSpaceError:
        return SearchSpaceError(f"{call}: {what} differs from the study's declared param: "
                                f"{_show(spec)}")

    def suggest_float(self, name: str, low: float, high: float, *, step: Optional[float] = None,
                      log: bool = False) -> float:
        """The float hpod assigned to name. SearchSpaceError unless the study
        declares name as a float with these low, high, step and log."""
        call = f"suggest_float({name!r}, {low!r}, {high!r}, step={step!r}, log={log!r})"
        spec = self._declared(name, "float", call)
        if not (_same_number(low, spec["low"]) and _same_number(high, spec["high"])):
            raise self._mismatch(call, name, "low/high", spec)
        if bool(log) != bool(spec.get("log", False)):
            raise self._mismatch(call, name, "log", spec)
        if not _same_number(step, spec.get("step")):
            raise self._mismatch(call, name, "step", spec)
        return float(self.params[name])

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        """The int hpod assigned to name. SearchSpaceError unless the study
        declares name as an int with these low, high, step and log."""
        call = f"suggest_int({name!r}, {low!r}, {high!r}, step={step!r}, log={log!r})"
        spec = self._declared(name, "int", call)
        if not (_same_number(low, spec["low"]) and _same_number(high, spec["high"])):
            raise self._mismatch(call, name, "low/high", spec)
        if bool(log) != bool(spec.get("log", False)):
            raise self._mismatch(call, name, "log", spec)
        if not _same_number(step, spec.get("step", 1)):
            raise self._mismatch(call, name, "step", spec)
        return int(self.params[name])

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """The choice hpod assigned to name (the matching element of
        choices). SearchSpaceError unless the study declares name as a
        categorical with the same choices (in any order)."""
        choices = list(choices)
        call = f"suggest_categorical({name!r}, {choices!r})"
        spec = self._declared(name, "categorical", call)
        declared = spec.get("choices", [])
        same = len(choices) == len(declared) and all(
            any(_same_value(c, d) for d in declared) for c in choices)
        if not same:
            raise self._mismatch(call, name, "choices", spec)
        assigned = self.params[name]
        for c in choices:
            if _same_value(c, assigned):
                return c
        return assigned

    def suggest_uniform(self, name: str, low: float, high: float) -> float:
        """Optuna's deprecated suggest_uniform: suggest_float(name, low, high)."""
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> float:
        """Optuna's deprecated suggest_loguniform: suggest_float(..., log=True)."""
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> float:
        """Optuna's deprecated suggest_discrete_uniform: suggest_float(..., step=q)."""
        return self.suggest_float(name, low, high, step=q)

    # -- reports and attrs ----------------------------------------------------

    def report(self, value: float, step: int) -> bool:
        """Report an intermediate value at step (Optuna's order: value,
        step); returns the pruner's decision (True: stop and raise
        TrialPruned), also kept for should_prune(). Also a heartbeat.

        Positional (int, float) arguments are read as (step, value), the
        order of hpod_client 0.1 (a step is never a float); write
        report(value=..., step=...) to be explicit. A value that is not
        finite raises ValueError."""
        if _is_int(value) and not _is_int(step) and isinstance(step, numbers.Real):
            value, step = step, value
        if not _is_int(step) or int(step) < 0:
            raise ValueError("a report's step must be an integer >= 0, got %r" % (step,))
        value = float(value)
        if not math.isfinite(value):
            raise ValueError("a reported value must be finite, got %r" % value)
        answer = self.study.client.request("POST", self._path("/report"),
                                           {"step": int(step), "value": value})
        self._prune = bool(answer["prune"])
        return self._prune

    def should_prune(self) -> bool:
        """The pruner's decision at the last report (False before any)."""
        return self._prune

    def set_user_attr(self, key: str, value: Any) -> None:
        """Set one user attr of this trial now (PATCH, merged; None removes
        the key). Works on running and finished trials."""
        self.set_user_attrs({key: value})

    def set_user_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Merge attrs into the trial's user attrs (None values remove keys)."""
        answer = self.study.client.request("PATCH", self._path(""), {"user_attrs": dict(attrs)})
        if isinstance(answer, dict) and "number" in answer:
            self.info = answer
            self.params = answer.get("params", self.params)
        else:
            merged = dict(self.user_attrs)
            for k, v in attrs.items():
                if v is None:
                    merged.pop(k, None)
                else:
                    merged[k] = v
            self.info["user_attrs"] = merged

    # -- explicit control ---------------------------------------------------

    def heartbeat(self) -> None:
        """Tell the daemon the trial is alive (studies with heartbeat_timeout)."""
        self.study.client.request("POST", self._path("/heartbeat"))

    def set_constraints(self, constraints: Union[Mapping[str, float], Sequence[float]]) -> None:
        """Constraint values to send with this trial's tell (also the one
        optimize() makes): a dict by name, or a sequence in the study's
        declared order. Set again to replace; those not given count as not
        told (the trial is then infeasible)."""
        self._constraints = self._constraint_dict(constraints)

    def set_constraint(self, name: str, value: float) -> None:
        """One constraint value for this trial's tell (see set_constraints)."""
        merged = dict(self._constraints or {})
        merged.update(self._constraint_dict({name: value}))
        self._constraints = merged

    def _constraint_dict(self, c: Union[Mapping[str, float], Sequence[float]]) -> Dict[str, float]:
        declared = [d["name"] for d in self.study.constraints]
        if isinstance(c, Mapping):
            items = list(c.items())
        else:
            if len(c) != len(declared):
                raise ValueError("%d constraint values for %d declared constraints (%s)"
                                 % (len(c), len(declared), ", ".join(declared)))
            items = list(zip(declared, c))
        out = {}
        for k, v in items:
            if declared and k not in declared:
                raise ValueError("the study declares no constraint %r (it has %s)"
                                 % (k, ", ".join(declared)))
            x = float(v)
            if not math.isfinite(x):
                raise ValueError("constraint %r must be finite, got %r" % (k, v))
            out[k] = x
        return out

    def tell(self, value: Union[float, Mapping[str, float], Sequence[float]],
             gradient: Optional[Mapping[str, Any]] = None,
             user_attrs: Optional[Mapping[str, Any]] = None,
             constraints: Optional[Union[Mapping[str, float], Sequence[float]]] = None) -> None:
        """Complete the trial with value (and optionally a gradient dict).
        With several objectives value is a dict by name or a sequence in the
        objectives' order. constraints (else those of set_constraints) go
        with it. A value that is not finite raises ValueError: use fail()
        instead. Resent when the answer is lost (telling the same result is
        200)."""
        body: Dict[str, Any]
        if isinstance(value, (Mapping, list, tuple)):
            named, why = self.study._values_by_name(value)
            if named is None:
                raise ValueError(why)
            body = {"values": named}
        else:
            if not math.isfinite(value):
                raise ValueError("a trial's value must be finite, got %r" % value)
            body = {"value": float(value)}
        cons = self._constraint_dict(constraints) if constraints is not None else self._constraints
        if cons:
            body["constraints"] = cons
        if gradient is not None:
            body["gradient"] = dict(gradient)
        if user_attrs is not None:
            body["user_attrs"] = dict(user_attrs)
        self.info = self.study.client.request("POST", self._path("/tell"), body)

    def fail(self) -> None:
        """End the trial as failed."""
        self.info = self.study.client.request("POST", self._path("/tell"), {"state": "failed"})

    def prune(self) -> None:
        """End the trial as pruned (its value is its last report)."""
        self.info = self.study.client.request("POST", self._path("/tell"), {"state": "pruned"})

    def refresh(self) -> "Trial":
        """Fetch the trial again."""
        self.info = self.study.client.request("GET", self._path(""))
        self.params = self.info.get("params", self.params)
        return self

    def put_gradient(self, name: str, values: Any) -> None:
        """Upload one parameter's gradient as little-endian float64, for the
        tell that follows. values: a sequence of floats, or a buffer of
        float64 (a numpy array, array.array("d")), which is sent from its own
        memory without a copy."""
        self.study.client.request("PUT", self._path("/gradient/" + _quote(name)),
                                  data=_float64_wire(values),
                                  content_type="application/octet-stream")

    def vector(self, name: str) -> List[float]:
        """A vector param's values as a list, fetching large ones (given as
        an href) in binary."""
        v = self.params[name]
        if isinstance(v, list):
            return v
        return self.vector_array(name).tolist()

    def vector_array(self, name: str) -> "array.array[float]":
        """A vector param's values as an array.array("d") (no Python float per
        element: numpy.asarray() of it shares its memory), fetching large ones
        (given as an href) in binary."""
        v = self.params[name]
        if isinstance(v, list):
            return array.array("d", v)
        got = self.study.client.request("GET", v["href"], accept="application/octet-stream",
                                        sink=_float64_sink)
        if not isinstance(got, array.array):
            raise HpodError("bad_response", "a vector of %d bytes is not float64"
                            % len(got or b""), 200)
        if sys.byteorder != "little":
            got.byteswap()
        return got


def _show(spec: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in spec.items()}, separators=(", ", ": "))


# ---------------------------------------------------------------------------
# Module-level, Optuna-shaped functions


def _client_for(storage: Union[None, str, Client]) -> Client:
    if isinstance(storage, Client):
        return storage
    return Client(storage)


def create_study(*, storage: Union[None, str, Client] = None, sampler: Optional[Mapping[str, Any]] = None,
                 pruner: Optional[Mapping[str, Any]] = None, study_name: Optional[str] = None,
                 direction: Union[None, str, StudyDirection] = None, load_if_exists: bool = False,
                 directions: Optional[Sequence[Union[str, StudyDirection]]] = None,
                 params: Any = None, **fields: Any) -> Study:
    """Optuna's create_study against hpod.

    storage: the daemon's URL (default $HPOD_URL, else
    http://127.0.0.1:8080) or a Client. params: the search space, which hpod
    declares up front: a list of specs as in docs/REFERENCE.md or {name: spec} (see
    hpod_client.distributions). sampler and pruner: dicts as in docs/REFERENCE.md, or
    hpod_client.samplers / hpod_client.pruners. Other keyword fields
    (heartbeat_timeout, max_trials, user_attrs, reference_point, ...) go
    into the definition.

    Several objectives: directions=["minimize", "maximize"] (named
    values_0, values_1, ... unless objective_names=[...] names them), or
    objectives={"error": "minimize", "latency_ms": "minimize"} (or the
    API's list of {"name", "direction"}). Constraints:
    constraints={"memory_gb": {"max": 16}} (or the API's list); each trial
    tells its constraint values with trial.set_constraints({...}).

    A new name creates the study. An existing study of that name with the
    same definition raises DuplicatedStudyError, or is loaded with
    load_if_exists=True; with another definition, HpodError("conflict")
    names the field that differs. With load_if_exists=True and no params,
    the existing study is loaded as it is.
    """
    client = _client_for(storage)
    objectives = fields.pop("objectives", None)
    objective_names = fields.pop("objective_names", None)
    constraints = fields.pop("constraints", None)
    if directions is not None:
        if direction is not None or objectives is not None:
            raise ValueError("give one of direction, directions and objectives")
        if len(directions) == 1 and objective_names is None:
            direction = directions[0]
        else:
            names = list(objective_names or ["values_%d" % i for i in range(len(directions))])
            if len(names) != len(directions):
                raise ValueError("objective_names and directions differ in length")
            objectives = [{"name": n, "direction": str(StudyDirection(d))}
                          for n, d in zip(names, directions)]
    elif objective_names is not None:
        raise ValueError("objective_names goes with directions")
    if isinstance(objectives, Mapping):
        objectives = [{"name": n, "direction": str(StudyDirection(d))}
                      for n, d in objectives.items()]
    if isinstance(constraints, Mapping):
        constraints = [dict({"name": n}, **dict(b)) for n, b in constraints.items()]
    name = study_name or "no-name-" + str(uuid.uuid4())
    if params is None:
        if load_if_exists and study_name:
            return client.load_study(name)
        raise ValueError("hpod studies declare their search space up front: pass params=[...] "
                         "(or load_if_exists=True with the name of an existing study)")
    body: Dict[str, Any] = {"name": name, "params": _normalize_space(params)}
    if direction is not None:
        body["direction"] = str(StudyDirection(direction))
    if objectives is not None:
        body["objectives"] = [dict(o) for o in objectives]
    if constraints is not None:
        body["constraints"] = [dict(c) for c in constraints]
    if sampler is not None:
        body["sampler"] = dict(sampler)
    if pruner is not None:
        body["pruner"] = dict(pruner)
    body.update(fields)
    # Resent after a lost answer only when loading is fine: a resent create
    # of a study the first attempt made would answer 200 ("exists").
    status, info = client.call("POST", "/v1/studies", body, idempotent=load_if_exists)
    if status == 200 and not load_if_exists:
        raise DuplicatedStudyError("duplicated_study",
                                   f"study {name!r} exists (load_if_exists=True loads it)", status)
    return Study(client, info)


def load_study(*, study_name: Optional[str] = None, storage: Union[None, str, Client] = None,
               sampler: Any = None, pruner: Any = None) -> Study:
    """Optuna's load_study: the existing study (not_found otherwise).
    study_name may be left out when the daemon holds exactly one study.
    sampler and pruner are fixed at creation in hpod: they must be None."""
    if sampler is not None or pruner is not None:
        raise ValueError("hpod keeps a study's sampler and pruner from its creation: "
                         "load_study takes neither")
    client = _client_for(storage)
    if study_name is None:
        names = [s["name"] for s in client.studies()]
        if len(names) != 1:
            raise ValueError(f"study_name is needed: the daemon holds {len(names)} studies")
        study_name = names[0]
    return client.load_study(study_name)


def delete_study(*, study_name: str, storage: Union[None, str, Client] = None) -> None:
    """Delete a study and its trials."""
    _client_for(storage).delete_study(study_name)


def get_all_study_names(storage: Union[None, str, Client] = None) -> List[str]:
    """Every study's name, sorted."""
    return [s["name"] for s in _client_for(storage).studies()]
