"""pes_rl: evolution strategies on partial episodes (ES, TES, PES, NRES) in JAX."""

from pes_rl import agents, envs, policies

__all__ = ["agents", "envs", "policies"]
