"""Truncated evolution strategies: Algorithm 1 of the PES paper (Vicol et al., 2021).

One shared trajectory advances with unperturbed θ. Every window, all particles restart from
the shared state, unroll K steps with θ + ε (a new ε per window) and credit the window's
reward to ε; then the shared state is advanced K steps with θ. TES ignores how θ influenced
the state before the window, so it is biased: on influence balancing it moves θ the wrong way.

Populations that cannot copy one state into every particle (Gymnasium envs other than MuJoCo's)
run a variant, with a one-line warning: each particle continues its own state and credits each
window to that window's ε alone (no accumulator). MuJoCo envs stepped through Gymnasium copy the
shared state with ``set_state(qpos, qvel)`` and run Algorithm 1.

References: https://arxiv.org/abs/2112.13835
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import numpy as np

from pes_rl import normalization
from pes_rl.agents.base import Estimator, WindowWeights
from pes_rl.stepping import engine


class TESState(NamedTuple):
    shared: engine.Particles  # [1, ...] the trajectory driven by θ ([N, ...] without copies)
    obs_norm: normalization.ObsNormState | None


class TES(Estimator):
    """TES: particles restart every window from the shared state."""

    name = "tes"

    def __init__(self, env, policy, num_particles, sigma, unroll_length=None, **kwargs):
        super().__init__(env, policy, num_particles, sigma, unroll_length, **kwargs)
        self.shared_population = None  # the θ-driven trajectory, where states can be copied
        if self.population.can_copy_state:
            self.shared_population = self.population.shared()
        else:
            warnings.warn(
                f"tes on {env!r}: one state cannot be copied into every particle, so each "
                "particle continues its own state and credits each window to that window's ε "
                "(not the paper's Algorithm 1)",
                stacklevel=3,
            )

    def _init(self, key, theta, obs_norm):
        reset_key, stagger_key, clock_key = jax.random.split(key, 3)
        if self.shared_population is None:
            return TESState(self.reset_population(reset_key), obs_norm)
        shared = self.shared_population.reset(reset_key)
        if self.stagger:
            start = jax.random.randint(clock_key, (1,), 0, self.env.spec.horizon)
            shared, _ = self.shared_population.unroll(
                shared, theta[None], stagger_key, self.env.spec.horizon - 1, step_limit=start,
                obs_norm=obs_norm,
            )  # fmt: skip
        return TESState(shared, obs_norm)

    def _window(self, state, theta, key, length):
        eps_key, unroll_key = jax.random.split(key)
        eps = self.sample_perturbations(eps_key, theta.size)
        weights = WindowWeights(first=eps, rest=eps)
        if self.shared_population is None:
            particles, window = self.unroll(
                state.shared, theta + eps, unroll_key, length,
                reset_group=self.reset_group, obs_norm=state.obs_norm,
            )  # fmt: skip
            return state._replace(shared=particles), weights, window
        particles = self.population.copy_state(self.shared_population, state.shared)
        # Every particle and the shared trajectory reset from the same keys (common randomness).
        same_group = np.zeros(self.num_particles, np.int32)
        _, window = self.unroll(
            particles, theta + eps, unroll_key, length,
            reset_group=same_group, obs_norm=state.obs_norm,
        )  # fmt: skip
        shared, shared_window = self.unroll(
            state.shared, theta[None], unroll_key, length, population=self.shared_population,
            reset_group=same_group[:1], obs_norm=state.obs_norm,
        )  # fmt: skip
        # The shared trajectory's real steps are env steps too (it waits after a second end).
        window = window._replace(env_steps=window.env_steps + shared_window.env_steps)
        return state._replace(shared=shared), weights, window
