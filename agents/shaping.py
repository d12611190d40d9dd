"""Fitness shaping shared by every estimator.

``none`` keeps the estimate unbiased (the default). ``std`` divides window rewards by their
standard deviation across particles, as the PES Swimmer runs did: g = Σ w_i R_i / (std(R)·N).
``centered_ranks`` replaces rewards by ranks scaled to [−0.5, 0.5]
(Salimans et al., 2017, https://arxiv.org/abs/1703.03864). Both reshape the two parts of a
window (before and after an episode end) with the same rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

FITNESS_SHAPINGS = ("none", "std", "centered_ranks")


def centered_ranks(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Ranks of the masked entries scaled to [−0.5, 0.5]; 0 where ``mask`` is False."""
    count = jnp.sum(mask)
    keyed = jnp.where(mask, values, jnp.inf)  # unmasked entries rank last
    ranks = jnp.argsort(jnp.argsort(keyed)).astype(jnp.float32)
    centered = ranks / jnp.maximum(count - 1, 1) - 0.5
    return jnp.where(mask & (count > 1), centered, 0.0)


def shape(
    kind: str, reward_first: jax.Array, reward_rest: jax.Array, ended: jax.Array, sigma: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Shaped (reward_first, reward_rest) and the factor that turns Σ w·R into the estimate."""
    num = reward_first.shape[0]
    if kind == "none":
        return reward_first, reward_rest, jnp.asarray(1.0 / (num * sigma**2))
    if kind == "std":
        std = jnp.std(reward_first + reward_rest) + 1e-8
        return reward_first / std, reward_rest / std, jnp.asarray(1.0 / num)
    if kind == "centered_ranks":
        everyone = jnp.ones_like(ended)
        shaped_first = centered_ranks(reward_first, everyone)
        shaped_rest = centered_ranks(reward_rest, ended)
        return shaped_first, shaped_rest, jnp.asarray(1.0 / (num * sigma**2))
    raise ValueError(f"fitness_shaping must be one of {list(FITNESS_SHAPINGS)}, got {kind!r}")
