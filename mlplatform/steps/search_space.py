"""A search space sampled with Optuna; values come back as written in the spec."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna

from mlplatform.spec import SearchParam


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _encoded_choices(dim: SearchParam) -> tuple[Any, ...]:
    """Optuna stores only None/bool/int/float/str choices: anything else (lists such as
    ``hidden_layers: [[64], [64, 32]]``, mappings) is stored as its JSON text."""
    choices = tuple(dim.choices or ())
    if all(_primitive(c) for c in choices):
        return choices
    return tuple(json.dumps(c, sort_keys=True) for c in choices)


def _decode(dim: SearchParam, stored: Any) -> Any:
    if dim.type != "categorical" or all(_primitive(c) for c in dim.choices or ()):
        return stored
    return json.loads(stored)


def suggest(trial: optuna.Trial, space: Mapping[str, SearchParam]) -> dict[str, Any]:
    """Sample one value per dimension; categorical values come back as written in the spec."""
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.type == "categorical":
            out[name] = _decode(dim, trial.suggest_categorical(name, _encoded_choices(dim)))
        elif dim.type == "int":
            assert dim.low is not None and dim.high is not None
            out[name] = trial.suggest_int(
                name, int(dim.low), int(dim.high), step=max(1, int(dim.step or 1)), log=dim.log
            )
        else:
            assert dim.low is not None and dim.high is not None
            out[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
    return out


def decode_params(space: Mapping[str, SearchParam], stored: Mapping[str, Any]) -> dict[str, Any]:
    """Params as Optuna stored them -> values as written in the spec."""
    return {k: _decode(space[k], v) if k in space else v for k, v in stored.items()}
