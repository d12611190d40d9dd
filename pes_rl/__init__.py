"""pes_rl: evolution strategies on partial episodes (ES, ARS, TES, PES, NRES, hybrid) in JAX.

``pes_rl.train`` and ``pes_rl.load`` are imported when first used, so that ``import
pes_rl.envs`` (or ``pes_rl.agents``) does not load the trainer stack (orbax, Hydra's configs).
"""

from __future__ import annotations

import importlib
from typing import Any

from pes_rl import agents, envs, policies

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
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pes_rl' has no attribute {name!r}")


__all__ = ["agents", "envs", "policies", *_LAZY]
