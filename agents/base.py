"""The ES-family estimators' base: ``init(key, params)`` and ``estimate(state, params, key)``,
and the :class:`pes_rl.agents.strategy.Strategy` the trainer runs (``update``: the estimate's
negation handed to optax).

The base class owns what every estimator shares: argument checks, flattening θ, sampling
(antithetic) perturbations, fitness shaping, observation normalization and metrics. Each
estimator (``es.py``, ``tes.py``, ``pes.py``, ``nres.py``) supplies only ``_init`` and
``_window``: how perturbations and accumulators evolve and where particles start.

``estimate`` returns the gradient of expected return: an ascent direction.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh

from pes_rl import normalization
from pes_rl.agents import shaping
from pes_rl.checks import SettingError, is_number, is_positive_int
from pes_rl.envs.base import Env
from pes_rl.policies import Policy
from pes_rl.stepping import engine, evaluation, memory, populations

Params = Any


class WindowLength(NamedTuple):
    """How many steps a window takes: ``steps`` (static, the scan length) or fewer.

    ``limit`` (a traced int, or None = ``steps``) lets a window of any length ≤ ``steps``
    reuse the compiled scan of ``steps``: the remaining steps are skipped.
    """

    steps: int
    limit: jax.Array | None = None


class WindowWeights(NamedTuple):
    """How a window's rewards are credited to perturbations."""

    first: jax.Array  # [N, D] weight of the reward before the first episode end in the window
    rest: jax.Array  # [N, D] weight of the reward after it


class Estimator:
    """Base class of the ES-family gradient estimators (ascent direction on E[return])."""

    name: ClassVar[str]
    supports_stagger: ClassVar[bool] = True
    supports_curriculum: ClassVar[bool] = True  # windows may be shorter than unroll_length
    supports_sharding: ClassVar[bool] = True  # the population may be split over a device mesh
    supports_sync_pairs: ClassVar[bool] = False  # its episodes may wait for their partners'
    direction_scale: float = 1.0  # a constant factor on the estimate (ARS's step convention)

    def __init__(
        self,
        env: Env,
        policy: Policy,
        num_particles: int,
        sigma: float,
        unroll_length: int | None = None,
        antithetic: bool = True,
        stagger: bool = False,
        fitness_shaping: str = "none",
        obs_normalization: bool = False,
        reward_shift: float | None = None,
        top_directions: int | None = None,
        mesh: Mesh | None = None,
        sync_pairs: bool = False,
    ):
        if not is_positive_int(num_particles):
            raise SettingError(f"{{num_particles}} must be an int >= 1, got {num_particles!r}")
        if antithetic and num_particles % 2:
            raise SettingError(
                f"{{num_particles}} must be even with antithetic=True (±ε pairs), got "
                f"{num_particles}; use an even number or {{antithetic}}=false"
            )
        if not isinstance(sigma, int | float) or not math.isfinite(sigma) or sigma <= 0:
            raise SettingError(f"{{sigma}} must be a finite number > 0, got {sigma!r}")
        if unroll_length is not None and not is_positive_int(unroll_length):
            raise SettingError(f"{{unroll_length}} must be an int >= 1, got {unroll_length!r}")
        if fitness_shaping not in shaping.FITNESS_SHAPINGS:
            raise SettingError(
                f"{{fitness_shaping}} must be one of {list(shaping.FITNESS_SHAPINGS)}, "
                f"got {fitness_shaping!r}"
            )
        if stagger and (env.spec.horizon is None or not self.supports_stagger):
            raise SettingError(
                f"{{stagger}}=true needs a finite env horizon and a persistent estimator "
                f"(tes, pes, nres); got {self.name} on horizon {env.spec.horizon}"
            )
        if sync_pairs not in (True, False):
            raise SettingError(f"{{sync_pairs}} must be true or false, got {sync_pairs!r}")
        if sync_pairs and not self.supports_sync_pairs:
            raise SettingError(
                f"{{sync_pairs}}=true needs an estimator on persistent particles that restart "
                f"at episode ends (pes, nres); got {self.name}"
            )
        if mesh is not None and not self.supports_sharding:
            raise ValueError(
                f"a device mesh needs es, ars, tes, pes or nres; got {self.name} "
                "(use train.devices=1)"
            )
        # Who steps the particles' envs; every check that depends on it lives there.
        self.population = populations.make(env, policy, num_particles, antithetic, mesh)
        if stagger and not self.population.can_stagger:
            raise SettingError(
                f"{{stagger}}=true is not supported on {env!r}: its particles cannot be "
                "advanced one at a time; use {stagger}=false"
            )
        # A population that cannot fit is refused here, in one line, before anything is built.
        self.state_bytes = memory.local_bytes(num_particles, self.population.particle_bytes(), mesh)
        memory.check_fits(num_particles, self.state_bytes, mesh)
        self.mesh = mesh
        self.env = env
        self.policy = policy
        self.num_particles = num_particles
        self.sigma = float(sigma)
        self.unroll_length = self._check_unroll_length(unroll_length)
        self.antithetic = antithetic
        self.stagger = stagger
        self.fitness_shaping = fitness_shaping
        self.obs_normalization = obs_normalization
        reward_shift = 0.0 if reward_shift is None else reward_shift
        if not is_number(reward_shift) or not math.isfinite(reward_shift):
            raise SettingError(f"{{reward_shift}} must be a finite number, got {reward_shift!r}")
        self.reward_shift = float(reward_shift)
        self.top_directions = self._check_top_directions(top_directions)
        # Antithetic partners (a reset group) start every episode together: an end waits.
        self.sync_pairs = bool(sync_pairs)
        self.num_groups = self.population.num_groups
        self.reset_group = self.population.reset_group  # antithetic partners reset alike
        if not self.population.jittable:  # stepped in Python; its policy call is jitted
            self._jit_init, self._jit_estimate = self._init_state, self._estimate
        else:
            self._jit_init = jax.jit(self._init_state)
            # One compilation per scan length: a full window, or a power-of-two bucket.
            self._jit_estimate = jax.jit(self._estimate, static_argnums=3, donate_argnums=0)

    @classmethod
    def run_keys(cls, seed: int) -> evaluation.RunKeys:
        """The keys a run draws from ``seed`` (:func:`pes_rl.stepping.evaluation.run_keys`)."""
        return evaluation.run_keys(seed)

    @classmethod
    def splits_over_devices(cls, env: Env) -> bool:
        """Whether this estimator's population on ``env`` can be split over a device mesh (a
        JAX env, and an estimator that supports it)."""
        return cls.supports_sharding and populations.kind(env).can_split_over_devices

    def _check_top_directions(self, top_directions: int | None) -> int | None:
        """``top_directions`` b (ARS's "-t"): only the b antithetic pairs with the largest
        max(R+, R−) in a window are credited. None keeps every pair."""
        if top_directions is None:
            return None
        pairs = self.num_particles // 2
        if not self.antithetic:
            raise SettingError(
                "{top_directions} ranks antithetic pairs (±ε): it needs {antithetic}=true"
            )
        if not is_positive_int(top_directions) or top_directions > pairs:
            raise SettingError(
                f"{{top_directions}} must be an int in [1, {pairs}] (the number of antithetic "
                f"pairs, num_particles/2) or null, got {top_directions!r}"
            )
        return None if top_directions == pairs else top_directions

    def _check_unroll_length(self, unroll_length: int | None) -> int:
        if unroll_length is None:
            raise SettingError(f"{{unroll_length}} is required for {self.name}: an int >= 1")
        return unroll_length

    # Public API ----------------------------------------------------------------------------

    def init(self, key: jax.Array, params: Params) -> Any:
        """The estimator's state for a population started at ``params``.

        Raises:
          ValueError: the population does not fit in memory (one line, with the estimate).
        """
        with memory.out_of_memory_as_value_error(self.num_particles, self.state_bytes, self.mesh):
            return self._jit_init(key, params)

    def update(
        self,
        optimizer: optax.GradientTransformation,
        params: Params,
        opt_state: optax.OptState,
        state: Any,
        key: jax.Array,
        window: WindowLength,
    ) -> tuple[Params, optax.OptState, Any, dict]:
        """One iteration of the trainer: the window's estimate, its negation handed to optax
        (the estimate ascends E[return]; optax descends), and ``grad_norm`` in the metrics.
        Traced: the trainer jits a whole iteration around it."""
        grad, state, metrics = self.estimate_traced(state, params, key, window)
        updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grad), opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, state, metrics | {"grad_norm": optax.global_norm(grad)}

    @property
    def jittable(self) -> bool:
        """Whether ``update`` runs inside jit (a JAX env; host envs jit each policy call)."""
        return self.population.jittable

    @property
    def restorable(self) -> bool:
        """Whether a checkpoint holds the particles (not a Gymnasium env's sub-envs)."""
        return self.population.restorable

    @property
    def shortens_windows(self) -> bool:
        """Whether windows may be shorter than ``unroll_length`` (a truncation curriculum)."""
        return self.supports_curriculum and self.population.can_shorten_windows

    def make_evaluate(self, num_episodes: int, num_steps: int) -> evaluation.Evaluation:
        """The evaluation of θ unperturbed on this estimator's env (its population's kind)."""
        return self.population.make_evaluate(self.env, self.policy, num_episodes, num_steps)

    def close(self) -> None:
        """Closes the population (a host env's sub-envs and worker processes)."""
        self.population.close()

    def estimate(
        self,
        state: Any,
        params: Params,
        key: jax.Array,
        unroll_length: int | WindowLength | None = None,
    ) -> tuple[Params, Any, dict]:
        """One window: (gradient of E[return] w.r.t. ``params``, new state, metrics).

        ``unroll_length`` shortens this window (≤ the agent's ``unroll_length``; a truncation
        curriculum, :mod:`pes_rl.agents.curriculum`). Lengths share compiled code: each runs
        the scan of the next power of two (capped at the agent's length) and skips the rest
        (``window_length``; pass its result when calling from inside ``jit``).
        ``state`` is donated: use the returned state, not the one passed in.

        Raises:
          ValueError: the window ran out of memory (one line, with the population's estimate).
        """
        if not isinstance(unroll_length, WindowLength):
            unroll_length = self.window_length(unroll_length)
        with memory.out_of_memory_as_value_error(self.num_particles, self.state_bytes, self.mesh):
            return self._jit_estimate(state, params, key, *unroll_length)

    def estimate_traced(
        self, state: Any, params: Params, key: jax.Array, window: WindowLength
    ) -> tuple[Params, Any, dict]:
        """``estimate`` without a jit of its own, for a caller that jits a whole iteration
        around it (the trainer): one jit boundary per iteration."""
        return self._estimate(state, params, key, *window)

    def window_length(self, unroll_length: int | None) -> WindowLength:
        """The compiled scan length and the step limit of a window of ``unroll_length`` steps."""
        if unroll_length is None or unroll_length == self.unroll_length:
            return WindowLength(self.unroll_length)
        if not self.supports_curriculum:
            raise ValueError(f"{self.name} runs whole episodes: it takes no window length")
        if not self.population.can_shorten_windows:
            raise ValueError(
                f"window lengths other than unroll_length need a JAX env, not {self.env!r}"
            )
        if not is_positive_int(unroll_length) or unroll_length > self.unroll_length:
            raise ValueError(
                f"a window's unroll_length must be an int in [1, {self.unroll_length}] "
                f"(the agent's unroll_length), got {unroll_length!r}"
            )
        steps = min(1 << (unroll_length - 1).bit_length(), self.unroll_length)
        return WindowLength(steps, None if steps == unroll_length else np.int32(unroll_length))

    # Shared pieces -------------------------------------------------------------------------

    def _init_state(self, key: jax.Array, params: Params) -> Any:
        flat = ravel_pytree(params)[0]
        obs_norm = None
        if self.obs_normalization:
            obs_size = math.prod(self.env.spec.observation_space.shape)
            obs_norm = normalization.init(obs_size)
        return self._keep_split(self._init(key, flat, obs_norm))

    def _keep_split(self, state: Any) -> Any:
        """The state's per-particle arrays kept where the population holds its particles (the
        normalizer, keyed by observation size, is not per particle)."""
        split = self.population.keep_split(state._replace(obs_norm=None))
        return split._replace(obs_norm=state.obs_norm)

    def _estimate(self, state: Any, params: Params, key: jax.Array, steps: int, limit):
        flat, unravel = ravel_pytree(params)
        length = WindowLength(steps, limit)
        state, weights, window = self._window(state, flat, key, length)
        # ARS's survival-bonus removal: the estimate sees reward − shift at every step it
        # credits; metrics and evaluations keep the env's own rewards.
        reward_first = window.reward_first - self.reward_shift * window.steps_first
        reward_rest = window.reward_rest - self.reward_shift * window.steps_rest
        kept = self._kept_particles(reward_first + reward_rest)
        shaped_first, shaped_rest, scale = shaping.shape(
            self.fitness_shaping,
            reward_first,
            reward_rest,
            (window.steps_first > 0) & kept,
            (window.steps_rest > 0) & kept,
            self.sigma,
            num_credited=jnp.sum(kept),
        )
        shaped_first = jnp.where(kept, shaped_first, 0.0)
        shaped_rest = jnp.where(kept, shaped_rest, 0.0)
        grad_flat = (
            self.direction_scale
            * scale
            * (weights.first.T @ shaped_first + weights.rest.T @ shaped_rest)
        )
        state, metrics = self._finish_window(state, window)
        return unravel(grad_flat), self._keep_split(state), metrics

    def _kept_particles(self, window_rewards: jax.Array) -> jax.Array:
        """[N] bool: the particles whose reward is credited; with ``top_directions`` b, both
        members of the b pairs with the largest max(R+, R−) (exactly b: ties go to the lower
        pair index)."""
        if self.top_directions is None:
            return jnp.ones(window_rewards.shape, bool)
        best_of_pair = window_rewards.reshape(-1, 2).max(axis=1)
        top = jax.lax.top_k(best_of_pair, self.top_directions)[1]
        kept_pairs = jnp.zeros(best_of_pair.shape, bool).at[top].set(True)
        return jnp.repeat(kept_pairs, 2)

    def _finish_window(self, state: Any, window: engine.Window):
        """Updates the observation normalizer; the window's metrics."""
        if self.obs_normalization:
            obs_norm = normalization.update(state.obs_norm, window.obs_moments)
            state = state._replace(obs_norm=obs_norm)
        count = window.completed_count
        metrics = {
            "env_steps": window.env_steps,
            "train_return": jnp.where(
                count > 0, window.completed_return_sum / jnp.maximum(count, 1), jnp.nan
            ),
            "episodes": count,
            "window_reward": jnp.mean(window.reward_first + window.reward_rest),
            # Particle-steps spent waiting (a second episode end in a window) or masked out
            # (whole-episode ES after a fall), as a fraction of the window's particle-steps.
            "idle_fraction": window.idle_steps
            / jnp.maximum(window.idle_steps + window.env_steps, 1),
        }
        return state, metrics

    def sample_perturbations(self, key: jax.Array, dim: int) -> jax.Array:
        """[N, D] Gaussian perturbations with std σ; with antithetic pairs, rows 2j, 2j+1 = ±ε_j."""
        if not self.antithetic:
            return self.sigma * jax.random.normal(key, (self.num_particles, dim))
        half = self.sigma * jax.random.normal(key, (self.num_particles // 2, dim))
        return jnp.stack([half, -half], axis=1).reshape(self.num_particles, dim)

    def reset_population(self, key: jax.Array) -> engine.Particles:
        """Fresh episodes for all particles (antithetic partners from the same key)."""
        return self.population.reset(key)

    def unroll(
        self,
        particles: engine.Particles,
        theta: jax.Array,
        key: jax.Array,
        length: WindowLength,
        *,
        population: populations.Population | None = None,
        **kwargs: Any,
    ) -> tuple[engine.Particles, engine.Window]:
        """One window of ``length`` of the estimator's population (or of ``population``); the
        keyword arguments are :func:`pes_rl.stepping.engine.unroll`'s."""
        if length.limit is not None:
            kwargs["num_steps"] = length.limit
        kwargs.setdefault("sync_groups", self.sync_pairs)
        population = population or self.population
        return population.unroll(particles, theta, key, length.steps, **kwargs)

    def staggered_start(
        self,
        key: jax.Array,
        particles: engine.Particles,
        theta: jax.Array,
        obs_norm: normalization.ObsNormState | None,
        theta_after_end: jax.Array | None = None,
    ) -> tuple[engine.Particles, engine.Window]:
        """Burns each particle (pair) in for a uniform random number of steps in [0, T).

        ``theta`` [N, D] drives the burn-in (``theta_after_end`` after an early episode end);
        the caller credits it like a window so that the first estimates are unbiased too.
        """
        clock_key, unroll_key = jax.random.split(key)
        starts = jax.random.randint(clock_key, (self.num_groups,), 0, self.env.spec.horizon)
        return self.population.unroll(
            particles,
            theta,
            unroll_key,
            self.env.spec.horizon - 1,
            theta_after_end=theta_after_end,
            reset_group=self.reset_group,
            step_limit=starts[self.reset_group],
            obs_norm=obs_norm,
            sync_groups=self.sync_pairs,
        )

    # Estimator-specific pieces ---------------------------------------------------------------

    def _init(self, key, theta, obs_norm):
        raise NotImplementedError

    def _window(
        self, state, theta, key, length: WindowLength
    ) -> tuple[Any, WindowWeights, engine.Window]:
        raise NotImplementedError


def episode_accumulator(
    accumulator: jax.Array, eps: jax.Array, window: engine.Window, eps_after_end: jax.Array
) -> jax.Array:
    """Σ ε since each particle's episode began, after a window that used ``eps`` and, after an
    episode end inside it, ``eps_after_end`` for the episode the end started.

    No episode end in the window: ``accumulator + eps``. An end inside it: the new episode has
    seen only ``eps_after_end`` (or nothing, when the end fell on the window's last step or the
    particle waited for the next window).
    """
    restarted = jnp.where((window.steps_since_end > 0)[:, None], eps_after_end, 0.0)
    return jnp.where(window.ended[:, None], restarted, accumulator + eps)


def after_end_key(eps_key: jax.Array) -> jax.Array:
    """The key of the perturbations drawn for episodes that start inside a window, apart from
    the window's own (which stay as they were without ends)."""
    return jax.random.fold_in(eps_key, 1)
