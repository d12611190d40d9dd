"""Fitness shaping, running observation normalization and the RL policies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_influence_agent
from gymnasium import spaces

from pes_rl import agents, envs, normalization, policies
from pes_rl.agents import shaping
from pes_rl.envs.base import EnvSpec
from pes_rl.stepping import engine


def test_centered_ranks_share_ties_and_skip_masked_entries():
    values = jnp.array([3.0, 1.0, 2.0, 2.0, 100.0])
    mask = jnp.array([True, True, True, True, False])
    np.testing.assert_allclose(shaping.centered_ranks(values, mask), [0.5, -0.5, 0.0, 0.0, 0.0])
    # All equal: no signal at all (not an arbitrary ordering of ties).
    np.testing.assert_array_equal(shaping.centered_ranks(jnp.ones(4), jnp.ones(4, bool)), 0.0)


def test_std_shaping_is_scale_free_and_silent_on_equal_rewards():
    rewards = jnp.array([1.0, 3.0, -2.0, 0.5])
    none = jnp.zeros(4)
    every, no_rest = jnp.ones(4, bool), jnp.zeros(4, bool)
    first, _, scale = shaping.shape("std", rewards, none, every, no_rest, sigma=0.1)
    first_scaled, _, _ = shaping.shape("std", 1000.0 * rewards, none, every, no_rest, sigma=0.1)
    np.testing.assert_allclose(first, first_scaled, rtol=1e-5)
    np.testing.assert_allclose(jnp.std(first), 1.0, rtol=1e-5)
    assert float(scale) == pytest.approx(1 / 4)
    equal, _, _ = shaping.shape("std", jnp.full(4, 50.0), none, every, no_rest, sigma=0.1)
    np.testing.assert_array_equal(equal, 0.0)


def test_std_shaping_ignores_parts_without_steps():
    """Every episode ended on the window's last step (Swimmer: T = 1000, K = 100): the empty
    after-the-end parts are not rewards of 0 and must not inflate the std."""
    rewards = jnp.array([1.0, 3.0, -2.0, 0.5])
    every = jnp.ones(4, bool)
    first, rest, _ = shaping.shape("std", rewards, jnp.zeros(4), every, ~every, sigma=0.1)
    np.testing.assert_allclose(first, rewards / jnp.std(rewards), rtol=1e-5)
    np.testing.assert_array_equal(rest, 0.0)


def test_engine_counts_the_steps_of_each_part():
    env = envs.make("influence_balancing", horizon=5)
    policy = policies.make("constant", env)
    agent = agents.make("pes", env=env, policy=policy, num_particles=2, sigma=0.1,
                        unroll_length=5)  # fmt: skip
    theta = policy.init(jax.random.key(0))
    state = agent.init(jax.random.key(0), theta)
    particles, window = engine.unroll(
        env, lambda t, o: t, state.particles, jnp.zeros((2, 1)), jax.random.key(1), 7
    )
    np.testing.assert_array_equal(window.steps_first, [5, 5])  # the episode ends at step 5
    np.testing.assert_array_equal(window.steps_rest, [2, 2])
    _, window = engine.unroll(env, lambda t, o: t, particles, jnp.zeros((2, 1)),
                              jax.random.key(2), 3)  # fmt: skip
    np.testing.assert_array_equal(window.steps_first, [3, 3])  # ends on the window's last step
    np.testing.assert_array_equal(window.steps_rest, [0, 0])


@pytest.mark.parametrize("kind", ["std", "centered_ranks"])
def test_shaped_estimates_point_the_same_way(kind):
    agent, theta = make_influence_agent("pes", num_particles=200, sigma=0.1, unroll_length=1)
    shaped, _ = make_influence_agent(
        "pes", num_particles=200, sigma=0.1, unroll_length=1, fitness_shaping=kind
    )
    key = jax.random.key(0)
    grad, _, _ = agent.estimate(agent.init(key, theta), theta, key)
    grad_shaped, _, _ = shaped.estimate(shaped.init(key, theta), theta, key)
    assert float(grad[0]) * float(grad_shaped[0]) > 0


def test_running_normalizer_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (n, 5)).astype(np.float32) for n in (7, 30, 1)]
    norm = normalization.init(5)
    for batch in batches:
        moments = normalization.moments(jnp.asarray(batch), jnp.ones(len(batch), bool))
        norm = normalization.update(norm, moments)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(norm.mean, everything.mean(0), rtol=1e-4)
    np.testing.assert_allclose(norm.var, everything.var(0), rtol=1e-3)
    assert float(norm.count) == len(everything)


def test_agent_updates_normalizer_between_windows_from_every_particle():
    agent, theta = make_influence_agent(
        "pes", num_particles=8, sigma=0.1, unroll_length=3, obs_normalization=True
    )
    state = agent.init(jax.random.key(0), theta)
    assert float(state.obs_norm.count) == 0
    _, state, _ = agent.estimate(state, theta, jax.random.key(1))
    assert float(state.obs_norm.count) == 8 * 3
    # The window saw s_0, s_1, s_2 of every particle. The system is linear in θ, so over ±ε
    # pairs the mean is that of the unperturbed trajectory.
    env_state = agent.env.reset(jax.random.key(0))
    seen = [env_state.obs]
    for _ in range(2):
        env_state = agent.env.step(env_state, theta)
        seen.append(env_state.obs)
    np.testing.assert_allclose(state.obs_norm.mean, np.mean(seen, axis=0), rtol=1e-4, atol=1e-5)


def box_env(low, high, obs_size=3):
    class Spec:
        spec = EnvSpec(
            observation_space=spaces.Box(-np.inf, np.inf, (obs_size,), np.float32),
            action_space=spaces.Box(np.array(low, np.float32), np.array(high, np.float32)),
            horizon=10,
        )

    return Spec()


@pytest.mark.parametrize("action_mode", ["clip", "tanh"])
def test_box_actions_stay_in_bounds(action_mode):
    env = box_env([-1.0, 0.0], [1.0, 5.0])
    policy = policies.make("mlp", env, hidden_sizes=(8,), action_mode=action_mode)
    params = policy.init(jax.random.key(0))
    params[-1]["w"] = 100.0 * jnp.ones_like(params[-1]["w"])
    for obs in (jnp.ones(3), -jnp.ones(3)):
        action = policy.apply(params, obs)
        assert action.shape == (2,)
        assert bool(jnp.all(action >= jnp.array([-1.0, 0.0]))) and bool(
            jnp.all(action <= jnp.array([1.0, 5.0]))
        )


def test_linear_policy_starts_at_zero_and_is_linear():
    env = box_env([-10.0], [10.0])
    policy = policies.make("linear", env)
    params = policy.init(jax.random.key(0))
    assert all(float(jnp.abs(p).sum()) == 0 for p in jax.tree.leaves(params))
    assert set(params) == {"w"}  # no bias by default, as in ARS and the PES paper
    params = {"w": jnp.array([[1.0], [2.0], [3.0]])}
    np.testing.assert_allclose(policy.apply(params, jnp.array([1.0, 1.0, 1.0])), [6.0])
    with_bias = policies.make("linear", env, bias=True)
    params = with_bias.init(jax.random.key(0)) | {"w": jnp.array([[1.0], [2.0], [3.0]])}
    params["b"] = jnp.array([0.5])
    np.testing.assert_allclose(with_bias.apply(params, jnp.array([1.0, 1.0, 1.0])), [6.5])


def test_unknown_policy_and_constant_on_discrete_are_rejected():
    env = envs.make("influence_balancing")
    with pytest.raises(ValueError, match=r"policy must be one of \['constant', 'linear', 'mlp'\]"):
        policies.make("transformer", env)

    class DiscreteEnv:
        spec = EnvSpec(spaces.Box(-1, 1, (2,)), spaces.Discrete(3), horizon=5)

    with pytest.raises(ValueError, match="constant policy needs a Box action space"):
        policies.make("constant", DiscreteEnv())


def test_registry_lists_every_estimator():
    assert sorted(agents.ESTIMATORS) == ["ars", "es", "hybrid", "nres", "pes", "tes"]
    assert sorted(agents.AGENTS) == sorted([*agents.ESTIMATORS, "random_search"])
