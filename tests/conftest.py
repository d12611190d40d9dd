"""Shared fixtures and exact-gradient references for the tests."""

from __future__ import annotations

import os

# The tests run in two processes (pyproject's addopts): on a GPU, neither may take 75% of it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp
import pytest
from cli import COMPILATION_CACHE

from pes_rl import agents, envs, policies

# In-process tests share the subprocesses' compilation cache: many build the same small
# agents (influence balancing, a linear policy), and each would otherwise compile them again.
jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


@pytest.fixture(params=sorted(agents.ESTIMATORS))
def agent_name(request) -> str:
    return request.param


def make_influence_agent(name: str, horizon: int | None = None, **kwargs):
    """An estimator on influence balancing driven by the constant policy, and θ_0."""
    env = envs.make("influence_balancing", horizon=horizon)
    policy = policies.make("constant", env)
    agent = agents.make(name, env=env, policy=policy, **kwargs)
    return agent, policy.init(jax.random.key(0))


def episode_rewards(env, theta: jax.Array, num_steps: int) -> jax.Array:
    """Rewards of ``num_steps`` steps from a reset under constant θ, differentiable in θ."""

    def step(state, unused_t):
        state = env.step(state, theta)
        return state, state.reward

    return jax.lax.scan(step, env.reset(jax.random.key(0)), None, length=num_steps)[1]


def exact_window_gradient(env, theta: jax.Array, clock: int, unroll_length: int) -> jax.Array:
    """Exact ∇θ of the reward of a window that starts at episode step ``clock``.

    Autodiff through the whole history: the window's rewards depend on θ through every step
    since the episode began. On a finite horizon the window wraps into the next episode.
    """
    horizon = env.spec.horizon

    def window_reward(th):
        if horizon is None:
            return episode_rewards(env, th, clock + unroll_length)[clock:].sum()
        rewards = episode_rewards(env, th, horizon)
        return rewards[(clock + jnp.arange(unroll_length)) % horizon].sum()

    return jax.grad(window_reward)(theta)
