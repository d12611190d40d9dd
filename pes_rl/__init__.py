"""pes_rl: evolution strategies on partial episodes (ES, TES, PES, NRES, hybrid) in JAX."""

from pes_rl import agents, envs, policies
from pes_rl.trained import TrainedPolicy, load
from pes_rl.trainer import TrainingDiverged, TrainingInterrupted, TrainResult, TrainState, train

__all__ = [
    "TrainResult", "TrainState", "TrainedPolicy", "TrainingDiverged", "TrainingInterrupted",
    "agents", "envs", "load", "policies", "train",
]  # fmt: skip
