"""Samplers in Optuna's spelling: each returns the sampler object of docs/REFERENCE.md.

TPESampler(seed=7, n_startup_trials=5) is {"type": "tpe", "seed": 7,
"n_startup_trials": 5}. Options are docs/REFERENCE.md's (mostly Optuna's names); the
daemon rejects unknown ones with invalid_argument naming the option.
"""

from __future__ import annotations

from typing import Any, Dict


def TPESampler(**options: Any) -> Dict[str, Any]:
    """hpod's TPE (options: seed, n_startup_trials, n_ei_candidates, multivariate, ...)."""
    return dict(options, type="tpe")


def RandomSampler(**options: Any) -> Dict[str, Any]:
    """Uniform random sampling (option: seed)."""
    return dict(options, type="random")


def GPSampler(**options: Any) -> Dict[str, Any]:
    """Gaussian-process sampler (seed, n_startup_trials, acquisition, ...)."""
    return dict(options, type="gp")


def GradientSampler(**options: Any) -> Dict[str, Any]:
    """hpod's gradient sampler (optimizer, lr, ...): trials tell gradients."""
    return dict(options, type="gradient")


__all__ = ["TPESampler", "RandomSampler", "GPSampler", "GradientSampler"]
