"""Populations: who steps the particles' envs, the seam between estimators and engines.

An estimator decides *what* each particle runs (θ + ε, which weight a window's reward gets); a
population decides *how* the particles' envs are stepped, and carries everything that depends
on it: whether a window can run inside ``jit``, be staggered or shortened, be checkpointed,
and whether one state can be copied into every particle (TES's Algorithm 1). Two kinds:

* :class:`JaxPopulation`: the engine's jitted ``lax.scan`` over a ``vmap``'d step
  (:mod:`pes_rl.stepping.engine`), split over a device mesh when given one
  (:mod:`pes_rl.stepping.sharding`);
* :class:`pes_rl.stepping.host_engine.HostPopulation`: Gymnasium vector envs stepped from
  Python, a slice of the sub-envs per ``jax.distributed`` process.

:func:`kind` is the one place that tells them apart; estimators and the trainer never ask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh

from pes_rl.envs.base import Env
from pes_rl.policies import Policy
from pes_rl.stepping import engine, memory, sharding


def flat_act(policy: Policy) -> engine.ActFn:
    """``act(theta, obs)``: the policy on one particle's flat parameters."""
    shapes = jax.eval_shape(policy.init, jax.random.key(0))
    unravel = ravel_pytree(jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes))[1]
    return lambda theta, obs: policy.apply(unravel(theta), obs)


class Population:
    """``num_particles`` particles of ``env`` driven by ``policy``; antithetic partners (rows
    2j, 2j + 1) reset alike.

    Subclasses say what they can do (the class attributes) and implement :meth:`reset`,
    :meth:`unroll`, :meth:`copy_state` and :meth:`make_episode_returns` (and :meth:`close`
    where they hold something outside JAX).
    """

    jittable: ClassVar[bool]  # reset and unroll run inside jit
    can_stagger: ClassVar[bool]  # particles can be advanced by different step counts
    can_shorten_windows: ClassVar[bool]  # a window may take fewer steps than compiled
    restorable: ClassVar[bool]  # the particles' env states are arrays a checkpoint holds
    can_split_over_devices: ClassVar[bool]
    can_copy_state: bool  # one particle's state can be copied into every particle

    def __init__(self, env: Env, policy: Policy, num_particles: int, antithetic: bool):
        self.env, self.policy, self.num_particles = env, policy, num_particles
        self.act = flat_act(policy)
        # Antithetic partners share reset keys, so each pair starts its episodes alike.
        self.num_groups = num_particles // 2 if antithetic else num_particles
        self.reset_group = np.arange(num_particles) // (2 if antithetic else 1)

    def particle_bytes(self) -> int:
        """About how many bytes one particle needs on the device (:mod:`pes_rl.stepping.memory`)."""
        raise NotImplementedError

    def reset(self, key: jax.Array) -> engine.Particles:
        """Fresh episodes for every particle (antithetic partners from the same key)."""
        raise NotImplementedError

    def unroll(
        self, particles: engine.Particles, theta: jax.Array, key: jax.Array, steps: int,
        **kwargs: Any,
    ) -> tuple[engine.Particles, engine.Window]:  # fmt: skip
        """One window of ``steps`` steps of every particle with parameters ``theta`` [N, D];
        the keyword arguments are :func:`pes_rl.stepping.engine.unroll`'s."""
        raise NotImplementedError

    def keep_split(self, tree: Any) -> Any:
        """``tree``'s [N, ...] arrays placed as the particles are (split over a device mesh, or
        as they are)."""
        return tree

    def close(self) -> None:
        """Releases what the population holds outside JAX (a host population's sub-envs and
        worker processes); the trainer calls it on every exit path."""

    def shared(self) -> Population:
        """A population of one particle of the same env and policy: TES's trajectory that
        advances with θ unperturbed."""
        return type(self)(self.env, self.policy, 1, antithetic=False)

    def copy_state(self, source: Population, particles: engine.Particles) -> engine.Particles:
        """Every particle of this population in the state of ``source``'s one particle
        (``particles``, [1, ...]): its env state, clock and episode return."""
        raise NotImplementedError

    @classmethod
    def make_episode_returns(
        cls, env: Env, policy: Policy, num_episodes: int, num_steps: int
    ) -> Callable[..., Any]:
        """``episode_returns(params, obs_norm, key) -> [num_episodes]``: the returns of θ
        unperturbed, the evaluation the trainer and ``pes-rl evaluate`` share."""
        raise NotImplementedError

    @classmethod
    def make_evaluate(
        cls, env: Env, policy: Policy, num_episodes: int, num_steps: int
    ) -> Callable[..., dict]:
        """The trainer's ``evaluate(params, obs_norm, key) -> metrics`` (``eval_return``, ...)."""
        raise NotImplementedError


class JaxPopulation(Population):
    """A JAX env's particles: the engine's scan, split over ``mesh`` when there is one."""

    jittable = True
    can_stagger = True
    can_shorten_windows = True
    restorable = True
    can_split_over_devices = True
    can_copy_state = True

    def __init__(
        self, env: Env, policy: Policy, num_particles: int, antithetic: bool,
        mesh: Mesh | None = None,
    ):  # fmt: skip
        sharding.check_divisible(num_particles, mesh, antithetic)
        super().__init__(env, policy, num_particles, antithetic)
        self.mesh = mesh

    def particle_bytes(self) -> int:
        env_bytes = memory.tree_bytes(jax.eval_shape(self.env.reset, jax.random.key(0)))
        return memory.particle_bytes(self.policy, env_bytes)

    def reset(self, key: jax.Array) -> engine.Particles:
        """Fresh episodes; a population of one particle (TES's shared trajectory) resets from
        ``key`` itself."""
        if self.num_particles == 1:
            return engine.reset_particles(self.env, key[None])
        keys = jax.random.split(key, self.num_particles)[self.reset_group]
        return engine.reset_particles(self.env, keys)

    def keep_split(self, tree: Any) -> Any:
        if self.mesh is None:
            return tree
        return sharding.constrain_particles(tree, self.mesh, self.num_particles)

    def unroll(self, particles, theta, key, steps, **kwargs):
        if self.mesh is not None:
            return sharding.unroll(
                self.mesh, self.env, self.act, particles, theta, key, steps, **kwargs
            )
        return engine.unroll(self.env, self.act, particles, theta, key, steps, **kwargs)

    def copy_state(self, source, particles):
        del source  # JAX states are arrays: the copy is a broadcast
        return jax.tree.map(
            lambda x: jnp.broadcast_to(x, (self.num_particles, *x.shape[1:])), particles
        )

    @classmethod
    def make_episode_returns(cls, env, policy, num_episodes, num_steps):
        from pes_rl.stepping.evaluation import make_episode_returns

        return make_episode_returns(env, policy, num_episodes, num_steps)

    @classmethod
    def make_evaluate(cls, env, policy, num_episodes, num_steps):
        from pes_rl.stepping.evaluation import make_evaluate

        return make_evaluate(env, policy, num_episodes, num_steps)


def kind(env: Env) -> type[Population]:
    """The population that steps ``env``: host (Gymnasium) envs step in Python, every other
    env inside JAX."""
    if getattr(env, "is_host", False):
        from pes_rl.stepping.host_engine import HostPopulation

        return HostPopulation
    return JaxPopulation


def make(
    env: Env, policy: Policy, num_particles: int, antithetic: bool, mesh: Mesh | None = None
) -> Population:
    """The population of ``num_particles`` particles for ``env``; ``mesh`` splits a JAX env's
    particles over devices."""
    return kind(env)(env, policy, num_particles, antithetic, mesh)
