"""Run dirs that never lose data: one owner at a time, crash-safe files, one-line refusals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
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
from pes_rl.training import run_dir as run_dir_lib
from pes_rl.training.config import compose
from pes_rl.training.run_dir import RunDirError, atomic_write_text, claim, unusable_reason
from pes_rl.training.run_log import MetricsFile, read_records

LINES = [f'{{"iteration": {i}, "env_steps": {10 * i}}}' for i in range(1, 6)]


def write_metrics(run_dir: Path, lines: list[str], tail: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.jsonl"
    path.write_text("".join(line + "\n" for line in lines) + tail)
    return path


def test_a_crash_while_rewriting_files_keeps_the_old_ones_whole(tmp_path, monkeypatch):
    path = write_metrics(tmp_path, LINES)
    config = tmp_path / "config.yaml"
    config.write_text("old: 1\n")

    def killed(*_):  # the process dies between writing the new file and renaming it
        raise KeyboardInterrupt

    monkeypatch.setattr(run_dir_lib.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        MetricsFile(tmp_path, MetricsFile.read(tmp_path)[:2])
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(config, "new: 2\n")
    assert path.read_text().splitlines() == LINES and config.read_text() == "old: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "metrics.jsonl"]

    monkeypatch.undo()
    metrics = MetricsFile(tmp_path, MetricsFile.read(tmp_path)[:2])
    metrics.close()
    assert [r["iteration"] for r in metrics.history] == [1, 2]
    assert path.read_text().splitlines() == LINES[:2]


def test_a_torn_last_metrics_line_is_dropped_with_a_warning_a_bad_middle_one_refused(tmp_path):
    path = write_metrics(tmp_path, LINES, tail='{"iteration": 6, "env_st')
    with pytest.warns(UserWarning, match="dropped the torn last line 6 of .*metrics.jsonl"):
        records = read_records(path)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5]

    write_metrics(tmp_path, [*LINES[:2], "garbage", *LINES[2:]])
    with pytest.raises(RunDirError, match="metrics.jsonl line 3 is not a metrics record"):
        read_records(path)


def test_which_paths_can_hold_a_run(tmp_path):
    (tmp_path / "a_file").touch()
    hydra_only = tmp_path / "hydra_only"
    (hydra_only / ".hydra").mkdir(parents=True)
    (hydra_only / "train.log").touch()
    run = tmp_path / "run"
    write_metrics(run, LINES)
    (run / "notes.txt").touch()  # a user's file beside a run's is fine
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for name in ["a.csv", "b.csv", "c.csv", "d.csv", ".hidden"]:
        (foreign / name).touch()

    empty = tmp_path / "empty"
    empty.mkdir()
    for fine in [tmp_path / "new" / "deeper", empty, hydra_only, run]:
        assert unusable_reason(fine) is None, fine
    assert "is a file, not a directory" in unusable_reason(tmp_path / "a_file")
    assert "a_file is a file" in unusable_reason(tmp_path / "a_file" / "sub")
    assert "(a.csv, b.csv, c.csv, ...)" in unusable_reason(foreign)
    assert "cannot be created or written" in unusable_reason(Path("/proc/pes_rl_run"))
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_one_owner_per_run_dir_and_no_new_run_over_results(tmp_path):
    run = tmp_path / "run"
    with claim(run, resume=False):
        assert (run / ".lock").read_text() == f"{os.getpid()}\n"
        for resume in (False, True):
            with pytest.raises(RunDirError, match=f"in use by process {os.getpid()};"):
                with claim(run, resume=resume):
                    pass
        # random search runs on the same loop: the lock covers it too.
        cfg = compose(["experiment=lr_toy2d_random_search", "train.progress=false"])
        cfg.run_dir = str(run)
        with pytest.raises(RunDirError, match="in use by process"):
            pes_rl.train(cfg)
        write_metrics(run, LINES)
    with pytest.raises(RunDirError, match="already holds a run's results; add resume=true"):
        with claim(run, resume=False):
            pass
    with claim(run, resume=True):  # released: the next owner takes it
        pass


def test_resume_of_a_dir_without_a_run_is_refused(tmp_path):
    mistyped = tmp_path / "runs" / "typo"
    with pytest.raises(RunDirError, match="resume=true but .*typo holds no run to resume"):
        with claim(mistyped, resume=True):
            pass
    assert not mistyped.exists()  # nothing was created


def test_bad_run_dirs_end_in_one_line_and_exit_2(tmp_path):
    (tmp_path / "a_file").touch()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").touch()
    cases = {
        tmp_path / "a_file": "is a file, not a directory",
        tmp_path / "a_file" / "sub": "cannot be created",
        Path("/proc/pes_rl_run"): "cannot be created or written",
        foreign: "holds no pes_rl run (thesis.tex)",
    }
    for path, message in cases.items():
        result = run_train(path, *FAST, "train.iterations=5")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: run dir {path} "), result.stderr
        assert message in lines[0]
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]  # Hydra wrote nothing there


def another_projects_run(path: Path, config: bool = True) -> None:
    """Another project's Hydra output under a pes_rl run's file names: its own config.yaml
    (or none), metrics.jsonl and checkpoints/, beside .hydra/ and its job log."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text("model: resnet18\n")
    (path / "train.log").write_text("[INFO] epoch 1\n")
    if config:
        (path / "config.yaml").write_text("model: resnet18\nlr: 0.001\n")
    (path / "metrics.jsonl").write_text('{"epoch": 1, "top1": 0.31}\n')
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "epoch1.pt").write_bytes(b"weights")


def snapshot(path: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every entry under ``path``: its bytes (None for a dir) and modification time."""
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in path.rglob("*")
    }


def test_another_programs_run_is_refused_in_one_line_and_left_untouched(tmp_path):
    other, metrics_only, config_only = tmp_path / "other", tmp_path / "metrics", tmp_path / "cfg"
    another_projects_run(other)
    another_projects_run(metrics_only, config=False)
    config_only.mkdir()
    (config_only / "config.yaml").write_text("model: resnet18\n")
    before = {path: snapshot(path) for path in (other, metrics_only, config_only)}

    refusal = (f"run dir {other} is not a pes_rl run (its config.yaml lacks agent, env, train); "
               "choose a new or empty hydra.run.dir")  # fmt: skip
    assert unusable_reason(other) == refusal
    assert unusable_reason(metrics_only) == (
        f"run dir {metrics_only} is not a pes_rl run (its metrics.jsonl holds no pes_rl metrics "
        "record); choose a new or empty hydra.run.dir"
    )
    for resume in (False, True):
        with pytest.raises(RunDirError, match=f"^{re.escape(refusal)}$"):
            with claim(other, resume=resume):
                pass
    # train.py cleans up after a failed start only a dir that was not another program's run.
    assert run_dir_lib.foreign_run(config_only) == "its config.yaml lacks agent, env, train"
    for resume in ([], ["resume=true"]):
        result = run_train(other, *FAST, "train.iterations=5", *resume)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [f"error: {refusal}"]
    assert {path: snapshot(path) for path in before} == before  # not even a .lock


def test_a_second_run_on_a_live_dir_stops_naming_the_pid_and_a_resume_takes_over_a_dead_ones(
    tmp_path,
):
    run = tmp_path / "run"
    overrides = [*FAST, "train.iterations=1000000"]
    first = subprocess.Popen(
        train_command(run, *overrides), cwd=REPO, env=cli_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: (run / "checkpoints" / "50").is_dir())
        assert (run / ".lock").read_text() == f"{first.pid}\n"
        written = len(read_metrics(run))

        second = run_train(run, *overrides)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip() == (
            f"error: run dir {run} is in use by process {first.pid}; wait for it to end or "
            "choose another hydra.run.dir"
        )
        assert first.poll() is None and len(read_metrics(run)) >= written  # untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)

    killed = read_records(run / "metrics.jsonl")
    checkpoint = max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    end = checkpoint + 20
    resumed = run_train(run, *FAST, f"train.iterations={end}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    records = read_metrics(run)
    assert [r["iteration"] for r in records] == list(range(1, end + 1))
    # Lines up to the checkpoint are the killed run's; the recomputed ones match it bit for bit
    # (the last one also holds the final evaluation).
    common = min(len(killed), end - 1)
    assert without_timing(records[:common]) == without_timing(killed[:common])


def test_a_damaged_newest_checkpoint_and_a_torn_metrics_line_resume_from_the_one_before(
    tmp_path,
):
    run = tmp_path / "run"
    assert run_train(run, *FAST, "train.iterations=100").returncode == 0
    refused = run_train(run, *FAST, "train.iterations=100")
    assert refused.returncode == 2
    assert "already holds a run's results; add resume=true" in refused.stderr
    before = read_metrics(run)

    # What a SIGKILL mid-write leaves on a file system that lost writes: the newest checkpoint
    # truncated, an orbax temp dir of the next save, a torn metrics line.
    for file in (run / "checkpoints" / "100").rglob("*"):
        if file.is_file():
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    (run / "checkpoints" / "150.orbax-checkpoint-tmp-1").mkdir()
    with (run / "metrics.jsonl").open("a") as metrics:
        metrics.write('{"iteration": 101, "env_steps": 101')

    resumed = run_train(run, *FAST, "train.iterations=120", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr and "ERROR" not in resumed.stderr
    warned = [line for line in resumed.stderr.splitlines() if "warning" in line.lower()]
    assert len(warned) == 2, resumed.stderr  # one plain line each, no Python source line
    assert warned[0].startswith("warning: dropped the torn last line 101")
    assert re.fullmatch(r"warning: checkpoint 100 cannot be restored \(.*\); moved it to "
                        r".*100\.damaged-.* and resumed from checkpoint 50", warned[1])  # fmt: skip
    records = read_metrics(run)
    assert [r["iteration"] for r in records] == list(range(1, 121))
    assert without_timing(records[:100]) == without_timing(before)
    assert sorted(p.name.split(".")[0] for p in (run / "checkpoints").iterdir()) == [
        "100", "100", "120", "150", "50",
    ]  # fmt: skip


def test_default_run_dirs_of_runs_started_together_differ(tmp_path):
    command = train_command(None, *FAST, "train.iterations=2")
    runs = [
        subprocess.Popen(command, cwd=tmp_path, env=cli_env(), stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    run_dirs = sorted((tmp_path / "runs" / "influence_balancing" / "pes").iterdir())
    assert len(run_dirs) == 2
    assert all(re.fullmatch(r"seed0-\d{8}-\d{6}-\d{6}", d.name) for d in run_dirs)
    assert all(len(read_metrics(d)) == 2 for d in run_dirs)
