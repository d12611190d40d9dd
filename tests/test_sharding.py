"""The population split over devices: mesh settings, errors, and (in a 4-device process)
equality with the unsharded estimators."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pes_rl import agents, envs, policies
from pes_rl.stepping import sharding

TESTS = Path(__file__).resolve().parent


def test_one_device_runs_unsharded_and_bad_counts_say_what_exists():
    assert sharding.make_mesh("all") is None  # one CPU device here: the unsharded path
    assert sharding.make_mesh(1) is None
    for bad in (0, 99, "two"):
        with pytest.raises(ValueError, match=r"train.devices must be 'all' or an int in \[1, "):
            sharding.make_mesh(bad)


def test_particles_must_split_into_whole_pairs_per_device():
    four = SimpleNamespace(size=4)
    sharding.check_divisible(16, four, antithetic=True)
    with pytest.raises(ValueError, match=r"must divide by 2 × the 4 devices \(= 8\)"):
        sharding.check_divisible(12, four, antithetic=True)
    sharding.check_divisible(12, four, antithetic=False)
    env = envs.make("gym/CartPole-v1")
    with pytest.raises(ValueError, match="a device mesh needs a JAX env"):
        agents.make(
            "pes", env=env, policy=policies.make("linear", env), num_particles=8, sigma=0.1,
            unroll_length=10, mesh=four,
        )  # fmt: skip


@pytest.mark.slow
def test_sharded_estimators_equal_unsharded_on_4_cpu_devices():
    """Each estimator over 1, 2 and 4 devices: particle states bit for bit, gradients to float
    tolerance, per-particle state split between windows, no collective inside the scan."""
    result = subprocess.run(
        [sys.executable, str(TESTS / "sharded_equivalence.py")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("es", "ars", "tes", "pes", "nres"):
        assert f"{name}: 1, 2, 4 devices match the unsharded estimator" in result.stdout
    assert "no collective inside the window's scan" in result.stdout


@pytest.mark.slow
def test_train_devices_splits_the_run_and_gives_the_same_result(tmp_path):
    from cli import read_metrics, run_train

    four_cpus = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    common = ["experiment=influence_balancing_pes", "agent.num_particles=16",
              "train.iterations=40", "train.eval_every=20"]  # fmt: skip
    runs = {}
    for devices in (1, 4):
        run_dir = tmp_path / f"devices{devices}"
        result = run_train(run_dir, *common, f"train.devices={devices}", extra_env=four_cpus)
        assert result.returncode == 0, result.stderr
        runs[devices] = read_metrics(run_dir)
    one, four = (
        [r["eval_return"] for r in runs[d] if "eval_return" in r] for d in (1, 4)
    )  # fmt: skip
    assert four == pytest.approx(one, rel=1e-4)
    assert [r["env_steps"] for r in runs[4]] == [r["env_steps"] for r in runs[1]]

    odd = run_train(tmp_path / "odd", *common, "agent.num_particles=12", extra_env=four_cpus)
    assert odd.returncode == 2 and "must divide by 2 × the 4 devices (= 8)" in odd.stderr
