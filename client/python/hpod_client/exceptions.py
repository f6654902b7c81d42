"""Exceptions, where Optuna code looks for them (optuna.exceptions.TrialPruned)."""

from ._errors import DuplicatedStudyError, HpodError, SearchSpaceError, TrialPruned

__all__ = ["HpodError", "TrialPruned", "SearchSpaceError", "DuplicatedStudyError"]
