"""pes_rl.train from Python: the pinned result, non-finite rewards, resume in process."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import NaNAfter

import pes_rl
from pes_rl import envs
from pes_rl.envs.influence_balancing import THETA_OPTIMUM
from pes_rl.training.checkpoint import Checkpointer
from pes_rl.training.config import compose

envs.register("nan_after_100", NaNAfter)


def small_config(tmp_path, *overrides: str):
    cfg = compose(
        ["experiment=influence_balancing_pes", "agent.num_particles=100", "train.progress=false",
         *overrides]
    )  # fmt: skip
    cfg.run_dir = str(tmp_path / "run")
    return cfg


def test_train_returns_params_and_history(tmp_path):
    cfg = small_config(tmp_path, "agent.num_particles=1000")
    params, history = pes_rl.train(cfg)
    assert abs(float(params[0]) - THETA_OPTIMUM) < 0.02
    assert len(history) == 3000 and history[-1]["iteration"] == 3000
    assert history[-1]["env_steps"] == 3000 * 1000
    # The final evaluation: loss after 500 steps is ~0 at θ* (it is 8.0 at θ_0 = 0.5).
    assert -history[-1]["eval_final_reward"] < 1e-3


def test_non_finite_reward_stops_with_the_iteration_and_keeps_the_checkpoint(tmp_path):
    cfg = small_config(
        tmp_path, "env.id=nan_after_100", "~env.kwargs", "train.iterations=300",
        "train.checkpoint_every=50",
    )  # fmt: skip
    with pytest.raises(pes_rl.TrainingDiverged, match="non-finite reward .* at iteration 101;"):
        pes_rl.train(cfg)
    checkpointer = Checkpointer(cfg.run_dir)
    assert checkpointer.latest_iteration() == 100
    checkpointer.close()


def test_non_finite_reward_before_any_checkpoint_says_there_is_none(tmp_path):
    cfg = small_config(
        tmp_path, "env.id=nan_after_100", "~env.kwargs", "+env.kwargs.steps=0",
        "train.iterations=5", "train.checkpoint_every=50",
    )  # fmt: skip
    with pytest.raises(pes_rl.TrainingDiverged, match="at iteration 1; .*No checkpoint was saved"):
        pes_rl.train(cfg)


def test_resume_in_process_is_bit_identical(tmp_path):
    straight = small_config(
        tmp_path / "a", "train.iterations=120", "train.checkpoint_every=40", "train.eval_every=40"
    )
    params_straight, history_straight = pes_rl.train(straight)

    first = small_config(
        tmp_path / "b", "train.iterations=80", "train.checkpoint_every=40", "train.eval_every=40"
    )
    pes_rl.train(first)
    second = small_config(
        tmp_path / "b",
        "train.iterations=120",
        "train.checkpoint_every=40",
        "train.eval_every=40",
        "resume=true",
    )
    params_resumed, history_resumed = pes_rl.train(second)
    np.testing.assert_array_equal(np.asarray(params_resumed), np.asarray(params_straight))

    def strip(history):
        return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in history]

    assert strip(history_resumed) == strip(history_straight)


@pytest.mark.parametrize(
    "unroll_length, evaluated_at",
    [(1, [500, 1000, 1500, 2000]), (3, [600, 1200, 1500, 2100])],  # 100 and 300 steps/iteration
)
def test_eval_every_steps_evaluates_every_estimator_on_one_env_step_grid(
    tmp_path, unroll_length, evaluated_at
):
    """``train.eval_every_steps=500``: the first iteration that reaches each multiple of 500
    env steps is evaluated, and the budget's last iteration too, whatever the steps per
    iteration."""
    cfg = small_config(
        tmp_path, f"agent.unroll_length={unroll_length}", "train.iterations=1000",
        "train.max_env_steps=2000", "train.eval_every=null", "train.eval_every_steps=5e2",
    )  # fmt: skip
    _, history = pes_rl.train(cfg)
    assert [r["env_steps"] for r in history if "eval_return" in r] == evaluated_at


def test_eval_every_and_eval_every_steps_are_one_or_the_other():
    from pes_rl.training.config import validate

    cfg = compose(["train.eval_every_steps=1000"])
    validate(cfg)
    assert cfg.train.eval_every == 0  # the env-step grid alone
    validate(default := compose([]))
    assert default.train.eval_every == 25
    with pytest.raises(ValueError) as error:
        validate(compose(["train.eval_every=10", "train.eval_every_steps=1000"]))
    assert str(error.value) == (
        "train.eval_every=10 (iterations) and train.eval_every_steps=1000 (env steps) are both "
        "set: keep one (train.eval_every=null)"
    )


def test_checkpoint_round_trip_keeps_keys_and_dtypes(tmp_path):
    state = {"key": jax.random.key(3), "x": np.arange(3, dtype=np.int32)}
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(1, state)
    restored = checkpointer.restore(1, state)
    checkpointer.close()
    assert (
        jax.random.key_data(restored["key"]).tolist() == jax.random.key_data(state["key"]).tolist()
    )
    assert restored["x"].dtype == np.int32


def test_checkpoints_hold_empty_arrays_and_typed_keys(tmp_path):
    """MJX states (Playground) carry empty arrays such as ``data.act``; orbax cannot store
    those by itself."""
    state = {"act": jnp.zeros((4, 0)), "qpos": jnp.arange(3.0), "key": jax.random.key(7)}
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(1, state)
    restored = checkpointer.restore(1, state)
    checkpointer.close()
    assert restored["act"].shape == (4, 0)
    np.testing.assert_array_equal(restored["qpos"], state["qpos"])
    np.testing.assert_array_equal(
        jax.random.key_data(restored["key"]), jax.random.key_data(state["key"])
    )
