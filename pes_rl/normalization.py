"""Running observation normalization, frozen within a window and updated between windows."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class ObsNormState(NamedTuple):
    """Running moments of every observation seen by every particle."""

    mean: jax.Array  # [obs_size]
    var: jax.Array  # [obs_size]
    count: jax.Array  # shape=(), float32: observations seen so far


class ObsMoments(NamedTuple):
    """Sums collected during one window (only real env steps count)."""

    total: jax.Array  # [obs_size] Σ obs
    total_sq: jax.Array  # [obs_size] Σ obs²
    count: jax.Array  # shape=()


def init(obs_size: int) -> ObsNormState:
    """Identity normalization until the first window has been seen."""
    return ObsNormState(jnp.zeros(obs_size), jnp.ones(obs_size), jnp.zeros(()))


def normalize(norm: ObsNormState | None, obs: jax.Array) -> jax.Array:
    """(obs − mean)/std, clipped to ±10; the identity when normalization is off."""
    if norm is None:
        return obs
    flat = obs.reshape(obs.shape[0], -1)
    std = jnp.sqrt(jnp.maximum(norm.var, 1e-8))
    return jnp.clip((flat - norm.mean) / std, -10.0, 10.0).reshape(obs.shape)


def moments(obs: jax.Array, mask: jax.Array) -> ObsMoments:
    """Masked sums of a batch of observations [N, ...]."""
    flat = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
    weight = mask.astype(jnp.float32)[:, None]
    return ObsMoments((flat * weight).sum(0), (flat**2 * weight).sum(0), weight.sum())


def add_moments(a: ObsMoments, b: ObsMoments) -> ObsMoments:
    return ObsMoments(a.total + b.total, a.total_sq + b.total_sq, a.count + b.count)


def zero_moments(obs_size: int) -> ObsMoments:
    return ObsMoments(jnp.zeros(obs_size), jnp.zeros(obs_size), jnp.zeros(()))


def update(norm: ObsNormState, batch: ObsMoments) -> ObsNormState:
    """Merges a window's moments into the running ones (Chan et al. parallel variance)."""
    count = norm.count + batch.count
    safe = jnp.maximum(batch.count, 1.0)
    batch_mean = batch.total / safe
    batch_var = jnp.maximum(batch.total_sq / safe - batch_mean**2, 0.0)
    delta = batch_mean - norm.mean
    weight = batch.count / jnp.maximum(count, 1.0)
    mean = norm.mean + delta * weight
    safe_count = jnp.maximum(count, 1.0)
    var = (norm.var * norm.count + batch_var * batch.count) / safe_count
    var = var + delta**2 * norm.count * weight / safe_count
    return ObsNormState(mean, jnp.where(batch.count > 0, var, norm.var), count)
