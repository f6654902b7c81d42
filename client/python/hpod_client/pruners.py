"""Pruners in Optuna's spelling: each returns the pruner object of docs/REFERENCE.md.

MedianPruner(n_startup_trials=5, n_warmup_steps=2) is {"type": "median",
"n_startup_trials": 5, "n_warmup_steps": 2}; the options are Optuna's.
"""

from __future__ import annotations

from typing import Any, Dict


def NopPruner() -> Dict[str, Any]:
    """No pruning."""
    return {"type": "none"}


def MedianPruner(**options: Any) -> Dict[str, Any]:
    """Prune below the median of earlier trials at the same step."""
    return dict(options, type="median")


def PercentilePruner(percentile: float, **options: Any) -> Dict[str, Any]:
    """Prune outside the given percentile of earlier trials."""
    return dict(options, type="percentile", percentile=percentile)


def SuccessiveHalvingPruner(**options: Any) -> Dict[str, Any]:
    """Asynchronous successive halving (hpod's "asha")."""
    return dict(options, type="asha")


def HyperbandPruner(**options: Any) -> Dict[str, Any]:
    """Hyperband."""
    return dict(options, type="hyperband")


__all__ = ["NopPruner", "MedianPruner", "PercentilePruner", "SuccessiveHalvingPruner",
           "HyperbandPruner"]
