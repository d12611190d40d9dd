"""Evaluates a meta-trained learned optimizer against Adam with a tuned learning rate.

    python -m pes_rl.meta.lopt_eval RUN_DIR [--steps 1000] [--seeds 5] [--task mlp_digits]

For the task family of the run (or ``--task``), on its training distribution and on its
held-out one (another architecture, other seeds), trains ``--seeds`` fresh tasks for
``--steps`` inner steps with the learned optimizer of ``RUN_DIR/lopt_theta.npz`` and with Adam
at each learning rate of a log grid (11 values, 1e-4 … 10, as Metz et al.). Adam's rate is
tuned per distribution: the one with the lowest training loss over the last tenth of the run
(geometric mean over seeds and points; the last point alone rewards a rate that is chaotic all
run and lucky at the end). Both optimizers see the same tasks, initializations and minibatches.
Losses span many decades, so curves and tables average over seeds geometrically, and are
clipped at ``LOSS_FLOOR`` (1e-6, float32 rounding of a memorized training set). Writes
``RUN_DIR/lopt_eval/``:

* ``curves.png``: training loss (whole training split) against inner steps and against
  wall-clock seconds, each optimizer's seconds per step measured on this machine;
* ``results.json`` and ``results.md``: final loss, the steps and seconds the learned optimizer
  needs to reach tuned Adam's final loss, speed-ups, and diverged runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import OmegaConf

from pes_rl import lopt
from pes_rl.cli import ArgumentParser, program
from pes_rl.envs import lopt_tasks

ADAM_GRID = tuple(float(lr) for lr in np.logspace(-4, 1, 11))  # 1e-4 … 10, half-decade steps
SEED_OFFSET = 10_000  # evaluation seeds never coincide with training's reset keys
DIVERGED_LOSS = 1e3  # a final loss above this (or non-finite) counts as diverged
# Training losses below this are float32 rounding (a cross-entropy of memorized data reads 0 or
# 1e-9 at random): curves are clipped here, and reaching it counts as solving the task.
LOSS_FLOOR = 1e-6


def make_train_curve(task: lopt_tasks.InnerTask, steps: int, record_every: int):
    """A jitted ``curve(optimizer_update_fn, seed_key) -> [steps // record_every + 1]`` losses.

    The curve holds the whole-training-split loss at step 0 and every ``record_every`` steps.
    """

    def curve(optimizer: optax.GradientTransformation, key: jax.Array) -> jax.Array:
        variant_key, init_key, data_key = jax.random.split(key, 3)
        variant = task.sample(variant_key)
        params = task.init(init_key)

        def step(carry, step_key):
            params, opt_state = carry
            grads = jax.grad(task.batch_loss)(params, variant, step_key, "train")
            grads = lopt_tasks.finite_gradients(grads)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        def block(carry, block_key):
            carry, _ = jax.lax.scan(step, carry, jax.random.split(block_key, record_every))
            return carry, task.full_loss(carry[0], variant, "train")

        blocks = jax.random.split(data_key, steps // record_every)
        _, losses = jax.lax.scan(block, (params, optimizer.init(params)), blocks)
        return jnp.concatenate([task.full_loss(params, variant, "train")[None], losses])

    return curve


def seconds_per_step(curve_fn, optimizer, key: jax.Array, steps: int) -> float:
    """Wall-clock seconds per inner step of one run (compiled first, then timed twice)."""
    run = jax.jit(lambda k: curve_fn(optimizer, k))
    jax.block_until_ready(run(key))
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        jax.block_until_ready(run(key))
        best = min(best, time.perf_counter() - start)
    return best / steps


def evaluate_distribution(
    task: lopt_tasks.InnerTask, theta: lopt.Theta, steps: int, seeds: int, record_every: int
) -> dict:
    """Curves of the learned optimizer and of Adam at every grid rate, over ``seeds`` tasks."""
    curve_fn = make_train_curve(task, steps, record_every)
    keys = jnp.stack([jax.random.key(SEED_OFFSET + s) for s in range(seeds)])

    def over_seeds(optimizer, keys):
        return jax.vmap(lambda key: curve_fn(optimizer, key))(keys)

    learned = np.asarray(jax.jit(lambda k: over_seeds(lopt.as_optax(theta), k))(keys))
    # One compilation for the whole grid: the learning rate is traced, vmapped over the grid.
    grid = jax.jit(jax.vmap(lambda lr: over_seeds(optax.adam(lr), keys)))
    adam_curves = np.maximum(np.asarray(grid(jnp.asarray(ADAM_GRID))), LOSS_FLOOR)
    learned = np.maximum(learned, LOSS_FLOOR)  # NaN (diverged) stays NaN
    adam = dict(zip(ADAM_GRID, adam_curves, strict=True))
    scores = {lr: _tuning_score(c) for lr, c in adam.items()}
    best_lr = min(scores, key=lambda lr: scores[lr])
    return {
        "steps": np.arange(0, steps + 1, record_every),
        "learned": learned,
        "adam": adam[best_lr],
        "adam_lr": best_lr,
        "adam_grid_score": scores,
        "learned_seconds_per_step": seconds_per_step(
            curve_fn, lopt.as_optax(theta), keys[0], steps
        ),
        "adam_seconds_per_step": seconds_per_step(curve_fn, optax.adam(best_lr), keys[0], steps),
    }


def geometric_mean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """exp(mean(log x)); a non-finite value (a diverged run) makes it inf."""
    values = np.where(np.isfinite(values), values, np.inf)
    return np.exp(np.mean(np.log(values), axis=axis))


def _tuning_score(curves: np.ndarray) -> float:
    """Geometric mean of the loss over the last tenth of the recorded points and the seeds."""
    tail = curves[:, -max(1, curves.shape[1] // 10) :]
    return float(geometric_mean(tail))


def summarize(result: dict) -> dict:
    """The table row of one distribution: final losses, steps/seconds to Adam's final loss."""
    steps = result["steps"]
    learned_mean = geometric_mean(result["learned"], axis=0)
    adam_final = float(geometric_mean(result["adam"][:, -1]))
    reached = np.flatnonzero(learned_mean <= adam_final)
    steps_to_adam = int(steps[reached[0]]) if reached.size else None
    # Adam's own steps to its final loss: fewer than the run when it got there early (the floor).
    adam_mean = geometric_mean(result["adam"], axis=0)
    adam_steps = int(steps[np.flatnonzero(adam_mean <= adam_final * (1 + 1e-6))[0]])
    learned_sps, adam_sps = result["learned_seconds_per_step"], result["adam_seconds_per_step"]
    finals = result["learned"][:, -1]
    return {
        "adam_lr": result["adam_lr"],
        "adam_final_loss": adam_final,
        "adam_final_loss_range": [
            float(np.min(result["adam"][:, -1])),
            float(np.max(result["adam"][:, -1])),
        ],
        "learned_final_loss": float(geometric_mean(finals)),
        "learned_final_loss_range": [float(np.min(finals)), float(np.max(finals))],
        "learned_diverged": int(np.sum(~np.isfinite(finals) | (finals > DIVERGED_LOSS))),
        "adam_steps_to_final": adam_steps,
        "learned_steps_to_adam_final": steps_to_adam,
        "speedup_steps": adam_steps / steps_to_adam if steps_to_adam else None,
        "learned_seconds_to_adam_final": steps_to_adam * learned_sps if steps_to_adam else None,
        "adam_seconds_to_final": adam_steps * adam_sps,
        "speedup_seconds": (adam_steps * adam_sps) / (steps_to_adam * learned_sps)
        if steps_to_adam
        else None,
        "learned_ms_per_step": 1e3 * learned_sps,
        "adam_ms_per_step": 1e3 * adam_sps,
    }


def markdown_table(rows: dict[str, dict], steps: int, seeds: int) -> str:
    def fmt(value, spec):
        return "never" if value is None else format(value, spec)

    def loss(row, name):
        low, high = row[f"{name}_final_loss_range"]
        return f"{row[f'{name}_final_loss']:.3g} [{low:.3g}, {high:.3g}]"

    lines = [
        f"Learned optimizer vs Adam (lr tuned on {len(ADAM_GRID)} values 1e-4…10), "
        f"{steps} inner steps, {seeds} seeds; losses on the whole training split "
        "(geometric mean over seeds [min, max]).",
        "",
        "| distribution | tuned Adam lr | Adam final loss | learned final loss | diverged "
        "| steps to Adam's final loss: learned / Adam | speed-up (steps) "
        "| speed-up (wall-clock) | ms/step learned / Adam |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['adam_lr']:.3g} "
            f"| {loss(row, 'adam')} | {loss(row, 'learned')} "
            f"| {row['learned_diverged']}/{seeds} "
            f"| {fmt(row['learned_steps_to_adam_final'], 'd')} / {row['adam_steps_to_final']} "
            f"| {fmt(row['speedup_steps'], '.2f')}× | {fmt(row['speedup_seconds'], '.2f')}× "
            f"| {row['learned_ms_per_step']:.3f} / {row['adam_ms_per_step']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4 * len(results)), squeeze=False)
    for row, (name, result) in enumerate(results.items()):
        steps = result["steps"]
        series = [
            ("learned optimizer", result["learned"], result["learned_seconds_per_step"]),
            (
                f"Adam, tuned lr {result['adam_lr']:.3g}",
                result["adam"],
                result["adam_seconds_per_step"],
            ),
        ]
        for column, xlabel in enumerate(("inner steps", "wall-clock seconds")):
            ax = axes[row, column]
            for label, curves, seconds in series:
                x = steps if column == 0 else steps * seconds
                ax.plot(x, geometric_mean(curves, axis=0), label=label)
                ax.fill_between(x, np.min(curves, axis=0), np.max(curves, axis=0), alpha=0.2)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("training loss")
            ax.set_title(f"{name} distribution")
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog=program("lopt-eval", "python -m pes_rl.meta.lopt_eval"),
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("run_dir", type=Path, help="a learned_optimizer run (has lopt_theta.npz)")
    parser.add_argument("--steps", type=int, default=1000, help="inner steps per run")
    parser.add_argument("--seeds", type=int, default=5, help="tasks per distribution")
    parser.add_argument("--record-every", type=int, default=10, help="steps between loss points")
    parser.add_argument("--task", default=None, help="task family (default: the run's)")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/lopt_eval")
    args = parser.parse_args(argv)
    try:
        theta = lopt.load(args.run_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in ("steps", "seeds", "record_every"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.steps % args.record_every:
        print("error: --steps must be a multiple of --record-every", file=sys.stderr)
        return 2
    env_kwargs = {}
    config_path = args.run_dir / "config.yaml"
    if config_path.exists():
        env_kwargs = OmegaConf.to_container(OmegaConf.load(config_path).env.kwargs)
    task_name = args.task or env_kwargs.get("task", "mlp_digits")
    batch_size = env_kwargs.get("batch_size", 128)
    if task_name not in lopt_tasks.TASKS:
        print(f"error: --task must be one of {list(lopt_tasks.TASKS)}, got {task_name!r}",
              file=sys.stderr)  # fmt: skip
        return 2
    out = args.out or args.run_dir / "lopt_eval"
    out.mkdir(parents=True, exist_ok=True)

    results, rows = {}, {}
    for distribution in lopt_tasks.DISTRIBUTIONS:
        task = lopt_tasks.make(task_name, distribution, batch_size)
        print(
            f"{task.name}: {args.seeds} seeds × {args.steps} steps, Adam grid of {len(ADAM_GRID)}"
        )
        results[distribution] = evaluate_distribution(
            task, theta, args.steps, args.seeds, args.record_every
        )
        rows[distribution] = summarize(results[distribution])
    table = markdown_table(rows, args.steps, args.seeds)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(
        json.dumps({"task": task_name, "steps": args.steps, "seeds": args.seeds} | rows, indent=2)
    )
    plot(
        results,
        out / "curves.png",
        f"{task_name}: learned optimizer ({args.run_dir.name}) vs tuned Adam",
    )
    print(table)
    print(f"wrote {out / 'curves.png'}, {out / 'results.md'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
