"""Our JAX envs seen as ``gymnasium.Env``s, so ``gymnasium.make("pes_rl.envs:<Id>")`` works."""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import numpy as np

from pes_rl.envs.base import Env


class JaxAsGymnasiumEnv(gymnasium.Env):
    """Steps a pes_rl JAX env one observation at a time through jitted ``reset``/``step``."""

    metadata = {"render_modes": []}

    def __init__(self, env_id: str, render_mode: str | None = None, **env_kwargs: Any):
        from pes_rl.envs.registry import make

        if render_mode is not None:
            raise ValueError(f"render_mode must be None for {env_id!r}: it has no renderer")
        self.render_mode = None
        self._env: Env = make(env_id, **env_kwargs)
        self.observation_space = self._env.spec.observation_space
        self.action_space = self._env.spec.action_space
        self._reset = jax.jit(self._env.reset)
        self._step = jax.jit(self._env.step)
        self._state = None
        self._key = jax.random.key(0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._key = jax.random.key(seed)
        self._key, reset_key = jax.random.split(self._key)
        self._state = self._reset(reset_key)
        return self._obs(), {}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        self._state = self._step(self._state, np.asarray(action, np.float32))
        done = bool(self._state.done)
        truncated = done and bool(self._state.info.get("truncation", 0.0))
        return self._obs(), float(self._state.reward), done and not truncated, truncated, {}

    def _obs(self) -> np.ndarray:
        return np.asarray(self._state.obs, dtype=self.observation_space.dtype)
