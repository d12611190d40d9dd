"""Orbax checkpoints of the whole training state, written atomically.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
at any moment (even SIGKILL) leaves only whole checkpoints behind. A checkpoint damaged all the
same (a disk or file system that lost writes) is set aside on resume and the previous one used.
"""

from __future__ import annotations

import datetime
import gc
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pes_rl.training.run_dir import RunDirError


def _to_saveable(tree: Any) -> Any:
    """Plain, non-empty arrays, as orbax needs: typed PRNG keys become their raw uint32 data,
    and empty arrays (MJX's ``data.act`` of a model without activations) one zero each."""

    def saveable(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(x)
        if x.size == 0:
            return jnp.zeros((1,), x.dtype)
        return x

    return jax.tree.map(saveable, tree)


def _from_saved(restored: Any, template: Any) -> Any:
    def back(x, ref):
        if jax.dtypes.issubdtype(ref.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
        if ref.size == 0:
            return jnp.zeros(ref.shape, ref.dtype)
        return x

    return jax.tree.map(back, restored, template)


def _is_process_local(x: Any) -> bool:
    return isinstance(x, np.ndarray) or (isinstance(x, jax.Array) and x.is_fully_addressable)


def _global(tree: Any) -> Any:
    """In a many-process run, arrays each process holds whole (a host env run's state, the
    same in every process) as arrays replicated over all processes' devices: orbax saves
    only global arrays there. Arrays split over the devices stay as they are."""
    if jax.process_count() == 1:
        return tree
    everywhere = NamedSharding(Mesh(np.array(jax.devices()), ("all",)), PartitionSpec())

    def to_global(x):
        if not _is_process_local(x):
            return x
        local = np.asarray(x)
        return jax.make_array_from_callback(local.shape, everywhere, lambda index: local[index])

    return jax.tree.map(to_global, tree)


def _local_like(restored: Any, template: Any) -> Any:
    """Restored arrays back in this process alone where the template's were."""
    if jax.process_count() == 1:
        return restored
    return jax.tree.map(
        lambda x, ref: x.addressable_data(0) if _is_process_local(ref) else x, restored, template
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Silences what orbax and TensorStore print about a damaged checkpoint (absl errors and
    tracebacks of abandoned read coroutines): the caller reports it in one line."""
    absl = logging.getLogger("absl")
    level, hook = absl.level, sys.unraisablehook
    absl.setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        gc.collect()  # the abandoned coroutines are freed (and would print) here
        absl.setLevel(level)
        sys.unraisablehook = hook


def _summary(error: Exception) -> str:
    """The first line of an error, short enough for a one-line warning."""
    first = (str(error).splitlines() or [""])[0]
    return f"{type(error).__name__}: {first[:160]}"


class NoCheckpoint(RunDirError):
    """No checkpoint (at or before the iteration asked for) to restore."""


class Checkpointer:
    """Saves and restores the training state under ``run_dir/checkpoints/<iteration>``."""

    def __init__(self, run_dir: str | Path, max_to_keep: int | None = None):
        """``max_to_keep``: the newest checkpoints kept when saving (None: every one)."""
        logging.getLogger("absl").setLevel(logging.WARNING)
        self.directory = Path(run_dir).resolve() / "checkpoints"
        self.options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        with _quiet():
            return ocp.CheckpointManager(
                self.directory, options=self.options, item_handlers=ocp.StandardCheckpointHandler()
            )

    def latest_iteration(self) -> int | None:
        return self.manager.latest_step()

    def save(self, iteration: int, state: Any) -> None:
        """Saves ``state`` and waits until it is on disk."""
        self.manager.save(iteration, args=ocp.args.StandardSave(_global(_to_saveable(state))))
        self.manager.wait_until_finished()

    def restore(self, iteration: int, template: Any) -> Any:
        """Restores the state saved at ``iteration`` with the structure of ``template``. A dict
        template's keys that the checkpoint lacks (saved by an older version) are left out."""
        if isinstance(template, dict):
            saved = self.manager.item_metadata(iteration)
            template = {k: v for k, v in template.items() if k in saved}
        saveable = _to_saveable(template)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _global(saveable))
        restored = self.manager.restore(iteration, args=ocp.args.StandardRestore(abstract))
        return _from_saved(_local_like(restored, saveable), template)

    def restore_saved(self, iteration: int) -> Any:
        """The tree saved at ``iteration`` as saved (dicts and lists; typed keys as raw data),
        for reading parts of it without building the whole training state."""
        with _quiet():
            return self.manager.restore(iteration, args=ocp.args.StandardRestore())

    def iterations(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore_latest(self, template: Any, at_most: int | None = None) -> tuple[int, Any]:
        """The newest checkpoint (of an iteration <= ``at_most``) that restores: (its iteration,
        its state).

        Newer checkpoints that fail to restore are renamed ``<iteration>.damaged-<time>`` (kept
        for inspection, out of orbax's way) with a one-line warning each. When none restores,
        nothing is moved and RunDirError says why the newest failed; NoCheckpoint when there
        is none to try.
        """
        candidates = [i for i in self.iterations() if at_most is None or i <= at_most]
        if not candidates:
            raise NoCheckpoint(f"no checkpoint in {self.directory} of an iteration <= {at_most}")
        failed: list[tuple[int, Exception]] = []
        for iteration in reversed(candidates):
            try:
                with _quiet():
                    state = self.restore(iteration, template)
            except Exception as error:  # any failure to read a checkpoint means it is unusable
                failed.append((iteration, error))
                self.manager.close()  # a failed restore leaves the manager unusable
                self.manager = self._open()
                continue
            for damaged, error in failed:
                self._set_aside(damaged, error, iteration)
            return iteration, state
        why = f" (the newest, {failed[0][0]}: {_summary(failed[0][1])})" if failed else ""
        raise RunDirError(f"no checkpoint in {self.directory} restores{why}")

    def _set_aside(self, iteration: int, error: Exception, used: int) -> None:
        """Renames a checkpoint that failed to restore out of orbax's way and says so."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        aside = self.directory / f"{iteration}.damaged-{stamp}"
        (self.directory / str(iteration)).rename(aside)
        self.manager.reload()
        warnings.warn(
            f"checkpoint {iteration} cannot be restored ({_summary(error)}); moved it to "
            f"{aside} and resumed from checkpoint {used}",
            stacklevel=4,
        )

    def delete_after(self, iteration: int) -> None:
        """Deletes the checkpoints of later iterations (they are about to be trained again)."""
        for later in self.iterations():
            if later > iteration:
                self.manager.delete(later)

    def close(self) -> None:
        self.manager.close()
