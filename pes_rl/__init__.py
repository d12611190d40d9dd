"""pes_rl: evolution strategies on partial episodes (ES, ARS, TES, PES, NRES, hybrid) in JAX.

Everything here is imported when first used: ``pes_rl.agents``, ``pes_rl.envs`` and
``pes_rl.policies`` (JAX), ``pes_rl.train`` and ``pes_rl.load`` (the trainer stack: orbax,
Hydra's configs). So ``import pes_rl.cli`` takes milliseconds and its Ctrl-C handler is in
place before JAX loads, and ``import pes_rl.envs`` does not load the trainer stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("agents", "envs", "policies")
_LAZY = {  # public name: the module that defines it
    "train": "pes_rl.training.trainer",
    "TrainResult": "pes_rl.training.trainer",
    "TrainState": "pes_rl.training.trainer",
    "TrainingDiverged": "pes_rl.training.trainer",
    "TrainingInterrupted": "pes_rl.training.trainer",
    "load": "pes_rl.after.trained",
    "TrainedPolicy": "pes_rl.after.trained",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"pes_rl.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pes_rl' has no attribute {name!r}")


__all__ = [*_SUBMODULES, *_LAZY]
