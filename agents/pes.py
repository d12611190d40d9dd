"""Persistent Evolution Strategies (Vicol, Metz & Sohl-Dickstein, ICML 2021), Algorithm 2.

Each particle keeps its own env state across windows and an accumulator ξ = Σ ε of every
perturbation it used since its episode began. A window's reward is credited to ξ + ε, which
makes the estimate unbiased for the gradient through the whole episode, not just the window.
When an episode ends inside a window, the episode it starts runs on a perturbation ε′ drawn
for it alone, its reward is credited to ε′, and ξ restarts from ε′. Crediting the window's ε
instead (the paper's Algorithm 2 with resets) would credit a perturbation that moved the end
with the episode the end started: where the policy decides when an episode ends, that
estimates the gradient of the reward rate, not of the episode's return. A particle that ends
a second time in a window waits for the next (:func:`pes_rl.stepping.engine.unroll`).

References: https://arxiv.org/abs/2112.13835
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pes_rl import normalization
from pes_rl.agents.base import Estimator, WindowWeights, after_end_key, episode_accumulator
from pes_rl.stepping import engine


class PESState(NamedTuple):
    particles: engine.Particles  # [N, ...] persistent env states, clocks, episode returns
    xi: jax.Array  # [N, D] ε summed since each particle's episode began
    obs_norm: normalization.ObsNormState | None


class PES(Estimator):
    """PES: persistent particles, per-window ε, reward credited to the accumulated ξ."""

    name = "pes"
    supports_sync_pairs = True

    def _init(self, key, theta, obs_norm):
        reset_key, eps_key, stagger_key = jax.random.split(key, 3)
        particles = self.reset_population(reset_key)
        xi = jnp.zeros((self.num_particles, theta.size))
        if self.stagger:
            eps = self.sample_perturbations(eps_key, theta.size)
            eps_after_end = self.sample_perturbations(after_end_key(eps_key), theta.size)
            particles, window = self.staggered_start(
                stagger_key, particles, theta + eps, obs_norm, theta + eps_after_end
            )
            xi = episode_accumulator(xi, eps, window, eps_after_end)
        return PESState(particles, xi, obs_norm)

    def _window(self, state, theta, key, length):
        eps_key, unroll_key = jax.random.split(key)
        eps = self.sample_perturbations(eps_key, theta.size)
        eps_after_end = self.sample_perturbations(after_end_key(eps_key), theta.size)
        particles, window = self.unroll(
            state.particles,
            theta + eps,
            unroll_key,
            length,
            theta_after_end=theta + eps_after_end,
            reset_group=self.reset_group,
            obs_norm=state.obs_norm,
        )
        weights = WindowWeights(first=state.xi + eps, rest=eps_after_end)
        xi = episode_accumulator(state.xi, eps, window, eps_after_end)
        return state._replace(particles=particles, xi=xi), weights, window
