"""Unbiasedness on a meta task: PES on the 2D LR-schedule toy against autodiff.

With a fresh ε per window, PES estimates the gradient of the Gaussian-smoothed window reward
E_ε[R_w(θ + ε_1, ..., θ + ε_w)], where window w's reward depends on the perturbations of every
window since the inner run began. The target is computed by autodiff through the unrolled
inner run, averaged over many perturbation sequences; TES, which ignores how θ shaped the
state before the window, is off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pes_rl import agents, envs, policies

SIGMA = 0.1
UNROLL_LENGTH = 10
NUM_WINDOWS = 10
NUM_REPEATS = 200
NUM_TARGET_SAMPLES = 4000
THETA = jnp.array([-3.0, -2.0])  # lr 0.05 → 0.14: x keeps moving, every window has a gradient


def toy_agent(name: str, horizon: int):
    env = envs.make("lr_toy2d", horizon=horizon)
    policy = policies.make("constant", env)
    return agents.make(
        name, env=env, policy=policy, num_particles=100, sigma=SIGMA, unroll_length=UNROLL_LENGTH
    )


def repeated_estimates(agent) -> np.ndarray:
    """[repeats, windows, 2] estimates of independent populations at fixed θ."""

    def one_run(key):
        init_key, windows_key = jax.random.split(key)

        def window(state, window_key):
            grad, state, _ = agent.estimate(state, THETA, window_key)
            return state, grad

        keys = jax.random.split(windows_key, NUM_WINDOWS)
        return jax.lax.scan(window, agent.init(init_key, THETA), keys)[1]

    keys = jax.random.split(jax.random.key(7), NUM_REPEATS)
    return np.asarray(jax.jit(jax.vmap(one_run))(keys))


def smoothed_window_gradients(horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """∇θ E_ε[R_w] for every window w [windows, 2] and its Monte Carlo standard error.

    The inner run restarts from x = (1, 1) after ``horizon`` steps, inside a window when K
    does not divide T; the new run's rewards depend only on the perturbations it saw.
    """
    env = envs.make("lr_toy2d", horizon=horizon)
    start = env.reset(jax.random.key(0))

    def window_rewards(theta, perturbations):  # perturbations [windows, 2]: one ε per window
        def step(state, t):
            state = jax.tree.map(lambda a, b: jnp.where(t % horizon == 0, a, b), start, state)
            state = env.step(state, theta + perturbations[t // UNROLL_LENGTH])
            return state, state.reward

        steps = jnp.arange(NUM_WINDOWS * UNROLL_LENGTH)
        _, rewards = jax.lax.scan(step, start, steps)
        return rewards.reshape(NUM_WINDOWS, UNROLL_LENGTH).sum(1)

    jacobian = jax.jit(jax.vmap(jax.jacrev(window_rewards), in_axes=(None, 0)))
    perturbations = SIGMA * jax.random.normal(
        jax.random.key(1), (NUM_TARGET_SAMPLES, NUM_WINDOWS, 2)
    )
    samples = np.asarray(jacobian(THETA, perturbations))  # [samples, windows, 2]
    return samples.mean(0), samples.std(0, ddof=1) / np.sqrt(NUM_TARGET_SAMPLES)


def z_scores(estimates: np.ndarray, target: np.ndarray, target_stderr: np.ndarray):
    stderr = estimates.std(0, ddof=1) / np.sqrt(len(estimates))
    return (estimates.mean(0) - target) / np.hypot(stderr, target_stderr), stderr


@pytest.mark.parametrize("horizon", [100, 95])  # 95: the inner run ends inside window 9
def test_pes_is_unbiased_on_the_lr_toy(horizon):
    target, target_stderr = smoothed_window_gradients(horizon)
    z, stderr = z_scores(repeated_estimates(toy_agent("pes", horizon)), target, target_stderr)
    assert np.all(np.abs(z) < 4.0), f"PES off the smoothed gradient: z = {np.round(z, 1)}"
    # The test has power: the gradient is resolved to a few percent in every window.
    relative = np.linalg.norm(stderr, axis=1) / np.linalg.norm(target, axis=1)
    assert np.all(relative < 0.05), f"too noisy to test: {np.round(relative, 3)}"


def test_tes_is_biased_on_the_lr_toy():
    target, target_stderr = smoothed_window_gradients(100)
    z, _ = z_scores(repeated_estimates(toy_agent("tes", 100)), target, target_stderr)
    assert np.max(np.abs(z[1:])) > 20, f"TES should miss the long-horizon gradient: {z}"
