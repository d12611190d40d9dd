"""Which population steps an env, and the evaluations that go with it: the one place that
tells JAX envs (:class:`~pes_rl.stepping.jax_population.JaxPopulation`) from host envs
(:class:`~pes_rl.stepping.host_engine.HostPopulation`)."""

from __future__ import annotations

from jax.sharding import Mesh

from pes_rl.envs.base import Env
from pes_rl.policies import Policy
from pes_rl.stepping.evaluation import Evaluation
from pes_rl.stepping.jax_population import JaxPopulation
from pes_rl.stepping.population import Population


def kind(env: Env) -> type[Population]:
    """The population that steps ``env``: host (Gymnasium) envs step in Python, every other
    env inside JAX."""
    if getattr(env, "is_host", False):
        from pes_rl.stepping.host_engine import HostPopulation  # Gymnasium, when needed

        return HostPopulation
    return JaxPopulation


def make(
    env: Env, policy: Policy, num_particles: int, antithetic: bool, mesh: Mesh | None = None
) -> Population:
    """The population of ``num_particles`` particles for ``env``; ``mesh`` splits a JAX env's
    particles over devices."""
    return kind(env)(env, policy, num_particles, antithetic, mesh)


def make_episode_returns(
    env: Env, policy: Policy, num_episodes: int, num_steps: int
) -> Evaluation:
    """``episode_returns(params, obs_norm, key) -> [num_episodes]`` for ``env``'s population
    kind: the returns of θ unperturbed that the trainer and ``pes-rl evaluate`` share."""
    return kind(env).make_episode_returns(env, policy, num_episodes, num_steps)


def make_evaluate(env: Env, policy: Policy, num_episodes: int, num_steps: int) -> Evaluation:
    """The trainer's ``evaluate(params, obs_norm, key) -> metrics`` for ``env``'s population
    kind (``eval_return``, ...); ``close()`` it when done."""
    return kind(env).make_evaluate(env, policy, num_episodes, num_steps)
