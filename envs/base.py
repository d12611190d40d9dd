"""The JAX env protocol: Brax-shaped ``reset(key)`` / ``step(state, action)`` plus a spec.

A pes_rl env is anything with ``spec``, ``reset`` and ``step``. ``State`` mirrors
``brax.envs.State`` (``obs``, ``reward``, ``done``, ``metrics``, ``info``), with the env's own
internals in ``inner`` (Brax calls it ``pipeline_state``), so Brax envs plug in through a thin
adapter and the engine never looks inside ``inner``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax
import numpy as np
from flax import struct
from gymnasium import spaces


@struct.dataclass
class State:
    """One env's state. Immutable; change it with ``.replace(...)``."""

    inner: Any  # the env's own internals (physics state, inner-model params, ...)
    obs: jax.Array  # observation after the last step
    reward: jax.Array  # shape=(), float32: reward of the last step (higher is better)
    done: jax.Array  # shape=(), float32: 1.0 when the last step ended the episode
    metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
    info: dict[str, Any] = struct.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What the engine, policies and wrappers need to know about an env."""

    observation_space: spaces.Box
    action_space: spaces.Box | spaces.Discrete
    horizon: int | None  # steps per episode; None = the episode never ends on a clock
    differentiable: bool = False  # reward is differentiable in the action (autodiff tests)
    default_action: np.ndarray | None = None  # θ_0 of meta tasks (the constant policy's init)
    # Episodes may end before the horizon (a fall, a diverged inner run). False = they do so
    # only rarely: the engine then prepares resets only for windows that reach the horizon.
    early_termination: bool = True


class Env(abc.ABC):
    """A JAX env: pure ``reset`` and ``step`` that can be jitted and vmapped."""

    spec: EnvSpec
    is_host: bool = False  # False: stepped inside jit; host envs (Gymnasium) set True

    def __repr__(self) -> str:
        return type(self).__name__  # what error messages name

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> State:
        """Starts a fresh episode."""

    @abc.abstractmethod
    def step(self, state: State, action: jax.Array) -> State:
        """Advances one step. Resetting after ``done`` is the caller's job (the engine's)."""
