"""One API test for every registered estimator, plus argument checks and reproducibility."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import make_influence_agent

from pes_rl import agents, envs, policies
from pes_rl.envs.influence_balancing import THETA_OPTIMUM


def agent_kwargs(name: str) -> dict:
    # ES and ARS unroll whole episodes; the others take windows of K = 2 on a T = 5 horizon.
    return dict(num_particles=8, sigma=0.1, unroll_length=None if name in ("es", "ars") else 2)


def test_estimate_api_in_loop_and_under_scan(agent_name):
    agent, theta = make_influence_agent(agent_name, horizon=5, **agent_kwargs(agent_name))
    keys = jax.random.split(jax.random.key(3), 4)

    loop_grads = []
    state = agent.init(jax.random.key(1), theta)
    for window_key in keys:
        grad, state, metrics = agent.estimate(state, theta, window_key)
        assert jax.tree.structure(grad) == jax.tree.structure(theta)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))
        assert set(metrics) >= {"env_steps", "train_return", "episodes"}
        loop_grads.append(grad)

    def body(state, window_key):
        grad, state, _ = agent.estimate(state, theta, window_key)
        return state, grad

    _, scan_grads = jax.jit(lambda s: jax.lax.scan(body, s, keys))(
        agent.init(jax.random.key(1), theta)
    )
    np.testing.assert_allclose(np.stack(loop_grads), scan_grads, rtol=1e-5)


def test_env_steps_count_every_particle_step(agent_name):
    agent, theta = make_influence_agent(agent_name, horizon=5, **agent_kwargs(agent_name))
    state = agent.init(jax.random.key(1), theta)
    _, _, metrics = agent.estimate(state, theta, jax.random.key(2))
    whole_episodes = 8 * 5
    expected = {"es": whole_episodes, "ars": whole_episodes, "tes": 8 * 2 + 2}
    expected = expected.get(agent_name, 8 * 2)
    assert int(metrics["env_steps"]) == expected


def test_antithetic_pairs_are_plus_minus_eps():
    agent, _ = make_influence_agent("pes", num_particles=6, sigma=0.3, unroll_length=1)
    eps = agent.sample_perturbations(jax.random.key(0), 4)
    np.testing.assert_array_equal(eps[0::2], -eps[1::2])
    assert float(jnp.std(eps)) == pytest.approx(0.3, rel=0.5)
    agent, theta = make_influence_agent("nres", num_particles=6, sigma=0.3, unroll_length=1)
    state = agent.init(jax.random.key(0), theta)
    np.testing.assert_array_equal(state.eps[0::2], -state.eps[1::2])


def test_same_seed_same_result(agent_name):
    def run():
        agent, theta = make_influence_agent(agent_name, horizon=5, **agent_kwargs(agent_name))
        state = agent.init(jax.random.key(1), theta)
        for i in range(3):
            grad, state, _ = agent.estimate(state, theta, jax.random.key(i))
        return np.asarray(grad)

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sigma=0.0), "sigma must be a finite number > 0"),
        (dict(sigma=-1.0), "sigma must be a finite number > 0"),
        (dict(num_particles=7), "num_particles must be even with antithetic=True"),
        (dict(num_particles=0), "num_particles must be an int >= 1"),
        (dict(unroll_length=0), "unroll_length must be an int >= 1"),
        (dict(fitness_shaping="best"), r"fitness_shaping must be one of \['none'"),
        (dict(stagger=True), "^stagger=true needs a finite env horizon"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    args = dict(num_particles=8, sigma=0.1, unroll_length=1) | kwargs
    with pytest.raises(ValueError, match=message):
        make_influence_agent("pes", **args)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["agent.num_particles=7"],
         r"^agent.num_particles must be even .*; use an even number or agent.antithetic=false$"),
        (["agent=hybrid", "agent.fitness_shaping=none", "agent.top_directions=2"],
         r"^hybrid takes agent.top_directions=null"),
        (["agent.curriculum={start: 200}"], r"^agent.curriculum.start \(200\) must be <="),
    ],
)  # fmt: skip
def test_the_trainer_names_the_config_keys_of_bad_arguments(overrides, message):
    """The library names its parameters; the trainer, which built the call from the config,
    names the keys (one mapping, in ``build`` and ``make_curriculum``)."""
    from pes_rl.training import trainer
    from pes_rl.training.config import compose

    cfg = compose(["env=influence_balancing", "agent.unroll_length=10", *overrides])
    with pytest.raises(ValueError, match=message):
        _, _, agent, _ = trainer.build(cfg)
        trainer.make_curriculum(cfg, agent)


def test_odd_particles_without_antithetic_is_fine():
    agent, theta = make_influence_agent(
        "pes", num_particles=7, sigma=0.1, unroll_length=1, antithetic=False
    )
    grad, _, _ = agent.estimate(agent.init(jax.random.key(0), theta), theta, jax.random.key(1))
    assert np.isfinite(np.asarray(grad)).all()


def test_unknown_estimator_names_the_choices():
    env = envs.make("influence_balancing")
    with pytest.raises(
        ValueError,
        match=r"one of \['es', 'ars', 'tes', 'pes', 'nres', 'hybrid', 'random_search'\]",
    ):
        agents.make(
            "ppo",
            env=env,
            policy=policies.make("constant", env),
            num_particles=2,
            sigma=0.1,
            unroll_length=1,
        )


def test_es_rejects_partial_episodes():
    with pytest.raises(ValueError, match="es unrolls whole episodes"):
        make_influence_agent("es", horizon=10, num_particles=4, sigma=0.1, unroll_length=3)


def fit_influence_balancing(name: str, iterations: int = 3000) -> float:
    """The published run: N = 1000, σ = 0.1, K = 1, SGD lr 1e-4 from θ = 0.5."""
    agent, theta = make_influence_agent(name, num_particles=1000, sigma=0.1, unroll_length=1)
    optimizer = optax.sgd(1e-4)
    key, init_key = jax.random.split(jax.random.key(0))

    def iteration(carry, iteration_key):
        theta, opt_state, agent_state = carry
        grad, agent_state, _ = agent.estimate(agent_state, theta, iteration_key)
        updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grad), opt_state)
        return (optax.apply_updates(theta, updates), opt_state, agent_state), None

    carry = (theta, optimizer.init(theta), agent.init(init_key, theta))
    keys = jax.random.split(key, iterations)
    (theta, _, _), _ = jax.jit(lambda c: jax.lax.scan(iteration, c, keys))(carry)
    return float(theta[0])


def test_pes_finds_the_optimum_tes_goes_the_wrong_way():
    assert abs(fit_influence_balancing("pes") - THETA_OPTIMUM) < 0.02
    assert fit_influence_balancing("tes") > 0.5


def test_reward_shift_is_the_estimate_of_the_shifted_env():
    """``agent.reward_shift = c``: the estimate of an env paying reward − c per step (ARS's
    survival-bonus removal), with the env's own rewards in the metrics. CartPole pays 1 per
    step and ends early, so the shift changes whole-episode ES's gradient."""
    from pes_rl.envs.base import Env

    base = envs.make("gymnax/CartPole-v1")

    class Shifted(Env):
        spec = base.spec

        def reset(self, key):
            return base.reset(key)

        def step(self, state, action):
            state = base.step(state, action)
            return state.replace(reward=state.reward - 0.75)

    policy = policies.make("linear", base)
    params = jax.tree.map(lambda w: w + 0.3, policy.init(jax.random.key(0)))
    estimates = []
    for env, shift in ((base, 0.75), (Shifted(), 0.0)):
        es = agents.make("es", env=env, policy=policy, num_particles=8, sigma=0.5,
                         reward_shift=shift)  # fmt: skip
        state = es.init(jax.random.key(1), params)
        grad, _, metrics = es.estimate(state, params, jax.random.key(2))
        estimates.append((grad["w"], metrics))
    (shifted_by_agent, true_metrics), (shifted_env, shifted_metrics) = estimates
    np.testing.assert_allclose(shifted_by_agent, shifted_env, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(shifted_by_agent).max()) > 0
    steps = int(true_metrics["env_steps"])
    assert float(true_metrics["train_return"]) * 8 == pytest.approx(steps)  # 1 per step
    assert float(true_metrics["train_return"]) - float(shifted_metrics["train_return"]) == (
        pytest.approx(0.75 * steps / 8)
    )
    with pytest.raises(ValueError, match="^reward_shift must be a finite number"):
        agents.make("pes", env=base, policy=policy, num_particles=4, sigma=0.1,
                    unroll_length=5, reward_shift=float("nan"))  # fmt: skip
