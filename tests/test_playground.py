"""MuJoCo Playground envs on the engine (needs the playground extra; skipped without it)."""

from __future__ import annotations

import jax
import pytest
from jax.flatten_util import ravel_pytree
from reference import assert_window_matches
from test_jax_env_families import reference_window

from pes_rl import envs, policies
from pes_rl.stepping import engine

pytestmark = pytest.mark.playground
playground = pytest.importorskip(
    "mujoco_playground", reason='MuJoCo Playground is not installed: pip install -e ".[playground]"'
)


def test_window_matches_a_python_loop_with_the_engine_clock():
    """dm_control envs never end on their own: the clock (T = 15) ends them, per particle."""
    env = envs.make("playground/CartpoleBalance", episode_length=15)
    assert env.impl == "jax"  # the CPU default
    policy = policies.make("linear", env)
    flat, unravel = ravel_pytree(policy.init(jax.random.key(0)))

    def act(theta, obs):
        return policy.apply(unravel(theta), obs)

    num, unroll_length = 2, 20
    theta = jax.random.normal(jax.random.key(1), (num, flat.size))
    reset_keys = jax.random.split(jax.random.key(2), num)
    window_key = jax.random.key(3)
    particles = engine.reset_particles(env, reset_keys)
    _, window = jax.jit(lambda p, t, k: engine.unroll(env, act, p, t, k, unroll_length))(
        particles, theta, window_key
    )
    references = [
        reference_window(
            env, act, theta[i], env.reset(reset_keys[i]), jax.random.fold_in(window_key, i),
            unroll_length, autoreset=True,
        )
        for i in range(num)
    ]  # fmt: skip
    assert_window_matches(window, references)
    assert all(ref.ended for ref in references)


def test_a_model_that_must_be_downloaded_fails_offline_in_one_line(monkeypatch, tmp_path):
    from mujoco_playground._src import mjx_env

    monkeypatch.setattr(mjx_env, "MENAGERIE_PATH", tmp_path / "mujoco_menagerie")
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")  # as offline: git refuses https
    with pytest.raises(ValueError, match="needs a network connection; the 25 dm_control"):
        envs.make("playground/Go1JoystickFlatTerrain")
    with pytest.raises(ValueError, match="unknown Playground env 'Nope'"):
        envs.make("playground/Nope")


def test_train_then_evaluate_with_a_video(tmp_path):
    import imageio
    from cli import run_evaluate

    import pes_rl

    run_dir = tmp_path / "cartpole"
    pes_rl.train([
        "env=playground", "env.id=CartpoleBalance", "env.kwargs.episode_length=30",
        "agent.num_particles=4", "agent.unroll_length=10", "train.iterations=2",
        "train.progress=false", f"run_dir={run_dir}",
    ])  # fmt: skip
    video = tmp_path / "balance.mp4"
    result = run_evaluate(run_dir, "--episodes", "2", "--video", video, timeout=600)
    assert result.returncode == 0, result.stderr
    frames = imageio.mimread(video, memtest=False)
    assert len(frames) == 31 and frames[0].std() > 0  # the reset, then 30 steps (the clock)
