"""Runs that crash, fail or resume: one metrics record per iteration, true env-step counts,
no half-made run dirs, and checkpoints kept as train.keep_checkpoints says."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

import pes_rl
from pes_rl.training.checkpoint import Checkpointer
from pes_rl.training.config import compose
from pes_rl.training.run_log import MetricsFile

PARTICLES = 100  # env steps per iteration: 100 particles x a window of 20 steps


def small_config(run_dir, *overrides: str):
    cfg = compose(
        ["experiment=influence_balancing_pes", f"agent.num_particles={PARTICLES}",
         "train.progress=false", "train.eval_every=5", *overrides]
    )  # fmt: skip
    cfg.run_dir = str(run_dir)
    return cfg


def strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in history]


def tear_last_line(run_dir) -> None:
    path = run_dir / "metrics.jsonl"
    text = path.read_text()
    last = text.rstrip("\n").rfind("\n") + 1
    path.write_text(text[: last + (len(text) - last) // 2])


@pytest.fixture(scope="module")
def straight_30(tmp_path_factory):
    """30 iterations without a stop: what every resumed run must equal."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    return pes_rl.train(small_config(run_dir, "train.iterations=30", "train.checkpoint_every=5"))


@pytest.mark.parametrize("checkpoint_every", [5, 20])
def test_a_torn_last_line_is_trained_again(tmp_path, straight_30, checkpoint_every):
    """Iteration 20's record is cut in half after the run: resuming from checkpoint 15 (or
    from the start, when 20 was the only checkpoint) recomputes it."""
    run_dir = tmp_path / "run"
    every = f"train.checkpoint_every={checkpoint_every}"
    pes_rl.train(small_config(run_dir, "train.iterations=20", every))
    tear_last_line(run_dir)
    with pytest.warns(UserWarning, match="records iterations up to 19"):
        resumed = pes_rl.train(small_config(run_dir, "train.iterations=30", every, "resume=true"))
    records = MetricsFile.read(run_dir)
    assert [r["iteration"] for r in records] == list(range(1, 31))
    assert records[-1]["env_steps"] == resumed.history[-1]["env_steps"]
    assert records[-1]["env_steps"] == straight_30.history[-1]["env_steps"]
    assert strip(records) == strip(straight_30.history)  # a JAX env: bit for bit
    np.testing.assert_array_equal(np.asarray(resumed.params), np.asarray(straight_30.params))


def test_env_steps_come_from_the_checkpoint(tmp_path, straight_30):
    """The env-step count resumes from the checkpoint, not from metrics.jsonl."""
    run_dir = tmp_path / "run"
    pes_rl.train(small_config(run_dir, "train.iterations=20", "train.checkpoint_every=10"))
    checkpointer = Checkpointer(run_dir)
    saved = checkpointer.restore_saved(20)
    checkpointer.close()
    assert int(saved["env_steps"]) == straight_30.history[19]["env_steps"]
    records = MetricsFile.read(run_dir)
    path = run_dir / "metrics.jsonl"  # a wrong count in the file must not leak into the next
    path.write_text("".join(
        __import__("json").dumps(r | {"env_steps": 0}) + "\n" for r in records
    ))  # fmt: skip
    resumed = pes_rl.train(
        small_config(run_dir, "train.iterations=21", "train.checkpoint_every=10", "resume=true")
    )
    assert resumed.history[-1]["env_steps"] == straight_30.history[20]["env_steps"]


def test_keep_checkpoints_keeps_the_newest(tmp_path):
    run_dir = tmp_path / "run"
    pes_rl.train(
        small_config(
            run_dir, "train.iterations=12", "train.checkpoint_every=2", "train.keep_checkpoints=3"
        )
    )
    checkpointer = Checkpointer(run_dir)
    assert checkpointer.iterations() == [8, 10, 12]
    checkpointer.close()
    with pytest.raises(ValueError, match=r"saved are \[8, 10, 12\].*keep_checkpoints=3"):
        pes_rl.load(run_dir, iteration=4)


def test_the_default_keeps_what_the_readme_loads(tmp_path):
    """The default run checkpoints every 100 of 500 iterations; README loads iteration 200."""
    cfg = compose([])
    assert cfg.train.keep_checkpoints * cfg.train.checkpoint_every >= cfg.train.iterations


@pytest.mark.parametrize(
    "overrides",
    [
        ["+env.kwargs.no_such_setting=1"],  # a config error while building the env
        ["agent.curriculum={start: 50, iterations: 10}"],  # after config.yaml was written
        ["agent.sigma=-1"],
    ],
)
def test_a_failed_start_leaves_no_run_dir(tmp_path, overrides):
    run_dir = tmp_path / "runs" / "run"
    with pytest.raises(ValueError):
        pes_rl.train(small_config(run_dir, "train.iterations=3", *overrides))
    assert not run_dir.exists()


def test_an_interrupted_start_leaves_no_run_dir(tmp_path, monkeypatch):
    """Ctrl-C before the first iteration finished (here: while the agent is built)."""
    from pes_rl.training import trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "make_iteration", interrupted)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        pes_rl.train(small_config(run_dir, "train.iterations=3"))
    assert not run_dir.exists()


def test_a_failed_start_keeps_the_users_files(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".notes").write_text("mine")
    with pytest.raises(ValueError):
        pes_rl.train(small_config(run_dir, "train.iterations=3", "+env.kwargs.no_such_setting=1"))
    assert sorted(p.name for p in run_dir.iterdir()) == [".notes"]


INTERRUPTED_START = """
import sys
from pathlib import Path
import pes_rl
from pes_rl import cli

def interrupted(cfg):  # Ctrl-C after config.yaml was written, before the first iteration
    (Path(cfg.run_dir) / "config.yaml").write_text("written: before the first iteration")
    raise KeyboardInterrupt

pes_rl.train = interrupted
cli.train(sys.argv[1:])
"""


def test_an_interrupted_start_from_the_cli_says_nothing_was_saved(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_START, "env=influence_balancing",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "stopped before the first iteration finished; nothing was saved"
    assert not run_dir.exists()


def test_runs_of_one_id_through_two_families_get_their_own_dirs_and_labels(tmp_path):
    from pes_rl import cli  # cli registers the resolvers configs/train.yaml uses
    from pes_rl.after import plot
    from pes_rl.training.config import CONFIG_DIR

    train_yaml = OmegaConf.load(CONFIG_DIR / "train.yaml")
    run_path = OmegaConf.to_container(train_yaml.hydra.run)["dir"]
    assert run_path.startswith("runs/${env_path:${env.family},${env.id}}/")
    paths = {}
    for family in ("gym", "gymnax"):
        cfg = OmegaConf.create(
            {
                "env": {"family": family, "id": "CartPole-v1"},
                "agent": {"name": "pes"},
                "p": run_path.split("/seed")[0],
            }  # fmt: skip
        )
        paths[family] = cfg.p
    assert cli is not None
    assert paths == {"gym": "runs/CartPole-v1/pes", "gymnax": "runs/gymnax/CartPole-v1/pes"}

    labels = set()
    for family in ("gym", "gymnax"):
        run_dir = tmp_path / family
        run_dir.mkdir()
        cfg = compose([f"env={family}", "env.id=CartPole-v1"])
        OmegaConf.save(cfg, run_dir / "config.yaml")
        labels.add(plot.label_of(run_dir))
    assert labels == {
        "PES CartPole-v1 K=100 σ=0.3 N=20", "PES gymnax/CartPole-v1 K=100 σ=0.3 N=20"
    }  # fmt: skip


def test_plot_skips_dirs_that_hold_no_run(tmp_path, straight_30, capsys):
    from pes_rl.after import plot

    empty = tmp_path / "failed_start"
    empty.mkdir()
    (empty / ".lock").touch()
    plot.main([str(straight_30.run_dir), str(empty), "-o", str(tmp_path / "c.png")])
    captured = capsys.readouterr()
    assert f"skipped {empty}: it holds no run" in captured.err
    assert (tmp_path / "c.png").exists() and "1 run(s)" in captured.out
    with pytest.raises(SystemExit) as exit_:
        plot.main([str(empty)])
    assert exit_.value.code == 2


@pytest.mark.parametrize("budget", [None, 100])
def test_the_eta_leaves_out_start_up_and_compilation(monkeypatch, capsys, budget):
    """The ETA counts iterations, or env steps when ``train.max_env_steps`` ends the run first
    (here 100 env steps of a 1000-iteration run, one step per iteration)."""
    from pes_rl.training import run_log

    clock = iter([0.0, 90.0, 90.01, 100.0, 150.0])  # 90 s of start-up and compiling
    monkeypatch.setattr(run_log.time, "monotonic", lambda: next(clock))
    total = 100 if budget is None else 1000
    progress = run_log.Progress(enabled=True, total=total, start=0, every_s=0.0, budget=budget)
    for iteration in (1, 2, 12, 100):  # 1 and 2 fetched together, then 1 s per iteration
        if iteration == 100 and budget is not None:
            progress.end_at(iteration)
        progress.update({"iteration": iteration, "env_steps": iteration})
    lines = capsys.readouterr().out.splitlines()
    assert "ETA" not in lines[0] and "ETA" not in lines[1]
    assert lines[2].endswith("ETA 0:01:28")  # (100 - 12) iterations at (100 - 90) s / 10
    assert "(12%)" in lines[2]
    assert lines[3].endswith("ETA 0:00:00") and "(100%)" in lines[3]


def test_a_run_saved_before_a_new_empty_setting_still_resumes():
    """A config.yaml written before ``env.wrappers`` existed differs from today's only by that
    empty setting: not a change of the run."""
    from pes_rl.training.config import differing_keys

    today = compose([])
    saved = OmegaConf.to_container(today)
    del saved["env"]["wrappers"]
    assert differing_keys(OmegaConf.create(saved), today) == []
    saved["env"]["kwargs"]["horizon"] = 7
    assert differing_keys(OmegaConf.create(saved), today) == ["env.kwargs.horizon"]


def test_an_env_step_budget_ends_the_run_at_the_first_iteration_that_reaches_it(tmp_path):
    """``train.max_env_steps``: 100 particles x K = 1 step = 100 env steps per iteration."""
    cfg = small_config(tmp_path / "run", "train.iterations=1000", "train.max_env_steps=2.05e3")
    assert cfg.train.max_env_steps == 2050.0  # the float a user types; validate makes it 2050
    result = pes_rl.train(cfg)
    records = MetricsFile.read(tmp_path / "run")
    assert [r["iteration"] for r in records] == list(range(1, 22))
    assert records[-1]["env_steps"] == 2100 and "eval_return" in records[-1]
    checkpointer = Checkpointer(tmp_path / "run")
    assert checkpointer.latest_iteration() == 21
    checkpointer.close()
    assert result.history == records
    with pytest.raises(ValueError, match="train.max_env_steps must exceed the 2,100 env steps"):
        pes_rl.train(small_config(tmp_path / "run", "train.iterations=1000",
                                  "train.max_env_steps=2100", "resume=true"))  # fmt: skip
