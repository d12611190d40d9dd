"""Env registry, the influence-balancing constants, and the Gymnasium face of our envs."""

from __future__ import annotations

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import episode_rewards
from gymnasium.utils.env_checker import check_env

from pes_rl import envs
from pes_rl.envs.influence_balancing import THETA_INIT, THETA_OPTIMUM


def test_registry_lists_and_builds_influence_balancing():
    assert "influence_balancing" in envs.list_envs()
    env = envs.make("influence_balancing")
    assert env.spec.horizon is None and env.spec.differentiable
    assert env.spec.observation_space.shape == (23,)
    np.testing.assert_allclose(env.spec.default_action, [THETA_INIT])


def test_unknown_env_id_names_the_ids():
    with pytest.raises(ValueError, match="unknown env id 'nope'.*influence_balancing"):
        envs.make("nope")


def test_influence_balancing_published_constants():
    env = envs.make("influence_balancing")
    # Loss after 500 steps from s_0 = ones at θ_0 = 0.5 is 8.0 (steady state s[0] = −6θ).
    rewards = episode_rewards(env, jnp.array([THETA_INIT]), 500)
    np.testing.assert_allclose(-rewards[-1], 8.0, rtol=1e-4)
    # At θ* = −1/6 the loss vanishes.
    rewards = episode_rewards(env, jnp.array([THETA_OPTIMUM]), 500)
    np.testing.assert_allclose(-rewards[-1], 0.0, atol=1e-6)


def test_finite_horizon_flags_the_end_at_T():
    # The env flags the end; restarting is the engine's job (tests/test_engine.py).
    env = envs.make("influence_balancing", horizon=5)
    state = env.reset(jax.random.key(0))
    dones = []
    for _ in range(5):
        state = env.step(state, jnp.array([0.5]))
        dones.append(float(state.done))
    assert dones == [0, 0, 0, 0, 1]
    assert float(state.info["truncation"]) == 1


def test_bad_horizon_is_rejected():
    with pytest.raises(ValueError, match="horizon"):
        envs.make("influence_balancing", horizon=0)


def test_gymnasium_make_module_form_passes_env_checker():
    env = gymnasium.make("pes_rl.envs:InfluenceBalancing-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, np.ones(23, np.float32))
    total = 0.0
    for _ in range(500):
        obs, reward, terminated, truncated, _ = env.step(np.array([0.5], np.float32))
        total += reward
        assert not (terminated or truncated)
    np.testing.assert_allclose(reward, -8.0, rtol=1e-4)
