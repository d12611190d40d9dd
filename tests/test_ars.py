"""ARS V2-t (``agent=ars``) and the top-b directions of every estimator: exact formulas on
windows whose rewards the test chooses, and the one-line errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_influence_agent

from pes_rl.agents.base import WindowWeights
from pes_rl.stepping import engine

HORIZON = 5


def window_with(rewards, steps, rewards_rest=None, steps_rest=None) -> engine.Window:
    """A window whose per-particle rewards and step counts are the given ones."""
    num = len(rewards)
    zeros = jnp.zeros(num)
    return engine.Window(
        reward_first=jnp.asarray(rewards, jnp.float32),
        reward_rest=zeros if rewards_rest is None else jnp.asarray(rewards_rest, jnp.float32),
        ended=jnp.ones(num, bool),
        steps_since_end=jnp.zeros(num, jnp.int32),
        steps_first=jnp.asarray(steps, jnp.int32),
        steps_rest=jnp.zeros(num, jnp.int32) if steps_rest is None else jnp.asarray(steps_rest),
        waiting=jnp.zeros(num, bool),
        completed_return_sum=jnp.sum(jnp.asarray(rewards)),
        completed_count=jnp.asarray(num),
        env_steps=jnp.sum(jnp.asarray(steps)),
        idle_steps=jnp.zeros((), jnp.int32),
        obs_moments=None,
    )


def estimate_on(agent, theta, eps, window):
    """The agent's estimate when its window used perturbations ``eps`` and produced ``window``
    (``_window`` replaced; everything after it is the agent's own code)."""
    agent._window = lambda state, flat, key, length: (
        state,
        WindowWeights(first=eps, rest=eps),
        window,
    )
    state = agent.init(jax.random.key(0), theta)
    grad, _, _ = agent._estimate(state, theta, jax.random.key(1), HORIZON, None)
    return np.asarray(grad)


def ars_step(returns_plus, returns_minus, deltas, top):
    """The paper's update direction: Σ_top (r+ − r−)·δ_k / (b·σ_R), in float64."""
    returns_plus, returns_minus = np.float64(returns_plus), np.float64(returns_minus)
    best = np.argsort(-np.maximum(returns_plus, returns_minus), kind="stable")[:top]
    used = np.concatenate([returns_plus[best], returns_minus[best]])
    differences = returns_plus[best] - returns_minus[best]
    return (differences[:, None] * deltas[best]).sum(0) / (top * used.std())


@pytest.mark.parametrize("top", [1, 2, 4])
@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_ars_estimate_is_the_papers_step(top, shift):
    """``agent=ars``: M += α · estimate is ARS V2-t's step, top-b by max(r+, r−) of the
    shifted returns, σ_R their std; episodes of different lengths make the shift matter."""
    sigma, pairs = 0.05, 4
    agent, theta = make_influence_agent(
        "ars", horizon=HORIZON, num_particles=2 * pairs, sigma=sigma, top_directions=top,
        reward_shift=shift,
    )  # fmt: skip
    deltas = np.random.default_rng(0).standard_normal((pairs, theta.size))
    eps = jnp.asarray(np.stack([sigma * deltas, -sigma * deltas], 1).reshape(2 * pairs, -1))
    rewards = np.array([3.0, 1.0, 0.5, 2.5, 4.0, -1.0, 2.0, 2.2], np.float32)
    steps = np.array([5, 2, 5, 1, 3, 5, 4, 5])
    grad = estimate_on(agent, theta, eps, window_with(rewards, steps))
    shifted = rewards - shift * steps
    expected = ars_step(shifted[0::2], shifted[1::2], deltas, top)
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_top_directions_credit_only_the_best_pairs_in_partial_windows():
    """PES with ``top_directions`` b equals PES on the b best pairs alone (by the window's
    total reward, both parts of a window cut by an episode end)."""
    sigma, pairs, top = 0.1, 4, 2
    kwargs = dict(horizon=HORIZON, sigma=sigma, unroll_length=2, fitness_shaping="std")
    agent, theta = make_influence_agent("pes", num_particles=2 * pairs, top_directions=top,
                                        **kwargs)  # fmt: skip
    eps = jax.random.normal(jax.random.key(3), (2 * pairs, theta.size)) * sigma
    eps = eps.at[1::2].set(-eps[0::2])
    first = np.array([1.0, 0.0, 3.0, -2.0, 0.5, 0.7, 0.2, 4.0], np.float32)
    rest = np.array([0.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], np.float32)
    steps_rest = (rest != 0).astype(np.int32)
    grad = estimate_on(agent, theta, eps, window_with(first, np.ones(8, int), rest, steps_rest))
    best_pairs = [1, 3]  # max(R+, R−) per pair: 1.0, 3.0, 1.5, 4.0
    keep = np.array([[2 * p, 2 * p + 1] for p in best_pairs]).ravel()
    alone, _ = make_influence_agent("pes", num_particles=2 * top, **kwargs)
    expected = estimate_on(
        alone, theta, eps[keep],
        window_with(first[keep], np.ones(4, int), rest[keep], steps_rest[keep]),
    )  # fmt: skip
    np.testing.assert_allclose(grad, expected, rtol=1e-5)
    everything, _ = make_influence_agent("pes", num_particles=2 * pairs, top_directions=pairs,
                                         **kwargs)  # fmt: skip
    unranked, _ = make_influence_agent("pes", num_particles=2 * pairs, **kwargs)
    window = window_with(first, np.ones(8, int), rest, steps_rest)
    np.testing.assert_allclose(
        estimate_on(everything, theta, eps, window), estimate_on(unranked, theta, eps, window)
    )


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("pes", dict(top_directions=5), r"top_directions must be an int in \[1, 4\]"),
        ("pes", dict(top_directions=0), r"top_directions must be an int in \[1, 4\]"),
        ("nres", dict(top_directions=2, antithetic=False), "needs antithetic=true"),
        ("ars", dict(antithetic=False), "ars samples antithetic pairs"),
        ("ars", dict(fitness_shaping="none"), "it takes fitness_shaping=std"),
        ("hybrid", dict(top_directions=2), "hybrid takes top_directions=null"),
    ],
)
def test_bad_ars_settings_are_one_line_errors(name, kwargs, message):
    unroll_length = None if name == "ars" else 1
    with pytest.raises(ValueError, match=message):
        make_influence_agent(name, horizon=HORIZON, num_particles=8, sigma=0.1,
                             unroll_length=unroll_length, **kwargs)  # fmt: skip
