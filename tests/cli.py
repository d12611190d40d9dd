"""Runs ``python train.py`` and ``python -m pes_rl.after.plot`` in subprocesses, as a user would."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from pes_rl.training.run_log import read_records

REPO = Path(__file__).resolve().parent.parent
# Small and fast: PES on influence balancing, 100 particles.
FAST = [
    "experiment=influence_balancing_pes", "agent.num_particles=100", "train.eval_every=20",
    "train.checkpoint_every=50",
]  # fmt: skip


# One JAX compilation cache per test session, shared by every subprocess: most CLI tests run
# the same small config, and each would otherwise compile it again.
COMPILATION_CACHE = tempfile.mkdtemp(prefix="pes_rl_tests_jax_cache_")
atexit.register(shutil.rmtree, COMPILATION_CACHE, ignore_errors=True)


def cli_env() -> dict[str, str]:
    env = dict(
        os.environ, WANDB_MODE="offline", PYTHONUNBUFFERED="1",
        JAX_COMPILATION_CACHE_DIR=COMPILATION_CACHE,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )  # fmt: skip
    env.pop("WANDB_API_KEY", None)
    return env


def train_command(run_dir: Path | None, *overrides: str) -> list[str]:
    command = [sys.executable, str(REPO / "train.py"), *overrides]
    if run_dir is not None:
        command.append(f"hydra.run.dir={run_dir}")
    return command


def run_train(
    run_dir: Path | None,
    *overrides: str,
    cwd: Path | None = None,
    timeout: int = 300,
    extra_env: dict[str, str] | None = None,
):
    return subprocess.run(
        train_command(run_dir, *overrides), cwd=cwd or REPO, env=cli_env() | (extra_env or {}),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_evaluate(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m pes_rl.after.evaluate <args>``; skips the test when nothing can render."""
    import pytest

    result = subprocess.run(
        [sys.executable, "-m", "pes_rl.after.evaluate", *map(str, args)],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if result.returncode == 2 and "cannot render" in result.stderr:
        pytest.skip(f"no renderer on this machine: {result.stderr.strip()}")
    return result


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl; a line still being written is left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_records(run_dir / "metrics.jsonl")


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in records]


def wait_for(condition, timeout: float = 120.0) -> None:
    """Polls ``condition()`` until it holds; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)
