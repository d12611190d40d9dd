"""Noise-Reuse Evolution Strategies (Li, Harrison, Sohl-Dickstein, Smith & Metz, NeurIPS 2023).

Each particle draws one perturbation ε per episode and reuses it in every window of that
episode; a window's reward is credited to that ε. It is unbiased like PES with lower variance.
When an episode ends inside a window the particle switches to a fresh ε at once, and the
reward after the end is credited to the fresh one. A particle that ends a second time in a
window waits for the next (:func:`pes_rl.stepping.engine.unroll`) and starts it with another
fresh ε: sharing one ε between every episode that starts in a window would credit it with
episodes its own ends started (the reward rate, not the episode's return).

References: https://arxiv.org/abs/2304.12180
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pes_rl import normalization
from pes_rl.agents.base import Estimator, WindowWeights, after_end_key
from pes_rl.stepping import engine


class NRESState(NamedTuple):
    particles: engine.Particles  # [N, ...] persistent env states, clocks, episode returns
    eps: jax.Array  # [N, D] each particle's perturbation, kept for its whole episode
    obs_norm: normalization.ObsNormState | None


class NRES(Estimator):
    """NRES: persistent particles, one ε per episode."""

    name = "nres"
    supports_sync_pairs = True

    def _init(self, key, theta, obs_norm):
        reset_key, eps_key, next_key, stagger_key = jax.random.split(key, 4)
        particles = self.reset_population(reset_key)
        eps = self.sample_perturbations(eps_key, theta.size)
        if self.stagger:
            eps_next = self.sample_perturbations(next_key, theta.size)
            particles, window = self.staggered_start(
                stagger_key, particles, theta + eps, obs_norm, theta_after_end=theta + eps_next
            )
            eps = next_episode_eps(eps, eps_next, window, self.sample_after_wait(next_key, eps))
        return NRESState(particles, eps, obs_norm)

    def _window(self, state, theta, key, length):
        eps_key, unroll_key = jax.random.split(key)
        eps_next = self.sample_perturbations(eps_key, theta.size)
        particles, window = self.unroll(
            state.particles,
            theta + state.eps,
            unroll_key,
            length,
            theta_after_end=theta + eps_next,
            reset_group=self.reset_group,
            obs_norm=state.obs_norm,
        )
        weights = WindowWeights(first=state.eps, rest=eps_next)
        eps = next_episode_eps(
            state.eps, eps_next, window, self.sample_after_wait(eps_key, eps_next)
        )
        return state._replace(particles=particles, eps=eps), weights, window

    def sample_after_wait(self, key: jax.Array, like: jax.Array) -> jax.Array:
        """Fresh perturbations for particles that waited (used only where one did)."""
        return self.sample_perturbations(after_end_key(key), like.shape[1])


def next_episode_eps(eps, eps_next, window: engine.Window, eps_after_wait) -> jax.Array:
    """Each particle's ε for the next window: its own if no episode ended, ``eps_next``
    where one did (the episode that ``eps_next`` started, or one that starts next window:
    ``eps_next`` was not used then), a fresh ``eps_after_wait`` where the particle waited
    (``eps_next`` drove the episode that ended)."""
    eps = jnp.where(window.ended[:, None], eps_next, eps)
    return jnp.where(window.waiting[:, None], eps_after_wait, eps)
