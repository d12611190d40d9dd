"""The unrolled-optimization env base: one env step = one step of an inner training run.

θ (the action, driven by the ``constant`` policy) holds hyperparameters; the env state holds
the inner model's parameters, the inner optimizer's state, the inner step t and a data key.
``reset(key)`` starts a fresh inner run (new initialization and data order); ``step(state, θ)``
maps θ to hyperparameters, takes one inner optimization step and returns reward =
−(the task's objective after the step), so higher is better as for every env. The episode
ends at the inner horizon T (a task may draw a shorter one per episode: ``sample_horizon``).
ES, TES, PES and NRES then estimate the meta-gradient through inner runs far longer than one
window, on the same engine as RL envs.

Every inner step is pure JAX: minibatches are drawn inside the step from arrays that live on
the device, so the engine's ``lax.scan`` over a ``vmap`` of steps never leaves the device.

A diverged inner run (non-finite params, or a non-finite objective or one above ``loss_cap``)
ends its episode (terminated, not truncated) with the objective ``loss_cap`` charged for the
step and every step it had left, so a bad θ gives a bad reward, never a NaN, and the same
return whether the run is stopped (training) or carried on to T (:func:`inner_run`).

With ``log_objective`` the reward is −log(objective + ``LOG_FLOOR``) (positive objectives,
e.g. losses): every decade of progress counts the same, where −objective stops rewarding a
loss once it is small next to the early steps' losses.

References:
  Vicol, Metz, Sohl-Dickstein, "Unbiased Gradient Estimation in Unrolled Computation Graphs
  with Persistent Evolution Strategies", ICML 2021. https://arxiv.org/abs/2112.13835
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from pes_rl.checks import is_number, is_positive_int
from pes_rl.envs.base import Env, EnvSpec, State

Params = Any
LOG_FLOOR = 1e-6  # log_objective: the float32 floor of a memorized training loss


class UnrolledOptimizationEnv(Env):
    """Base of the meta tasks: subclasses define the inner problem and how θ drives it.

    Subclasses implement ``init_inner(key) -> (params, opt_state)`` and
    ``inner_step(theta, params, opt_state, t, key) -> (params, opt_state, objective)``, and
    may override ``sample_theta`` (a random θ_0) and ``sample_search_point`` (random search).
    """

    def __init__(
        self,
        theta_init: Sequence[float],
        horizon: int,
        differentiable: bool,
        loss_cap: float = 1e6,
        log_objective: bool = False,
    ):
        check_count("horizon", horizon)
        self.loss_cap = check_positive("loss_cap", loss_cap)
        theta_init = np.asarray(theta_init, np.float32)
        self.log_objective = bool(log_objective)
        # per step of a diverged run (tasks may lower it): the worst objective a run may reach
        self.diverged_objective = float(self._transform(self.loss_cap))
        self.spec = EnvSpec(
            observation_space=spaces.Box(0.0, 1.0, (1,), np.float32),  # t / T
            action_space=spaces.Box(-np.inf, np.inf, theta_init.shape, np.float32),
            horizon=horizon,
            differentiable=differentiable,
            default_action=theta_init,
            early_termination=False,  # only a diverged inner run ends before T
        )

    @abc.abstractmethod
    def init_inner(self, key: jax.Array) -> tuple[Params, Any]:
        """A fresh inner initialization: (inner params, inner optimizer state)."""

    @abc.abstractmethod
    def inner_step(
        self, theta: jax.Array, params: Params, opt_state: Any, t: jax.Array, key: jax.Array
    ) -> tuple[Params, Any, jax.Array]:
        """One inner optimization step at step ``t`` (0-based) with hyperparameters θ.

        Returns the new params and optimizer state and the objective after the step (lower is
        better); ``key`` draws this step's minibatches.
        """

    def final_metrics(
        self, theta: jax.Array, params: Params, opt_state: Any
    ) -> dict[str, jax.Array]:
        """Metrics of a finished inner run (e.g. accuracy of its params on whole splits)."""
        del theta, params, opt_state
        return {}

    def sample_horizon(self, key: jax.Array) -> jax.Array:
        """This episode's inner horizon (≤ ``spec.horizon``); default: always ``spec.horizon``."""
        del key
        return jnp.asarray(self.spec.horizon, jnp.int32)

    def for_evaluation(self) -> UnrolledOptimizationEnv:
        """The env evaluation runs θ on (tasks with random horizons fix theirs); default: self."""
        return self

    def sample_theta(self, key: jax.Array) -> jax.Array:
        """A random θ_0 (``policy.kwargs.random_init=true``); default: the fixed θ_0."""
        del key
        return jnp.asarray(self.spec.default_action)

    def sample_search_point(self, key: jax.Array) -> jax.Array:
        """A point of the random-search baseline's space; default: ``sample_theta``."""
        return self.sample_theta(key)

    def reset(self, key: jax.Array) -> State:
        init_key, data_key = jax.random.split(key)
        params, opt_state = self.init_inner(init_key)
        inner = {
            "params": params,
            "opt_state": opt_state,
            "t": jnp.zeros((), jnp.int32),
            "horizon": self.sample_horizon(jax.random.fold_in(key, 2)),
            "key": jax.random.key_data(data_key),  # raw uint32 data: carried like any array
        }
        zero = jnp.zeros((), jnp.float32)
        return State(inner, self._obs(inner["t"]), zero, zero, info={"truncation": zero})

    def step(self, state: State, action: jax.Array) -> State:
        inner = state.inner
        key, step_key = jax.random.split(jax.random.wrap_key_data(inner["key"]))
        params, opt_state, objective = self.inner_step(
            jnp.asarray(action, jnp.float32), inner["params"], inner["opt_state"], inner["t"],
            step_key,
        )  # fmt: skip
        t = inner["t"] + 1
        params_finite = jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)])
        )
        diverged = ~params_finite | ~jnp.isfinite(objective) | (objective > self.loss_cap)
        # A diverged run ends now, charged the diverged objective for this step and every
        # step it would have had left: its return is that of the run carried on to T.
        remaining = (inner["horizon"] - inner["t"]).astype(jnp.float32)
        objective = self._transform(objective)
        objective = jnp.where(diverged, self.diverged_objective * remaining, objective)
        truncated = t >= inner["horizon"]  # the inner run's time is up (diverged: terminated)
        done = (diverged | truncated).astype(jnp.float32)
        inner = {
            "params": params,
            "opt_state": opt_state,
            "t": t,
            "horizon": inner["horizon"],
            "key": jax.random.key_data(key),
        }
        return state.replace(
            inner=inner,
            obs=self._obs(t),
            reward=-objective.astype(jnp.float32),
            done=done,
            info={"truncation": (truncated & ~diverged).astype(jnp.float32)},
        )

    def _transform(self, objective):
        """The per-step objective the reward negates: the objective, or its log."""
        if not self.log_objective:
            return objective
        return jnp.log(jnp.maximum(objective, 0.0) + LOG_FLOOR)

    def _obs(self, t: jax.Array) -> jax.Array:
        return jnp.reshape(t / self.spec.horizon, (1,)).astype(jnp.float32)


def inner_run(
    env: UnrolledOptimizationEnv, act: Callable[[jax.Array], jax.Array], key: jax.Array
) -> tuple[State, jax.Array]:
    """One whole inner run of T steps from ``env.reset(key)``, actions ``act(obs)``.

    Returns the final state and the T rewards; steps after the run ended (diverged) earn 0,
    since the diverging step was charged for them.
    """

    def step(carry, unused_t):
        state, running = carry
        state = env.step(state, act(state.obs))
        reward = jnp.where(running, state.reward, 0.0)
        return (state, running & (state.done == 0)), reward

    start = (env.reset(key), jnp.asarray(True))
    (state, _), rewards = jax.lax.scan(step, start, None, length=env.spec.horizon)
    return state, rewards


def check_count(name: str, value: Any) -> int:
    """An int ≥ 1 (a horizon, a batch size): else a ValueError naming ``env.kwargs.<name>``."""
    if not is_positive_int(value):
        raise ValueError(f"env.kwargs.{name} must be an int >= 1, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    """A number > 0 (a cap, a scale), as a float: else a ValueError naming ``env.kwargs.<name>``."""
    if not is_number(value) or not value > 0:
        raise ValueError(f"env.kwargs.{name} must be a number > 0, got {value!r}")
    return float(value)


# Inner models shared by the tasks -------------------------------------------------------------


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> list[dict[str, jax.Array]]:
    """Layers {"w": [fan_in, fan_out], "b": [fan_out]}: He-normal weights, zero biases."""
    layers = []
    for layer_key, fan_in, fan_out in zip(
        jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:], strict=True
    ):
        w = jax.random.normal(layer_key, (fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        layers.append({"w": w, "b": jnp.zeros(fan_out)})
    return layers


def mlp_logits(
    layers: list[dict[str, jax.Array]], x: jax.Array, masks: Sequence[jax.Array] | None = None
) -> jax.Array:
    """ReLU MLP; ``masks[l]`` (0/1 per unit) multiplies hidden layer l's activations."""
    for index, layer in enumerate(layers[:-1]):
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
        if masks is not None:
            x = x * masks[index]
    return x @ layers[-1]["w"] + layers[-1]["b"]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer labels."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def classifier_metrics(
    dataset, params: Params, masks: Sequence[jax.Array] | None = None
) -> dict[str, jax.Array]:
    """Loss and accuracy of an MLP classifier on the whole train, validation and test splits."""
    metrics = {}
    for split in ("train", "val", "test"):
        x, y = getattr(dataset, f"{split}_x"), getattr(dataset, f"{split}_y")
        logits = mlp_logits(params, x, masks)
        metrics[f"{split}_loss"] = cross_entropy(logits, y)
        metrics[f"{split}_accuracy"] = accuracy(logits, y)
    return metrics


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, axis=1) == labels)


def minibatch(key: jax.Array, x: jax.Array, y: jax.Array, batch_size: int):
    """``batch_size`` rows drawn uniformly with replacement, inside JAX."""
    index = jax.random.randint(key, (batch_size,), 0, x.shape[0])
    return x[index], y[index]


def momentum_sgd(params: Params, buffer: Params, grads: Params, lr: Params, momentum: Params):
    """buf ← m·buf + g; p ← p − lr·buf (the PES code's SGD with momentum), leaf by leaf.

    ``lr`` and ``momentum`` are pytrees like ``params`` (per leaf) or scalars.
    """
    if not isinstance(lr, list | dict):
        lr = jax.tree.map(lambda _: lr, params)
    if not isinstance(momentum, list | dict):
        momentum = jax.tree.map(lambda _: momentum, params)
    buffer = jax.tree.map(lambda m, b, g: m * b + g, momentum, buffer, grads)
    params = jax.tree.map(lambda p, rate, b: p - rate * b, params, lr, buffer)
    return params, buffer
