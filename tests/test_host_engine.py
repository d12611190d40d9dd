"""The host engine (any Gymnasium env) against what really happened in its sub-envs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_gym

from pes_rl import agents, envs, policies


def population(num_particles: int = 4):
    env = envs.make("gym/toy_gym:Counting-v0")
    policy = policies.make("linear", env)
    agent = agents.make(
        "pes", env=env, policy=policy, num_particles=num_particles, sigma=0.1, unroll_length=7
    )
    agent.init(jax.random.key(0), policy.init(jax.random.key(0)))
    return agent


def replay(log: list[tuple], start: int) -> dict:
    """What a window that began at log entry ``start`` should report, from the env's own log."""
    r_first = r_rest = 0.0
    ended, since_end, completed, episode_return = False, 0, [], 0.0
    for entry in log[start:]:
        if entry[0] == "reset":
            continue
        _, reward, done = entry
        episode_return += reward
        if ended:
            r_rest += reward
        else:
            r_first += reward
        since_end += 1
        if done:
            completed.append(episode_return)
            ended, since_end, episode_return = True, 0, 0.0
    return dict(
        r_first=r_first, r_rest=r_rest, ended=ended, since_end=since_end, completed=completed
    )


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
    completed_all, steps_all = [], 0
    for i, sub_env in enumerate(sub_envs):
        log = toy_gym.LOG[id(sub_env)]
        expected = (
            replay(log, starts[i]) if autoreset else replay(_first_episode(log, starts[i]), 0)
        )
        assert window.reward_first[i] == pytest.approx(expected["r_first"])
        assert window.reward_rest[i] == pytest.approx(expected["r_rest"])
        assert bool(window.ended[i]) == expected["ended"]
        if autoreset and expected["ended"]:
            assert window.steps_since_end[i] == expected["since_end"]
        completed_all += expected["completed"]
        steps_all += sum(1 for e in _counted(log, starts[i], autoreset) if e[0] == "step")
    assert window.completed_count == len(completed_all)
    assert window.completed_return_sum == pytest.approx(sum(completed_all))
    assert window.env_steps == steps_all


def _first_episode(log, start):
    out = []
    for entry in log[start:]:
        out.append(entry)
        if entry[0] == "step" and entry[2]:
            break
    return out


def _counted(log, start, autoreset):
    return log[start:] if autoreset else _first_episode(log, start)


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
    agent = agents.make(
        agent_name, env=env, policy=policy, num_particles=4, sigma=0.1,
        unroll_length=None if agent_name == "es" else 5,
    )  # fmt: skip
    params = policy.init(jax.random.key(0))
    state = agent.init(jax.random.key(1), params)
    grad, state, metrics = agent.estimate(state, params, jax.random.key(2))
    assert jax.tree.structure(grad) == jax.tree.structure(params)
    assert np.isfinite(np.asarray(grad["w"])).all()
    assert int(metrics["episodes"]) >= 1


def test_discrete_actions_are_argmax_of_logits():
    env = envs.make("gym/toy_gym:Counting-v0", discrete=True)
    policy = policies.make("linear", env)
    params = {"w": jnp.zeros((2, 3)), "b": jnp.array([0.0, 2.0, 1.0])}
    assert int(policy.apply(params, jnp.zeros(2))) == 1


@pytest.mark.parametrize(
    "env_id, message",
    [
        ("gym/Nope-v0", "unknown Gymnasium env id 'Nope-v0'"),
        ("gym/toy_gym:DictObservation-v0", "FlattenObservation"),
        ("gym/toy_gym:MultiDiscreteAction-v0", "Box or Discrete actions"),
        ("gym/no_such_module:Env-v0", "unknown Gymnasium env id"),
        ("brax/nope", "unknown Brax env 'nope'"),
    ],
)
def test_unsupported_envs_get_clear_errors(env_id, message):
    with pytest.raises(ValueError, match=message):
        envs.make(env_id)
