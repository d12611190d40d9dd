"""Truncated evolution strategies: Algorithm 1 of the PES paper (Vicol et al., 2021).

One shared trajectory advances with unperturbed θ. Every window, all particles restart from
the shared state, unroll K steps with θ + ε (a new ε per window) and credit the window's
reward to ε; then the shared state is advanced K steps with θ. TES ignores how θ influenced
the state before the window, so it is biased: on influence balancing it moves θ the wrong way.

Host (Gymnasium) envs cannot copy one state into every particle: there each particle continues
its own state and credits each window to that window's ε alone (no accumulator).

References: https://arxiv.org/abs/2112.13835
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pes_rl import engine, normalization
from pes_rl.agents.base import Estimator, WindowWeights


class TESState(NamedTuple):
    shared: engine.Particles  # [1, ...] the trajectory driven by θ ([N, ...] on host envs)
    obs_norm: normalization.ObsNormState | None


class TES(Estimator):
    """TES: particles restart every window from the shared state."""

    name = "tes"

    def _init(self, key, theta, act, obs_norm):
        reset_key, stagger_key, clock_key = jax.random.split(key, 3)
        if self.host:
            return TESState(self.reset_population(reset_key), obs_norm)
        shared = engine.reset_particles(self.env, reset_key[None])
        if self.stagger:
            start = jax.random.randint(clock_key, (1,), 0, self.env.spec.horizon)
            shared, _ = engine.unroll(
                self.env, act, shared, theta[None], stagger_key, self.env.spec.horizon - 1,
                step_limit=start, obs_norm=obs_norm,
            )  # fmt: skip
        return TESState(shared, obs_norm)

    def _window(self, state, theta, key, act, length):
        eps_key, unroll_key = jax.random.split(key)
        eps = self.sample_perturbations(eps_key, theta.size)
        weights = WindowWeights(first=eps, rest=eps)
        if self.host:
            particles, window = self.unroll(
                act, state.shared, theta + eps, unroll_key, length,
                reset_group=self.reset_group, obs_norm=state.obs_norm,
            )  # fmt: skip
            return state._replace(shared=particles), weights, window
        particles = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (self.num_particles, *x.shape[1:])), state.shared
        )
        # Every particle and the shared trajectory reset from the same keys (common randomness).
        same_group = jnp.zeros(self.num_particles, jnp.int32)
        _, window = self.unroll(
            act, particles, theta + eps, unroll_key, length,
            reset_group=same_group, obs_norm=state.obs_norm,
        )  # fmt: skip
        shared, _ = self.unroll(
            act, state.shared, theta[None], unroll_key, length,
            reset_group=same_group[:1], obs_norm=state.obs_norm,
        )  # fmt: skip
        return state._replace(shared=shared), weights, window

    def _extra_env_steps(self, length):
        if self.host:
            return 0
        return length.steps if length.limit is None else length.limit
