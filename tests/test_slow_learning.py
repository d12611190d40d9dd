"""Learning runs that take minutes: deselected by default, run with ``pytest -m slow``."""

from __future__ import annotations

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
