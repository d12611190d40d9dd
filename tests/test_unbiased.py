"""The core guarantee: ES, PES and NRES estimates are unbiased, TES's are not.

On influence balancing (differentiable) the mean of many independent estimates is compared
with the exact gradient computed by autodiff through the full history, window by window:
on the never-ending system, on a horizon that ends episodes in the middle of windows, and with
staggered starts (where each particle's target depends on its own clock).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import exact_window_gradient, make_influence_agent
from toy_envs import GeometricEpisodes

from pes_rl import agents, policies

NUM_REPEATS = 200  # independent estimator runs per test
MAX_Z = 4.0  # |mean error| must stay within this many standard errors
SIGMA = 0.1


def repeated_estimates(agent, theta, num_windows: int, seed: int = 42):
    """Runs ``NUM_REPEATS`` independent populations for ``num_windows`` windows at fixed θ.

    Returns the estimates [repeats, windows] and every particle's clock at the start of each
    window [repeats, windows, N].
    """

    def one_run(key):
        init_key, windows_key = jax.random.split(key)
        state = agent.init(init_key, theta)

        def window(state, window_key):
            clock = (
                state.particles.clock
                if hasattr(state, "particles")
                else jnp.zeros(agent.num_particles, jnp.int32)
            )
            grad, state, _ = agent.estimate(state, theta, window_key)
            return state, (grad[0], clock)

        _, outputs = jax.lax.scan(window, state, jax.random.split(windows_key, num_windows))
        return outputs

    keys = jax.random.split(jax.random.key(seed), NUM_REPEATS)
    grads, clocks = jax.jit(jax.vmap(one_run))(keys)
    return np.asarray(grads), np.asarray(clocks)


def z_scores(errors: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-window z-score of the mean error, and the relative standard error."""
    mean = errors.mean(0)
    stderr = errors.std(0, ddof=1) / np.sqrt(errors.shape[0])
    return mean / stderr, stderr / np.abs(targets.mean(0))


def check_unbiased(agent, theta, num_windows: int, clock_of_window=None):
    grads, clocks = repeated_estimates(agent, theta, num_windows)
    env, unroll_length = agent.env, agent.unroll_length
    if env.spec.horizon is None:
        # Never-ending system: window w covers steps [w·K, (w+1)·K) (ES restarts every window).
        starts = [clock_of_window(w) for w in range(num_windows)]
        exact = np.array(
            [float(exact_window_gradient(env, theta, s, unroll_length)[0]) for s in starts]
        )
        targets = np.broadcast_to(exact, grads.shape)
    else:
        # Each particle's window starts at its own clock: E[estimate] = mean_i ∇f(clock_i).
        table = np.array(
            [
                float(exact_window_gradient(env, theta, c, unroll_length)[0])
                for c in range(env.spec.horizon)
            ]
        )
        targets = table[clocks].mean(-1)
    z, relative_stderr = z_scores(grads - targets, targets)
    assert np.all(np.abs(z) < MAX_Z), f"mean estimate off the exact gradient: z = {np.round(z, 1)}"
    # The test has power: the standard error is small next to the gradient itself.
    assert np.all(relative_stderr < 0.05), f"too noisy to test: {relative_stderr}"
    return grads, targets


@pytest.mark.parametrize("name", ["pes", "nres"])
def test_persistent_estimators_unbiased_on_never_ending_system(name):
    agent, theta = make_influence_agent(name, num_particles=100, sigma=SIGMA, unroll_length=1)
    check_unbiased(agent, theta, num_windows=20, clock_of_window=lambda w: w)


def test_es_unbiased_on_never_ending_system():
    agent, theta = make_influence_agent("es", num_particles=100, sigma=SIGMA, unroll_length=20)
    check_unbiased(agent, theta, num_windows=2, clock_of_window=lambda w: 0)


@pytest.mark.parametrize("name", ["pes", "nres"])
@pytest.mark.parametrize("stagger", [False, True])
def test_unbiased_when_episodes_end_mid_window(name, stagger):
    # T = 7, K = 3: episodes end at steps 7, 14, ... inside windows [6, 9), [12, 15), ...
    agent, theta = make_influence_agent(
        name, horizon=7, num_particles=100, sigma=SIGMA, unroll_length=3, stagger=stagger
    )
    grads, targets = check_unbiased(agent, theta, num_windows=6)
    if stagger:  # particles really are spread over the episode
        _, clocks = repeated_estimates(agent, theta, 1)
        assert len(np.unique(clocks)) == 7


def test_es_unbiased_on_whole_episodes():
    agent, theta = make_influence_agent("es", horizon=7, num_particles=100, sigma=SIGMA)
    check_unbiased(agent, theta, num_windows=2)


def test_tes_is_biased_by_truncation():
    agent, theta = make_influence_agent("tes", num_particles=100, sigma=SIGMA, unroll_length=1)
    grads, _ = repeated_estimates(agent, theta, num_windows=20)
    exact = float(exact_window_gradient(agent.env, theta, 19, 1)[0])
    last = grads[:, -1]
    stderr = last.std(ddof=1) / np.sqrt(len(last))
    assert abs(last.mean() - exact) > 50 * stderr


@pytest.mark.parametrize("name", ["pes", "nres"])
def test_unbiased_with_random_termination(name):
    """Episodes end at random steps, different for every pair, inside windows."""
    env = GeometricEpisodes(end_prob=0.2, horizon=10)
    policy = policies.make("constant", env)
    theta = policy.init(jax.random.key(0))
    agent = agents.make(
        name, env=env, policy=policy, num_particles=100, sigma=SIGMA, unroll_length=3
    )
    grads, clocks = repeated_estimates(agent, theta, num_windows=6)
    table = env.exact_window_gradients(float(theta[0]), 3)
    targets = table[clocks].mean(-1)
    z, relative_stderr = z_scores(grads - targets, targets)
    assert np.all(np.abs(z) < MAX_Z), f"mean estimate off the exact gradient: z = {np.round(z, 1)}"
    assert np.all(relative_stderr < 0.05), f"too noisy to test: {relative_stderr}"
    assert len(np.unique(clocks[:, -1])) > 5  # particles really are at different clocks
