"""The population sharded over devices: a 1-D mesh whose axis ``pop`` splits the particles.

θ, the optimizer state, keys and the observation normalizer are replicated; per-particle arrays
(env states, clocks, ξ, ε) are split along their first axis and stay split between windows.
The engine's window runs inside ``jax.shard_map``: each device scans its own particles with no
collective inside the scan, and the window's totals are summed across devices once at its end.
Every random array is drawn for the whole population (never per shard), so 1, 2 or 4 devices
give the same particles and, up to float summation order, the same gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from pes_rl.checks import is_positive_int
from pes_rl.stepping import engine

AXIS = "pop"
PARTICLES = PartitionSpec(AXIS)  # split along the first (particle) axis
REPLICATED = PartitionSpec()


def make_mesh(devices: str | int) -> Mesh | None:
    """The mesh over ``devices`` ("all", or a count of local devices); None for one device,
    which runs the unsharded code path."""
    available = jax.devices()
    if devices == "all":
        count = len(available)
    elif is_positive_int(devices) and devices <= len(available):
        count = devices
    else:
        raise ValueError(
            f"train.devices must be 'all' or an int in [1, {len(available)}] (the devices JAX "
            f"sees: {len(available)} {available[0].platform}), got {devices!r}"
        )
    if count == 1:
        return None
    # Auto axes: the default Explicit mesh of recent JAX rejects plain vmap/matmul code.
    return Mesh(np.array(available[:count]), (AXIS,), axis_types=(AxisType.Auto,))


def check_divisible(num_particles: int, mesh: Mesh | None, antithetic: bool) -> None:
    """Each device holds whole antithetic pairs: N must divide by 2 × devices."""
    if mesh is not None:
        names = ("device", "devices")
        check_split(num_particles, mesh.size, names, antithetic, "fewer train.devices")


def check_split(
    num_particles: int, parts: int, names: tuple[str, str], antithetic: bool, fix: str
) -> None:
    """Each of ``parts`` (devices, or the processes of a distributed host env run; ``names``
    singular and plural) holds whole antithetic pairs: N must divide by 2 × parts."""
    part, plural = names
    unit = 2 * parts if antithetic else parts
    if num_particles % unit:
        pairs = "2 × " if antithetic else ""
        raise ValueError(
            f"agent.num_particles ({num_particles}) must divide by {pairs}the {parts} {plural} "
            f"(= {unit}) so that every {part} holds whole "
            f"{'antithetic pairs' if antithetic else 'particles'}; use a multiple of {unit} "
            f"or {fix}"
        )


def unroll(
    mesh: Mesh,
    env,
    act: engine.ActFn,
    particles: engine.Particles,
    theta: jax.Array,
    key: jax.Array,
    unroll_length: int,
    *,
    theta_after_end: jax.Array | None = None,
    reset_group: jax.Array | None = None,
    step_limit: jax.Array | None = None,
    num_steps: jax.Array | None = None,
    autoreset: bool = True,
    obs_norm=None,
    sync_groups: bool = False,
) -> tuple[engine.Particles, engine.Window]:
    """``engine.unroll`` with every per-particle argument split over ``mesh``.

    Every per-particle array is an argument (closed-over arrays would not be split), including
    the reset groups, which default to one per particle of the whole population.
    """
    num = particles.clock.shape[0]
    per_particle = {
        "theta_after_end": theta_after_end,
        "reset_group": np.arange(num) if reset_group is None else reset_group,
        "step_limit": step_limit,
    }

    def local(particles, theta, per_particle, key, obs_norm, num_steps):
        particles, window = engine.unroll(
            env, act, particles, theta, key, unroll_length, autoreset=autoreset,
            obs_norm=obs_norm, num_steps=num_steps, sync_groups=sync_groups, **per_particle,
        )  # fmt: skip
        per_particle, totals = engine.split_window(window)
        return particles, engine.Window(*per_particle, *jax.lax.psum(totals, AXIS))

    num_totals = len(engine.Window._fields) - engine.PER_PARTICLE_FIELDS
    window_specs = engine.Window(
        *([PARTICLES] * engine.PER_PARTICLE_FIELDS), *([REPLICATED] * num_totals)
    )
    sharded = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(PARTICLES, PARTICLES, PARTICLES, REPLICATED, REPLICATED, REPLICATED),
        out_specs=(PARTICLES, window_specs),
        check_vma=False,  # the scan carry starts as (unvarying) zeros
    )
    return sharded(particles, theta, per_particle, key, obs_norm, num_steps)


def constrain_particles(tree: Any, mesh: Mesh, num_particles: int) -> Any:
    """Keeps every array whose first axis is the population split over ``mesh``."""
    split = NamedSharding(mesh, PARTICLES)

    def constrain(x):
        if getattr(x, "ndim", 0) >= 1 and x.shape[0] == num_particles:
            return jax.lax.with_sharding_constraint(x, split)
        return x

    return jax.tree.map(constrain, tree)


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """``tree`` as arrays replicated over ``mesh`` (unchanged without one): θ, the optimizer
    state and keys start like this so that a checkpoint restores them replicated too."""
    if mesh is None:
        return tree
    return jax.jit(lambda x: x, out_shardings=NamedSharding(mesh, REPLICATED))(tree)
