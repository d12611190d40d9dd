"""Whether a population fits in memory: an estimate before it is built, and a one-line error
(not a MemoryError traceback) when an allocation fails anyway.

Each particle holds an env state (sized by ``jax.eval_shape`` of ``env.reset``, nothing is
allocated) and θ-sized float32 vectors: its ε, its accumulator ξ and a window's two credit
weights (``agents.base.WindowWeights``), all [N, D]; a window needs about twice that.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
from jax.sharding import Mesh

GIB = 2**30
THETA_VECTORS = 4  # ε, ξ and the two credit weights of a window, each [N, D] float32
CLOCK_BYTES = 32  # the clock, the episode return, the window's reward sums, the reset key
# A window builds the next state while it holds the last: peak memory measured 1.6-1.8x the
# state for PES and ES on influence balancing at 2M particles.
WORK_FACTOR = 2


def tree_bytes(tree) -> int:
    """Bytes of a pytree of arrays or ``jax.ShapeDtypeStruct`` s."""
    return sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def particle_bytes(policy, env_bytes: int) -> int:
    """About how many bytes one particle needs on the device: its θ-sized vectors and
    ``env_bytes`` of env state (a host env's state lives in its Gymnasium sub-env: only its
    observation is counted), ``WORK_FACTOR`` times over."""
    theta_size = sum(
        math.prod(leaf.shape)
        for leaf in jax.tree.leaves(jax.eval_shape(policy.init, jax.random.key(0)))
    )
    return WORK_FACTOR * (4 * THETA_VECTORS * theta_size + env_bytes + CLOCK_BYTES)


def jax_env_particle_bytes(env, policy) -> int:
    """:func:`particle_bytes` of a JAX env's particle: its whole env state is on the device."""
    return particle_bytes(policy, tree_bytes(jax.eval_shape(env.reset, jax.random.key(0))))


def host_available_bytes() -> int | None:
    """The host's available memory (``MemAvailable``, else free pages); None if unknown."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def local_devices(mesh: Mesh | None) -> list[jax.Device]:
    """The devices of this process that hold particles: its part of ``mesh``, or the default
    device."""
    if mesh is None:
        return jax.local_devices()[:1]
    return [d for d in mesh.devices.flat if d.process_index == jax.process_index()]


def available_bytes(devices: Sequence[jax.Device]) -> int | None:
    """Free memory over ``devices``: the host's for CPU devices (they share it), else each
    accelerator's free bytes (``memory_stats``) times their number; None if unknown."""
    if all(device.platform == "cpu" for device in devices):
        return host_available_bytes()
    stats = [device.memory_stats() or {} for device in devices]
    if not all("bytes_limit" in s for s in stats):
        return None
    return min(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats) * len(devices)


def local_bytes(num_particles: int, per_particle: int, mesh: Mesh | None) -> int:
    """Bytes of the particles this process holds (its share of ``mesh``, or all of them)."""
    share = 1.0 if mesh is None else len(local_devices(mesh)) / mesh.size
    return int(num_particles * per_particle * share)


def too_many_particles(
    num_particles: int, needed: int, available: int | None, failed: bool = False
) -> str:
    """The one-line message of a population that does not fit (``failed``: an allocation
    failed although the estimate fitted)."""
    have = (
        f"{available / GIB:.3g} GiB is available"
        if available is not None
        else "free memory is unknown"
    )
    what = "ran out of memory: it needs" if failed else "needs"
    return (
        f"agent.num_particles={num_particles} {what} about {needed / GIB:.3g} GiB for the "
        f"particles' state and a window's work; {have}: use fewer particles"
    )


def check_fits(num_particles: int, needed: int, mesh: Mesh | None) -> None:
    """A ValueError when this process's ``needed`` bytes (:func:`local_bytes`) exceed its
    free memory."""
    available = available_bytes(local_devices(mesh))
    if available is not None and needed > available:
        raise ValueError(too_many_particles(num_particles, needed, available))


@contextlib.contextmanager
def out_of_memory_as_value_error(
    num_particles: int, needed: int, mesh: Mesh | None
) -> Iterator[None]:
    """Turns a failed allocation inside the block (MemoryError, NumPy's ``_ArrayMemoryError``,
    XLA's RESOURCE_EXHAUSTED) into the one-line ValueError of :func:`too_many_particles`."""
    try:
        yield
    except (MemoryError, jax.errors.JaxRuntimeError) as error:
        if not isinstance(error, MemoryError) and "RESOURCE_EXHAUSTED" not in str(error):
            raise
        available = available_bytes(local_devices(mesh))
        raise ValueError(
            too_many_particles(num_particles, needed, available, failed=True)
        ) from None
