"""A user's own estimator (docs/own-estimator.md): ``examples/decaying_pes.py`` named as
``module:Class`` trains, checkpoints and resumes like a built-in one."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import HazardEnv

import pes_rl
from pes_rl import agents, envs, policies
from pes_rl.training.config import compose

REPO = Path(__file__).resolve().parent.parent
NAME = "examples.decaying_pes:DecayingPES"


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))  # as the CLI imports modules of the current dir


def test_decaying_pes_at_decay_one_is_pes_bit_for_bit():
    """γ = 1 gives PES's estimates from the same state and key, here where episodes end
    inside windows and the policy sets when (the hazard task)."""
    env = HazardEnv()
    policy = policies.make("constant", env)
    theta = policy.init(jax.random.key(0)) + 0.6
    kwargs = dict(env=env, policy=policy, num_particles=16, sigma=0.05, unroll_length=100)
    pes, own = agents.make("pes", **kwargs), agents.make(NAME, **kwargs)
    own.decay = 1.0
    pes_state = pes.init(jax.random.key(1), theta)
    # A copy: estimate donates its state's buffers.
    own_state = type(own.init(jax.random.key(1), theta))(*jax.tree.map(jnp.copy, pes_state))
    for window in range(3):
        key = jax.random.key(10 + window)
        pes_grad, pes_state, pes_metrics = pes.estimate(pes_state, theta, key)
        own_grad, own_state, _ = own.estimate(own_state, theta, key)
        np.testing.assert_array_equal(np.asarray(own_grad), np.asarray(pes_grad))
    assert int(pes_metrics["episodes"]) > 0  # episodes did end inside these windows


def test_unknown_own_estimators_are_one_line_errors():
    env = envs.make("influence_balancing")
    policy = policies.make("constant", env)
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        agents.make("no_such_module:X", env=env, policy=policy, num_particles=2, sigma=0.1)
    with pytest.raises(ValueError, match="has no subclass of pes_rl.agents.Estimator"):
        agents.make("examples.decaying_pes:jnp", env=env, policy=policy, num_particles=2, sigma=0.1)


def own_run(tmp_path, env: list[str], iterations: int, resume: bool = False, name: str = "run"):
    cfg = compose(
        [*env, f"agent.name={NAME}", "agent.num_particles=8", "agent.unroll_length=50",
         f"train.iterations={iterations}", "train.checkpoint_every=2", "train.eval_every=2",
         "train.progress=false", f"resume={str(resume).lower()}"]
    )  # fmt: skip
    cfg.run_dir = str(tmp_path / name)
    return pes_rl.train(cfg)


@pytest.mark.slow  # three short runs, each compiling its iteration: ~25 s on 2 cores
def test_trains_on_gymnax_and_resumes_bit_identical(tmp_path):
    gymnax = ["env=gymnax", "env.id=CartPole-v1"]
    whole = own_run(tmp_path, gymnax, 4, name="whole")
    own_run(tmp_path, gymnax, 2)
    resumed = own_run(tmp_path, gymnax, 4, resume=True)
    assert [h["iteration"] for h in resumed.history] == [1, 2, 3, 4]
    np.testing.assert_array_equal(np.asarray(resumed.params["w"]), np.asarray(whole.params["w"]))
    assert whole.history[-1]["eval_return"] > 0


@pytest.mark.slow
def test_trains_on_a_gymnasium_env(tmp_path):
    result = own_run(tmp_path, ["env.id=CartPole-v1"], 2)
    assert result.history[-1]["env_steps"] > 0
    assert np.isfinite(result.history[-1]["eval_return"])
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_a_strategy_named_as_module_class_runs_as_its_built_in_name(tmp_path):
    """The trainer checks no strategy's name: random search named by its class path (a
    Strategy that is not an Estimator: its own key splits, update and evaluation) gives the
    built-in ``agent=random_search`` run's metrics exactly."""
    histories = []
    for name in ("random_search", "pes_rl.agents.random_search:RandomSearch"):
        cfg = compose(
            ["experiment=lr_toy2d_random_search", f"agent.name={name}", "agent.num_particles=4",
             "train.iterations=3", "train.eval_every=3", "train.progress=false",
             f"run_dir={tmp_path / name.replace(':', '_')}"]
        )  # fmt: skip
        histories.append(pes_rl.train(cfg).history)
    strip = [[{k: v for k, v in r.items() if k != "steps_per_s"} for r in h] for h in histories]
    assert strip[0] == strip[1]
    assert "eval_return" in strip[0][-1] and np.isfinite(strip[0][-1]["search_return"])
