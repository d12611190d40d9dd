"""RL end to end: Gymnasium classic control and MuJoCo ids, Brax, through train.py and Python."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from cli import read_metrics, run_train

import pes_rl
from pes_rl import agents, envs, policies
from pes_rl.stepping.host_engine import make_host_evaluate
from pes_rl.training.config import compose

TESTS_DIR = os.path.dirname(__file__)


@pytest.mark.slow
def test_pes_improves_cartpole_return(tmp_path):
    overrides = [
        "env.id=CartPole-v1", "agent.sigma=0.1", "optimizer.lr=0.1", "agent.unroll_length=100",
        "train.iterations=40", "train.eval_every=10", "train.eval_episodes=4",
        "train.progress=false",
    ]  # fmt: skip
    cfg = compose(overrides)
    cfg.run_dir = str(tmp_path / "run")
    params, history = pes_rl.train(cfg)

    env = envs.make("gym/CartPole-v1")
    policy = policies.make("linear", env)
    evaluate = make_host_evaluate(env, policy, num_episodes=4, num_steps=500)
    before = evaluate(policy.init(jax.random.key(0)), None, jax.random.key(0))["eval_return"]
    evals = [h["eval_return"] for h in history if "eval_return" in h]
    assert before < 15  # the zero policy always pushes left
    assert max(evals) > 5 * before, evals


@pytest.mark.parametrize(
    "env_id, extra",
    [
        ("CartPole-v1", ["agent=nres"]),  # Discrete actions
        pytest.param(  # Box actions (Swimmer's runs cover them in the default suite)
            "Pendulum-v1", ["agent=tes", "policy=mlp"], marks=pytest.mark.slow
        ),
        pytest.param(  # an id no issue named
            "MountainCarContinuous-v0", ["agent=es"], marks=pytest.mark.slow
        ),
    ],
)
def test_gymnasium_ids_train(tmp_path, capsys, env_id, extra):
    """In process (the CLI path is the same ``pes_rl.train``; CLI runs of Gymnasium ids are
    below and in test_train_cli.py)."""
    cfg = compose(
        [f"env.id={env_id}", *extra, "agent.num_particles=4", "train.iterations=2",
         "train.eval_every=1", "train.eval_episodes=1", "train.progress=false"]
    )  # fmt: skip
    cfg.run_dir = str(tmp_path / "run")
    _, history = pes_rl.train(cfg)
    hint = f"hint: {env_id} has a JAX twin in gymnax: env=gymnax env.id={env_id}"
    assert hint in capsys.readouterr().err
    records = read_metrics(tmp_path / "run")
    assert records == history and [r["iteration"] for r in records] == [1, 2]
    assert all(np.isfinite(r["eval_return"]) for r in records)


@pytest.mark.slow  # module:Id ids also train in test_train_cli and test_user_friction
def test_third_party_module_id_is_imported(tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=TESTS_DIR)
    result = run_train(
        run_dir, "env.id=toy_gym:Counting-v0", "agent.num_particles=4",
        "agent.unroll_length=5", "train.iterations=3", extra_env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_metrics(run_dir)[-1]["env_steps"] == 3 * 4 * 5


def test_unsupported_gym_space_is_a_clear_cli_error(tmp_path):
    env = dict(os.environ, PYTHONPATH=TESTS_DIR)
    result = run_train(tmp_path / "run", "env.id=toy_gym:MultiDiscreteAction-v0", extra_env=env)
    assert result.returncode == 2
    assert "Box or Discrete actions" in result.stderr and "Traceback" not in result.stderr


def test_brax_early_termination_is_per_particle():
    env = envs.make("brax/inverted_pendulum", episode_length=100, backend="spring")
    policy = policies.make("linear", env)
    params = policy.init(jax.random.key(0))
    # PES: a fallen particle starts one new episode inside the window; after a second fall it
    # waits for the next window, and its idle steps are not counted as env steps.
    pes = agents.make("pes", env=env, policy=policy, num_particles=8, sigma=0.5, unroll_length=60)
    state = pes.init(jax.random.key(1), params)
    grad, state, metrics = pes.estimate(state, params, jax.random.key(2))
    assert 4 <= int(metrics["episodes"]) <= 2 * 8  # the untrained pendulum falls within 60 steps
    idle = float(metrics["idle_fraction"])
    assert 0 < idle < 1
    np.testing.assert_allclose(int(metrics["env_steps"]) / (1 - idle), 8 * 60, rtol=1e-4)
    assert np.isfinite(np.asarray(grad["w"])).all()


@pytest.mark.slow  # a second Brax compile; the default suite has ES stopping on gymnax
def test_brax_early_termination_stops_an_es_particle():
    env = envs.make("brax/inverted_pendulum", episode_length=100, backend="spring")
    policy = policies.make("linear", env)
    params = policy.init(jax.random.key(0))
    # ES: a fallen particle stops; only real steps are counted.
    es = agents.make("es", env=env, policy=policy, num_particles=8, sigma=0.5)
    _, _, metrics = es.estimate(es.init(jax.random.key(1), params), params, jax.random.key(2))
    assert int(metrics["episodes"]) == 8
    assert 8 <= int(metrics["env_steps"]) < 8 * 100


@pytest.mark.slow
def test_brax_trains_through_the_cli(tmp_path):
    """Compiling Brax's pendulum for a run takes half a minute; the default suite covers the
    Brax engine path in-process (above) and the CLI on a JAX env with influence balancing."""
    run_dir = tmp_path / "run"
    result = run_train(
        run_dir, "env=brax", "env.id=inverted_pendulum", "env.kwargs.episode_length=50",
        "agent.num_particles=4", "agent.unroll_length=10", "train.iterations=2",
        "train.eval_episodes=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_metrics(run_dir)[-1]["env_steps"] == 2 * 4 * 10


def test_host_env_run_resumes_with_fresh_episodes(tmp_path):
    def config(iterations: int, resume: bool):
        cfg = compose(
            ["env.id=CartPole-v1", "agent.num_particles=4", "agent.unroll_length=20",
             "agent.obs_normalization=true", f"train.iterations={iterations}",
             "train.checkpoint_every=2", "train.progress=false", f"resume={str(resume).lower()}"]
        )  # fmt: skip
        cfg.run_dir = str(tmp_path / "run")
        return cfg

    pes_rl.train(config(2, resume=False))
    with pytest.warns(UserWarning, match="particles start fresh episodes"):
        params, history = pes_rl.train(config(4, resume=True))
    assert [h["iteration"] for h in history] == [1, 2, 3, 4]
    # Every window's real steps (particles that fell twice wait, uncounted) add up across the
    # resume.
    assert history[-1]["env_steps"] == sum(h["env_steps_window"] for h in history)
    assert 0 < history[-1]["env_steps"] <= 4 * 4 * 20



def closing_run_config(tmp_path, vectorization: str, sigma: float, resume: bool):
    cfg = compose(
        ["env.id=CartPole-v1", f"env.kwargs.vectorization={vectorization}",
         "agent.num_particles=2", "agent.unroll_length=20", f"agent.sigma={sigma}",
         "train.iterations=2", "train.eval_every=1", "train.eval_episodes=1",
         "train.progress=false", f"resume={str(resume).lower()}"]
    )  # fmt: skip
    cfg.run_dir = str(tmp_path / "run")
    return cfg


def test_the_trainer_closes_its_sub_envs_when_a_run_ends_or_fails(tmp_path, monkeypatch):
    """Every exit path closes the training population's and the evaluation's sub-envs: a run
    that finishes, and one that fails after its sub-envs started (a resume refused for a
    changed config)."""
    from pes_rl.stepping.host_engine import HostPopulation

    closed = []
    close = HostPopulation.close
    monkeypatch.setattr(HostPopulation, "close", lambda self: closed.append(self) or close(self))
    pes_rl.train(closing_run_config(tmp_path, "sync", 0.1, resume=False))
    assert sorted(p.num_particles for p in closed) == [1, 2]  # evaluation and training
    closed.clear()
    with pytest.raises(ValueError, match="config differs"):
        pes_rl.train(closing_run_config(tmp_path, "sync", 0.2, resume=True))
    assert [p.num_particles for p in closed] == [2]  # it failed before making its evaluation


@pytest.mark.slow  # spawning AsyncVectorEnv workers takes tens of seconds on 2 cores
def test_no_async_worker_process_outlives_a_run(tmp_path):
    import multiprocessing

    assert not multiprocessing.active_children()
    pes_rl.train(closing_run_config(tmp_path, "async", 0.1, resume=False))
    assert not multiprocessing.active_children()
    with pytest.raises(ValueError, match="config differs"):
        pes_rl.train(closing_run_config(tmp_path, "async", 0.2, resume=True))
    assert not multiprocessing.active_children()
