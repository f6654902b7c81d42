"""Search-space declarations in Optuna's spelling, for create_study(params=...).

Each returns the param spec of docs/REFERENCE.md without its name, so

    params={"lr": FloatDistribution(1e-5, 1e-1, log=True),
            "layers": IntDistribution(1, 8),
            "optimizer": CategoricalDistribution(["adam", "sgd"])}

declares what trial.suggest_float("lr", 1e-5, 1e-1, log=True) and the
others then read. when= (a condition on earlier params) and size= (vector
params) are hpod's own.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence


def _extra(spec: Dict[str, Any], when: Optional[Mapping[str, Sequence[Any]]]) -> Dict[str, Any]:
    if when is not None:
        spec["when"] = {k: list(v) for k, v in when.items()}
    return spec


def FloatDistribution(low: float, high: float, log: bool = False, step: Optional[float] = None, *,
                      when: Optional[Mapping[str, Sequence[Any]]] = None,
                      size: Optional[int] = None) -> Dict[str, Any]:
    """A float param in [low, high]; log scale, or a grid of step."""
    spec: Dict[str, Any] = {"type": "float", "low": low, "high": high}
    if log:
        spec["log"] = True
    if step is not None:
        spec["step"] = step
    if size is not None:
        spec["size"] = size
    return _extra(spec, when)


def IntDistribution(low: int, high: int, log: bool = False, step: int = 1, *,
                    when: Optional[Mapping[str, Sequence[Any]]] = None) -> Dict[str, Any]:
    """An int param in [low, high]; log scale, or every step-th."""
    spec: Dict[str, Any] = {"type": "int", "low": low, "high": high}
    if log:
        spec["log"] = True
    if step != 1:
        spec["step"] = step
    return _extra(spec, when)


def CategoricalDistribution(choices: Sequence[Any], *,
                            when: Optional[Mapping[str, Sequence[Any]]] = None) -> Dict[str, Any]:
    """One of choices (strings, numbers or booleans)."""
    return _extra({"type": "categorical", "choices": list(choices)}, when)


__all__ = ["FloatDistribution", "IntDistribution", "CategoricalDistribution"]
