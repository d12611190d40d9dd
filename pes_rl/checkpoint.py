"""Orbax checkpoints of the whole training state, written atomically.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
at any moment (even SIGKILL) leaves only whole checkpoints behind.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _to_saveable(tree: Any) -> Any:
    """Typed PRNG keys become their raw uint32 data (orbax stores plain arrays)."""
    return jax.tree.map(
        lambda x: (
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        ),
        tree,
    )


def _from_saved(restored: Any, template: Any) -> Any:
    def back(x, ref):
        if jax.dtypes.issubdtype(ref.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
        return x

    return jax.tree.map(back, restored, template)


class Checkpointer:
    """Saves and restores the training state under ``run_dir/checkpoints/<iteration>``."""

    def __init__(self, run_dir: str | Path, max_to_keep: int = 2):
        logging.getLogger("absl").setLevel(logging.WARNING)
        self.directory = Path(run_dir).resolve() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_iteration(self) -> int | None:
        return self.manager.latest_step()

    def save(self, iteration: int, state: Any) -> None:
        """Saves ``state`` and waits until it is on disk."""
        self.manager.save(iteration, args=ocp.args.StandardSave(_to_saveable(state)))
        self.manager.wait_until_finished()

    def restore(self, iteration: int, template: Any) -> Any:
        """Restores the state saved at ``iteration`` with the structure of ``template``."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(template))
        restored = self.manager.restore(iteration, args=ocp.args.StandardRestore(abstract))
        return _from_saved(restored, template)

    def close(self) -> None:
        self.manager.close()
