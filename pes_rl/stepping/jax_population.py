"""The population of a JAX env: the engine's jitted scan, split over a device mesh when given
one."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from pes_rl.envs.base import Env
from pes_rl.policies import Policy
from pes_rl.stepping import engine, evaluation, memory, sharding
from pes_rl.stepping.evaluation import Evaluation
from pes_rl.stepping.population import Population


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
        return memory.jax_env_particle_bytes(self.env, self.policy)

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
        return Evaluation(evaluation.make_episode_returns(env, policy, num_episodes, num_steps))

    @classmethod
    def make_evaluate(cls, env, policy, num_episodes, num_steps):
        return Evaluation(evaluation.make_evaluate(env, policy, num_episodes, num_steps))
