"""Log verbosity in Optuna's spelling (optuna.logging.set_verbosity).

hpod_client logs to the standard logger "hpod_client" (a warning per trial
that optimize() fails: caught exceptions, non-numeric results).
"""

from __future__ import annotations

import logging as _logging

CRITICAL = _logging.CRITICAL
FATAL = _logging.FATAL
ERROR = _logging.ERROR
WARNING = _logging.WARNING
WARN = _logging.WARN
INFO = _logging.INFO
DEBUG = _logging.DEBUG


def set_verbosity(level: int) -> None:
    """Set the level of the "hpod_client" logger."""
    _logging.getLogger("hpod_client").setLevel(level)


def get_verbosity() -> int:
    """The effective level of the "hpod_client" logger."""
    return _logging.getLogger("hpod_client").getEffectiveLevel()


__all__ = ["set_verbosity", "get_verbosity", "CRITICAL", "FATAL", "ERROR", "WARNING", "WARN",
           "INFO", "DEBUG"]
