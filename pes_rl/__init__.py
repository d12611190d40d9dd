"""pes_rl: evolution strategies on partial episodes (ES, TES, PES, NRES, hybrid) in JAX."""

from pes_rl import agents, envs, policies
from pes_rl.trainer import TrainingDiverged, TrainingInterrupted, TrainResult, TrainState, train

__all__ = [
    "TrainResult", "TrainState", "TrainingDiverged", "TrainingInterrupted", "agents", "envs",
    "policies", "train",
]  # fmt: skip
