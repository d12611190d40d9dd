"""Evaluation of θ without perturbation: complete episodes, or a fixed-length rollout."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from pes_rl import normalization
from pes_rl.envs.base import Env
from pes_rl.envs.unrolled import UnrolledOptimizationEnv, inner_run
from pes_rl.policies import Policy
from pes_rl.stepping import engine


class RunKeys(NamedTuple):
    """The keys a run's seed splits into (``pes_rl.train``)."""

    stream: jax.Array  # the training state's random stream (perturbations, resets)
    policy: jax.Array  # θ's initialization
    agent: jax.Array  # the particles' first episodes
    evaluation: jax.Array  # evaluations: fold_in(evaluation, iteration)


def run_keys(seed: int) -> RunKeys:
    """The keys a run draws from its seed (a strategy's ``run_keys`` unless it says otherwise)."""
    return RunKeys(*jax.random.split(jax.random.key(seed), 4))


def evaluation_key(keys: RunKeys, iteration: int) -> jax.Array:
    """The key of a run's evaluation after ``iteration``: ``pes-rl evaluate`` without
    ``--seed`` uses it too, and so repeats the run's own ``eval_return``."""
    return jax.random.fold_in(keys.evaluation, iteration)


def mean_return(returns: jax.Array | np.ndarray) -> jax.Array | np.floating:
    """The evaluation's mean return, reduced where the returns are (XLA for a JAX env's, NumPy
    for a host env's), so a re-evaluation gives the logged number to the last bit."""
    return jnp.mean(returns) if isinstance(returns, jax.Array) else np.mean(returns)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """An evaluation ``run(params, obs_norm, key)`` and ``close()``, which releases what it
    holds outside JAX (a Gymnasium env's sub-envs; nothing for a JAX env's)."""

    run: Callable[..., Any]
    close: Callable[[], None] = lambda: None

    def __call__(self, params: Any, obs_norm: Any, key: jax.Array) -> Any:
        return self.run(params, obs_norm, key)


def make_evaluate(env: Env, policy: Policy, num_episodes: int, num_steps: int) -> Callable:
    """A jitted ``evaluate(params, obs_norm, key) -> metrics`` for ``env``.

    Finite horizon: the mean return of ``num_episodes`` complete episodes (a particle whose
    episode terminates early stops). Never-ending systems: the return of one ``num_steps``-step
    rollout from a reset, and the reward of its last step (``eval_final_reward``).
    Unrolled-optimization tasks: the mean over ``num_episodes`` full inner runs of the return,
    the last step's reward and the task's own end-of-run metrics (``eval_<name>``, e.g.
    ``eval_val_accuracy`` on the whole validation split).
    """
    if isinstance(env, UnrolledOptimizationEnv):
        return make_inner_run_evaluate(env, policy, num_episodes)
    if env.spec.horizon is not None:
        episode_returns = make_episode_returns(env, policy, num_episodes, num_steps)
        return jax.jit(lambda *args: {"eval_return": mean_return(episode_returns(*args))})

    @jax.jit
    def evaluate(params, obs_norm: normalization.ObsNormState | None, key: jax.Array) -> dict:
        flat, unravel = ravel_pytree(params)
        reset_key, unroll_key = jax.random.split(key)
        _, _, rewards = engine.unroll(
            env,
            lambda theta, obs: policy.apply(unravel(theta), obs),
            engine.reset_particles(env, reset_key[None]), flat[None], unroll_key, num_steps,
            autoreset=False, obs_norm=obs_norm, record=lambda state: state.reward,
        )  # fmt: skip
        return {"eval_return": rewards[:, 0].sum(), "eval_final_reward": rewards[-1, 0]}

    return evaluate


def make_episode_returns(env: Env, policy: Policy, num_episodes: int, num_steps: int) -> Callable:
    """A jitted ``episode_returns(params, obs_norm, key) -> [num_episodes]``: the return of each
    of ``num_episodes`` episodes of θ unperturbed, from independent resets.

    An episode is complete (it ends at termination or the horizon), ``num_steps`` steps on a
    never-ending system, or a whole inner run (at the evaluation length) on a meta task.
    """
    if isinstance(env, UnrolledOptimizationEnv):
        env = env.for_evaluation()

        @jax.jit
        def inner_run_returns(params, obs_norm, key: jax.Array) -> jax.Array:
            del obs_norm  # meta tasks observe only t / T

            def run(reset_key):
                return inner_run(env, lambda obs: policy.apply(params, obs), reset_key)[1].sum()

            return jax.vmap(run)(jax.random.split(key, num_episodes))

        return inner_run_returns
    length = env.spec.horizon or num_steps

    @jax.jit
    def episode_returns(params, obs_norm, key: jax.Array) -> jax.Array:
        flat, unravel = ravel_pytree(params)
        reset_key, unroll_key = jax.random.split(key)
        particles = engine.reset_particles(env, jax.random.split(reset_key, num_episodes))
        theta = jnp.broadcast_to(flat, (num_episodes, flat.size))
        _, window = engine.unroll(
            env,
            lambda theta, obs: policy.apply(unravel(theta), obs),
            particles, theta, unroll_key, length, autoreset=False, obs_norm=obs_norm,
        )  # fmt: skip
        return window.reward_first

    return episode_returns


def make_inner_run_evaluate(env: UnrolledOptimizationEnv, policy: Policy, num_episodes: int):
    """A jitted ``evaluate(params, obs_norm, key)`` over ``num_episodes`` full inner runs.

    Tasks whose horizon is random per episode are evaluated at a fixed one
    (``env.for_evaluation()``), so that the metric is comparable across iterations.
    """
    env = env.for_evaluation()

    @jax.jit
    def evaluate(params, obs_norm, key: jax.Array) -> dict:
        del obs_norm  # meta tasks observe only t / T

        def run(reset_key):
            state, rewards = inner_run(env, lambda obs: policy.apply(params, obs), reset_key)
            theta = policy.apply(params, state.obs)  # the hyperparameters (constant policy)
            # A run that diverged did not end on the clock: its last step is the diverged one.
            completed = state.info["truncation"] > 0
            final_reward = jnp.where(completed, rewards[-1], -env.diverged_objective)
            return (
                rewards.sum(),
                final_reward,
                env.final_metrics(theta, state.inner["params"], state.inner["opt_state"]),
            )

        returns, final_rewards, final = jax.vmap(run)(jax.random.split(key, num_episodes))
        metrics = {
            "eval_return": jnp.mean(returns),
            "eval_final_reward": jnp.mean(final_rewards),
        }
        return metrics | {f"eval_{name}": jnp.mean(value) for name, value in final.items()}

    return evaluate
