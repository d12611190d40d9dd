"""Brax environments on the JAX engine: ``envs.make("brax/ant", backend="generalized")``.

Brax's ``State`` already has the fields the engine reads (``obs``, ``reward``, ``done``), so the
adapter only supplies a spec and leaves time limits and resets to the engine: the episode clock
ends an episode after ``episode_length`` steps, and early termination (Ant, Hopper, Walker2d
falling) ends it per particle.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from gymnasium import spaces

from pes_rl.envs.base import Env, EnvSpec, State
from pes_rl.envs.quiet import quiet_model_loading

BACKENDS = ("generalized", "positional", "spring", "mjx")


class BraxEnv(Env):
    """A Brax env (unwrapped: no episode or auto-reset wrappers) with a pes_rl spec."""

    def __init__(
        self,
        name: str | None = None,
        backend: str = "generalized",
        episode_length: int = 1000,
        *,
        brax_env: Any = None,
        **kwargs,
    ):
        """A registered Brax env by ``name``, or an already built ``brax_env`` object."""
        if brax_env is None:
            with quiet_model_loading():
                from brax import envs as brax_envs

            name = name.removeprefix("brax/")  # env=brax env.id=brax/ant means ant
            if name not in brax_envs._envs:
                raise ValueError(
                    f"unknown Brax env {name!r}: with env=brax, env.id must be one of "
                    f"{sorted(brax_envs._envs)} (in Python: envs.make('brax/<name>'))"
                )
            if backend not in BACKENDS:
                raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
            with quiet_model_loading():
                brax_env = brax_envs.get_environment(name, backend=backend, **kwargs)
        self.brax_env = brax_env
        self.name = name or type(brax_env).__name__
        self.spec = EnvSpec(
            observation_space=spaces.Box(
                -np.inf, np.inf, (self.brax_env.observation_size,), np.float32
            ),
            action_space=spaces.Box(-1.0, 1.0, (self.brax_env.action_size,), np.float32),
            horizon=episode_length,
        )

    def reset(self, key: jax.Array) -> State:
        return self.brax_env.reset(key)

    def step(self, state: State, action: jax.Array) -> State:
        return self.brax_env.step(state, action)

    def __repr__(self) -> str:
        return f"BraxEnv({self.name!r})"
