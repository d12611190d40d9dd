"""Learning runs that take minutes: deselected by default, run with ``pytest -m slow``."""

from __future__ import annotations

import statistics

import pytest
from cli import read_metrics, run_train


@pytest.mark.slow
def test_default_run_learns_swimmer(tmp_path):
    """``python train.py`` as the README's first command runs it (PES, linear, Swimmer-v5)."""
    run_dir = tmp_path / "run"
    result = run_train(run_dir, timeout=1200)
    assert result.returncode == 0, result.stderr
    records = read_metrics(run_dir)
    assert records[-1]["env_steps"] == 500 * 20 * 100
    # A random or zero linear policy scores about 0 ± 30 on Swimmer.
    assert records[-1]["eval_return"] > 200


@pytest.mark.slow
def test_tes_stays_far_below_pes_on_swimmer(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(run_dir, "experiment=swimmer_tes", "train.iterations=400", timeout=1200)
    assert result.returncode == 0, result.stderr
    assert read_metrics(run_dir)[-1]["eval_return"] < 150


@pytest.mark.slow
def test_pes_on_swimmer_keeps_the_papers_pace(tmp_path):
    """The PES paper's recipe (NumPy, benchmarks/swimmer_reference.py) reaches an eval return
    of 300 by 350k–450k env steps on seeds 0–2; so must experiment=swimmer_pes."""
    result = run_train(
        None, "-m", "experiment=swimmer_pes", "train.seed=0,1,2", "train.iterations=250",
        "train.checkpoint_every=0", f"hydra.sweep.dir={tmp_path}",
        "hydra.sweep.subdir=${hydra:job.num}", timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    best = []
    for job in range(3):
        records = read_metrics(tmp_path / str(job))
        assert records[-1]["env_steps"] == 500_000
        best.append(max(r["eval_return"] for r in records if "eval_return" in r))
    assert statistics.median(best) >= 300, best


@pytest.mark.slow
def test_ars_learns_halfcheetah_within_its_budget(tmp_path):
    """``experiment=halfcheetah_ars`` (the paper's V2-t settings) ends at its env-step budget
    and runs forward: the zero policy scores about 0, ARS passes 500 by 512k env steps (the
    NumPy reference, benchmarks/ars_reference.py, did on its seeds 0–2)."""
    run_dir = tmp_path / "run"
    result = run_train(
        run_dir, "experiment=halfcheetah_ars", "train.max_env_steps=512000",
        "train.eval_every=2", timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(run_dir)
    assert records[-1]["env_steps"] == 512_000  # 8 iterations of 64 whole episodes
    assert max(r["eval_return"] for r in records if "eval_return" in r) > 500
