"""Fitness shaping shared by every estimator.

``none`` keeps the estimate unbiased (the default). ``std`` divides window rewards by their
standard deviation across particles, as the PES Swimmer runs did: g = Σ w_i R_i / (std(R)·N)
(and gives 0 when all rewards are equal).
``centered_ranks`` replaces rewards by ranks scaled to [−0.5, 0.5]
(Salimans et al., 2017, https://arxiv.org/abs/1703.03864). Both reshape the two parts of a
window (before and after an episode end) with the same rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pes_rl.checks import SettingError

FITNESS_SHAPINGS = ("none", "std", "centered_ranks")


def centered_ranks(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Ranks of the masked entries scaled to [−0.5, 0.5] (ties share their mean rank).

    Entries where ``mask`` is False get 0 and do not count; so do all entries when fewer than
    two are masked.
    """
    count = jnp.sum(mask)
    pair_mask = mask[None, :] & mask[:, None]
    below = jnp.sum((values[None, :] < values[:, None]) & pair_mask, axis=1)
    equal = jnp.sum((values[None, :] == values[:, None]) & pair_mask, axis=1)
    ranks = below + (equal - 1) / 2.0
    centered = ranks / jnp.maximum(count - 1, 1) - 0.5
    return jnp.where(mask & (count > 1), centered, 0.0)


def shape(
    kind: str,
    reward_first: jax.Array,
    reward_rest: jax.Array,
    has_first: jax.Array,
    has_rest: jax.Array,
    sigma: float,
    num_credited: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Shaped (reward_first, reward_rest) and the factor that turns Σ w·R into the estimate.

    ``has_first`` / ``has_rest`` [N] say which parts hold at least one step: a part with no
    steps carries no reward and does not count in the std or the ranks. ``num_credited`` is
    the number of particles the estimate averages over (default N; fewer with
    ``top_directions``, whose dropped particles have neither part).
    """
    num = reward_first.shape[0] if num_credited is None else num_credited
    if kind == "none":
        return reward_first, reward_rest, jnp.asarray(1.0 / (num * sigma**2))
    if kind == "std":
        # The std of every credited reward: each part (before / after the first episode end)
        # that holds steps. Window totals can all be equal, as in CartPole, while the parts
        # differ; a part with no steps (an end on the window's last step) is not a reward.
        parts = jnp.concatenate([reward_first, reward_rest])
        weight = jnp.concatenate([has_first, has_rest]).astype(parts.dtype)
        count = jnp.maximum(jnp.sum(weight), 1.0)
        mean = jnp.sum(parts * weight) / count
        std = jnp.sqrt(jnp.sum(weight * (parts - mean) ** 2) / count)
        # Rewards equal to float precision carry no signal: the estimate is 0, not noise/std.
        has_signal = std > 1e-6 * jnp.maximum(1.0, jnp.abs(mean))
        inverse_std = jnp.where(has_signal, 1.0 / jnp.where(has_signal, std, 1.0), 0.0)
        return reward_first * inverse_std, reward_rest * inverse_std, jnp.asarray(1.0 / num)
    if kind == "centered_ranks":
        shaped_first = centered_ranks(reward_first, has_first)
        shaped_rest = centered_ranks(reward_rest, has_rest)
        return shaped_first, shaped_rest, jnp.asarray(1.0 / (num * sigma**2))
    raise SettingError(f"{{fitness_shaping}} must be one of {list(FITNESS_SHAPINGS)}, got {kind!r}")
