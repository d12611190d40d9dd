"""Policies: a NamedTuple of pure ``init(key)`` / ``apply(params, obs)`` functions (optax style).

``apply`` maps one observation to one action in the env's action space:
Box actions are clipped (or tanh-squashed) to finite bounds, Discrete actions are the argmax
of the logits. The engine vmaps ``apply`` over particles, each with its own perturbed params.

Examples:
  >>> import jax
  >>> from pes_rl import envs, policies
  >>> env = envs.make("influence_balancing")
  >>> policy = policies.make("constant", env)
  >>> float(policy.init(jax.random.key(0))[0])
  0.5
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from pes_rl.checks import check_kwargs, is_positive_int
from pes_rl.envs.base import Env

Params = Any
POLICIES = ("constant", "linear", "mlp")
ACTION_MODES = ("clip", "tanh")


class Policy(NamedTuple):
    """A policy's pure functions."""

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]


def _action_head(action_space, action_mode: str) -> tuple[int, Callable[[jax.Array], jax.Array]]:
    """Number of raw outputs and the map from raw outputs to a valid action."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n), lambda logits: jnp.argmax(logits).astype(jnp.int32)
    if not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"action space {action_space} is not supported: policies need Box or Discrete actions"
        )
    shape = action_space.shape
    low = np.asarray(action_space.low, np.float32).reshape(-1)
    high = np.asarray(action_space.high, np.float32).reshape(-1)
    size = int(np.prod(shape))
    bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
    if not bounded:
        return size, lambda raw: jnp.clip(raw, low, high).reshape(shape)
    if action_mode == "tanh":
        return size, lambda raw: (low + (jnp.tanh(raw) + 1.0) * 0.5 * (high - low)).reshape(shape)
    return size, lambda raw: jnp.clip(raw, low, high).reshape(shape)


def constant(env: Env, random_init: bool = False) -> Policy:
    """Action = θ, observation ignored: how meta tasks are driven (θ = hyperparameters).

    θ_0 is the env's default action, or with ``random_init=True`` a draw from the env's
    ``sample_theta(key)`` (the many-hyperparameter task starts from random points).
    """
    space = env.spec.action_space
    if not isinstance(space, spaces.Box):
        raise ValueError(f"the constant policy needs a Box action space, got {space}")
    if random_init and not hasattr(env, "sample_theta"):
        raise ValueError(f"policy.kwargs.random_init=true needs a meta task, not {env!r}")
    default = env.spec.default_action
    init_value = np.zeros(space.shape, np.float32) if default is None else default

    def init(key: jax.Array) -> Params:
        if random_init:
            return jnp.asarray(env.sample_theta(key), jnp.float32)
        return jnp.asarray(init_value, jnp.float32)  # θ_0 is the env's default

    def apply(params: Params, obs: jax.Array) -> jax.Array:
        del obs  # the action is θ itself
        return params

    return Policy(init, apply)


def linear(env: Env, action_mode: str = "clip", bias: bool = False) -> Policy:
    """a = W·obs (+ b with ``bias=True``) from zeros.

    No bias by default, as in ARS and the PES paper's Swimmer runs: perturbing b adds action
    noise that carries no information about W (on Swimmer-v5 it halved PES's pace).
    """
    obs_size = int(np.prod(env.spec.observation_space.shape))
    out_size, head = _action_head(env.spec.action_space, action_mode)
    if not isinstance(bias, bool):
        raise ValueError(f"policy.kwargs.bias must be true or false, got {bias!r}")

    def init(key: jax.Array) -> Params:
        del key  # zeros init
        params = {"w": jnp.zeros((obs_size, out_size))}
        return params | {"b": jnp.zeros(out_size)} if bias else params

    def apply(params: Params, obs: jax.Array) -> jax.Array:
        raw = obs.reshape(-1) @ params["w"]
        return head(raw + params["b"] if bias else raw)

    return Policy(init, apply)


def mlp(env: Env, hidden_sizes: Sequence[int] = (32, 32), action_mode: str = "clip") -> Policy:
    """A tanh MLP with LeCun-normal hidden layers and a zero output layer."""
    obs_size = int(np.prod(env.spec.observation_space.shape))
    out_size, head = _action_head(env.spec.action_space, action_mode)
    if not isinstance(hidden_sizes, Sequence) or not all(is_positive_int(h) for h in hidden_sizes):
        raise ValueError(
            f"policy.kwargs.hidden_sizes must be a list of ints >= 1, got {hidden_sizes!r}"
        )
    sizes = [obs_size, *hidden_sizes, out_size]

    def init(key: jax.Array) -> Params:
        keys = jax.random.split(key, len(sizes) - 1)
        layers = []
        for i, (key_i, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
            is_output = i == len(sizes) - 2
            w = jax.random.normal(key_i, (fan_in, fan_out)) / np.sqrt(fan_in)
            layers.append({"w": jnp.zeros_like(w) if is_output else w, "b": jnp.zeros(fan_out)})
        return layers

    def apply(params: Params, obs: jax.Array) -> jax.Array:
        x = obs.reshape(-1)
        for layer in params[:-1]:
            x = jnp.tanh(x @ layer["w"] + layer["b"])
        return head(x @ params[-1]["w"] + params[-1]["b"])

    return Policy(init, apply)


_CONSTRUCTORS = {"constant": constant, "linear": linear, "mlp": mlp}


def make(name: str, env: Env, **kwargs: Any) -> Policy:
    """Builds policy ``name`` (one of ``POLICIES``) for ``env``.

    Raises:
      ValueError: an unknown name, or a keyword the policy does not take (the message names
        ``policy.kwargs.<name>`` and the ones it takes).
    """
    if name not in _CONSTRUCTORS:
        raise ValueError(f"unknown policy {name!r}: policy must be one of {list(POLICIES)}")
    constructor = _CONSTRUCTORS[name]
    check_kwargs(kwargs, [constructor], "policy.kwargs", f"policy {name!r}", skip={"env"})
    return constructor(env, **kwargs)
