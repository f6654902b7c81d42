"""Exceptions raised by hpod_client (also reachable as hpod_client.exceptions)."""

from __future__ import annotations

from typing import Optional


class HpodError(Exception):
    """An error answer from hpod, or a failure to reach it.

    code: the API's code ("invalid_argument", "not_found", "conflict",
    "exhausted", "method_not_allowed", ...), or, for failures on the client's
    side, "transport" (no answer) or "bad_response" (an answer that is not
    the API's). status: the HTTP status (0 without a response). field: the
    one field at fault, or None. request_id: the answer's X-Request-Id (the
    same id is in the daemon's log), or None.
    """

    def __init__(self, code: str, message: str, status: int = 0, field: Optional[str] = None,
                 request_id: Optional[str] = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))
        self.code = code
        self.message = message
        self.status = status
        self.field = field
        self.request_id = request_id


class DuplicatedStudyError(HpodError):
    """create_study(..., load_if_exists=False) found a study of that name
    (Optuna's exception of the same name). code is "duplicated_study"."""


class TrialPruned(Exception):
    """Raise from an objective to end the trial as pruned (like Optuna's)."""


class SearchSpaceError(ValueError):
    """A suggest_* call that does not match the study's declared space: the
    name is not declared, is inactive in this trial, or its type, bounds,
    log, step or choices differ. The message says which and what the study
    declares."""
