"""Where metrics go: ``metrics.jsonl`` (the source of truth), W&B, and a progress bar."""

from __future__ import annotations

import datetime
import gzip
import json
import logging
import math
import os
import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pes_rl.training.run_dir import RunDirError, atomic_write_text

LOGGER = logging.getLogger("pes_rl")
SAME_FETCH_S = 0.05  # records this close together in time were fetched from the device together


def clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """Plain Python numbers; non-finite values dropped (JSON has no NaN)."""
    out = {}
    for key, value in metrics.items():
        if getattr(value, "ndim", 0) > 0:  # a vector (θ of a meta task): a list of floats
            out[key] = [float(v) for v in value.reshape(-1)]
            continue
        value = value.item() if hasattr(value, "item") else value
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[key] = value
    return out


def parse_record(line: str) -> dict[str, Any] | None:
    """The metrics record a line holds, or None when it holds none."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "iteration" in record else None


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (or of an archived ``metrics.jsonl.gz``); a torn last
    line (a crash cut it short) is dropped with a warning, any other unreadable line raises
    RunDirError."""
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    records = []
    for n, line in lines:
        record = parse_record(line)
        if record is None and n == lines[-1][0]:
            warnings.warn(
                f"dropped the torn last line {n} of {path} (a crash cut it short)", stacklevel=3
            )
        elif record is None:
            raise RunDirError(f"{path} line {n} is not a metrics record; fix or remove that line")
        else:
            records.append(record)
    return records


class MetricsFile:
    """Appends one JSON object per iteration to ``metrics.jsonl``, flushed line by line.

    ``history``: the records of earlier iterations a resumed run keeps; the file is rewritten
    to hold exactly them (a new file renamed over the old one, so a crash at any moment keeps
    every line).
    """

    def __init__(self, run_dir: Path, history: list[dict[str, Any]] = (), write: bool = True):
        """``write=False`` keeps the history in memory only (the other processes of a
        distributed run: process 0 writes the file)."""
        self.path = run_dir / "metrics.jsonl"
        self.history: list[dict[str, Any]] = list(history)
        self._file = None
        if write:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.history))
            self._file = self.path.open("a")

    @staticmethod
    def read(run_dir: Path) -> list[dict[str, Any]]:
        """The records of ``run_dir``'s metrics.jsonl (none when it has none)."""
        path = run_dir / "metrics.jsonl"
        return read_records(path) if path.exists() else []

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        self.history.append(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class WandbRun:
    """Logs to W&B when asked; any W&B failure warns once and turns W&B off."""

    def __init__(self, cfg: DictConfig, run_dir: Path, enabled: bool = True):
        self.run = None
        logger = cfg.logger
        if logger.name != "wandb" or not enabled:
            return
        mode = logger.get("mode") or os.environ.get("WANDB_MODE") or "offline"
        id_file = run_dir / "wandb_id.txt"
        try:
            import wandb

            run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
            id_file.write_text(run_id)
            self.run = wandb.init(
                project=logger.project, entity=logger.entity, group=logger.group,
                tags=list(logger.tags or []), dir=str(run_dir), mode=mode, id=run_id,
                resume="allow", name=run_dir.name,
                config=OmegaConf.to_container(cfg, resolve=True),
                settings=wandb.Settings(silent=True),
            )  # fmt: skip
        except Exception as error:  # W&B must never stop training
            self._disable(error)

    def log(self, record: dict[str, Any]) -> None:
        if self.run is None:
            return
        # W&B charts scalars: a vector such as θ is logged one entry per key (theta/0, ...).
        flat = {}
        for key, value in record.items():
            if isinstance(value, list):
                flat |= {f"{key}/{i}": v for i, v in enumerate(value)}
            else:
                flat[key] = value
        try:
            self.run.log(flat, step=record["iteration"])
        except Exception as error:
            self._disable(error)

    def finish(self) -> None:
        """Ends the W&B run; an offline run says where its files are and how to upload them."""
        if self.run is None:
            return
        try:
            offline = self.run.settings.mode == "offline"
            files = Path(self.run.dir).parent  # wandb/offline-run-<time>-<id>
            self.run.finish()
        except Exception as error:
            self._disable(error)
            return
        if offline:
            print(f"W&B (offline): {files}\nupload with: wandb sync {files}", flush=True)

    def _disable(self, error: Exception) -> None:
        warnings.warn(
            f"W&B failed ({type(error).__name__}: {error}); training goes on, "
            "metrics.jsonl keeps every metric",
            stacklevel=3,
        )
        self.run = None


class Progress:
    """Where a run stands: iteration, env steps, eval and train return, steps/s, ETA.

    On a terminal a rich bar; off one (CI, nohup, a log file) one plain line on stdout about
    every ``every_s`` seconds and at the end. Either way the lines also go to the ``pes_rl``
    logger, which Hydra writes to the run's ``train.log``. ``train.progress=false`` keeps the
    terminal quiet (the log still gets the lines).
    """

    def __init__(
        self, enabled: bool, total: int, start: int, every_s: float = 10.0,
        budget: int | None = None, start_env_steps: int = 0,
    ):  # fmt: skip
        self.total, self.start, self.every_s = total, start, every_s
        self.budget = budget  # train.max_env_steps: the run may end before ``total``
        self.last_line = time.monotonic()
        # (time, fraction done) the rate starts from
        self.origin: tuple[float, float] | None = None
        self.eval_return: float | None = None
        self.train_return: float | None = None
        self.printing = enabled and not sys.stdout.isatty()
        self.bar = None
        if enabled and sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            label = "iteration" if budget is None else "env steps"
            self.bar = RichProgress(
                TextColumn(f"[bold]{label}"), MofNCompleteColumn(), BarColumn(),
                TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
            )  # fmt: skip
            total_units, done = (total, start) if budget is None else (budget, start_env_steps)
            self.task = self.bar.add_task("train", total=total_units, completed=done, stats="")
            self.bar.start()

    def fraction(self, iteration: int, env_steps: int) -> float:
        """How much of the run is done: of its iterations, or of its env-step budget when
        that comes first."""
        done = iteration / self.total
        if self.budget is not None:
            done = max(done, env_steps / self.budget)
        return min(done, 1.0)

    def stats(self, record: dict[str, Any]) -> str:
        """The record's numbers, each labelled (eval return: θ unperturbed; train return:
        the perturbed particles' completed episodes)."""
        parts = [f"env steps {record['env_steps']:,}"]
        if self.eval_return is not None:
            parts.append(f"eval return {self.eval_return:.4g}")
        if self.train_return is not None:
            parts.append(f"train return {self.train_return:.4g}")
        if "steps_per_s" in record:
            parts.append(f"{record['steps_per_s']:,.0f} steps/s")
        return "  ".join(parts)

    def update(self, record: dict[str, Any]) -> None:
        self.eval_return = record.get("eval_return", self.eval_return)
        self.train_return = record.get("train_return", self.train_return)
        iteration = record["iteration"]
        done = self.fraction(iteration, record["env_steps"])
        if self.bar is not None:
            completed = iteration if self.budget is None else record["env_steps"]
            self.bar.update(self.task, completed=completed, stats=self.stats(record))
        now = time.monotonic()
        if self.origin is None or now - self.origin[0] < SAME_FETCH_S:
            # The rate is measured from the first fetched iterations on: start-up and
            # compilation, which they include, would inflate it.
            self.origin = (self.origin[0] if self.origin else now, done)
        first = iteration == self.start + 1
        last = iteration == self.total
        if not (first or last or now - self.last_line >= self.every_s):
            return
        self.last_line = now
        where = f"{iteration}/{self.total}" if self.budget is None else f"{iteration}"
        line = f"iteration {where} ({100 * done:.0f}%)  {self.stats(record)}{self.eta(now, done)}"
        LOGGER.info(line)
        if self.printing:
            print(line, flush=True)

    def end_at(self, iteration: int) -> None:
        """The run ends early, at ``iteration`` (its env-step budget is reached)."""
        self.total = iteration
        if self.bar is not None and self.budget is None:
            self.bar.update(self.task, total=iteration)

    def eta(self, now: float, done: float) -> str:
        """``  ETA h:mm:ss`` from the iterations after the first fetched ones; empty until
        there is such a rate."""
        origin_time, origin_done = self.origin
        if done >= 1.0:
            return "  ETA 0:00:00"
        if done <= origin_done:
            return ""
        seconds = (now - origin_time) / (done - origin_done) * (1.0 - done)
        return f"  ETA {datetime.timedelta(seconds=round(seconds))}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
