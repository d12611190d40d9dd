"""The meta-task experiments through ``train.py``, random search, θ logging and the toy plot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from cli import REPO, cli_env, read_metrics, run_train

from pes_rl.training.config import CONFIG_DIR

META_EXPERIMENTS = sorted(
    p.stem
    for p in (CONFIG_DIR / "experiment").glob("*.yaml")
    if p.stem.startswith(("lr_toy2d", "lr_schedule", "hparams29"))
)
# Two iterations of every config, shrunk to a short inner run and a few particles.
SMALL = [
    "train.iterations=2", "agent.num_particles=4", "env.kwargs.horizon=20",
    "train.eval_episodes=1", "train.eval_every=0", "train.checkpoint_every=0",
]  # fmt: skip


def run_two_iterations(experiments: list[str], sweep_dir) -> None:
    """One ``train.py -m`` sweep over ``experiments``; checks each job's metrics."""
    result = run_train(
        None, "-m", f"experiment={','.join(experiments)}", *SMALL,
        f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra:job.num}", timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for job, experiment in enumerate(experiments):
        records = read_metrics(sweep_dir / str(job))
        assert [r["iteration"] for r in records] == [1, 2], experiment
        last = records[-1]
        assert np.isfinite(last["eval_return"]) and len(last["theta"]) in (2, 29), experiment
        if experiment.endswith(("_es", "_es_cpu", "random_search")):
            # Whole inner runs: every particle (or search point) costs T = 20 inner steps.
            assert last["env_steps"] == 2 * 4 * 20, experiment


@pytest.mark.slow
def test_one_experiment_of_each_meta_task_runs_two_iterations(tmp_path):
    """An estimator and random search on the MLP tasks. Compiling their inner steps takes
    half a minute, so this is in the slow suite with all 18 configs; the default suite runs
    the toy (below) and a learned-optimizer config (test_lopt_cli.py) through train.py."""
    run_two_iterations(["lr_schedule_pes_cpu", "hparams29_random_search"], tmp_path)


@pytest.mark.slow
def test_every_meta_experiment_runs_two_iterations(tmp_path):
    assert len(META_EXPERIMENTS) == 18
    run_two_iterations(META_EXPERIMENTS, tmp_path)


@pytest.mark.slow  # a search run; random search on the trainer's loop is tested by default
def test_random_search_keeps_the_best_point(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        run_dir, "experiment=lr_toy2d_random_search", "train.iterations=5",
        "agent.num_particles=8", "train.eval_every=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(run_dir)
    assert [r["env_steps"] for r in records] == [800 * i for i in range(1, 6)]
    best = [r["search_return"] for r in records]
    assert best == sorted(best) and np.isfinite(best[-1])  # the incumbent only improves
    # The toy is deterministic: θ's evaluation repeats its search score.
    assert records[-1]["eval_return"] == pytest.approx(records[-1]["search_return"], rel=1e-5)
    # The plot's best-so-far table of a loss metric: the running minimum.
    plot = subprocess.run(
        [sys.executable, "-m", "pes_rl.after.plot", str(run_dir), "-o", str(tmp_path / "p.png"),
         "--metric", "eval_final_loss", "--best", "--budgets", "2400", "4000"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert plot.returncode == 0, plot.stderr
    row = next(line for line in plot.stdout.splitlines() if line.startswith("| RANDOM SEARCH"))
    losses = [r["eval_final_loss"] for r in records]
    expected = [min(losses[:3]), min(losses)]
    assert row.strip(" |").split(" | ")[2:] == [f"{v:.4g} ± 0" for v in expected]


def test_random_search_on_an_rl_env_is_refused(tmp_path):
    result = run_train(tmp_path / "run", "agent=random_search", "env=influence_balancing")
    assert result.returncode == 2
    assert "agent=random_search needs an unrolled-optimization task" in result.stderr


@pytest.mark.slow  # a plotting command; the toy's gradients are tested in test_unbiased_meta
def test_toy_plot_draws_surface_and_trajectories(tmp_path):
    run_dir = tmp_path / "pes"
    result = run_train(
        run_dir, "experiment=lr_toy2d_pes", "train.iterations=10", "train.eval_every=0"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    thetas = [r["theta"] for r in read_metrics(run_dir)]
    assert len(thetas) == 10 and thetas[0] != thetas[-1]
    assert np.allclose(thetas[0], [-4, -4], atol=0.02)  # one Adam step of lr 1e-2 from θ_0
    output = tmp_path / "toy.png"
    plot = subprocess.run(
        [sys.executable, "-m", "pes_rl.after.toy_plot", str(run_dir), "-o", str(output), "--grid",
         "41"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert plot.returncode == 0, plot.stderr
    assert output.stat().st_size > 10_000
    assert "grid minimum" in plot.stdout and "pes final θ" in plot.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "pes_rl.after.toy_plot", str(tmp_path)], cwd=REPO, env=cli_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "not an lr_toy2d run directory" in bad.stderr


def test_random_search_runs_on_the_trainers_loop_and_resumes(tmp_path):
    """A search strategy beside the estimators: checkpoints, resume bit for bit."""
    import pes_rl
    from pes_rl.training.config import compose

    def config(run_dir, iterations: int, resume: bool = False):
        cfg = compose(
            ["experiment=lr_toy2d_random_search", "agent.num_particles=8",
             f"train.iterations={iterations}", "train.eval_every=2", "train.checkpoint_every=2",
             "train.progress=false", f"resume={str(resume).lower()}"]
        )  # fmt: skip
        cfg.run_dir = str(run_dir)
        return cfg

    straight = pes_rl.train(config(tmp_path / "straight", 6))
    pes_rl.train(config(tmp_path / "resumed", 4))
    resumed = pes_rl.train(config(tmp_path / "resumed", 6, resume=True))

    def strip(history):
        return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in history]

    assert strip(resumed.history) == strip(straight.history)
    assert [r["env_steps"] for r in resumed.history] == [800 * i for i in range(1, 7)]
