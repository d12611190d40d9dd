"""Small deterministic and stochastic JAX envs written for the tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from pes_rl.envs.base import Env, EnvSpec, State


class RandomLengthEpisodes(Env):
    """Reward = action + step index; each episode lasts a random min_length..max_length steps.

    Episodes of different particles end at different steps, inside windows, which is what the
    engine's per-particle bookkeeping must get right.
    """

    def __init__(self, max_length: int = 4, horizon: int | None = None, min_length: int = 1):
        self.min_length, self.max_length = min_length, max_length
        self.spec = EnvSpec(
            observation_space=spaces.Box(-np.inf, np.inf, (2,), np.float32),
            action_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            horizon=horizon,
        )

    def reset(self, key: jax.Array) -> State:
        length = jax.random.randint(key, (), self.min_length, self.max_length + 1)
        inner = {"t": jnp.zeros((), jnp.int32), "length": length}
        return State(inner, self._obs(inner), jnp.zeros(()), jnp.zeros(()))

    def step(self, state: State, action: jax.Array) -> State:
        t = state.inner["t"] + 1
        inner = {"t": t, "length": state.inner["length"]}
        reward = jnp.reshape(action, ()) + t.astype(jnp.float32)
        done = (t >= state.inner["length"]).astype(jnp.float32)
        return state.replace(inner=inner, obs=self._obs(inner), reward=reward, done=done)

    @staticmethod
    def _obs(inner) -> jax.Array:
        return jnp.stack([inner["t"], inner["length"]]).astype(jnp.float32)


class NaNAfter(Env):
    """Influence balancing whose reward turns NaN once the particle has taken ``steps`` steps."""

    def __init__(self, steps: int = 100):
        from pes_rl.envs.influence_balancing import InfluenceBalancing

        self.base = InfluenceBalancing()
        self.steps = steps
        self.spec = self.base.spec

    def reset(self, key: jax.Array) -> State:
        return self.base.reset(key)

    def step(self, state: State, action: jax.Array) -> State:
        state = self.base.step(state, action)
        bad = state.inner["t"] > self.steps
        return state.replace(reward=jnp.where(bad, jnp.nan, state.reward))
