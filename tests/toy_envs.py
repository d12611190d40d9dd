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


class GeometricEpisodes(Env):
    """x ← x + θ, reward −(x − 1)²; each step ends the episode with probability ``end_prob``.

    Terminations are random and independent of θ, so the exact expected window reward is a
    sum over the episode-clock distribution (see ``exact_window_gradients``).
    """

    def __init__(self, end_prob: float = 0.2, horizon: int = 10):
        self.end_prob = end_prob
        self.spec = EnvSpec(
            observation_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            action_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            horizon=horizon,
            differentiable=True,
            default_action=np.array([0.3], np.float32),
        )

    def reset(self, key: jax.Array) -> State:
        inner = {"x": jnp.zeros(()), "key": key}
        return State(inner, jnp.zeros(1), jnp.zeros(()), jnp.zeros(()))

    def step(self, state: State, action: jax.Array) -> State:
        key, end_key = jax.random.split(state.inner["key"])
        x = state.inner["x"] + jnp.reshape(action, ())
        done = (jax.random.uniform(end_key) < self.end_prob).astype(jnp.float32)
        return state.replace(
            inner={"x": x, "key": key}, obs=x[None], reward=-((x - 1.0) ** 2), done=done
        )

    def exact_window_gradients(self, theta: float, unroll_length: int) -> np.ndarray:
        """∇θ E[window reward | the window starts at episode clock c], for c in [0, T).

        Under constant θ, step s of an episode gives reward f(s) = −(sθ − 1)², so
        ∂f/∂θ = −2(sθ − 1)s; the clock moves c → c + 1, and back to 0 on a random end
        (probability ``end_prob``) or at the horizon.
        """
        horizon = self.spec.horizon
        grads = np.zeros(horizon)
        for start in range(horizon):
            clock_dist = np.zeros(horizon)
            clock_dist[start] = 1.0
            for _ in range(unroll_length):
                steps = np.arange(1, horizon + 1)
                grads[start] += clock_dist @ (-2.0 * (steps * theta - 1.0) * steps)
                survive = clock_dist * (1.0 - self.end_prob)
                next_dist = np.zeros(horizon)
                next_dist[1:] = survive[:-1]  # clock c → c + 1 < T
                next_dist[0] = clock_dist.sum() - survive[:-1].sum()  # ended: random or at T
                clock_dist = next_dist
        return grads
