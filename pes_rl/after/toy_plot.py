"""The 2D LR-schedule toy's picture: the meta-loss surface with θ trajectories on top.

    python -m pes_rl.after.toy_plot RUN_DIR [RUN_DIR ...] -o toy_surface.png [--grid 401]

Draws the full-horizon meta-loss L(θ) = Σ_t f(x_t) of ``lr_toy2d`` over θ ∈ [−5, 5]² (log
colour scale) and, for every run directory (``python train.py experiment=lr_toy2d_<agent>``
writes one), the θ trajectory it logged in ``metrics.jsonl``. Prints the surface's grid
minimum and each run's final θ and exact meta-loss.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from pes_rl import envs
from pes_rl.cli import ArgumentParser
from pes_rl.envs.lr_toy2d import LRToy2D
from pes_rl.envs.unrolled import inner_run
from pes_rl.training.run_dir import metrics_file
from pes_rl.training.run_log import read_records

BOUNDS = (-5.0, 5.0)


def meta_loss_fn(env: LRToy2D):
    """Jitted L(θ) for a batch of θ [B, 2]: Σ over the T inner steps of f(x_t)."""

    def meta_loss(theta):
        return -inner_run(env, lambda obs: theta, jax.random.key(0))[1].sum()

    return jax.jit(jax.vmap(meta_loss))


def surface(env: LRToy2D, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """The axis values [grid] and L over the grid [grid (θ1), grid (θ0)]."""
    axis = np.linspace(*BOUNDS, grid, dtype=np.float32)
    theta0, theta1 = np.meshgrid(axis, axis)
    points = jnp.stack([theta0.ravel(), theta1.ravel()], axis=1)
    loss = meta_loss_fn(env)
    values = np.concatenate([np.asarray(loss(chunk)) for chunk in jnp.array_split(points, 16)])
    return axis, values.reshape(grid, grid)


def trajectory(run_dir: Path) -> np.ndarray:
    """θ after every iteration [iterations, 2], from ``metrics.jsonl``."""
    rows = [r["theta"] for r in read_records(metrics_file(run_dir)) if "theta" in r]
    return np.asarray(rows, np.float32).reshape(-1, 2)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog="python -m pes_rl.after.toy_plot", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run_dirs", nargs="*", type=Path, help="lr_toy2d run directories")
    parser.add_argument("-o", "--output", type=Path, default=Path("toy_surface.png"))
    parser.add_argument("--grid", type=int, default=401, help="grid points per axis")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        config = run_dir / "config.yaml"
        metrics = metrics_file(run_dir)
        if (
            not (config.exists() and metrics.exists())
            or OmegaConf.load(config).env.id != "lr_toy2d"
        ):
            print(f"error: {run_dir} is not an lr_toy2d run directory", file=sys.stderr)
            sys.exit(2)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    env = envs.make("lr_toy2d")
    axis, values = surface(env, args.grid)
    row, col = np.unravel_index(np.argmin(values), values.shape)
    print(f"grid minimum: L = {values[row, col]:.1f} at θ = ({axis[col]:.2f}, {axis[row]:.2f})")
    fig, ax = plt.subplots(figsize=(7, 6))
    mesh = ax.pcolormesh(axis, axis, values, norm=LogNorm(), cmap="viridis", shading="auto")
    fig.colorbar(mesh, ax=ax, label="meta-loss Σ_t f(x_t) over T = 100 steps")
    final_loss = meta_loss_fn(env)
    for run_dir in args.run_dirs:
        cfg = OmegaConf.load(run_dir / "config.yaml")
        path = trajectory(run_dir)
        if not len(path):
            continue
        final = float(final_loss(jnp.asarray(path[-1:]))[0])
        label = f"{cfg.agent.name.upper()} (final L = {final:.0f})"
        ax.plot(path[:, 0], path[:, 1], lw=1.5, label=label)
        ax.plot(*path[-1], "o", color=ax.lines[-1].get_color())
        print(f"{run_dir}: {cfg.agent.name} final θ = ({path[-1, 0]:.3f}, {path[-1, 1]:.3f}), "
              f"L = {final:.1f}")  # fmt: skip
    ax.plot(*env.spec.default_action, "k*", ms=12, label="θ_0 = (−4, −4)")
    ax.set_xlim(*BOUNDS)
    ax.set_ylim(*BOUNDS)
    ax.set_xlabel("θ0 (log lr at t = 0)")
    ax.set_ylabel("θ1 (log lr at t = T)")
    ax.set_title("2D LR-schedule toy: meta-loss surface and θ trajectories")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=120)
    plt.close(fig)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
