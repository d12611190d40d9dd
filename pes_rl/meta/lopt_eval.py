"""Evaluates a meta-trained learned optimizer against tuned Adam, RMSProp and SGD+momentum.

    python -m pes_rl.meta.lopt_eval RUN_DIR [--steps 1000] [--seeds 5] [--first-seed 10000]
        [--record-every 10] [--task mlp_digits] [--objective {train_loss,val_loss}]
        [--distributions train ...] [--out DIR]

Evaluates as Metz et al. (2019). For the task family of the run (or ``--task``), on each of its
evaluation distributions (``lopt_tasks.EVAL_DISTRIBUTIONS``: the training distribution's unseen
seeds and the held-out one(s), another architecture and seed stream), trains ``--seeds`` fresh
tasks (seeds ``--first-seed``, ``--first-seed`` + 1, …) for ``--steps`` inner steps with the
learned optimizer of ``RUN_DIR/lopt_theta.npz`` and with each baseline. A baseline is Adam,
RMSProp or SGD+momentum (0.9), each with a learning rate, a schedule (constant, or
``optax.cosine_decay_schedule`` from the rate to 0 over the run) and a decoupled weight decay
(AdamW-style: the update gains decay·p before the rate scales it), tuned per distribution on
the objective the optimizer was meta-trained for (the run's ``env.kwargs.objective``, or
``--objective``) over a small grid in two rounds, one rule for both:

1. the rate alone, on ``LR_GRID`` (11 values, 1e-4 … 10, half a decade apart; constant, no
   decay: the plain optax optimizer);
2. the tuned rate and its two neighbours on that grid × ``SCHEDULES`` × ``WEIGHT_DECAYS``
   (0, 0.01, 0.1, 1): 24 settings, the three of round 1 among them.

The tuning score is, for ``train_loss``, the training loss over the last tenth of the run
(geometric mean over seeds and points: the last point alone rewards a setting that is chaotic
all run and lucky at the end), for ``val_loss`` the lowest validation loss reached during the
run (of the seeds' geometric-mean curve), as early stopping would give. The best baseline is
the tuned one with the best score; the learned optimizer is compared with it:

* **speed-up** at the objective's target, the best baseline's final training loss
  (``train_loss``) or best validation loss (``val_loss``), on the seeds' geometric-mean curve:
  its steps to the target over the learned optimizer's, in steps and in wall-clock (steps ×
  each optimizer's own seconds per step, one run at its setting measured on this machine);
* **per seed and paired**, on the training split, at fixed targets: a training loss of 1e-1,
  1e-2 and 1e-3, 100 % training accuracy, and each seed's own final loss of the best baseline.
  For every seed the learned optimizer's and the baseline's first recorded step there, the
  speed-ups, and over the seeds where both get there the geometric mean of the per-seed
  speed-ups and the mean seconds saved with 95 % t intervals (``PAIRED_LEVEL``), and how many
  seeds the learned optimizer reaches the target sooner, at the same step, or later (never
  counts as later than any step);
* **test loss and test accuracy at each seed's best validation step** (the split an optimizer
  may look at; the test split is never used to choose), their means over seeds and the paired
  learned − baseline differences with 95 % t intervals.

All optimizers see the same tasks, initializations and minibatches; non-finite gradients count
as 0. Losses are of whole splits (train, validation, test; the quadratic family has one loss,
used for all three and only with ``train_loss``, and no accuracy). They span many decades:
curves average over seeds geometrically and are clipped at ``LOSS_FLOOR`` (1e-6, float32
rounding of a memorized training set). Prints a line per distribution and per optimizer as it
goes, and writes ``RUN_DIR/lopt_eval/`` (or ``--out``):

* ``curves.png``: per distribution, the objective's loss against inner steps and against
  wall-clock seconds, and the test loss against steps, of the learned optimizer and each
  tuned baseline;
* ``results.json`` and ``results.md``: per distribution all of the above, each baseline's
  tuned setting and every setting's score (``<name>_grid``), diverged runs, and each seed's
  first step at the objective's target; ``results.json`` also records the ``machine`` (CPU,
  device, JAX version). The ``adam_*`` keys compare with tuned Adam on the training loss, as
  earlier versions did.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import OmegaConf

from pes_rl import lopt
from pes_rl.cli import ArgumentParser, program
from pes_rl.envs import lopt_tasks, unrolled

LR_GRID = tuple(float(lr) for lr in np.logspace(-4, 1, 11))  # 1e-4 … 10, half-decade steps
SCHEDULES = ("constant", "cosine")  # cosine: optax.cosine_decay_schedule(lr, steps), to 0
WEIGHT_DECAYS = (0.0, 0.01, 0.1, 1.0)  # decoupled (AdamW): the update gains decay·p, × the rate
BASELINES = {  # name -> the direction the rate scales (optax.<name>(lr) without the rate)
    "adam": optax.scale_by_adam,
    "rmsprop": optax.scale_by_rms,
    "sgd_momentum": lambda: optax.trace(decay=0.9),
}
BASELINE_LABELS = {"adam": "Adam", "rmsprop": "RMSProp", "sgd_momentum": "SGD+momentum"}
OBJECTIVES = {"train_loss": "train", "val_loss": "val"}  # objective -> the split it is on
SPLITS = ("train", "val", "test")
TARGET_LOSSES = (1e-1, 1e-2, 1e-3)  # fixed training-loss targets, each seed paired
FINAL_TARGET = "baseline_final_loss"  # each seed's own final training loss of the best baseline
ACCURACY_TARGET = "train_accuracy_100"  # 100 % training accuracy
PAIRED_LEVEL = 0.95  # confidence of the paired t intervals
SEED_OFFSET = 10_000  # evaluation seeds never coincide with training's reset keys
AT_TARGET = 1 + 1e-6  # a loss within float rounding of the target (a geometric mean) is at it
DIVERGED_LOSS = 1e3  # a final loss above this (or non-finite) counts as diverged
TIMING_REPEATS = 5  # seconds_per_step: the fastest of this many whole runs
# Training losses below this are float32 rounding (a cross-entropy of memorized data reads 0 or
# 1e-9 at random): curves are clipped here, and reaching it counts as solving the task.
LOSS_FLOOR = unrolled.LOG_FLOOR  # the same floor offsets the log_loss meta-objective


class Setting(NamedTuple):
    """One baseline setting of the tuning grid."""

    lr: float
    schedule: str = "constant"  # one of SCHEDULES
    weight_decay: float = 0.0

    def vector(self) -> list[float]:
        """(rate, 1 for the cosine schedule, weight decay): how the grid is traced."""
        return [self.lr, float(self.schedule == "cosine"), self.weight_decay]

    def label(self) -> str:
        """``lr 0.0316, cosine, wd 0.1`` (schedule and decay only when not the plain ones)."""
        parts = [f"lr {self.lr:.3g}"]
        parts += ["cosine"] if self.schedule == "cosine" else []
        parts += [f"wd {self.weight_decay:g}"] if self.weight_decay else []
        return ", ".join(parts)


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


def baseline(name: str, steps: int):
    """``make(setting) -> optimizer`` for the baseline ``name``: its direction, then the decayed
    weights, then the scheduled rate (optax.adamw's order). ``setting`` is
    :meth:`Setting.vector`, which may be traced (one compilation for a whole grid); at a
    constant schedule and no decay the optimizer is ``optax.<name>(lr)``."""
    direction = BASELINES[name]
    cosine = optax.cosine_decay_schedule(1.0, steps)

    def make(setting: jax.Array) -> optax.GradientTransformation:
        lr, use_cosine, weight_decay = setting[0], setting[1], setting[2]

        def schedule(count):
            return lr * (1.0 - use_cosine + use_cosine * cosine(count))

        return optax.chain(
            direction(),
            optax.add_decayed_weights(weight_decay),
            optax.scale_by_learning_rate(schedule),
        )

    return make


def round_two(lr: float) -> list[Setting]:
    """The second round of tuning: ``lr`` and its neighbours on ``LR_GRID`` × ``SCHEDULES`` ×
    ``WEIGHT_DECAYS``, but for the constant, undecayed settings round one ran."""
    index = LR_GRID.index(lr)
    rates = LR_GRID[max(index - 1, 0) : index + 2]
    return [
        Setting(rate, schedule, decay)
        for rate in rates
        for schedule in SCHEDULES
        for decay in WEIGHT_DECAYS
        if (schedule, decay) != ("constant", 0.0)
    ]


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
    task: lopt_tasks.InnerTask,
    steps: int,
    record_every: int,
    splits: tuple[str, ...] = ("train",),
    accuracy: bool = False,
):
    """``curve(optimizer, params, variant, data_key) -> [steps // record_every + 1, columns]``.

    Each row holds the whole-split losses of ``splits`` (and then, with ``accuracy``, their
    accuracies) at step 0 and every ``record_every`` steps. Step t's minibatch comes from the
    t-th of ``steps`` keys split from ``data_key``, whatever ``record_every`` is: runs recorded
    at two intervals train on the same minibatches. The task's variant and initial parameters
    come in as arguments: drawn once per seed, they are shared by every optimizer, and
    compiling them into each optimizer's run would double its compilation time.
    """

    def metrics(params, variant):
        if not accuracy:
            return jnp.stack([task.full_loss(params, variant, split) for split in splits])
        # [loss, accuracy] per split from one forward pass: two double the recording's cost.
        both = jnp.stack([task.full_metrics(params, variant, split) for split in splits])
        return jnp.concatenate([both[:, 0], both[:, 1]])

    def curve(optimizer: optax.GradientTransformation, params, variant, data_key) -> jax.Array:
        step = training_step(task, optimizer, variant)

        def block(carry, step_keys):
            carry, _ = jax.lax.scan(step, carry, step_keys)
            return carry, metrics(carry[0], variant)

        step_keys = jax.random.split(data_key, steps).reshape(-1, record_every)
        _, recorded = jax.lax.scan(block, (params, optimizer.init(params)), step_keys)
        return jnp.concatenate([metrics(params, variant)[None], recorded])

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


def tune(grid: dict, objective: str) -> tuple:
    """The key of ``grid`` ({setting: curves}) with the best tuning score, and every key's
    score (a tie goes to the first key)."""
    scores = {key: tuning_score(curves, objective) for key, curves in grid.items()}
    return min(scores, key=lambda key: scores[key]), scores


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
    """Curves of the learned optimizer and of each baseline at its tuned setting.

    Returns ``{"steps", "objective", "learned": curves, "learned_seconds_per_step",
    "baselines": {name: {"setting", "scores", "seconds_per_step", **curves}}}`` with curves
    ``{split: [seeds, points]}`` for the losses of ``SPLITS`` and, where the task has labels,
    ``{split}_accuracy``. ``has_splits=False`` (the quadratic family): the training loss
    stands for the validation and test losses.
    """
    splits = SPLITS if has_splits else ("train",)
    accuracy = has_splits and task.full_metrics is not None
    curve_fn = make_curve(task, steps, record_every, splits, accuracy)
    tasks = draw_tasks(task, seeds, first_seed)
    first = jax.tree.map(lambda x: x[0], tasks)  # the run that is timed

    def over_seeds(optimizer, params, variants, data_keys):
        return jax.vmap(lambda *inputs: curve_fn(optimizer, *inputs))(params, variants, data_keys)

    def by_split(curves: np.ndarray) -> dict[str, np.ndarray]:  # [..., points, columns]
        losses = np.maximum(curves[..., : len(splits)], LOSS_FLOOR)  # NaN (diverged) stays NaN
        named = {split: losses[..., i] for i, split in enumerate(splits)}
        named |= {split: named.get(split, named["train"]) for split in SPLITS}
        if accuracy:
            named |= {
                f"{split}_accuracy": curves[..., len(splits) + i] for i, split in enumerate(splits)
            }
        return named

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
    for name in BASELINES:
        start = time.perf_counter()
        make_optimizer = baseline(name, steps)
        # One compilation for the whole grid: the setting is traced, vmapped over a chunk of
        # len(LR_GRID) settings (round two is padded to whole chunks).
        grid_fn = jax.jit(
            jax.vmap(
                lambda setting, *tasks, make=make_optimizer: over_seeds(make(setting), *tasks),
                in_axes=(0, None, None, None),
            )
        )

        def run(settings: list[Setting], grid_fn=grid_fn) -> dict[Setting, dict]:
            chunk = len(LR_GRID)
            padded = settings + settings[-1:] * (-len(settings) % chunk)
            vectors = jnp.asarray([setting.vector() for setting in padded])
            curves = np.concatenate([
                np.asarray(grid_fn(vectors[i : i + chunk], *tasks))
                for i in range(0, len(padded), chunk)
            ])  # fmt: skip
            return {s: by_split(c) for s, c in zip(settings, curves[: len(settings)], strict=True)}

        grid = run([Setting(lr) for lr in LR_GRID])
        rate, _ = tune(grid, objective)
        grid |= run(round_two(rate.lr))
        setting, scores = tune(grid, objective)
        sps = seconds_per_step(
            timing_fn, make_optimizer, jnp.asarray(setting.vector()), first, steps
        )
        baselines[name] = {
            "setting": setting,
            "scores": scores,
            "seconds_per_step": sps,
            **grid[setting],
        }
        print(
            f"  {name}: tuned {setting.label()}, {objective} score {scores[setting]:.4g}, "
            f"{1e3 * sps:.3f} ms/step ({len(grid)} settings, "
            f"{time.perf_counter() - start:.1f} s)",
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


def each_seed_steps_to(
    curves: np.ndarray, target: float | np.ndarray, steps: np.ndarray
) -> list[int | None]:
    """Each seed's first recorded step at or below ``target`` (``curves``: [seeds, points];
    ``target``: one for all seeds, or one per seed): which seeds hold the seeds' mean back."""
    targets = np.broadcast_to(np.asarray(target, np.float64), (len(curves),))
    return [_steps_to(curve, bound, steps) for curve, bound in zip(curves, targets, strict=True)]


def paired_interval(values: Sequence[float], level: float = PAIRED_LEVEL) -> dict:
    """The mean of per-seed ``values`` (paired differences) and its t interval at ``level``:
    mean ± t(n − 1)·sd/√n. ``{"n", "mean", "ci": [low, high]}``; the interval is None for fewer
    than two values, the mean too for none."""
    from scipy import stats

    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"n": 0, "mean": None, "ci": None}
    mean = float(np.mean(values))
    if values.size == 1:
        return {"n": 1, "mean": mean, "ci": None}
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * np.std(values, ddof=1)
    half /= math.sqrt(values.size)
    return {"n": int(values.size), "mean": mean, "ci": [mean - half, mean + half]}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _times(steps: int | None, seconds: float) -> float | None:
    return None if steps is None else steps * seconds


def paired_speedup(
    learned_steps: Sequence[int | None],
    baseline_steps: Sequence[int | None],
    learned_sps: float,
    baseline_sps: float,
) -> dict:
    """Per seed, the baseline's steps (seconds) to a target over the learned optimizer's, and
    over the seeds where both get there (after step 0) the geometric mean of those speed-ups
    with its t interval (of the mean log speed-up) and the mean seconds saved with its t
    interval; ``sooner``/``same``/``later``: the seeds where the learned optimizer gets there
    before, with, or after the baseline (never is after every step)."""

    def order(step: int | None) -> float:
        return math.inf if step is None else step

    both = [
        (learned, base)
        for learned, base in zip(learned_steps, baseline_steps, strict=True)
        if learned and base  # None (never) or 0 (there at the start) has no ratio
    ]
    log_steps = [math.log(base / learned) for learned, base in both]
    wall_clock = math.log(baseline_sps / learned_sps)

    def geometric(interval: dict, shift: float = 0.0) -> dict:
        ci = interval["ci"] and [math.exp(bound + shift) for bound in interval["ci"]]
        mean = interval["mean"]
        return {"mean": None if mean is None else math.exp(mean + shift), "ci": ci}

    steps_interval = paired_interval(log_steps)
    saved = paired_interval([base * baseline_sps - learned * learned_sps for learned, base in both])
    pairs = list(zip(learned_steps, baseline_steps, strict=True))
    return {
        "learned_steps": list(learned_steps),
        "baseline_steps": list(baseline_steps),
        "speedup_steps": [_ratio(base, learned) for learned, base in pairs],
        "speedup_seconds": [
            _ratio(_times(base, baseline_sps), _times(learned, learned_sps))
            for learned, base in pairs
        ],
        "learned_reached": sum(step is not None for step in learned_steps),
        "baseline_reached": sum(step is not None for step in baseline_steps),
        "sooner": sum(order(learned) < order(base) for learned, base in pairs),
        "same": sum(order(learned) == order(base) for learned, base in pairs),
        "later": sum(order(learned) > order(base) for learned, base in pairs),
        "paired_seeds": steps_interval["n"],
        "speedup_steps_geomean": geometric(steps_interval),
        "speedup_seconds_geomean": geometric(steps_interval, wall_clock),
        "seconds_saved": {"mean": saved["mean"], "ci": saved["ci"]},
    }


def at_best_validation(curves: dict[str, np.ndarray]) -> dict:
    """Each seed's recorded point with the lowest validation loss (a diverged run's NaN points
    are skipped), and the test loss and test accuracy there (accuracy None without labels)."""
    index = np.argmin(np.where(np.isnan(curves["val"]), np.inf, curves["val"]), axis=1)
    seeds = np.arange(len(index))
    accuracy = curves.get("test_accuracy")
    return {
        "points": index.tolist(),
        "test_loss": curves["test"][seeds, index].tolist(),
        "test_accuracy": None if accuracy is None else accuracy[seeds, index].tolist(),
    }


def paired_difference(learned: list[float], base: list[float], lower_is_better: bool) -> dict:
    """Per-seed learned − baseline, its mean with a t interval, and the seeds the learned
    optimizer wins (lower, or higher when not ``lower_is_better``)."""
    differences = [a - b for a, b in zip(learned, base, strict=True)]
    interval = paired_interval(differences)
    wins = sum((d < 0) if lower_is_better else (d > 0) for d in differences)
    return {"per_seed": differences, "mean": interval["mean"], "ci": interval["ci"], "wins": wins}


def paired_targets(result: dict, best_name: str) -> dict[str, dict]:
    """:func:`paired_speedup` of the learned optimizer against the baseline ``best_name`` at
    each fixed target on the training split (``TARGET_LOSSES``, 100 % training accuracy where
    the task has labels, and each seed's final loss of the baseline)."""
    steps, learned, best = result["steps"], result["learned"], result["baselines"][best_name]
    sps = result["learned_seconds_per_step"], best["seconds_per_step"]

    def pair(learned_steps, baseline_steps):
        return paired_speedup(learned_steps, baseline_steps, *sps)

    targets = {
        f"train_loss_{loss:g}": pair(
            each_seed_steps_to(learned["train"], loss, steps),
            each_seed_steps_to(best["train"], loss, steps),
        )
        for loss in TARGET_LOSSES
    }
    if "train_accuracy" in learned:  # 1 − accuracy at or below 0: every image right
        targets[ACCURACY_TARGET] = pair(
            each_seed_steps_to(1.0 - learned["train_accuracy"], 0.0, steps),
            each_seed_steps_to(1.0 - best["train_accuracy"], 0.0, steps),
        )
    finals = best["train"][:, -1] * AT_TARGET
    targets[FINAL_TARGET] = pair(
        each_seed_steps_to(learned["train"], finals, steps),
        each_seed_steps_to(best["train"], finals, steps),
    )
    return targets


def summarize(result: dict) -> dict:
    """The table row of one distribution (``evaluate_distribution``'s result).

    The best baseline is the one with the best tuning score on the objective. Its target: its
    final training loss (``train_loss``) or the lowest validation loss of its run
    (``val_loss``); ``speedup_steps`` = its steps to the target / the learned optimizer's, and
    ``speedup_seconds`` the same in seconds, on the seeds' geometric-mean curves. ``targets``:
    the per-seed paired speed-ups at fixed targets (:func:`paired_targets`); ``test``: test
    loss and accuracy at each seed's best validation step, paired. The ``adam_*`` keys (and
    ``learned_final_loss``, ``learned_steps_to_adam_final``, ...) compare with tuned Adam on
    the training loss.
    """
    steps, objective = result["steps"], result["objective"]
    split = OBJECTIVES[objective]
    learned, baselines = result["learned"], result["baselines"]
    learned_sps = result["learned_seconds_per_step"]
    scores = {name: tuning_score(curves, objective) for name, curves in baselines.items()}
    best_name = min(scores, key=lambda name: scores[name])
    best = baselines[best_name]
    tested = {name: at_best_validation(curves) for name, curves in baselines.items()}
    learned_tested = at_best_validation(learned)

    # Against the best baseline, on the objective's split.
    best_mean = geometric_mean(best[split], axis=0)
    best_final = float(geometric_mean(best["train"][:, -1]))
    target = best_final if objective == "train_loss" else float(np.min(best_mean))
    learned_steps = _steps_to(geometric_mean(learned[split], axis=0), target, steps)
    # The baseline's own steps to its target: fewer than the run when it got there early.
    best_steps = _steps_to(best_mean, target * AT_TARGET, steps)
    finals = learned["train"][:, -1]
    setting = best["setting"]
    row = {
        "best_baseline": best_name,
        "best_baseline_lr": setting.lr,
        "best_baseline_schedule": setting.schedule,
        "best_baseline_weight_decay": setting.weight_decay,
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
        "targets": paired_targets(result, best_name),
    }
    test = {
        "learned_best_val_points": learned_tested["points"],
        "baseline_best_val_points": tested[best_name]["points"],
        "learned_test_loss": learned_tested["test_loss"],
        "baseline_test_loss": tested[best_name]["test_loss"],
        "test_loss_difference": paired_difference(
            learned_tested["test_loss"], tested[best_name]["test_loss"], lower_is_better=True
        ),
    }
    row["learned_test_loss_at_best_val"] = float(np.mean(learned_tested["test_loss"]))
    row["best_baseline_test_loss_at_best_val"] = float(np.mean(tested[best_name]["test_loss"]))
    if learned_tested["test_accuracy"] is not None:
        test["learned_test_accuracy"] = learned_tested["test_accuracy"]
        test["baseline_test_accuracy"] = tested[best_name]["test_accuracy"]
        test["test_accuracy_difference"] = paired_difference(
            learned_tested["test_accuracy"],
            tested[best_name]["test_accuracy"],
            lower_is_better=False,
        )
        row["learned_test_accuracy_at_best_val"] = float(np.mean(learned_tested["test_accuracy"]))
        row["best_baseline_test_accuracy_at_best_val"] = float(
            np.mean(tested[best_name]["test_accuracy"])
        )
    row["test"] = test
    if objective == "val_loss":
        row["learned_best_val_loss"] = best_val_loss(learned["val"])
        row["best_baseline_best_val_loss"] = best_val_loss(best["val"])
    for name, curves in baselines.items():
        tuned = curves["setting"]
        row[f"{name}_lr"] = tuned.lr
        row[f"{name}_schedule"] = tuned.schedule
        row[f"{name}_weight_decay"] = tuned.weight_decay
        row[f"{name}_final_loss"] = float(geometric_mean(curves["train"][:, -1]))
        if objective == "val_loss":
            row[f"{name}_best_val_loss"] = best_val_loss(curves["val"])
        row[f"{name}_test_loss_at_best_val"] = float(np.mean(tested[name]["test_loss"]))
        if tested[name]["test_accuracy"] is not None:
            row[f"{name}_test_accuracy_at_best_val"] = float(
                np.mean(tested[name]["test_accuracy"])
            )
        row[f"{name}_tuning_score"] = scores[name]
        row[f"{name}_ms_per_step"] = 1e3 * curves["seconds_per_step"]
        row[f"{name}_grid"] = [
            setting._asdict() | {"score": score} for setting, score in curves["scores"].items()
        ]

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


def _interval(value: dict, spec: str, unit: str = "") -> str:
    """``1.23× [0.9×, 1.6×]`` from {"mean", "ci"} (— without a mean)."""
    if value["mean"] is None:
        return "—"
    text = f"{value['mean']:{spec}}{unit}"
    if value["ci"] is not None:
        low, high = value["ci"]
        text += f" [{low:{spec}}{unit}, {high:{spec}}{unit}]"
    return text


def markdown_table(
    rows: dict[str, dict],
    steps: int,
    seeds: int,
    objective: str = "train_loss",
    first_seed: int = SEED_OFFSET,
) -> str:
    """``results.md``: the comparison per distribution, the per-seed paired targets, the test
    split at the best validation step, the tuned baselines and each seed's steps."""

    def fmt(value, spec):
        return "never" if value is None else format(value, spec)

    def speedup(value):
        return "—" if value is None else f"{value:.2f}×"

    def learned_loss(row):
        low, high = row["learned_final_loss_range"]
        return f"{row['learned_final_loss']:.3g} [{low:.3g}, {high:.3g}]"

    def setting(row, name):
        prefix = "best_baseline" if name is None else name
        return Setting(
            row[f"{prefix}_lr"], row[f"{prefix}_schedule"], row[f"{prefix}_weight_decay"]
        ).label()

    validation = objective == "val_loss"
    target = "best validation loss" if validation else "final training loss"
    level = f"{PAIRED_LEVEL:.0%}"
    decays = ", ".join(f"{decay:g}" for decay in WEIGHT_DECAYS)
    names = [name for name in BASELINES if any(f"{name}_lr" in row for row in rows.values())]
    lines = [
        f"Learned optimizer vs the best of {', '.join(BASELINE_LABELS[n] for n in names)}, "
        f"each tuned per distribution for the {'validation' if validation else 'training'} loss "
        f"on {len(LR_GRID)} learning rates 1e-4…10, then the best rate and its two neighbours × "
        f"{{{', '.join(SCHEDULES)}}} × weight decay {{{decays}}}"
        f"; {steps} inner steps, {seeds} seeds. Losses of whole splits, geometric mean over seeds "
        "([min, max]); final loss: training; test loss: the mean over seeds of each seed's test "
        f"loss at its best validation step. Target: the best baseline's {target}.",
        "",
        "| distribution | best baseline | baseline final loss | learned final loss | diverged "
        + ("| best val loss learned / baseline " if validation else "")
        + "| steps to target: learned / baseline | speed-up (steps) | speed-up (wall-clock) "
        "| ms/step learned / baseline | test loss at best val learned / baseline |",
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
            f"| {name} | {BASELINE_LABELS.get(best, best)} ({setting(row, None)}) "
            f"| {row['best_baseline_final_loss']:.3g} | {learned_loss(row)} "
            f"| {row['learned_diverged']}/{seeds} {val}"
            f"| {fmt(row['learned_steps_to_target'], 'd')} / "
            f"{fmt(row['baseline_steps_to_target'], 'd')} "
            f"| {speedup(row['speedup_steps'])} | {speedup(row['speedup_seconds'])} "
            f"| {row['learned_ms_per_step']:.3f} / {row['best_baseline_ms_per_step']:.3f} "
            f"| {row['learned_test_loss_at_best_val']:.3g} / "
            f"{row['best_baseline_test_loss_at_best_val']:.3g} |"
        )
    lines += [
        "",
        "Per seed, paired with the best baseline, on the training split: seeds that reach each "
        "target (learned / baseline); seeds where the learned optimizer gets there sooner / at "
        f"the same step / later (never is later); over the seeds both reach, the geometric mean "
        f"of the per-seed speed-ups and the mean seconds saved, with {level} t intervals.",
        "",
        "| distribution | target | reached learned / baseline | sooner / same / later "
        "| speed-up (steps) | speed-up (wall-clock) | seconds saved per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        for target_name, paired in row["targets"].items():
            lines.append(
                f"| {name} | {target_name} | {paired['learned_reached']} / "
                f"{paired['baseline_reached']} | {paired['sooner']} / {paired['same']} / "
                f"{paired['later']} | {_interval(paired['speedup_steps_geomean'], '.2f', '×')} "
                f"| {_interval(paired['speedup_seconds_geomean'], '.2f', '×')} "
                f"| {_interval(paired['seconds_saved'], '.3g', ' s')} |"
            )
    lines += [
        "",
        "Each seed's wall-clock speed-up at each target (— : one of them never gets there).",
        "",
        "| distribution | target | " + " | ".join(f"seed {first_seed + i}" for i in range(seeds))
        + " |",
        "|---|---|" + "---|" * seeds,
    ]
    for name, row in rows.items():
        for target_name, paired in row["targets"].items():
            cells = [speedup(value) for value in paired["speedup_seconds"]]
            lines.append(f"| {name} | {target_name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Test split at each seed's best validation step, learned vs the best baseline: means "
        f"over seeds, the paired difference learned − baseline with its {level} t interval, and "
        "the seeds where the learned optimizer is better.",
        "",
        "| distribution | test loss learned / baseline | difference | seeds lower "
        "| test accuracy learned / baseline | difference | seeds higher |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        test = row["test"]
        loss = test["test_loss_difference"]
        cells = [
            f"{row['learned_test_loss_at_best_val']:.4g} / "
            f"{row['best_baseline_test_loss_at_best_val']:.4g}",
            _interval(loss, "+.4f"),
            f"{loss['wins']}/{seeds}",
        ]
        if "test_accuracy_difference" in test:
            accuracy = test["test_accuracy_difference"]
            cells += [
                f"{row['learned_test_accuracy_at_best_val']:.4f} / "
                f"{row['best_baseline_test_accuracy_at_best_val']:.4f}",
                _interval(accuracy, "+.4f"),
                f"{accuracy['wins']}/{seeds}",
            ]
        else:
            cells += ["—", "—", "—"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    loss_key = "best_val_loss" if validation else "final_loss"
    loss_label = "best val loss" if validation else "final loss"
    lines += [
        "",
        f"Tuned baselines: setting, {loss_label} and test loss at the best validation step.",
        "",
        "| distribution | "
        + " | ".join(
            f"{BASELINE_LABELS[n]} | {BASELINE_LABELS[n]} {loss_label} | "
            f"{BASELINE_LABELS[n]} test loss"
            for n in names
        )
        + " |",
        "|---|" + "---|---|---|" * len(names),
    ]
    for name, row in rows.items():
        cells = [
            f"{setting(row, n)} | {row[f'{n}_{loss_key}']:.3g} | "
            f"{row[f'{n}_test_loss_at_best_val']:.3g}"
            for n in names
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Each seed's first recorded step at the target ({target} of the seeds' mean): learned / "
        "best baseline.",
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
    """``curves.png``: per distribution, the objective's loss against steps and seconds, and
    the test loss against steps (seeds' geometric mean, their range shaded)."""
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
            (f"{BASELINE_LABELS[b]}, tuned {c['setting'].label()}", c, c["seconds_per_step"])
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
    """``pes-rl lopt-eval``: evaluates RUN_DIR's θ and writes its results; 2 on a usage error."""
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
            f"{task.name}: {args.seeds} seeds × {args.steps} steps, {len(BASELINES)} baselines, "
            f"each tuned on {len(LR_GRID)} learning rates, then schedules × weight decays, "
            f"for {objective}",
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
        "grid": {
            "lr": LR_GRID,
            "schedules": SCHEDULES,
            "weight_decays": WEIGHT_DECAYS,
            "rule": "the best lr on the lr grid (constant, no decay), then it and its two "
            "neighbours × schedules × weight decays",
        },
        "paired_level": PAIRED_LEVEL,
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
