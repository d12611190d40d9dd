"""The hybrid estimator (Metz et al. 2019) and the truncation-length curriculum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import exact_window_gradient, make_influence_agent
from gymnasium import spaces
from test_unbiased import repeated_estimates

from pes_rl import agents, envs, policies
from pes_rl.agents import curriculum
from pes_rl.agents.hybrid import combine
from pes_rl.envs.base import Env, EnvSpec, State

SIGMA = 0.1


def test_hybrid_is_exact_on_whole_episodes_of_influence_balancing():
    # K = T: every window is one whole episode from a reset, where truncation costs nothing.
    # An episode's return is linear in θ here, so ∇R(θ + ε) = ∇R(θ) for every ε: the
    # reparameterization estimate has no variance and the hybrid returns the exact gradient.
    agent, theta = make_influence_agent(
        "hybrid", horizon=7, num_particles=100, sigma=SIGMA, unroll_length=7
    )
    grads, _ = repeated_estimates(agent, theta, num_windows=2)
    exact = float(exact_window_gradient(agent.env, theta, 0, 7)[0])
    np.testing.assert_allclose(grads, exact, rtol=1e-5)


def test_hybrid_matches_the_smoothed_gradient_on_lr_toy2d():
    horizon = 20
    env = envs.make("lr_toy2d", horizon=horizon)
    policy = policies.make("constant", env)
    theta = jnp.array([-3.0, -2.0])
    agent = agents.make(
        "hybrid", env=env, policy=policy, num_particles=20, sigma=SIGMA, unroll_length=horizon
    )

    def estimate(key):
        init_key, window_key = jax.random.split(key)
        return agent.estimate(agent.init(init_key, theta), theta, window_key)[0]

    grads = np.asarray(jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.key(0), 300)))

    def run_return(th):  # the whole inner run under constant θ (deterministic toy)
        def step(state, unused_t):
            state = env.step(state, th)
            return state, state.reward

        return jax.lax.scan(step, env.reset(jax.random.key(0)), None, length=horizon)[1].sum()

    eps = SIGMA * jax.random.normal(jax.random.key(1), (20000, 2))
    samples = np.asarray(jax.jit(jax.vmap(jax.grad(run_return)))(theta + eps))
    target, target_stderr = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(len(samples))
    stderr = np.hypot(grads.std(0, ddof=1) / np.sqrt(len(grads)), target_stderr)
    z = (grads.mean(0) - target) / stderr
    assert np.all(np.abs(z) < 4.0), f"hybrid off the smoothed gradient: z = {z}"
    assert np.all(stderr < 0.05 * np.abs(target)), "too noisy to test"


def test_combine_weighs_the_lower_variance_estimate():
    rng = np.random.default_rng(0)
    true = np.array([1.0, -2.0, 0.5])
    precise = true + 0.01 * rng.normal(size=(64, 3))
    noisy = true + 10.0 * rng.normal(size=(64, 3))
    towards_rp = combine(jnp.asarray(noisy), jnp.asarray(precise))
    towards_es = combine(jnp.asarray(precise), jnp.asarray(noisy))
    assert float(towards_rp.weight) > 0.99 and float(towards_es.weight) < 0.01
    np.testing.assert_allclose(towards_rp.grad, true, atol=0.02)
    np.testing.assert_allclose(towards_es.grad, true, atol=0.02)
    # A non-finite reparameterization estimate is not trusted at all.
    broken = precise.copy()
    broken[3, 1] = np.inf
    untrusted = combine(jnp.asarray(noisy), jnp.asarray(broken))
    assert float(untrusted.weight) == 0.0 and np.all(np.isfinite(untrusted.grad))


class Ripple(Env):
    """One step, reward −(θ − 1)² + a·sin(θ/period)·period: a smooth bowl with a fast ripple.

    The ripple's gradient a·cos(θ/period) swings wildly between nearby θ + ε (the reparameter-
    ization estimate's variance grows with a), while the ES estimate sees only its tiny values.
    """

    def __init__(self, amplitude: float, period: float = 1e-3):
        self.amplitude, self.period = amplitude, period
        self.spec = EnvSpec(
            observation_space=spaces.Box(0.0, 1.0, (1,), np.float32),
            action_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            horizon=1,
            differentiable=True,
            default_action=np.array([3.0], np.float32),
        )

    def reset(self, key: jax.Array) -> State:
        del key
        return State({}, jnp.zeros(1), jnp.zeros(()), jnp.zeros(()))

    def step(self, state: State, action: jax.Array) -> State:
        theta = action[0]
        ripple = self.amplitude * self.period * jnp.sin(theta / self.period)
        return state.replace(reward=-((theta - 1.0) ** 2) + ripple, done=jnp.ones(()))


@pytest.mark.parametrize("amplitude, towards", [(0.0, "rp"), (100.0, "es")])
def test_hybrid_moves_its_weight_to_the_lower_variance_estimator(amplitude, towards):
    env = Ripple(amplitude)
    policy = policies.make("constant", env)
    agent = agents.make(
        "hybrid", env=env, policy=policy, num_particles=64, sigma=SIGMA, unroll_length=1
    )
    theta = policy.init(jax.random.key(0))
    grad, _, metrics = agent.estimate(
        agent.init(jax.random.key(1), theta), theta, jax.random.key(2)
    )
    weight = float(metrics["hybrid_weight"])
    assert weight > 0.9 if towards == "rp" else weight < 0.1, weight
    assert float(grad[0]) == pytest.approx(-4.0, rel=0.2)  # −2(θ − 1) at θ = 3


def test_hybrid_refuses_what_it_cannot_estimate():
    env = envs.make("lr_schedule", objective="val_accuracy", horizon=10)
    policy = policies.make("constant", env)
    with pytest.raises(ValueError, match="hybrid needs a differentiable env"):
        agents.make("hybrid", env=env, policy=policy, num_particles=4, sigma=0.1, unroll_length=2)
    with pytest.raises(ValueError, match="num_particles >= 4"):
        make_influence_agent("hybrid", num_particles=2, sigma=0.1, unroll_length=2)
    with pytest.raises(ValueError, match="fitness_shaping=none"):
        make_influence_agent(
            "hybrid", num_particles=4, sigma=0.1, unroll_length=2, fitness_shaping="std"
        )


# Curriculum ------------------------------------------------------------------------------------


def test_curriculum_grows_linearly_with_bounded_jitter():
    plain = curriculum.make(end=200, start=50, iterations=100, jitter=0.0)
    key = jax.random.key(0)
    assert [plain.length(i, key) for i in (0, 50, 100, 500)] == [50, 125, 200, 200]
    jittered = curriculum.make(end=200, start=50, iterations=100, jitter=0.2)
    lengths = np.array([jittered.length(50, jax.random.key(i)) for i in range(200)])
    assert lengths.min() >= 100 and lengths.max() <= 150 and lengths.std() > 5
    with pytest.raises(ValueError, match=r"^start \(50\) must be <="):
        curriculum.make(end=10, start=50)
    with pytest.raises(ValueError, match="jitter"):
        curriculum.make(end=100, jitter=1.5)


@pytest.mark.parametrize("name", ["pes", "tes", "hybrid"])
def test_a_short_window_in_a_bucket_equals_the_plain_window(name):
    kwargs = dict(horizon=7, num_particles=4, sigma=SIGMA)
    bucketed, theta = make_influence_agent(name, unroll_length=8, **kwargs)
    plain, _ = make_influence_agent(name, unroll_length=5, **kwargs)
    assert bucketed.window_length(5) == (8, 5)  # runs the 8-step scan, masked after 5
    state_a = bucketed.init(jax.random.key(1), theta)
    state_b = plain.init(jax.random.key(1), theta)
    for window_key in jax.random.split(jax.random.key(2), 3):
        grad_a, state_a, metrics_a = bucketed.estimate(state_a, theta, window_key, 5)
        grad_b, state_b, metrics_b = plain.estimate(state_b, theta, window_key)
        np.testing.assert_allclose(grad_a, grad_b, rtol=1e-5)
        assert int(metrics_a["env_steps"]) == int(metrics_b["env_steps"])
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_curriculum_compiles_one_scan_per_bucket():
    agent, theta = make_influence_agent("pes", horizon=7, num_particles=4, sigma=SIGMA,
                                        unroll_length=8)  # fmt: skip
    state = agent.init(jax.random.key(1), theta)
    for length in [3, 4, 5, 6, 7, 8, 3, 5, 7]:
        _, state, _ = agent.estimate(state, theta, jax.random.key(length), length)
    # Buckets 4 and 8, each with and without a step limit: 4 compilations for 6 lengths.
    assert agent._jit_estimate._cache_size() == 4
    with pytest.raises(ValueError, match=r"unroll_length must be an int in \[1, 8\]"):
        agent.estimate(state, theta, jax.random.key(0), 9)
    es, _ = make_influence_agent("es", horizon=7, num_particles=4, sigma=SIGMA)
    with pytest.raises(ValueError, match="whole episodes"):
        es.window_length(3)
