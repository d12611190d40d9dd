"""The population interface: who steps the particles' envs, the seam between strategies and
engines.

An estimator decides *what* each particle runs (θ + ε, which weight a window's reward gets); a
population decides *how* the particles' envs are stepped, and carries everything that depends
on it: whether a window can run inside ``jit``, be staggered or shortened, be checkpointed,
and whether one state can be copied into every particle (TES's Algorithm 1). Two kinds:

* :class:`pes_rl.stepping.jax_population.JaxPopulation`: the engine's jitted ``lax.scan``
  over a ``vmap``'d step (:mod:`pes_rl.stepping.engine`), split over a device mesh when given one
  (:mod:`pes_rl.stepping.sharding`);
* :class:`pes_rl.stepping.host_engine.HostPopulation`: Gymnasium vector envs stepped from
  Python, a slice of the sub-envs per ``jax.distributed`` process.

:func:`pes_rl.stepping.populations.kind` is the one place that tells them apart; strategies
and the trainer never ask.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from pes_rl.envs.base import Env
from pes_rl.policies import Policy
from pes_rl.stepping import engine
from pes_rl.stepping.evaluation import Evaluation


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
    ) -> Evaluation:
        """``episode_returns(params, obs_norm, key) -> [num_episodes]``: the returns of θ
        unperturbed, the evaluation the trainer and ``pes-rl evaluate`` share; ``close()`` it."""
        raise NotImplementedError

    @classmethod
    def make_evaluate(
        cls, env: Env, policy: Policy, num_episodes: int, num_steps: int
    ) -> Evaluation:
        """The trainer's ``evaluate(params, obs_norm, key) -> metrics`` (``eval_return``, ...);
        ``close()`` it."""
        raise NotImplementedError
