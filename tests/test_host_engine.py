"""The host engine (any Gymnasium env) against what really happened in its sub-envs."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_gym
from reference import WindowReference, assert_window_matches

from pes_rl import agents, envs, policies


def population(num_particles: int = 4):
    env = envs.make("gym/toy_gym:Counting-v0")
    policy = policies.make("linear", env, bias=True)  # θ: 2 weights + 1 bias
    agent = agents.make(
        "pes", env=env, policy=policy, num_particles=num_particles, sigma=0.1, unroll_length=7
    )
    agent.init(jax.random.key(0), policy.init(jax.random.key(0)))
    return agent


def replay(log: list[tuple]) -> WindowReference:
    """What a window should report, from the steps the sub-env logged."""
    reference = WindowReference()
    for entry in log:
        if entry[0] == "step":
            reference.add(entry[1], entry[2])
    return reference


@pytest.mark.parametrize("autoreset", [True, False])
def test_window_matches_the_sub_envs_own_log(autoreset):
    agent = population()
    particles = agent.reset_population(jax.random.key(1))
    sub_envs = [e.unwrapped for e in agent.population.vector.envs]
    starts = [len(toy_gym.LOG[id(e)]) for e in sub_envs]
    theta = jnp.array([[0.5], [-0.5], [0.25], [-0.25]]) * jnp.ones((4, 3))
    particles, window = agent.population.unroll(
        particles, theta, jax.random.key(2), 7, reset_group=agent.reset_group, autoreset=autoreset
    )
    references = []
    for sub_env, start in zip(sub_envs, starts, strict=True):
        log = toy_gym.LOG[id(sub_env)][start:]
        references.append(replay(log if autoreset else first_episode(log)))
    # Masked particles keep stepping in their sub-envs after their episode: not counted.
    assert_window_matches(window, references, check_since_end=autoreset)


def first_episode(log: list[tuple]) -> list[tuple]:
    ends = [i for i, entry in enumerate(log) if entry[0] == "step" and entry[2]]
    return log[: ends[0] + 1] if ends else log


def test_clocks_and_antithetic_partners_share_reset_seeds():
    agent = population()
    particles = agent.reset_population(jax.random.key(1))
    theta = jnp.zeros((4, 3))
    for window_index in range(3):
        particles, _ = agent.population.unroll(
            particles, theta, jax.random.key(window_index), 7, reset_group=agent.reset_group
        )
    sub_envs = [e.unwrapped for e in agent.population.vector.envs]
    resets = [[e for e in toy_gym.LOG[id(s)] if e[0] == "reset"] for s in sub_envs]
    assert len(resets[0]) > 3  # several episodes ended inside windows
    assert resets[0] == resets[1] and resets[2] == resets[3]  # partners: same seeds
    assert resets[0] != resets[2]
    # The clock counts the steps of the running episode, as the env itself does (obs[0] = t).
    np.testing.assert_array_equal(particles.clock, particles.env_state[:, 0])


def test_every_estimator_runs_on_a_host_env(agent_name):
    env = envs.make("gym/toy_gym:Counting-v0")
    policy = policies.make("linear", env)
    if agent_name == "hybrid":  # autodiff cannot run through a host env
        with pytest.raises(ValueError, match="hybrid needs a differentiable env"):
            agents.make("hybrid", env=env, policy=policy, num_particles=4, sigma=0.1)
        return
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        agent = agents.make(
            agent_name, env=env, policy=policy, num_particles=4, sigma=0.1,
            unroll_length=None if agent_name in ("es", "ars") else 5,
        )  # fmt: skip
    copies = [w for w in warned if "one state cannot be copied into every particle" in str(w)]
    assert len(copies) == (agent_name == "tes")  # TES names the variant it runs, once
    params = policy.init(jax.random.key(0))
    state = agent.init(jax.random.key(1), params)
    grad, state, metrics = agent.estimate(state, params, jax.random.key(2))
    assert jax.tree.structure(grad) == jax.tree.structure(params)
    assert np.isfinite(np.asarray(grad["w"])).all()
    assert int(metrics["episodes"]) >= 1


def test_tes_starts_every_window_of_every_particle_from_the_shared_mujoco_state():
    """Algorithm 1 on a Gymnasium MuJoCo env: before each window every particle's sub-env is
    set to the θ-driven trajectory's qpos, qvel and episode step count."""
    env = envs.make("gym/Swimmer-v5")
    policy = policies.make("linear", env)
    agent = agents.make("tes", env=env, policy=policy, num_particles=4, sigma=0.1, unroll_length=5)
    starts = []
    unroll = agent.population.unroll

    def recording_unroll(particles, *args, **kwargs):
        shared = agent.shared_population.physics_states()[0]
        starts.append((agent.population.physics_states(), shared, np.asarray(particles.clock)))
        return unroll(particles, *args, **kwargs)

    agent.population.unroll = recording_unroll
    params = jax.tree.map(lambda w: w + 0.1, policy.init(jax.random.key(0)))
    state = agent.init(jax.random.key(1), params)
    for window in range(3):
        _, state, metrics = agent.estimate(state, params, jax.random.key(10 + window))
    assert len(starts) == 3
    for window, (particle_states, (shared, elapsed), clocks) in enumerate(starts):
        assert elapsed == 5 * window and clocks.tolist() == [5 * window] * 4
        for state_vector, particle_elapsed in particle_states:
            np.testing.assert_array_equal(state_vector, shared)
            assert particle_elapsed == elapsed
    assert not np.array_equal(starts[1][1][0], starts[2][1][0])  # the shared state moved on
    assert int(metrics["env_steps"]) == 4 * 5 + 5  # the particles' and the shared trajectory's


def test_discrete_actions_are_argmax_of_logits():
    env = envs.make("gym/toy_gym:Counting-v0", discrete=True)
    policy = policies.make("linear", env)
    params = {"w": jnp.array([[0.0, 2.0, 1.0], [0.0, 0.0, 0.0]])}
    assert int(policy.apply(params, jnp.array([1.0, 0.0]))) == 1


@pytest.mark.parametrize(
    "env_id, message",
    [
        ("gym/Nope-v0", "unknown Gymnasium env id 'Nope-v0'"),
        ("gym/toy_gym:MultiDiscreteAction-v0", "Box or Discrete actions"),
        ("gym/no_such_module:Env-v0", "unknown Gymnasium env id"),
        ("brax/nope", "unknown Brax env 'nope'"),
        ("brax/brax/nope", r"unknown Brax env 'nope': with env=brax, env.id must be one of \['"),
    ],
)
def test_unsupported_envs_get_clear_errors(env_id, message):
    with pytest.raises(ValueError, match=message):
        envs.make(env_id)


def test_synced_partners_start_every_episode_together_on_a_host_env():
    """``sync_groups`` on Gymnasium sub-envs (the hazard task, partners at ±a fall at other
    steps): partners' clocks stay equal unless one waits (−1), and a waiting sub-env's steps
    are not counted."""
    env = envs.make("gym/toy_gym:Hazard-v0", base_hazard=0.05, hazard_slope=0.2)
    policy = policies.make("constant", env)
    agent = agents.make("pes", env=env, policy=policy, num_particles=8, sigma=0.1,
                        unroll_length=10, sync_pairs=True)  # fmt: skip
    particles = agent.reset_population(jax.random.key(1))
    theta = jnp.tile(jnp.array([[1.0], [-0.5]]), (4, 1))
    waited = 0
    for index in range(20):
        before = np.asarray(particles.clock)
        particles, window = agent.unroll(
            particles, theta, jax.random.key(index), agent.window_length(None),
            reset_group=agent.reset_group,
        )  # fmt: skip
        pairs = np.asarray(particles.clock).reshape(-1, 2)
        assert np.all((pairs[:, 0] == pairs[:, 1]) | np.any(pairs == -1, axis=1)), pairs
        stepped = int(window.env_steps)
        waited += int(np.sum(before == -1))
        assert stepped <= int(np.sum(before != -1)) * 10  # waiting particles take no steps
    assert waited > 0
