"""Influence balancing (Tallec & Ollivier, 2017), as used in the PES paper (Vicol et al., 2021).

A 23-dimensional linear system s ← A s + θ·b with A = 0.5·I + 0.5·superdiag and
b = [+1]*10 + [−1]*13, from s_0 = ones. The loss after each step is 0.5·(s[0] − 1)² and the
reward is −loss. θ has a positive short-term and a negative long-term influence on s[0], so
truncated methods move θ the wrong way; the steady state is s[0] = −6θ and the optimum
θ* = −1/6. The action is θ itself (drive it with the ``constant`` policy).

References:
  Tallec & Ollivier, "Unbiasing Truncated Backpropagation Through Time", 2017.
  Vicol, Metz, Sohl-Dickstein, "Unbiased Gradient Estimation in Unrolled Computation Graphs
  with Persistent Evolution Strategies", ICML 2021. https://arxiv.org/abs/2112.13835
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from pes_rl.envs.base import Env, EnvSpec, State

THETA_INIT = 0.5
THETA_OPTIMUM = -1.0 / 6.0


class InfluenceBalancing(Env):
    """The influence-balancing system; never resets unless ``horizon`` is given."""

    def __init__(self, horizon: int | None = None, dim: int = 23, num_positive: int = 10):
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be None (never ends) or an int >= 1, got {horizon}")
        self.dim = dim
        self.b = jnp.concatenate([jnp.ones(num_positive), -jnp.ones(dim - num_positive)])
        self.spec = EnvSpec(
            observation_space=spaces.Box(-np.inf, np.inf, (dim,), np.float32),
            action_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            horizon=horizon,
            differentiable=True,
            default_action=np.array([THETA_INIT], np.float32),
            early_termination=False,  # ends only on the clock, when a horizon is given
        )

    def reset(self, key: jax.Array) -> State:
        del key  # the system always starts from s_0 = ones
        s = jnp.ones(self.dim, jnp.float32)
        return State(
            inner={"s": s, "t": jnp.zeros((), jnp.int32)},
            obs=s,
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), jnp.float32),
            info={"truncation": jnp.zeros((), jnp.float32)},
        )

    def step(self, state: State, action: jax.Array) -> State:
        s, t = state.inner["s"], state.inner["t"] + 1
        theta = jnp.reshape(action, (-1,))[0]
        # A s with A = 0.5·I + 0.5·superdiagonal.
        s = 0.5 * s + 0.5 * jnp.concatenate([s[1:], jnp.zeros(1, s.dtype)]) + theta * self.b
        loss = 0.5 * (s[0] - 1.0) ** 2
        horizon = self.spec.horizon
        done = jnp.zeros((), jnp.float32) if horizon is None else (t >= horizon).astype(jnp.float32)
        return state.replace(
            inner={"s": s, "t": t},
            obs=s,
            reward=-loss,
            done=done,
            info={"truncation": done},
        )
