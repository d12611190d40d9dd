"""Evaluates a meta-trained learned optimizer against tuned Adam, RMSProp and SGD+momentum.

    python -m pes_rl.meta.lopt_eval RUN_DIR [--steps 1000] [--seeds 5] [--first-seed 10000]
        [--record-every 10] [--task mlp_digits] [--objective {train_loss,val_loss}]
        [--distributions train ...] [--out DIR]

Evaluates as Metz et al. (2019). For the task family of the run (or ``--task``), on each of its
evaluation distributions (``lopt_tasks.EVAL_DISTRIBUTIONS``: the training distribution's unseen
seeds and the held-out one(s), another architecture and seed stream), trains ``--seeds`` fresh
tasks (seeds ``--first-seed``, ``--first-seed`` + 1, …) for ``--steps`` inner steps with the
learned optimizer of ``RUN_DIR/lopt_theta.npz`` and with each baseline (``optax.adam``,
``optax.rmsprop``, ``optax.sgd`` with momentum 0.9) at every learning rate of a log grid (11
values, 1e-4 … 10). Each baseline's rate is tuned per distribution on the objective the
optimizer was meta-trained for (the run's ``env.kwargs.objective``, or ``--objective``):

* ``train_loss``: the lowest training loss over the last tenth of the run (geometric mean over
  seeds and points; the last point alone rewards a rate that is chaotic all run and lucky at
  the end);
* ``val_loss``: the lowest validation loss reached during the run (of the seeds' geometric
  mean curve), as early stopping would give.

The best baseline is the tuned one with the best such score, and the speed-up is measured
against it: the steps the baseline needs to reach its target (its final training loss for
``train_loss``, its best validation loss for ``val_loss``) over the steps the learned optimizer
needs to reach the same loss; the wall-clock speed-up multiplies steps by each optimizer's own
seconds per step (one run at its rate, measured on this machine). All optimizers see the same
tasks, initializations and minibatches; non-finite gradients count as 0. Losses are of whole
splits (train, validation, test; the quadratic family has one loss, used for all three and
only with ``train_loss``). They span many decades: curves and tables average over seeds
geometrically, and are clipped at ``LOSS_FLOOR`` (1e-6, float32 rounding of a memorized
training set). Prints a line per distribution and per optimizer as it goes, and writes
``RUN_DIR/lopt_eval/`` (or ``--out``):

* ``curves.png``: per distribution, the objective's loss against inner steps and against
  wall-clock seconds, and the test loss against steps, of the learned optimizer and each
  tuned baseline;
* ``results.json`` and ``results.md``: per distribution, the best baseline and its rate, final
  losses, steps and seconds to the target, speed-ups, test losses (the minimum over the run),
  diverged runs, each seed's first step at the target (which seeds hold the mean back), and
  each baseline's tuned rate and loss; ``results.json`` also records the
  ``machine`` (CPU, device, JAX version). The ``adam_*`` keys compare with tuned Adam on the
  training loss alone, as earlier versions did.
"""

from __future__ import annotations

import json
import platform
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
from pes_rl.envs import lopt_tasks, unrolled

LR_GRID = tuple(float(lr) for lr in np.logspace(-4, 1, 11))  # 1e-4 … 10, half-decade steps
BASELINES = {  # name -> learning rate -> optimizer; the rate may be traced (one compilation)
    "adam": optax.adam,
    "rmsprop": optax.rmsprop,
    "sgd_momentum": lambda lr: optax.sgd(lr, momentum=0.9),
}
BASELINE_LABELS = {"adam": "Adam", "rmsprop": "RMSProp", "sgd_momentum": "SGD+momentum"}
OBJECTIVES = {"train_loss": "train", "val_loss": "val"}  # objective -> the split it is on
SPLITS = ("train", "val", "test")
SEED_OFFSET = 10_000  # evaluation seeds never coincide with training's reset keys
AT_TARGET = 1 + 1e-6  # a loss within float rounding of the target (a geometric mean) is at it
DIVERGED_LOSS = 1e3  # a final loss above this (or non-finite) counts as diverged
TIMING_REPEATS = 5  # seconds_per_step: the fastest of this many whole runs
# Training losses below this are float32 rounding (a cross-entropy of memorized data reads 0 or
# 1e-9 at random): curves are clipped here, and reaching it counts as solving the task.
LOSS_FLOOR = unrolled.LOG_FLOOR  # the same floor offsets the log_loss meta-objective


def machine() -> dict[str, str]:
    """Where the numbers were measured: the CPU, the first JAX device and JAX's version.

    After a task is memorized a learned optimizer's run can be chaotic, and another CPU rounds
    differently: the same command gives other steps to the target there (results-meta.md).
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            ]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    return {"cpu": cpu, "device": jax.devices()[0].device_kind, "jax": jax.__version__}


def training_step(task: lopt_tasks.InnerTask, optimizer: optax.GradientTransformation, variant):
    """A ``lax.scan`` body, ((params, optimizer state), step key) -> (the next, None): one step
    of ``optimizer`` on the training minibatch the key draws, non-finite gradient entries as 0.
    How ``lopt-eval`` trains every optimizer, learned or tuned."""

    def step(carry, step_key):
        params, opt_state = carry
        grads = jax.grad(task.batch_loss)(params, variant, step_key, "train")
        grads = lopt_tasks.finite_gradients(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    return step


def make_curve(
    task: lopt_tasks.InnerTask, steps: int, record_every: int, splits: tuple[str, ...] = ("train",)
):
    """``curve(optimizer, params, variant, data_key) -> [steps // record_every + 1, len(splits)]``.

    Each row holds the whole-split losses at step 0 and every ``record_every`` steps. Step t's
    minibatch comes from the t-th of ``steps`` keys split from ``data_key``, whatever
    ``record_every`` is: runs recorded at two intervals train on the same minibatches. The
    task's variant and initial parameters come in as arguments: drawn once per seed, they are
    shared by every optimizer, and compiling them into each optimizer's run would double its
    compilation time.
    """

    def losses(params, variant):
        return jnp.stack([task.full_loss(params, variant, split) for split in splits])

    def curve(optimizer: optax.GradientTransformation, params, variant, data_key) -> jax.Array:
        step = training_step(task, optimizer, variant)

        def block(carry, step_keys):
            carry, _ = jax.lax.scan(step, carry, step_keys)
            return carry, losses(carry[0], variant)

        step_keys = jax.random.split(data_key, steps).reshape(-1, record_every)
        _, recorded = jax.lax.scan(block, (params, optimizer.init(params)), step_keys)
        return jnp.concatenate([losses(params, variant)[None], recorded])

    return curve


def draw_tasks(task: lopt_tasks.InnerTask, seeds: int, first_seed: int = SEED_OFFSET) -> tuple:
    """(params, variants, data keys), stacked over the evaluation seeds ``first_seed``,
    ``first_seed`` + 1, … (``seeds`` of them)."""
    # One seed at a time: task.init and task.sample are jitted, and compile faster unbatched.
    drawn = []
    for seed in range(seeds):
        variant_key, init_key, data_key = jax.random.split(jax.random.key(first_seed + seed), 3)
        drawn.append((task.init(init_key), task.sample(variant_key), data_key))
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *drawn)


def seconds_per_step(curve_fn, make_optimizer, hyper, inputs: tuple, steps: int) -> float:
    """Wall-clock seconds per inner step of one run of ``make_optimizer(hyper)`` on
    ``inputs`` = (params, variant, data_key): compiled first, then the fastest of
    ``TIMING_REPEATS`` runs (on a shared machine, slower runs are other work's)."""
    run = jax.jit(lambda hyper, *inputs: curve_fn(make_optimizer(hyper), *inputs))
    jax.block_until_ready(run(hyper, *inputs))
    best = float("inf")
    for _ in range(TIMING_REPEATS):
        start = time.perf_counter()
        jax.block_until_ready(run(hyper, *inputs))
        best = min(best, time.perf_counter() - start)
    return best / steps


def geometric_mean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """exp(mean(log x)); a non-finite value (a diverged run) makes it inf."""
    values = np.where(np.isfinite(values), values, np.inf)
    return np.exp(np.mean(np.log(values), axis=axis))


def _tuning_score(curves: np.ndarray) -> float:
    """Geometric mean of the loss over the last tenth of the recorded points and the seeds."""
    tail = curves[:, -max(1, curves.shape[1] // 10) :]
    return float(geometric_mean(tail))


def best_val_loss(curves: np.ndarray) -> float:
    """The lowest point of the seeds' geometric-mean curve ([seeds, points]): min over the run."""
    return float(np.min(geometric_mean(curves, axis=0)))


def tuning_score(curves: dict[str, np.ndarray], objective: str) -> float:
    """How good one optimizer's curves ({split: [seeds, points]}) are; lower is better."""
    if objective == "val_loss":
        return best_val_loss(curves["val"])
    return _tuning_score(curves["train"])


def tune(grid: dict[float, dict[str, np.ndarray]], objective: str) -> tuple[float, dict]:
    """The rate of ``grid`` ({lr: curves}) with the best tuning score, and every rate's score."""
    scores = {lr: tuning_score(curves, objective) for lr, curves in grid.items()}
    return min(scores, key=lambda lr: scores[lr]), scores


def evaluate_distribution(
    task: lopt_tasks.InnerTask,
    theta: lopt.Theta,
    steps: int,
    seeds: int,
    record_every: int,
    objective: str = "train_loss",
    has_splits: bool = True,
    first_seed: int = SEED_OFFSET,
) -> dict:
    """Curves of the learned optimizer and of each baseline at its tuned rate.

    Returns ``{"steps", "objective", "learned": {split: [seeds, points]},
    "learned_seconds_per_step", "baselines": {name: {"lr", "scores", "seconds_per_step",
    split: [seeds, points]}}}``. ``has_splits=False`` (the quadratic family): the training
    loss stands for the validation and test losses.
    """
    splits = SPLITS if has_splits else ("train",)
    curve_fn = make_curve(task, steps, record_every, splits)
    tasks = draw_tasks(task, seeds, first_seed)
    first = jax.tree.map(lambda x: x[0], tasks)  # the run that is timed

    def over_seeds(optimizer, params, variants, data_keys):
        return jax.vmap(lambda *inputs: curve_fn(optimizer, *inputs))(params, variants, data_keys)

    def by_split(curves: np.ndarray) -> dict[str, np.ndarray]:  # [..., points, splits]
        curves = np.maximum(curves, LOSS_FLOOR)  # NaN (diverged) stays NaN
        named = {split: curves[..., i] for i, split in enumerate(splits)}
        return {split: named.get(split, named["train"]) for split in SPLITS}

    # Timing: one run without the recorded losses, so it measures the optimizer's steps.
    timing_fn = make_curve(task, steps, steps)
    start = time.perf_counter()
    learned_fn = jax.jit(lambda theta, *tasks: over_seeds(lopt.as_optax(theta), *tasks))
    learned = by_split(np.asarray(learned_fn(theta, *tasks)))
    learned_sps = seconds_per_step(timing_fn, lopt.as_optax, theta, first, steps)
    print(
        f"  learned optimizer: {1e3 * learned_sps:.3f} ms/step "
        f"({time.perf_counter() - start:.1f} s)",
        flush=True,
    )
    baselines = {}
    for name, make_optimizer in BASELINES.items():
        start = time.perf_counter()
        # One compilation for the whole grid: the learning rate is traced, vmapped over it.
        grid_fn = jax.jit(
            jax.vmap(
                lambda lr, *tasks, make=make_optimizer: over_seeds(make(lr), *tasks),
                in_axes=(0, None, None, None),
            )
        )
        grid_curves = np.asarray(grid_fn(jnp.asarray(LR_GRID), *tasks))
        grid = {lr: by_split(curves) for lr, curves in zip(LR_GRID, grid_curves, strict=True)}
        lr, scores = tune(grid, objective)
        sps = seconds_per_step(timing_fn, make_optimizer, jnp.asarray(lr), first, steps)
        baselines[name] = {"lr": lr, "scores": scores, "seconds_per_step": sps, **grid[lr]}
        print(
            f"  {name}: tuned lr {lr:.3g}, {objective} score {scores[lr]:.4g}, "
            f"{1e3 * sps:.3f} ms/step ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    return {
        "steps": np.arange(0, steps + 1, record_every),
        "objective": objective,
        "learned": learned,
        "learned_seconds_per_step": learned_sps,
        "baselines": baselines,
    }


def _steps_to(mean_curve: np.ndarray, target: float, steps: np.ndarray) -> int | None:
    """The first recorded step at which ``mean_curve`` is at or below ``target``."""
    reached = np.flatnonzero(mean_curve <= target)
    return int(steps[reached[0]]) if reached.size else None


def each_seed_steps_to(curves: np.ndarray, target: float, steps: np.ndarray) -> list[int | None]:
    """Each seed's first recorded step at or below ``target`` (``curves``: [seeds, points]): which
    seeds hold the seeds' mean back."""
    return [_steps_to(curve, target, steps) for curve in curves]


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _times(steps: int | None, seconds: float) -> float | None:
    return None if steps is None else steps * seconds


def summarize(result: dict) -> dict:
    """The table row of one distribution (``evaluate_distribution``'s result).

    The best baseline is the one with the best tuning score on the objective. Its target: its
    final training loss (``train_loss``) or the lowest validation loss of its run
    (``val_loss``); ``speedup_steps`` = its steps to the target / the learned optimizer's, and
    ``speedup_seconds`` the same in seconds. The ``adam_*`` keys (and ``learned_final_loss``,
    ``learned_steps_to_adam_final``, ...) compare with tuned Adam on the training loss.
    """
    steps, objective = result["steps"], result["objective"]
    split = OBJECTIVES[objective]
    learned, baselines = result["learned"], result["baselines"]
    learned_sps = result["learned_seconds_per_step"]
    scores = {name: tuning_score(curves, objective) for name, curves in baselines.items()}
    test_losses = {name: best_val_loss(curves["test"]) for name, curves in baselines.items()}
    best_name = min(scores, key=lambda name: scores[name])
    best = baselines[best_name]

    # Against the best baseline, on the objective's split.
    best_mean = geometric_mean(best[split], axis=0)
    best_final = float(geometric_mean(best["train"][:, -1]))
    target = best_final if objective == "train_loss" else float(np.min(best_mean))
    learned_steps = _steps_to(geometric_mean(learned[split], axis=0), target, steps)
    # The baseline's own steps to its target: fewer than the run when it got there early.
    best_steps = _steps_to(best_mean, target * AT_TARGET, steps)
    finals = learned["train"][:, -1]
    row = {
        "best_baseline": best_name,
        "best_baseline_lr": best["lr"],
        "best_baseline_final_loss": best_final,
        "target_loss": target,
        "learned_final_loss": float(geometric_mean(finals)),
        "learned_final_loss_range": [float(np.min(finals)), float(np.max(finals))],
        "learned_diverged": int(np.sum(~np.isfinite(finals) | (finals > DIVERGED_LOSS))),
        "learned_steps_to_target": learned_steps,
        "baseline_steps_to_target": best_steps,
        "learned_seed_steps_to_target": each_seed_steps_to(
            learned[split], target * AT_TARGET, steps
        ),
        "baseline_seed_steps_to_target": each_seed_steps_to(
            best[split], target * AT_TARGET, steps
        ),
        "speedup_steps": _ratio(best_steps, learned_steps),
        "learned_seconds_to_target": _times(learned_steps, learned_sps),
        "baseline_seconds_to_target": _times(best_steps, best["seconds_per_step"]),
        "speedup_seconds": _ratio(
            _times(best_steps, best["seconds_per_step"]), _times(learned_steps, learned_sps)
        ),
        "learned_ms_per_step": 1e3 * learned_sps,
        "best_baseline_ms_per_step": 1e3 * best["seconds_per_step"],
        "learned_test_loss": best_val_loss(learned["test"]),
        "best_baseline_test_loss": test_losses[best_name],
    }
    if objective == "val_loss":
        row["learned_best_val_loss"] = best_val_loss(learned["val"])
        row["best_baseline_best_val_loss"] = best_val_loss(best["val"])
    for name, curves in baselines.items():
        row[f"{name}_lr"] = curves["lr"]
        row[f"{name}_final_loss"] = float(geometric_mean(curves["train"][:, -1]))
        if objective == "val_loss":
            row[f"{name}_best_val_loss"] = best_val_loss(curves["val"])
        row[f"{name}_test_loss"] = test_losses[name]
        row[f"{name}_tuning_score"] = scores[name]
        row[f"{name}_ms_per_step"] = 1e3 * curves["seconds_per_step"]

    # Against tuned Adam on the training loss (the keys of earlier versions).
    adam = baselines["adam"]
    adam_final = float(geometric_mean(adam["train"][:, -1]))
    to_adam = _steps_to(geometric_mean(learned["train"], axis=0), adam_final, steps)
    adam_mean = geometric_mean(adam["train"], axis=0)
    adam_steps = _steps_to(adam_mean, adam_final * AT_TARGET, steps)
    adam_sps = adam["seconds_per_step"]
    return row | {
        "adam_final_loss_range": [
            float(np.min(adam["train"][:, -1])),
            float(np.max(adam["train"][:, -1])),
        ],
        "adam_steps_to_final": adam_steps,
        "learned_steps_to_adam_final": to_adam,
        "adam_speedup_steps": _ratio(adam_steps, to_adam),
        "learned_seconds_to_adam_final": _times(to_adam, learned_sps),
        "adam_seconds_to_final": _times(adam_steps, adam_sps),
        "adam_speedup_seconds": _ratio(_times(adam_steps, adam_sps), _times(to_adam, learned_sps)),
    }


def markdown_table(
    rows: dict[str, dict],
    steps: int,
    seeds: int,
    objective: str = "train_loss",
    first_seed: int = SEED_OFFSET,
) -> str:
    def fmt(value, spec):
        return "never" if value is None else format(value, spec)

    def speedup(value):
        return "—" if value is None else f"{value:.2f}×"

    def learned_loss(row):
        low, high = row["learned_final_loss_range"]
        return f"{row['learned_final_loss']:.3g} [{low:.3g}, {high:.3g}]"

    validation = objective == "val_loss"
    target = "best validation loss" if validation else "final training loss"
    names = [name for name in BASELINES if any(f"{name}_lr" in row for row in rows.values())]
    lines = [
        f"Learned optimizer vs the best of {', '.join(BASELINE_LABELS[n] for n in names)}, "
        f"each lr tuned per distribution on {len(LR_GRID)} values 1e-4…10 for the "
        f"{'validation' if validation else 'training'} loss; {steps} inner steps, {seeds} seeds. "
        "Losses of whole splits, geometric mean over seeds ([min, max]); final loss: training; "
        "test loss: the lowest of the run. Target: the best baseline's "
        f"{target}.",
        "",
        "| distribution | best baseline (lr) | baseline final loss | learned final loss "
        "| diverged "
        + ("| best val loss learned / baseline " if validation else "")
        + "| steps to target: learned / baseline | speed-up (steps) | speed-up (wall-clock) "
        "| ms/step learned / baseline | test loss learned / baseline |",
        "|---|---|---|---|---|" + ("---|" if validation else "") + "---|---|---|---|---|",
    ]
    for name, row in rows.items():
        best = row["best_baseline"]
        val = (
            f"| {row['learned_best_val_loss']:.3g} / {row['best_baseline_best_val_loss']:.3g} "
            if validation
            else ""
        )
        lines.append(
            f"| {name} | {BASELINE_LABELS.get(best, best)} ({row['best_baseline_lr']:.3g}) "
            f"| {row['best_baseline_final_loss']:.3g} | {learned_loss(row)} "
            f"| {row['learned_diverged']}/{seeds} {val}"
            f"| {fmt(row['learned_steps_to_target'], 'd')} / "
            f"{fmt(row['baseline_steps_to_target'], 'd')} "
            f"| {speedup(row['speedup_steps'])} | {speedup(row['speedup_seconds'])} "
            f"| {row['learned_ms_per_step']:.3f} / {row['best_baseline_ms_per_step']:.3f} "
            f"| {row['learned_test_loss']:.3g} / {row['best_baseline_test_loss']:.3g} |"
        )
    loss_key = "best_val_loss" if validation else "final_loss"
    loss_label = "best val loss" if validation else "final loss"
    lines += [
        "",
        f"Tuned baselines: learning rate, {loss_label} and test loss (the lowest of the run).",
        "",
        "| distribution | "
        + " | ".join(
            f"{BASELINE_LABELS[n]} lr | {BASELINE_LABELS[n]} {loss_label} | "
            f"{BASELINE_LABELS[n]} test loss"
            for n in names
        )
        + " |",
        "|---|" + "---|---|---|" * len(names),
    ]
    for name, row in rows.items():
        cells = [
            f"{row[f'{n}_lr']:.3g} | {row[f'{n}_{loss_key}']:.3g} | {row[f'{n}_test_loss']:.3g}"
            for n in names
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each seed's first recorded step at the target: learned / best baseline.",
        "",
        "| distribution | " + " | ".join(f"seed {first_seed + i}" for i in range(seeds)) + " |",
        "|---|" + "---|" * seeds,
    ]
    for name, row in rows.items():
        pairs = zip(
            row["learned_seed_steps_to_target"], row["baseline_seed_steps_to_target"], strict=True
        )
        cells = [f"{fmt(learned, 'd')} / {fmt(baseline, 'd')}" for learned, baseline in pairs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path: Path, title: str, has_splits: bool = True) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3 if has_splits else 2
    fig, axes = plt.subplots(
        len(results), columns, figsize=(5.5 * columns, 4 * len(results)), squeeze=False
    )
    for row, (name, result) in enumerate(results.items()):
        steps, objective = result["steps"], result["objective"]
        split = OBJECTIVES[objective]
        series = [("learned optimizer", result["learned"], result["learned_seconds_per_step"])]
        series += [
            (f"{BASELINE_LABELS[b]}, tuned lr {c['lr']:.3g}", c, c["seconds_per_step"])
            for b, c in result["baselines"].items()
        ]
        panels = [
            ("inner steps", split, False),
            ("wall-clock seconds", split, True),
            ("inner steps", "test", False),
        ][:columns]
        for column, (xlabel, panel_split, seconds_axis) in enumerate(panels):
            ax = axes[row, column]
            for label, curves, seconds in series:
                x = steps * seconds if seconds_axis else steps
                ax.plot(x, geometric_mean(curves[panel_split], axis=0), label=label)
                low, high = np.min(curves[panel_split], axis=0), np.max(curves[panel_split], axis=0)
                ax.fill_between(x, low, high, alpha=0.15)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel({"train": "training", "val": "validation", "test": "test"}[panel_split]
                          + " loss")  # fmt: skip
            ax.set_title(f"{name} distribution")
            ax.legend(fontsize="small")
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
    parser.add_argument(
        "--first-seed",
        type=int,
        default=SEED_OFFSET,
        help=f"the tasks are seeds FIRST_SEED, FIRST_SEED + 1, ... (default {SEED_OFFSET}; "
        f"at least {SEED_OFFSET}, so that no task is one meta-training drew)",
    )
    parser.add_argument("--record-every", type=int, default=10, help="steps between loss points")
    parser.add_argument("--task", default=None, help="task family (default: the run's)")
    parser.add_argument(
        "--objective",
        choices=list(OBJECTIVES),
        default=None,
        help="what the baselines are tuned for and the speed-up measured on "
        "(default: the run's env.kwargs.objective, else train_loss)",
    )
    parser.add_argument(
        "--distributions",
        nargs="+",
        default=None,
        help="which evaluation distributions (default: all of the task's, e.g. train heldout)",
    )
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
    if args.first_seed < SEED_OFFSET:
        print(f"error: --first-seed must be >= {SEED_OFFSET}, got {args.first_seed}",
              file=sys.stderr)  # fmt: skip
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
    dataset = env_kwargs.get("dataset", "digits")
    objective = args.objective or env_kwargs.get("objective", "train_loss")
    if task_name not in lopt_tasks.TASKS:
        print(f"error: --task must be one of {list(lopt_tasks.TASKS)}, got {task_name!r}",
              file=sys.stderr)  # fmt: skip
        return 2
    if objective not in OBJECTIVES:
        print(f"error: --objective must be one of {list(OBJECTIVES)}, got {objective!r}",
              file=sys.stderr)  # fmt: skip
        return 2
    has_splits = task_name != "quadratic"
    if objective == "val_loss" and not has_splits:
        print("error: the quadratic task has no validation split: use --objective train_loss",
              file=sys.stderr)  # fmt: skip
        return 2
    distributions = args.distributions or lopt_tasks.EVAL_DISTRIBUTIONS[task_name]
    unknown = sorted(set(distributions) - set(lopt_tasks.EVAL_DISTRIBUTIONS[task_name]))
    if unknown:
        print(f"error: --distributions {unknown} not among {task_name}'s "
              f"{list(lopt_tasks.EVAL_DISTRIBUTIONS[task_name])}", file=sys.stderr)  # fmt: skip
        return 2
    out = args.out or args.run_dir / "lopt_eval"
    out.mkdir(parents=True, exist_ok=True)

    results, rows = {}, {}
    for distribution in distributions:
        task = lopt_tasks.make(task_name, distribution, batch_size, dataset)
        print(
            f"{task.name}: {args.seeds} seeds × {args.steps} steps, {len(BASELINES)} baselines "
            f"× {len(LR_GRID)} learning rates, tuned for {objective}",
            flush=True,
        )
        results[distribution] = evaluate_distribution(
            task, theta, args.steps, args.seeds, args.record_every, objective, has_splits,
            args.first_seed,
        )
        rows[distribution] = summarize(results[distribution])
    table = markdown_table(rows, args.steps, args.seeds, objective, args.first_seed)
    (out / "results.md").write_text(table)
    header = {
        "task": task_name,
        "objective": objective,
        "steps": args.steps,
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "machine": machine(),
    }
    (out / "results.json").write_text(json.dumps(header | rows, indent=2))
    plot(
        results,
        out / "curves.png",
        f"{task_name}: learned optimizer ({args.run_dir.name}) vs tuned baselines ({objective})",
        has_splits,
    )
    print(table)
    print(f"wrote {out / 'curves.png'}, {out / 'results.md'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
