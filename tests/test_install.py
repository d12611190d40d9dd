"""A non-editable install: the ``pes-rl`` command works from any directory, configs included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli import REPO, cli_env

NOT_SHIPPED = (".git", "runs", "outputs", "multirun", "wandb", "build", "benchmarks", "*.egg-info")


@pytest.mark.slow
def test_pes_rl_command_from_a_non_editable_install(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED, "__pycache__"))
    venv = tmp_path / "venv"
    # The venv sees this interpreter's packages (JAX, Brax, ...), so only pes_rl is installed.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    install = subprocess.run(
        [venv / "bin" / "pip", "install", "--no-deps", "-q", str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    shutil.rmtree(source)  # the installed copy must not need the source tree

    workdir = tmp_path / "anywhere"
    workdir.mkdir()

    def pes_rl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [venv / "bin" / "pes-rl", *args], cwd=workdir, env=cli_env(),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    located = subprocess.run(
        [venv / "bin" / "python", "-c", "import pes_rl; print(pes_rl.__file__)"],
        cwd=workdir, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(venv) in located.stdout  # the installed package, not the checkout

    train = pes_rl(
        "train", "experiment=influence_balancing_pes", "agent.num_particles=20",
        "train.iterations=10", "train.eval_every=5",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    (run_dir,) = (workdir / "runs" / "influence_balancing" / "pes").iterdir()
    assert (run_dir / "policy.npz").exists() and (run_dir / "train.log").exists()

    evaluate = pes_rl("evaluate", str(run_dir), "--episodes", "2")
    assert evaluate.returncode == 0, evaluate.stderr
    assert "influence_balancing, iteration 10: return" in evaluate.stdout

    plot = pes_rl("plot", str(run_dir), "-o", "curve.png")
    assert plot.returncode == 0, plot.stderr
    assert (workdir / "curve.png").stat().st_size > 0

    typo = pes_rl("train", "+agent.sigmaa=0.1")
    assert typo.returncode == 2 and "agent.sigmaa" in typo.stderr
    assert "Traceback" not in typo.stderr
    unknown = pes_rl("fly")
    assert unknown.returncode == 2 and "unknown command 'fly'" in unknown.stderr
    assert Path(workdir / "runs").is_dir()


def test_envs_and_agents_load_without_the_trainer_stack():
    """``import pes_rl.envs`` / ``pes_rl.agents``: no trainer, orbax or Hydra configs (the
    package's ``train`` and ``load`` load when first used)."""
    probe = (
        "import sys, pes_rl.envs, pes_rl.agents\n"
        "heavy = [m for m in ('pes_rl.training.trainer', 'orbax.checkpoint', 'omegaconf',"
        " 'hydra') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import pes_rl\n"
        "assert pes_rl.train.__module__ == 'pes_rl.training.trainer'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
