"""Many processes training as one on JAX's own runtime (``train.distributed.enabled=true``).

Every process runs the same program. ``jax.distributed.initialize`` joins them before any JAX
op; the population mesh then spans every process's devices, each process steps its own slice of
the particles, and only the window totals cross processes (summed once per window). θ, the
optimizer state and the keys are the same in every process. Process 0 alone writes
metrics.jsonl, config.yaml, policy.npz, W&B and the progress lines; orbax checkpoints are
written and restored by all processes together. The run dir must be on a file system that every
process sees.

Without ``coordinator``, ``num_processes`` and ``process_id``, JAX reads them from the cluster
launcher (Slurm, Open MPI, ...), as ``jax.distributed.initialize()`` does.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils
from omegaconf import DictConfig, OmegaConf

PATH_BYTES = 4096  # the longest run dir path that processes can agree on


def initialize(cfg: DictConfig) -> None:
    """Joins the processes ``train.distributed`` names; nothing when it is off."""
    settings = OmegaConf.select(cfg, "train.distributed")
    if settings is None or not settings.get("enabled", False) or jax.distributed.is_initialized():
        return
    devices = OmegaConf.select(cfg, "train.devices", default="all")
    if devices != "all":
        raise ValueError(
            f"train.distributed needs train.devices=all (got {devices!r}): the population is "
            "split over every device of every process"
        )
    try:
        jax.distributed.initialize(
            coordinator_address=settings.get("coordinator"),
            num_processes=settings.get("num_processes"),
            process_id=settings.get("process_id"),
        )
    except ValueError as error:  # JAX found no cluster launcher to read them from
        raise ValueError(
            f"train.distributed could not start ({error}): set train.distributed.coordinator "
            "(host:port of process 0), num_processes and process_id, or launch under a cluster "
            "launcher JAX reads them from (Slurm, Open MPI)"
        ) from error
    except RuntimeError as error:  # JAX already ran something in this process
        raise ValueError(
            f"train.distributed could not start ({error}): in Python, call pes_rl.train before "
            "any other JAX work, or call jax.distributed.initialize yourself first"
        ) from error


def is_primary() -> bool:
    """Process 0 writes the run's files; it is the only process of a one-process run."""
    return jax.process_index() == 0


def agree_on_path(path: Path) -> Path:
    """Process 0's ``path`` in every process (each one's default run dir has its own time)."""
    if jax.process_count() == 1:
        return path
    encoded = str(path).encode()
    if len(encoded) > PATH_BYTES:
        raise ValueError(f"run dir path longer than {PATH_BYTES} bytes: {path}")
    buffer = np.zeros(PATH_BYTES, np.uint8)
    buffer[: len(encoded)] = np.frombuffer(encoded, np.uint8)
    shared = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
    return Path(shared.tobytes().rstrip(b"\0").decode())


def primary_says(ok: bool) -> bool:
    """Process 0's ``ok`` in every process, so all stop together when process 0 cannot go on."""
    if jax.process_count() == 1:
        return ok
    return bool(multihost_utils.broadcast_one_to_all(np.array(ok, np.int32)))
