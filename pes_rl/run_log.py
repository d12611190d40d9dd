"""Where metrics go: ``metrics.jsonl`` (the source of truth), W&B, and a progress bar."""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


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


class MetricsFile:
    """Appends one JSON object per iteration to ``metrics.jsonl``, flushed line by line."""

    def __init__(self, run_dir: Path, keep_until: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        kept = []
        if keep_until is not None and self.path.exists():
            # Resuming: iterations after the checkpoint will be recomputed, drop them.
            for line in self.path.read_text().splitlines():
                if line.strip() and json.loads(line)["iteration"] <= keep_until:
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept))
        self.history = [json.loads(line) for line in kept]
        self._file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.history.append(record)

    def close(self) -> None:
        self._file.close()


class WandbRun:
    """Logs to W&B when asked; any W&B failure warns once and turns W&B off."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.run = None
        logger = cfg.logger
        if logger.name != "wandb":
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
        if self.run is None:
            return
        try:
            self.run.finish()
        except Exception as error:
            self._disable(error)

    def _disable(self, error: Exception) -> None:
        warnings.warn(
            f"W&B failed ({type(error).__name__}: {error}); training goes on, "
            "metrics.jsonl keeps every metric",
            stacklevel=3,
        )
        self.run = None


class Progress:
    """A rich progress bar (iteration, env steps, last return, steps/s); quiet off a terminal."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.bar = None
        if not (enabled and sys.stdout.isatty()):
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]iteration"), MofNCompleteColumn(), BarColumn(),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
        )  # fmt: skip
        self.task = self.bar.add_task("train", total=total, completed=start, stats="")
        self.bar.start()

    def update(self, record: dict[str, Any], last_return: float | None) -> None:
        if self.bar is None:
            return
        ret = "-" if last_return is None else f"{last_return:.4g}"
        stats = (
            f"env steps {record['env_steps']:,}  return {ret}  "
            f"{record.get('steps_per_s', 0):,.0f} steps/s"
        )
        self.bar.update(self.task, completed=record["iteration"], stats=stats)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
