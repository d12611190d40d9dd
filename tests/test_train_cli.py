"""train.py as a user runs it: train, sweep, plot, Ctrl-C and resume, SIGKILL, W&B, bad input."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
from cli import (
    FAST,
    REPO,
    cli_env,
    read_metrics,
    run_train,
    train_command,
    wait_for,
    without_timing,
)

import pes_rl
from pes_rl.training.config import compose


def test_train_writes_metrics_config_and_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(run_dir, *FAST, "train.iterations=100", "agent.sigma=0.05")
    assert result.returncode == 0, result.stderr
    assert f"results in {run_dir}" in result.stdout
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == list(range(1, 101))
    assert records[-1]["env_steps"] == 100 * 100  # N = 100 particles, K = 1
    assert {"grad_norm", "steps_per_s", "window_reward"} <= set(records[0])
    assert [r["iteration"] for r in records if "eval_return" in r] == [20, 40, 60, 80, 100]
    # PES improves θ: the eval return rises (loss falls) over training.
    evals = [r["eval_return"] for r in records if "eval_return" in r]
    assert evals[-1] > evals[0]
    assert (run_dir / "config.yaml").exists() and (run_dir / ".hydra" / "config.yaml").exists()
    assert "sigma: 0.05" in (run_dir / "config.yaml").read_text()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == [
        "100", "50",
    ]  # fmt: skip


def test_sweep_and_plot(tmp_path):
    result = run_train(
        None, "-m", "agent=pes,nres", *FAST, "train.iterations=40",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_dirs = sorted(
        p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name[0].isdigit()
    )
    assert [p.name.split("-")[2] for p in run_dirs] == ["pes", "nres"]
    output = tmp_path / "compare.png"
    plot = subprocess.run(
        [sys.executable, "-m", "pes_rl.after.plot", *map(str, run_dirs), "-o", str(output),
         "--budgets", "2000", "4000"],
        cwd=REPO, capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert plot.returncode == 0, plot.stderr
    assert "PES influence_balancing" in plot.stdout and "NRES influence_balancing" in plot.stdout
    assert output.stat().st_size > 10_000
    # 40 iterations of 100 particles: evaluations at 2,000 and 4,000 env steps.
    rows = [line for line in plot.stdout.splitlines() if line.startswith("| PES")]
    assert len(rows) == 1 and rows[0].count("±") == 2


@pytest.mark.parametrize(
    "argv, note",
    [
        (["-m", "agent=es,pes"], "note: es and pes can take different env steps per iteration "
         "(es, ars run whole episodes), so this sweep's runs can end and be evaluated at "
         "different env steps; add train.max_env_steps=N train.eval_every_steps=N to compare "
         "them at equal env steps"),
        (["-m", "experiment=hopper_ars,hopper_pes"], "so this sweep's runs can be evaluated at "
         "different env steps; add train.eval_every_steps=N to"),  # the experiments set budgets
        (["-m", "agent=es,pes", "train.max_env_steps=2e5", "train.eval_every_steps=2e4"], None),
        (["-m", "agent=pes", "train.seed=0,1"], None),  # one estimator
        (["agent=es"], None),
    ],
    ids=["es,pes", "experiments with budgets", "fair", "one estimator", "no sweep"],
)  # fmt: skip
def test_a_sweep_over_estimators_on_an_iteration_schedule_says_so(argv, note):
    from pes_rl import cli

    line = cli.parse_command_line(argv)
    said = cli.schedule_note(line, cli.run_configs(line))
    assert said == note if note is None or note.startswith("note:") else note in said


def interrupt_then_resume(tmp_path, stop_signal: int, checkpoint_every: int, after: int):
    """Starts a run too long to end by itself, sends ``stop_signal`` after ``after``
    iterations, resumes it to 20 iterations past its last record; returns (stderr of the
    stopped run, its exit code, the resumed run's metrics, an uninterrupted run's)."""
    overrides = [*FAST, "agent.unroll_length=20", f"train.checkpoint_every={checkpoint_every}"]
    stopped = tmp_path / "stopped"
    process = subprocess.Popen(
        train_command(stopped, *overrides, "train.iterations=1000000"), cwd=REPO, env=cli_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: (stopped / "metrics.jsonl").exists() and len(read_metrics(stopped)) >= after)
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=120)
    total = len(read_metrics(stopped)) + 20  # train.iterations may change on resume

    resumed = run_train(stopped, *overrides, f"train.iterations={total}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    reference = compose([*overrides, f"train.iterations={total}", "train.progress=false"])
    reference.run_dir = str(tmp_path / "reference")  # in process: the same pes_rl.train
    return stderr, process.returncode, read_metrics(stopped), pes_rl.train(reference).history


def test_ctrl_c_then_resume_matches_uninterrupted_run(tmp_path):
    stderr, code, resumed, reference = interrupt_then_resume(tmp_path, signal.SIGINT, 100, 30)
    assert code == 130, stderr
    assert "resume with: python train.py" in stderr and "resume=true" in stderr
    assert without_timing(resumed) == without_timing(reference)


def loaded(process: subprocess.Popen, library: str) -> bool:
    """Whether ``process`` has mapped a shared library whose path holds ``library``, or ended."""
    try:
        return library in Path(f"/proc/{process.pid}/maps").read_text()
    except OSError:  # it ended
        return True


@pytest.mark.parametrize(
    "moment",
    ["jaxlib", "_multiarray_umath", ".hydra"],  # jaxlib loads, NumPy inside it, Hydra's dir made
)
def test_ctrl_c_during_start_up_stops_in_one_line(tmp_path, moment):
    """Ctrl-C while the run imports JAX (inside jaxlib's initialization, in JAX's gc
    callbacks) or builds: one line, exit code 130, no run dir; never a traceback, never a
    run that trains on."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        train_command(run_dir, *FAST, "train.iterations=1000000"), cwd=REPO, env=cli_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if moment.startswith("."):
        wait_for(lambda: (run_dir / moment).exists() or process.poll() is not None)
    else:
        wait_for(lambda: loaded(process, moment), timeout=60)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "stopped before the first iteration finished; nothing was saved"
    assert not run_dir.exists()


class Litter:
    """An object whose end (a weakref callback) runs when it is collected."""


@pytest.mark.parametrize("where", ["gc callback", "weakref callback"])
def test_a_ctrl_c_inside_a_callback_is_raised_after_it(monkeypatch, where):
    """Raised inside a gc callback (JAX has one) or a weakref callback, KeyboardInterrupt
    would be printed as "Exception ignored in ..." and dropped, and the run would train on:
    the handler lets a gc callback finish, and sends a dropped Ctrl-C again."""
    from pes_rl import interrupts

    monkeypatch.setattr(interrupts, "_state", {"pending": False, "raising": True, "raised": False})
    dropped, sent = [], []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)

    def ctrl_c(*_):
        if not sent:
            sent.append(where)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000):  # the handler runs here, inside the callback
                pass

    litter = Litter()
    ends = weakref.ref(litter, ctrl_c)
    previous = signal.getsignal(signal.SIGINT)
    gc.callbacks.append(ctrl_c)
    try:
        interrupts.install()
        with pytest.raises(KeyboardInterrupt):
            if where == "gc callback":
                gc.collect()
            else:
                gc.callbacks.remove(ctrl_c)
                del litter
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        if ctrl_c in gc.callbacks:
            gc.callbacks.remove(ctrl_c)
        signal.signal(signal.SIGINT, previous)
    assert sent and dropped == [] and (ends() is None) == (where == "weakref callback")


def test_sigkill_between_checkpoints_then_resume_is_bit_identical(tmp_path):
    _, code, resumed, reference = interrupt_then_resume(tmp_path, signal.SIGKILL, 50, 120)
    assert code == -signal.SIGKILL
    assert without_timing(resumed) == without_timing(reference)


def test_resume_with_changed_settings_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train(run_dir, *FAST, "train.iterations=50").returncode == 0
    result = run_train(run_dir, *FAST, "train.iterations=80", "agent.sigma=0.2", "resume=true")
    assert result.returncode == 2
    assert "agent.sigma" in result.stderr and "Traceback" not in result.stderr


def test_wandb_offline_run_is_written(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(run_dir, *FAST, "train.iterations=30", "logger=wandb", "logger.tags=[test]")
    assert result.returncode == 0, result.stderr
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert len(read_metrics(run_dir)) == 30


def test_wandb_failure_never_stops_training(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(run_dir, *FAST, "train.iterations=30", "logger=wandb", "logger.mode=bogus")
    assert result.returncode == 0, result.stderr
    assert "W&B failed" in result.stderr
    assert len(read_metrics(run_dir)) == 30


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["agent=nope"], "Could not find 'agent/nope'"),
        (["agent.sigma=-1"], "sigma must be a finite number > 0"),
        (["agent.num_particles=7"], "num_particles must be even with antithetic=True"),
        (["train.iterations=0"], "train.iterations must be an int >= 1"),
        (["env.id=nope"], "unknown Gymnasium env id 'nope'"),
        (["env=influence_balancing", "env.id=nope"], "unknown env id 'nope'"),
        (["optimizer.lr=0"], "optimizer.lr must be a finite number > 0"),
    ],
)
def test_bad_input_gives_a_message_not_a_traceback(tmp_path, overrides, message):
    result = run_train(tmp_path / "run", *overrides)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if result.returncode == 2:  # our checks: nothing was trained, no empty run dir is left
        assert not (tmp_path / "run").exists()


def test_run_dirs_default_under_runs(tmp_path):
    result = run_train(None, *FAST, "train.iterations=5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(Path(tmp_path / "runs" / "influence_balancing" / "pes").iterdir())


def test_progress_bar_on_a_terminal_and_quiet_off_it(tmp_path):
    import os
    import pty

    command = train_command(tmp_path / "tty", *FAST, "train.iterations=60")
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command, cwd=REPO, env=cli_env(), stdout=follower, stderr=follower, close_fds=True
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the run ended
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=120)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "iteration" in text and "steps/s" in text and "env steps" in text
    assert "eval return" in text  # labelled: θ unperturbed, not the particles' return


def test_progress_lines_off_a_terminal_and_in_train_log(tmp_path):
    """Piped (CI, nohup): plain lines, also in Hydra's train.log; a module:Id env's default
    run dir holds no colon."""
    piped = run_train(
        None, "env.id=toy_gym:Counting-v0", "agent.num_particles=4", "train.iterations=3",
        cwd=tmp_path, extra_env={"PYTHONPATH": str(REPO / "tests")},
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    lines = [line for line in piped.stdout.splitlines() if line.startswith("iteration ")]
    assert lines[0].startswith("iteration 1/3 (33%)  env steps ")
    assert lines[-1].startswith("iteration 3/3 (100%)") and "eval return" in lines[-1]
    assert "steps/s" in lines[-1] and "ETA" in lines[-1]
    (run_dir,) = (tmp_path / "runs" / "toy_gym_Counting-v0" / "pes").iterdir()
    log = (run_dir / "train.log").read_text()
    assert "iteration 3/3 (100%)" in log and "[pes_rl][INFO]" in log
