"""Trial types, where Optuna code looks for them (optuna.trial.TrialState)."""

from ._client import FrozenTrial, Trial, TrialState

__all__ = ["Trial", "FrozenTrial", "TrialState"]
