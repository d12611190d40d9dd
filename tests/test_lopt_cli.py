"""The learned-optimizer experiments through ``train.py`` and ``pes_rl.meta.lopt_eval``."""

from __future__ import annotations

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from cli import REPO, cli_env, read_metrics, run_train

from pes_rl import lopt
from pes_rl.training.config import CONFIG_DIR, compose
from pes_rl.training.trainer import build, make_curriculum

LOPT_EXPERIMENTS = sorted(
    p.stem for p in (CONFIG_DIR / "experiment").glob("learned_optimizer_*.yaml")
)
# Two iterations of a config, shrunk to short inner runs and a few particles. A sweep composes
# its shared overrides with the default env first, which has no such keys: hence "++".
SMALL = [
    "train.iterations=2", "agent.num_particles=4", "++env.kwargs.min_length=10",
    "++env.kwargs.max_length=20", "++env.kwargs.eval_length=20", "train.eval_episodes=1",
    "train.eval_every=0", "train.checkpoint_every=0",
]  # fmt: skip


def run_two_iterations(experiments: list[str], sweep_dir, *overrides: str) -> None:
    result = run_train(
        None, "-m", f"experiment={','.join(experiments)}", *SMALL, *overrides,
        f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra:job.num}", timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for job, experiment in enumerate(experiments):
        run_dir = sweep_dir / str(job)
        records = read_metrics(run_dir)
        assert [r["iteration"] for r in records] == [1, 2], experiment
        assert np.isfinite(records[-1]["eval_train_loss"]), experiment
        theta = lopt.load(run_dir)  # saved with the final checkpoint, loads without a config
        hidden = [32] if "cnn" in experiment else [32, 32]  # one hidden layer: cheap on CNNs
        assert [layer["b"].size for layer in theta.layers] == [*hidden, 2], experiment


@pytest.mark.slow  # lopt.save/load and PES on the env are in test_lopt's default tests
def test_learned_optimizer_pes_runs_and_saves_a_loadable_optimizer(tmp_path):
    """PES on the quadratic family through the CLI (an MLP inner step takes seconds to
    compile); the next test runs all eight configs on their MLP task."""
    run_two_iterations(["learned_optimizer_pes_cpu"], tmp_path, "++env.kwargs.task=quadratic")
    # The saved θ drops into an ordinary optax loop.
    optimizer = lopt.as_optax(lopt.load(tmp_path / "0"))
    params = {"w": jnp.ones(4)}
    updates, _ = optimizer.update({"w": jnp.ones(4)}, optimizer.init(params), params)
    assert np.all(np.isfinite(np.asarray(optax.apply_updates(params, updates)["w"])))


@pytest.mark.slow
def test_every_learned_optimizer_experiment_runs_two_iterations(tmp_path):
    cnn = [f"learned_optimizer_cnn_{objective}{size}" for objective in ("train", "val")
           for size in ("", "_gpu")]  # fmt: skip
    assert LOPT_EXPERIMENTS == sorted(
        [f"learned_optimizer_{name}{size}" for name in ("es", "hybrid", "pes", "tes")
         for size in ("", "_cpu")] + cnn
    )  # fmt: skip
    # The CNN GPU configs differ from the CPU ones in lengths only (the snapshot test pins them).
    run_two_iterations([e for e in LOPT_EXPERIMENTS if not e.endswith("_gpu")], tmp_path)


@pytest.mark.slow
def test_hybrid_curriculum_logs_growing_windows(tmp_path):
    run_dir = tmp_path / "hybrid"
    result = run_train(
        run_dir, "experiment=learned_optimizer_hybrid_cpu", "env.kwargs.task=quadratic",
        "train.iterations=12", "agent.num_particles=4",
        "agent.unroll_length=16", "agent.curriculum.start=4", "agent.curriculum.iterations=8",
        "train.eval_every=0", "env.kwargs.max_length=40", "env.kwargs.min_length=10",
        "env.kwargs.eval_length=40",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lengths = [r["unroll_length"] for r in read_metrics(run_dir)]
    assert lengths[0] <= 5 and lengths[-1] >= 13 and max(lengths) <= 16
    assert np.mean(lengths[-4:]) > np.mean(lengths[:4])


def test_curriculum_settings_are_checked():
    for overrides, message in [
        (["experiment=learned_optimizer_es_cpu", "+agent.curriculum={start:5}"],
         "agent.curriculum needs a persistent estimator"),
        (["experiment=learned_optimizer_hybrid_cpu", "agent.curriculum.end=64"],
         "must equal agent.unroll_length"),
        (["experiment=learned_optimizer_hybrid_cpu", "+agent.curriculum.steps=3"],
         "takes start, end, iterations, jitter"),
    ]:  # fmt: skip
        cfg = compose([*overrides, "env.kwargs.task=quadratic"])
        _, _, agent, _ = build(cfg)
        with pytest.raises(ValueError, match=message):
            make_curriculum(cfg, agent)


@pytest.mark.slow
def test_lopt_eval_draws_the_comparison_with_tuned_adam(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        run_dir, "experiment=learned_optimizer_pes_cpu", *SMALL[:-1],
        "env.kwargs.task=quadratic", "train.checkpoint_every=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = subprocess.run(
        [sys.executable, "-m", "pes_rl.meta.lopt_eval", str(run_dir), "--steps", "40", "--seeds",
         "2", "--record-every", "20"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    out = run_dir / "lopt_eval"
    assert (out / "curves.png").stat().st_size > 10_000
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "quadratic" and results["objective"] == "train_loss"
    assert set(results) >= {"train", "heldout"}
    names = ("adam", "rmsprop", "sgd_momentum")
    for row in (results["train"], results["heldout"]):
        assert 1e-4 <= row["adam_lr"] <= 10 and np.isfinite(row["adam_final_loss"])
        # Tuned Adam beats a barely trained learned optimizer on 40 steps of a quadratic.
        assert row["adam_final_loss"] < row["learned_final_loss"]
        for name in names:
            assert 1e-4 <= row[f"{name}_lr"] <= 10 and row[f"{name}_ms_per_step"] > 0
        # 3 points a run: the tuning score is the final loss, so the best baseline has the
        # lowest final loss, and is the target the speed-up is measured against.
        assert row["best_baseline"] in names
        assert row["best_baseline_final_loss"] == min(row[f"{n}_final_loss"] for n in names)
        assert row["target_loss"] == row["best_baseline_final_loss"] < row["learned_final_loss"]
        assert row["baseline_steps_to_target"] in (0, 20, 40)
        # One loss for the quadratic: the test loss at the best "validation" step is each
        # seed's lowest training loss of the run.
        assert 0 < row["learned_test_loss_at_best_val"] <= np.max(row["learned_final_loss_range"])
        assert 0 < row["best_baseline_test_loss_at_best_val"]
        assert set(row["targets"]) == {"train_loss_0.1", "train_loss_0.01", "train_loss_0.001",
                                       "baseline_final_loss"}  # fmt: skip
        assert row[f"{row['best_baseline']}_schedule"] in ("constant", "cosine")
        for key in ("speedup_steps", "speedup_seconds", "adam_speedup_steps"):
            assert key in row
    table = (out / "results.md").read_text()
    assert "| train |" in table and "Tuned baselines" in table
    missing = subprocess.run(
        [sys.executable, "-m", "pes_rl.meta.lopt_eval", str(tmp_path)], cwd=REPO, env=cli_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2 and "no learned optimizer" in missing.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "pes_rl.meta.lopt_eval", str(run_dir), "--task", "resnet"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert unknown.returncode == 2 and "--task must be one of" in unknown.stderr
    no_val = subprocess.run(
        [sys.executable, "-m", "pes_rl.meta.lopt_eval", str(run_dir), "--objective", "val_loss"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert no_val.returncode == 2 and "no validation split" in no_val.stderr
