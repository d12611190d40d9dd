"""The hybrid estimator of Metz et al. 2019 (Algorithm 1), for differentiable envs.

Per window, every particle unrolls its own persistent state with θ + ε (antithetic pairs ±ε,
a new ε each window). Two unbiased estimates of the gradient of the Gaussian-smoothed window
objective E_ε[R(θ + ε)] come from the same unroll:

* **ES** (antithetic): g_es = mean over pairs of ε·(R(θ+ε) − R(θ−ε)) / (2σ²);
* **reparameterization**: g_rp = mean over particles of ∇R(θ + ε), by autodiff through the
  window's unroll.

They are combined by inverse-variance weighting, g = w·g_rp + (1 − w)·g_es with
w = v_es / (v_es + v_rp), where v is the empirical variance of each mean (the trace of its
covariance, from the per-pair samples). Where the unroll is chaotic, ∇R explodes and w → 0
(ES); where it is smooth, ES's noise makes w → 1. When any reparameterization gradient is
non-finite, that estimate is not trusted at all (w = 0). Like Metz et al., windows are
truncations: the reward of a window is credited to that window's ε only (biased on long
episodes, like TES; grow the window with a curriculum, ``agent.curriculum``).

References:
  Metz, Maheswaranathan, Nixon, Freeman, Sohl-Dickstein, "Understanding and correcting
  pathologies in the training of learned optimizers", ICML 2019. https://arxiv.org/abs/1810.10180
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from pes_rl import normalization
from pes_rl.agents.base import Estimator, WindowLength
from pes_rl.checks import SettingError
from pes_rl.stepping import engine


class HybridState(NamedTuple):
    particles: engine.Particles  # [N, ...] persistent env states, clocks, episode returns
    obs_norm: normalization.ObsNormState | None


class Combined(NamedTuple):
    """The inverse-variance weighted gradient and how it was formed."""

    grad: jax.Array  # [D]
    weight: jax.Array  # shape=(): w, the weight on the reparameterization estimate
    es_variance: jax.Array  # shape=(): trace of the ES mean's covariance
    rp_variance: jax.Array  # shape=(): trace of the reparameterization mean's covariance


def combine(es_samples: jax.Array, rp_samples: jax.Array) -> Combined:
    """Inverse-variance weighting of two [M, D] sets of i.i.d. gradient samples (M ≥ 2)."""
    count = es_samples.shape[0]

    def mean_and_variance(samples):
        mean = jnp.mean(samples, axis=0)
        variance = jnp.sum(jnp.var(samples, axis=0, ddof=1)) / count  # of the mean
        return mean, variance

    es_mean, es_variance = mean_and_variance(es_samples)
    rp_mean, rp_variance = mean_and_variance(rp_samples)
    total = es_variance + rp_variance
    weight = jnp.where(total > 0, es_variance / jnp.where(total > 0, total, 1.0), 0.5)
    weight = jnp.where(jnp.isfinite(rp_variance) & jnp.isfinite(weight), weight, 0.0)
    rp_mean = jnp.where(weight > 0, rp_mean, 0.0)  # an untrusted estimate contributes nothing
    return Combined(weight * rp_mean + (1 - weight) * es_mean, weight, es_variance, rp_variance)


class Hybrid(Estimator):
    """Metz et al. 2019: antithetic ES and reparameterization gradients, inverse-variance mixed."""

    name = "hybrid"
    supports_sharding = False  # autodiff through a shard_map window: not built yet

    def __init__(self, env, policy, num_particles, sigma, unroll_length=None, **kwargs):
        if not env.spec.differentiable:
            raise ValueError(
                f"hybrid needs a differentiable env (its reparameterization gradient runs "
                f"autodiff through the unroll); {env!r} is not: use pes, nres, tes or es"
            )
        if kwargs.get("fitness_shaping", "none") != "none":
            raise SettingError(
                "hybrid takes {fitness_shaping}=none: autodiff gradients are unshaped"
            )
        if kwargs.get("reward_shift") not in (None, 0, 0.0):
            raise SettingError(
                "hybrid takes {reward_shift}=0: its autodiff gradients are unshifted"
            )
        if kwargs.get("top_directions") is not None:
            raise SettingError(
                "hybrid takes {top_directions}=null: it mixes every particle's estimate"
            )
        super().__init__(env, policy, num_particles, sigma, unroll_length, **kwargs)
        if num_particles < (4 if self.antithetic else 2):
            raise SettingError(
                f"hybrid needs two samples of each estimator to weigh their variances: "
                f"{{num_particles}} >= 4 with antithetic pairs (2 without), got {num_particles}"
            )

    def _init(self, key, theta, obs_norm):
        reset_key, eps_key, stagger_key = jax.random.split(key, 3)
        particles = self.reset_population(reset_key)
        if self.stagger:  # the burn-in only spreads the particles; truncations credit nothing
            eps = self.sample_perturbations(eps_key, theta.size)
            particles, _ = self.staggered_start(stagger_key, particles, theta + eps, obs_norm)
        return HybridState(particles, obs_norm)

    def _estimate(self, state, params, key, steps, limit):
        flat, unravel = ravel_pytree(params)
        length = WindowLength(steps, limit)
        eps_key, unroll_key = jax.random.split(key)
        eps = self.sample_perturbations(eps_key, flat.size)

        def total_reward(theta_particles):
            particles, window = self.unroll(
                state.particles, theta_particles, unroll_key, length,
                reset_group=self.reset_group, obs_norm=state.obs_norm,
            )  # fmt: skip
            return jnp.sum(window.reward_first + window.reward_rest), (particles, window)

        # Row i of the gradient is ∇R_i(θ + ε_i): each particle's reward depends on its row only.
        rp_rows, (particles, window) = jax.grad(total_reward, has_aux=True)(flat + eps)
        finite = jnp.all(jnp.isfinite(rp_rows), axis=1)
        rewards = window.reward_first + window.reward_rest
        if self.antithetic:  # one sample per pair: rows 2j, 2j+1 hold +ε_j, −ε_j
            half = eps[0::2]
            es_samples = half * ((rewards[0::2] - rewards[1::2]) / (2 * self.sigma**2))[:, None]
            rp_samples = 0.5 * (rp_rows[0::2] + rp_rows[1::2])
            finite = finite[0::2] & finite[1::2]
        else:
            es_samples = eps * (rewards / self.sigma**2)[:, None]
            rp_samples = rp_rows
        # A non-finite sample makes combine() distrust the whole reparameterization estimate.
        combined = combine(es_samples, jnp.where(finite[:, None], rp_samples, jnp.inf))
        state, metrics = self._finish_window(state._replace(particles=particles), window)
        metrics |= {
            "hybrid_weight": combined.weight,
            "es_variance": combined.es_variance,
            "rp_variance": combined.rp_variance,
            "nonfinite_rp": jnp.sum(~finite),
        }
        return unravel(combined.grad), state, metrics
