"""The engine's window bookkeeping against a plain Python loop over single particles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from reference import WindowReference, assert_window_matches
from toy_envs import RandomLengthEpisodes

from pes_rl.stepping import engine


def act(theta, obs):
    del obs
    return theta


def reference_window(env, state, theta, reset_key, num_steps, autoreset) -> WindowReference:
    """One particle, one step at a time, in Python: what the engine must reproduce."""
    reference = WindowReference()
    for _ in range(num_steps):
        state = env.step(state, theta)
        reference.add(float(state.reward), bool(state.done))
        if bool(state.done):
            if not autoreset:
                break
            state = env.reset(reset_key)
    return reference


@pytest.mark.parametrize("autoreset", [True, False])
def test_window_matches_python_loop(autoreset):
    env = RandomLengthEpisodes(max_length=4)
    num, unroll_length = 6, 9
    reset_keys = jax.random.split(jax.random.key(1), num)
    particles = engine.reset_particles(env, reset_keys)
    theta = jnp.linspace(-1.0, 1.0, num)[:, None]
    window_key = jax.random.key(7)
    _, window = jax.jit(
        lambda p, t, k: engine.unroll(env, act, p, t, k, unroll_length, autoreset=autoreset)
    )(particles, theta, window_key)

    references = [
        reference_window(
            env, env.reset(reset_keys[i]), theta[i], jax.random.fold_in(window_key, i),
            unroll_length, autoreset,
        )
        for i in range(num)
    ]  # fmt: skip
    assert_window_matches(window, references)
    if not autoreset:  # masked particles stop: fewer real steps than N·K
        assert int(window.env_steps) < num * unroll_length


def test_horizon_clock_ends_episodes_and_carries_across_windows():
    # Episodes last 100 steps in the env, so the horizon clock (T = 5) is what ends them.
    env = RandomLengthEpisodes(min_length=100, max_length=100, horizon=5)
    particles = engine.reset_particles(env, jax.random.split(jax.random.key(0), 2))
    theta = jnp.zeros((2, 1))
    clocks, ends = [], []
    for window_index in range(4):
        window_key = jax.random.key(window_index)
        particles, window = engine.unroll(env, act, particles, theta, window_key, 3)
        clocks.append(particles.clock.tolist())
        ends.append(window.ended.tolist())
    assert clocks == [[3, 3], [1, 1], [4, 4], [2, 2]]
    assert ends == [[False, False], [True, True], [False, False], [True, True]]


def test_staggered_step_limit_advances_each_particle_its_own_number_of_steps():
    env = RandomLengthEpisodes(min_length=100, max_length=100, horizon=50)
    particles = engine.reset_particles(env, jax.random.split(jax.random.key(0), 3))
    limits = jnp.array([0, 2, 5])
    particles, window = engine.unroll(
        env, act, particles, jnp.zeros((3, 1)), jax.random.key(1), 6, step_limit=limits
    )
    assert particles.clock.tolist() == [0, 2, 5]
    assert int(window.env_steps) == 7


def test_rare_early_end_in_an_unprepared_window_starts_a_fresh_inner_run():
    """Meta tasks prepare resets only for windows that reach the horizon; a diverged inner
    run elsewhere still restarts a fresh inner run, and only that particle does."""
    from pes_rl import envs

    env = envs.make("lr_toy2d", horizon=100)
    assert not env.spec.early_termination
    particles = engine.reset_particles(env, jax.random.split(jax.random.key(0), 2))
    theta = jnp.array([[20.0, 20.0], [-3.0, -3.0]])  # lr e^20: particle 0 diverges at once
    particles, window = jax.jit(engine.unroll, static_argnums=(0, 1, 5))(
        env, act, particles, theta, jax.random.key(3), 5
    )
    assert window.ended.tolist() == [True, False]
    assert particles.clock.tolist() == [0, 5]  # particle 0 diverges on every step
    assert particles.env_state.inner["t"].tolist() == [0, 5]
    assert particles.env_state.inner["params"][0].tolist() == [1.0, 1.0]  # a fresh start
    # Its first run ended at once, charged the cap for all 100 steps it had.
    assert window.reward_first[0] == -env.loss_cap * 100


@pytest.mark.parametrize("autoreset", [True, False])
def test_recorded_steps_are_the_windows_steps(autoreset):
    """``record``: one value per step and particle, the state after that step (before an
    autoreset); rewards recorded while a particle stepped sum to the window's reward, and the
    steps a window skips (``num_steps``) record zeros."""
    env = RandomLengthEpisodes(max_length=4)
    num, unroll_length, taken = 6, 9, 7
    particles = engine.reset_particles(env, jax.random.split(jax.random.key(1), num))
    theta = jnp.linspace(-1.0, 1.0, num)[:, None]
    _, window, (rewards, dones) = jax.jit(
        lambda p, t, k: engine.unroll(
            env, act, p, t, k, unroll_length, autoreset=autoreset, num_steps=taken,
            record=lambda state: (state.reward, state.done),
        )
    )(particles, theta, jax.random.key(7))
    assert rewards.shape == dones.shape == (unroll_length, num)
    assert not jnp.any(rewards[taken:]) and not jnp.any(dones[taken:])
    # A particle counts the steps up to and including its first end: the first recorded done.
    ended = dones[:taken] > 0
    first_done = jnp.where(jnp.any(ended, axis=0), jnp.argmax(ended, axis=0) + 1, taken)
    assert jnp.array_equal(first_done, window.steps_first)
    before_end = jnp.arange(unroll_length)[:, None] < window.steps_first[None]
    assert jnp.allclose(jnp.sum(jnp.where(before_end, rewards, 0.0), 0), window.reward_first)


def test_synced_groups_start_every_episode_together():
    """``sync_groups``: partners (a reset group) whose episodes end at different steps (the
    hazard task with ±a) stay in step: an ended particle waits, unstepped and uncounted, with
    clock −1 until its partner has ended too, and the pair starts from one reset."""
    from toy_envs import HazardEnv

    env = HazardEnv(base_hazard=0.05, hazard_slope=0.2)
    num, unroll_length = 8, 10
    group = jnp.arange(num) // 2
    theta = jnp.tile(jnp.array([[1.0], [-0.5]]), (num // 2, 1))  # partners fall at other rates
    particles = engine.reset_particles(env, jax.random.split(jax.random.key(0), num)[group])
    unroll = jax.jit(
        lambda p, k: engine.unroll(
            env, act, p, theta, k, unroll_length, reset_group=group, sync_groups=True
        )
    )
    waited = restarted = 0
    for index in range(30):
        before = particles
        particles, window = unroll(particles, jax.random.key(index))
        clock, pairs = particles.clock, particles.clock.reshape(-1, 2)
        assert jnp.all((pairs[:, 0] == pairs[:, 1]) | jnp.any(pairs == -1, axis=1)), clock
        assert int(window.env_steps + window.idle_steps) == num * unroll_length
        still = (before.clock == -1) & (clock == -1)  # waited the whole window: not stepped
        state_after = jax.tree.leaves(particles.env_state)
        state_before = jax.tree.leaves(before.env_state)
        for after, was in zip(state_after, state_before, strict=True):
            assert jnp.array_equal(after[still], was[still])
        both = jnp.repeat(jnp.all(pairs == 0, axis=1) & jnp.any(window.ended.reshape(-1, 2), 1), 2)
        for leaf in state_after:  # a pair that restarted starts from one reset
            assert jnp.array_equal(leaf[both][0::2], leaf[both][1::2])
        waited += int(jnp.sum(still))
        restarted += int(jnp.sum(both)) // 2
    assert waited > 0 and restarted > 0  # the test saw both
