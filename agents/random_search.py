"""Random search, the baseline of the hyperparameter tasks, at the estimators' compute.

``python train.py experiment=hparams29_random_search`` (or ``agent=random_search`` on any
unrolled-optimization task) draws ``agent.num_particles`` points per iteration from the task's
search space (``env.sample_search_point``), scores each by one full inner run of T steps
(its return: minus the summed objective) and keeps the best. ``env_steps`` counts every
inner step, as for ES/TES/PES, so curves of the two share the x-axis: equal ``env_steps`` is
equal compute. The best point so far is θ; it is evaluated every ``train.eval_every``
iterations with the same evaluation as the estimators' θ (``eval_return`` etc.), and its
search score is ``search_return``. It is a search strategy beside the estimators: it runs on
the trainer's own loop (one jitted iteration, checkpoints, resume, the same ``metrics.jsonl``
and ``config.yaml``), so ``python -m pes_rl.after.plot`` draws it beside PES and TES.
It is a :class:`pes_rl.agents.strategy.Strategy` without a population: it scores its points by
whole inner runs (``make_search_step``) and evaluates θ with the JAX evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from pes_rl.agents.base import WindowLength
from pes_rl.checks import SettingError, is_positive_int
from pes_rl.envs.base import Env
from pes_rl.envs.unrolled import UnrolledOptimizationEnv, inner_run
from pes_rl.normalization import ObsNormState
from pes_rl.policies import Policy
from pes_rl.stepping import evaluation, memory, populations


def make_search_step(env: UnrolledOptimizationEnv, num_points: int) -> Callable:
    """``search_step(key) -> (points [P, D], returns [P])``: whole inner runs (pure: jitted
    as part of the trainer's iteration)."""

    def inner_run_return(theta, reset_key):
        return inner_run(env, lambda obs: theta, reset_key)[1].sum()

    def search_step(key):
        point_key, run_key = jax.random.split(key)
        points = jax.vmap(env.sample_search_point)(jax.random.split(point_key, num_points))
        returns = jax.vmap(inner_run_return)(points, jax.random.split(run_key, num_points))
        return points, jnp.where(jnp.isfinite(returns), returns, -jnp.inf)

    return search_step


class SearchState(NamedTuple):
    best_return: jax.Array  # the best point's search score (θ is the best point)
    obs_norm: ObsNormState | None = None  # meta tasks observe only t / T: never normalized


class RandomSearch:
    """``num_particles`` random points per iteration, each scored by a whole inner run; θ is
    the best point so far (``update`` keeps the optimizer's state as it is)."""

    name = "random_search"
    supports_sharding = False
    jittable = True
    restorable = True
    shortens_windows = False

    def __init__(
        self,
        env: Env,
        policy: Policy,
        num_particles: int,
        sigma: None = None,
        unroll_length: None = None,
        mesh: None = None,
        fitness_shaping: str | None = None,
    ):
        if not isinstance(env, UnrolledOptimizationEnv):
            raise ValueError(
                f"agent=random_search needs an unrolled-optimization task (lr_toy2d, "
                f"lr_schedule, hparams29), got {env!r}"
            )
        if not is_positive_int(num_particles):
            raise SettingError(f"{{num_particles}} must be an int >= 1, got {num_particles!r}")
        for setting, value in (("sigma", sigma), ("unroll_length", unroll_length)):
            if value is not None:
                raise SettingError(
                    f"{{{setting}}} must be null for random_search: it samples the task's "
                    f"search space and scores whole inner runs, got {value!r}"
                )
        # One device (splits_over_devices); the best point needs no shaping (train.yaml sets
        # agent.fitness_shaping for every agent).
        del mesh, fitness_shaping
        self.env, self.policy, self.num_particles = env, policy, num_particles
        self.unroll_length = env.spec.horizon  # a point's score: one whole inner run
        self.mesh = None
        self.state_bytes = memory.local_bytes(
            num_particles, memory.jax_env_particle_bytes(env, policy), None
        )
        self._search_step = make_search_step(env, num_particles)

    @classmethod
    def run_keys(cls, seed: int) -> evaluation.RunKeys:
        """Random search splits its seed in three, as it always has (its points share the
        policy's key), so that its published numbers reproduce."""
        stream, policy, evaluation_stream = jax.random.split(jax.random.key(seed), 3)
        return evaluation.RunKeys(stream, policy, policy, evaluation_stream)

    @classmethod
    def splits_over_devices(cls, env: Env) -> bool:
        del env
        return False

    def init(self, key: jax.Array, params) -> SearchState:
        del key, params
        return SearchState(jnp.asarray(-jnp.inf, jnp.float32))

    def window_length(self, unroll_length: int | None) -> WindowLength:
        if unroll_length not in (None, self.unroll_length):
            raise ValueError("random_search scores whole inner runs: it takes no window length")
        return WindowLength(self.unroll_length)

    def update(
        self,
        optimizer: optax.GradientTransformation,
        params,
        opt_state: optax.OptState,
        state: SearchState,
        key: jax.Array,
        window: WindowLength,
    ):
        """One iteration: (θ = the best point so far, ``opt_state`` as is, the new state,
        metrics)."""
        del optimizer, window
        points, returns = self._search_step(key)
        best = jnp.argmax(returns)
        better = returns[best] > state.best_return
        params = jnp.where(better, points[best], params)
        best_return = jnp.where(better, returns[best], state.best_return)
        finite = jnp.isfinite(returns)
        count = jnp.sum(finite)
        mean = jnp.sum(jnp.where(finite, returns, 0.0)) / jnp.maximum(count, 1)
        metrics = {
            "env_steps": jnp.asarray(self.num_particles * self.env.spec.horizon, jnp.int32),
            "search_return": best_return,
            "train_return": jnp.where(count > 0, mean, jnp.nan),
        }
        return params, opt_state, state._replace(best_return=best_return), metrics

    def make_evaluate(self, num_episodes: int, num_steps: int) -> evaluation.Evaluation:
        return populations.make_evaluate(self.env, self.policy, num_episodes, num_steps)

    def close(self) -> None:
        """Nothing outside JAX to release."""
