"""Run directories that never lose data: checked paths, one owner at a time, atomic files.

A run dir holds a user's results (``metrics.jsonl``, ``checkpoints/``), so ``pes_rl.train``
claims it first: the path must be a directory it can write, a non-empty directory must hold a
pes_rl run (not someone's other files, nor another program's run with its own ``config.yaml``
or ``metrics.jsonl``), a live run elsewhere keeps it (an ``flock`` on
``.lock``, which the OS drops when its holder dies, even by SIGKILL), and a new run never
writes over an old run's results. Every refusal is a :class:`RunDirError` with one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

DEFAULT_ROOT = "runs"  # default run dirs: runs/[<family>/]<env>/<agent>/seed<seed>-<time>
LOCK_NAME = ".lock"  # holds the owner's PID; flock'ed while the owner lives
HYDRA_LOG = "train.log"  # Hydra's job log (with .hydra/), written before train() runs
RESULTS = ("metrics.jsonl", "metrics.jsonl.gz", "checkpoints")
MARKERS = frozenset({"config.yaml", *RESULTS})  # any of these: a run (see foreign_run)
CONFIG_KEYS = ("agent", "env", "train")  # in every pes_rl run's config.yaml
RECORD_KEYS = ("iteration", "env_steps")  # in every pes_rl metrics record
# What a run writes before its first iteration finishes: removed when it never finishes one.
STARTUP_ENTRIES = (
    ".hydra", HYDRA_LOG, "config.yaml", *RESULTS, "wandb", "wandb_id.txt", LOCK_NAME,
)  # fmt: skip


def path_part(text: str) -> str:
    """``text`` as one safe path component: ``my_envs:Walker-v0`` -> ``my_envs_Walker-v0``
    (a colon breaks PATH-like lists and Windows; a slash would nest dirs)."""
    return re.sub(r"[^\w.+-]+", "_", str(text)).strip("_") or "_"


DEFAULT_FAMILY = "gym"  # configs/train.yaml's env family


def env_name(family: str | None, env_id: str) -> str:
    """The env as runs and plots name it: ``CartPole-v1`` through Gymnasium (the default
    family) or a built-in id, ``gymnax/CartPole-v1`` through another family, so that runs of
    one id through two families never share a dir or a curve."""
    return env_id if family in (None, DEFAULT_FAMILY) else f"{family}/{env_id}"


def env_path(family: str | None, env_id: str) -> str:
    """:func:`env_name` as run dir path components (``gymnax/CartPole-v1``)."""
    return "/".join(path_part(part) for part in env_name(family, env_id).split("/", 1))


class RunDirError(ValueError):
    """The run dir cannot be used; the message names it and says what to do."""


def cli_run_dir(argv: list[str]) -> Path | None:
    """The plain path a ``hydra.run.dir=`` override names, if any (not in a sweep).

    Hydra creates that dir (and writes .hydra/ into it) before ``train()`` runs, failing with a
    traceback when it cannot, so train.py checks it first.
    """
    if "-m" in argv or "--multirun" in argv:
        return None
    values = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    if not values or "${" in values[-1]:
        return None
    return Path(values[-1])


def unusable_reason(path: Path) -> str | None:
    """Why ``path`` cannot become or stay a run dir (not a writable directory, or one that holds
    something other than a pes_rl run); None when it can. Creates nothing."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        if existing == path:
            return f"run dir {path} is a file, not a directory; choose another hydra.run.dir"
        return f"run dir {path} cannot be created: {existing} is a file"
    try:  # the only reliable test (root passes os.access, /proc and read-only mounts do not)
        tempfile.TemporaryDirectory(dir=existing, prefix=".pes_rl-probe-").cleanup()
    except OSError as error:
        return f"run dir {path} cannot be created or written ({error.strerror} in {existing})"
    foreign = foreign_entries(path)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return (
            f"run dir {path} is not empty and holds no pes_rl run ({shown}); "
            "choose a new or empty hydra.run.dir"
        )
    other_run = foreign_run(path)
    if other_run:
        return (
            f"run dir {path} is not a pes_rl run ({other_run}); choose a new or empty hydra.run.dir"
        )
    return None


def foreign_run(run_dir: Path) -> str | None:
    """Why ``run_dir`` holds another program's run under a pes_rl run's file names (a
    config.yaml without pes_rl's keys; without a config.yaml, a metrics.jsonl whose first line
    is no pes_rl record), e.g. ``its config.yaml lacks agent, env``; None for a pes_rl run, an
    unfinished start, or a dir without those files."""
    config = run_dir / "config.yaml"
    if config.is_file():
        try:
            loaded = yaml.safe_load(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            loaded = None
        missing = [k for k in CONFIG_KEYS if not isinstance(loaded, dict) or k not in loaded]
        return f"its config.yaml lacks {', '.join(missing)}" if missing else None
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return None
    try:
        with metrics.open(encoding="utf-8") as lines:
            first = next((line for line in lines if line.strip()), None)
        if first is None:  # empty: a run that is starting
            return None
        record = json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError):
        record = None
    if isinstance(record, dict) and all(k in record for k in RECORD_KEYS):
        return None
    return "its metrics.jsonl holds no pes_rl metrics record"


def foreign_entries(run_dir: Path) -> list[str]:
    """Visible entries of an existing dir that holds no pes_rl run (empty for a run or a fresh
    dir: hidden entries such as Hydra's .hydra/, and Hydra's train.log, do not count)."""
    if not run_dir.is_dir():
        return []
    names = sorted(p.name for p in run_dir.iterdir())
    if MARKERS.intersection(names):
        return []
    return [n for n in names if not n.startswith(".") and n != HYDRA_LOG]


def remove_if_unused(run_dir: Path) -> None:
    """Removes a run dir that a failed start left without a finished iteration (see
    :func:`discard_unfinished`), unless a live run holds it. Callers pass only dirs their run
    could claim (never another program's run, :func:`foreign_run`)."""
    if not run_dir.is_dir() or holds_results(run_dir):
        return
    try:
        with _locked(run_dir):  # a live run starting up in this dir keeps everything
            discard_unfinished(run_dir)
    except RunDirError:
        return


def discard_unfinished(run_dir: Path) -> None:
    """Removes what a start that never finished an iteration wrote (Hydra's files, the lock,
    config.yaml, an empty metrics.jsonl or checkpoints/, W&B's offline files), then the dir
    if that leaves it empty. A dir with any result, or any file of the user's, keeps them."""
    if not run_dir.is_dir() or holds_results(run_dir):
        return
    for name in STARTUP_ENTRIES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    with contextlib.suppress(OSError):  # not empty: something else lives there
        run_dir.rmdir()
        remove_empty_default_parents(run_dir)


def remove_empty_default_parents(run_dir: Path) -> None:
    """Removes the empty ``runs/<env>/<agent>`` dirs above a removed default run dir (only in
    the default layout, and never ``runs/`` itself)."""
    try:
        parts = run_dir.resolve().relative_to(Path.cwd()).parts
    except ValueError:  # not under the working directory: not the default layout
        return
    if not parts or parts[0] != DEFAULT_ROOT:
        return
    for depth in range(len(parts) - 1, 1, -1):
        parent = Path.cwd().joinpath(*parts[:depth])
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
        else:
            return


def metrics_file(run_dir: Path) -> Path:
    """The run's metrics: ``metrics.jsonl`` as a run writes it, or ``metrics.jsonl.gz`` where
    a finished run's file was archived with gzip (benchmarks/results); ``metrics.jsonl`` when
    neither exists."""
    archived = run_dir / "metrics.jsonl.gz"
    written = run_dir / "metrics.jsonl"
    return archived if archived.exists() and not written.exists() else written


def has_metrics(run_dir: Path) -> bool:
    """Whether a run wrote at least one metrics record here."""
    metrics = metrics_file(run_dir)
    return metrics.exists() and metrics.stat().st_size > 0


def holds_results(run_dir: Path) -> bool:
    """Whether a run already wrote metrics or checkpoints here."""
    checkpoints = run_dir / "checkpoints"
    return has_metrics(run_dir) or (checkpoints.is_dir() and any(checkpoints.iterdir()))


@contextmanager
def claim(run_dir: Path, resume: bool) -> Iterator[None]:
    """Creates ``run_dir`` and owns it for the ``with`` block, or raises RunDirError. When the
    block raises before the run finished an iteration, the dir is left as if never made.

    The order matters: nothing is created in a refused path, and a live owner is named before
    anything is said about its results.
    """
    reason = unusable_reason(run_dir)
    if reason:
        raise RunDirError(reason)
    existed = run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    with _locked(run_dir):
        if not resume and holds_results(run_dir):
            raise RunDirError(
                f"run dir {run_dir} already holds a run's results; add resume=true to continue "
                "it, or choose another hydra.run.dir"
            )
        nothing_to_resume = resume and not holds_results(run_dir)
        if not nothing_to_resume:
            try:
                yield
            except BaseException:  # a run that never finished an iteration leaves nothing
                discard_unfinished(run_dir)
                raise
            return
    if not existed:
        remove_if_unused(run_dir)
    raise RunDirError(  # a mistyped dir must not start a new run
        f"resume=true but {run_dir} holds no run to resume (no metrics.jsonl, no checkpoint); "
        "check hydra.run.dir, or drop resume=true to start a new run"
    )


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """An exclusive flock on ``run_dir/.lock`` with this process's PID written in it.

    The lock file is never deleted: unlinking it would let two processes lock two files.
    """
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "(starting up)"
            raise RunDirError(
                f"run dir {run_dir} is in use by process {holder}; wait for it to end or "
                "choose another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def atomic_write_text(path: Path, text: str) -> None:
    """Writes ``path`` whole or not at all: a hidden temp file beside it, then os.replace."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
