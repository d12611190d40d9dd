"""Evolution strategies on whole episodes (Salimans et al., 2017; the "ES" baseline of PES).

Every window starts fresh episodes for all particles, in lockstep, and runs them to the end
(K = T) with a new ε per window. A particle whose episode terminates early stops and is
masked out: only its real env steps are counted. On a never-ending system the "episode" is
the first ``unroll_length`` steps from a reset.

References: https://arxiv.org/abs/1703.03864
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from pes_rl import normalization
from pes_rl.agents.base import Estimator, WindowWeights
from pes_rl.checks import SettingError


class ESState(NamedTuple):
    obs_norm: normalization.ObsNormState | None  # ES keeps nothing else between windows


class ES(Estimator):
    """Full-episode ES: fresh episodes each window, ε credited with the whole return."""

    name = "es"
    supports_stagger = False
    supports_curriculum = False

    def _check_unroll_length(self, unroll_length: int | None) -> int:
        horizon = self.env.spec.horizon
        if horizon is None:
            if unroll_length is None:
                raise SettingError(
                    "{unroll_length} is required for es on a never-ending env: an int >= 1 "
                    "(the number of steps unrolled from each reset)"
                )
            return unroll_length
        if unroll_length not in (None, horizon):
            raise SettingError(
                f"es unrolls whole episodes: {{unroll_length}} must be null or the env horizon "
                f"{horizon}, got {unroll_length}; use tes, pes or nres for partial episodes"
            )
        return horizon

    def _init(self, key, theta, obs_norm):
        del key, theta  # every window starts from fresh episodes
        return ESState(obs_norm)

    def _window(self, state, theta, key, length):
        reset_key, eps_key, unroll_key = jax.random.split(key, 3)
        particles = self.reset_population(reset_key)
        eps = self.sample_perturbations(eps_key, theta.size)
        _, window = self.unroll(
            particles,
            theta + eps,
            unroll_key,
            length,
            reset_group=self.reset_group,
            autoreset=False,
            obs_norm=state.obs_norm,
        )
        return state, WindowWeights(first=eps, rest=eps), window
