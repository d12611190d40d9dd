"""PES with a decaying accumulator: ξ ← γ·ξ + ε. γ = 1 is PES (unbiased); a smaller γ forgets
older perturbations of the episode (biased, lower variance). Train it with
``python train.py agent.name=examples.decaying_pes:DecayingPES`` (docs/own-estimator.md)."""

import jax
import jax.numpy as jnp

from pes_rl.agents import Estimator, PESState  # PES's state: particles, ξ [N, D], obs_norm
from pes_rl.agents.base import WindowWeights, after_end_key, episode_accumulator


class DecayingPES(Estimator):
    name = "decaying_pes"
    supports_stagger = False  # this example starts every particle at clock 0
    decay = 0.9  # γ

    def _init(self, key, theta, obs_norm):
        xi = jnp.zeros((self.num_particles, theta.size))
        return PESState(self.reset_population(key), xi, obs_norm)

    def _window(self, state, theta, key, length):
        eps_key, unroll_key = jax.random.split(key)
        eps = self.sample_perturbations(eps_key, theta.size)
        # The episode a particle starts after an end inside the window gets its own ε.
        eps_after_end = self.sample_perturbations(after_end_key(eps_key), theta.size)
        particles, window = self.unroll(
            state.particles, theta + eps, unroll_key, length,
            theta_after_end=theta + eps_after_end, reset_group=self.reset_group,
            obs_norm=state.obs_norm,
        )  # fmt: skip
        xi = self.decay * state.xi
        weights = WindowWeights(first=xi + eps, rest=eps_after_end)
        xi = episode_accumulator(xi, eps, window, eps_after_end)
        return state._replace(particles=particles, xi=xi), weights, window
