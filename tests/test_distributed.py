"""Two ``train.py`` processes on localhost train as one (jax.distributed, gloo on CPU)."""

from __future__ import annotations

import random
import socket
import subprocess

import jax
import numpy as np
import pytest
from cli import REPO, cli_env, read_metrics, run_train, train_command, without_timing
from omegaconf import OmegaConf

from pes_rl.after import trained

COMMON = [
    "experiment=influence_balancing_pes", "agent.num_particles=16", "train.eval_every=10",
    "train.checkpoint_every=10",
]  # fmt: skip


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a port the kernel hands out (bind to
    port 0) can be handed to another process between this probe and the coordinator's bind."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20_000, 32_000)
        with socket.socket() as probe:
            try:
                probe.bind(("localhost", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port in 20000-32000")


def run_two_processes(run_dir, *overrides: str) -> list[subprocess.CompletedProcess]:
    """Both processes of one distributed run: the same overrides, each its own process id."""
    port = free_port()
    processes = [
        subprocess.Popen(
            train_command(
                run_dir,
                *overrides,
                "train.distributed.enabled=true",
                f"train.distributed.coordinator=localhost:{port}",
                "train.distributed.num_processes=2",
                f"train.distributed.process_id={index}",
            ),
            cwd=REPO,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for index in (0, 1)
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        results.append(
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        )
    return results


@pytest.mark.slow  # 6 processes, about 20 s
def test_two_processes_train_as_one_and_resume_together(tmp_path):
    two = run_two_processes(tmp_path / "two", *COMMON, "train.iterations=20")
    for result in two:
        assert result.returncode == 0, result.stderr
    assert "done: 20 iterations" in two[0].stdout
    assert "done:" not in two[1].stdout  # process 0 reports for the run
    one = run_train(tmp_path / "one", *COMMON, "train.iterations=20")
    assert one.returncode == 0, one.stderr

    # One metrics line per iteration (process 0 writes), the same run as one process of N = 16.
    records = {name: read_metrics(tmp_path / name) for name in ("one", "two")}
    assert [r["iteration"] for r in records["two"]] == list(range(1, 21))
    evals = {
        name: [r["eval_return"] for r in rs if "eval_return" in r] for name, rs in records.items()
    }
    assert evals["two"] == pytest.approx(evals["one"], rel=1e-5)
    theta_one = trained.load(tmp_path / "one").params
    theta_two = trained.load(tmp_path / "two").params
    for leaf_one, leaf_two in zip(*map(np.ravel, (theta_one, theta_two)), strict=True):
        np.testing.assert_allclose(leaf_two, leaf_one, rtol=1e-5, atol=1e-7)

    # Both processes restore the orbax checkpoint (each its own shards) and go on together.
    resumed = run_two_processes(tmp_path / "two", *COMMON, "train.iterations=30", "resume=true")
    for result in resumed:
        assert result.returncode == 0, result.stderr
    longer = run_train(tmp_path / "one", *COMMON, "train.iterations=30", "resume=true")
    assert longer.returncode == 0, longer.stderr
    final = {name: read_metrics(tmp_path / name)[-1] for name in ("one", "two")}
    assert final["two"]["iteration"] == 30
    assert final["two"]["eval_return"] == pytest.approx(final["one"]["eval_return"], rel=1e-5)


@pytest.mark.slow  # 3 processes, about 15 s
def test_two_processes_step_a_host_env_half_each(tmp_path):
    """Gymnasium sub-envs split over the processes: the same run as one process (the shared
    key gives every process the same ε and reset seeds; the windows' results are gathered)."""
    host = ["env.id=CartPole-v1", "agent.num_particles=8", "agent.unroll_length=20",
            "train.iterations=6", "train.eval_every=3", "train.checkpoint_every=3"]  # fmt: skip
    two = run_two_processes(tmp_path / "two", *host)
    for result in two:
        assert result.returncode == 0, result.stderr
    one = run_train(tmp_path / "one", *host)
    assert one.returncode == 0, one.stderr
    assert without_timing(read_metrics(tmp_path / "two")) == without_timing(
        read_metrics(tmp_path / "one")
    )
    odd = run_two_processes(tmp_path / "odd", *host, "agent.num_particles=6")
    assert odd[0].returncode == 2
    assert "must divide by 2 × the 2 processes" in odd[0].stderr
    alone = run_train(tmp_path / "alone", *host, "train.distributed.enabled=true")
    assert alone.returncode == 2  # no coordinator and no cluster launcher to read one from
    assert "set train.distributed.coordinator (host:port of process 0)" in alone.stderr


def test_distributed_settings_that_cannot_work_say_why():
    from pes_rl.stepping import distributed

    def settings(**train):
        return OmegaConf.create({"train": {"distributed": {"enabled": True}} | train})

    with pytest.raises(ValueError, match="train.distributed needs train.devices=all"):
        distributed.initialize(settings(devices=1))
    jax.numpy.zeros(1).block_until_ready()  # JAX at work in this process, as in a notebook
    with pytest.raises(ValueError, match="call pes_rl.train before any other JAX work"):
        distributed.initialize(settings())


def test_one_process_agrees_with_itself(tmp_path):
    from pes_rl.stepping import distributed

    distributed.initialize(OmegaConf.create({"train": {"distributed": {"enabled": False}}}))
    assert distributed.is_primary()
    assert distributed.agree_on_path(tmp_path / "run") == tmp_path / "run"
    assert distributed.primary_says(True) and not distributed.primary_says(False)
