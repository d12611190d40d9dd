"""How many steps do train-loss optimizers take to put every seed at the float32 floor, on several
sets of unseen tasks and two batchings? A cheap screen before a full ``lopt-eval``.

Each OPTIMIZER is a learned_optimizer run dir (or a ``lopt_theta.npz``), ``growth=G`` (the CNN
train config's θ_0 before meta-training, its growth path set by hand to G, as
``lopt_floor_stability.py --nominal-growth``; ``growth=G,rate=R`` also sets its RMSProp rate,
0.02 in the config; ``raw_growth=G`` is the same θ_0 with the ``rms_raw`` features, growing
every tensor by the fraction G of itself per step; ``depth_growth=G`` the same with the
``rms_raw_depth`` features, growing layer k's bias by (1 + G)^k − 1; ``,until=S`` stops the
growth around step S, ``lopt_nominal_growth_until``), ``layered_growth=G,until=S`` (not a
learned optimizer: the ``rms_raw`` θ_0 with no growth, then every layer's weights grown by the
fraction G per step and layer k's bias (k = 1 for the first) by (1 + G)^k − 1, until step S: a
growth that keeps the network's function up to a scale of its logits, so no ReLU switches;
``depth_growth`` is the learned optimizer's version, which also multiplies a bias's descent by
its layer's factor and shuts its steps after S; see ``lopt_dead_examples.py``) or
``rmsprop=LR``. For every set ``FIRSTxN`` (N unseen tasks from seed FIRST, of the training
distribution or ``--distribution``) it records, with ``lopt-eval``'s whole-split training losses
and minibatches every 25 steps: the first step at which the seeds' geometric mean is at the floor
in one vmapped batch (as ``lopt-eval`` runs them) and in two halves, the off-floor points after
step 300, and each seed's own first step at the floor (None: never).

    python benchmarks/lopt_cnn_floor_screen.py \\
        benchmarks/results/lopt_cnn_train_variants/rms_growth0.004 \\
        benchmarks/results/lopt_cnn_train_variants/particles* \\
        benchmarks/results/lopt_cnn_train_growth_from_zero growth=0.004 growth=0.008 \\
        rmsprop=0.0316227766 --out benchmarks/results/lopt_cnn_train_variants/floor_screen_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from lopt_floor_stability import (
    ABOVE_FLOOR,
    RECORD_EVERY,
    STEPS,
    batched_curves,
    nominal_theta,
    one_batch_and_halves,
    stability,
)

from pes_rl import lopt
from pes_rl.envs import lopt_tasks
from pes_rl.meta import lopt_eval

DEFAULT_SETS = [(10_000, 5), (10_000, 10), (20_000, 10), (30_000, 10)]  # (first seed, tasks)


def layered_growth(growth: float, until: int) -> optax.GradientTransformation:
    """Adds, before step ``until``, growth·w to every weight's update and ((1 + growth)^k − 1)·b
    to layer k's bias (params a list of {"w", "b"} layers, k = 1 for the first): a ReLU
    network's activation pattern is unchanged and its logits grow by (1 + growth)^depth."""

    def update(updates, count, params):
        on = (count < until).astype(jnp.float32)
        grown = [
            {
                "w": updates[k]["w"] + on * growth * layer["w"],
                "b": updates[k]["b"] + on * ((1.0 + growth) ** (k + 1) - 1.0) * layer["b"],
            }
            for k, layer in enumerate(params)
        ]
        return grown, count + 1

    return optax.GradientTransformation(lambda params: jnp.zeros((), jnp.int32), update)


def make_optimizer(spec: str) -> optax.GradientTransformation:
    """An optimizer from its command-line spec (see the module docstring)."""
    name, _, value = spec.partition("=")
    if name == "rmsprop" and value:
        return optax.rmsprop(float(value))
    if name in ("growth", "raw_growth", "depth_growth", "layered_growth") and value:
        growth, *options = value.split(",")
        settings = dict(option.partition("=")[::2] for option in options)
        if not set(settings) <= {"rate", "until"}:
            raise ValueError(f"the options of {name} are rate=R and until=S, got {value!r}")
        rate, until = float(settings.get("rate", 0.02)), settings.get("until")
        if name == "layered_growth":
            if until is None:
                raise ValueError(f"layered_growth needs until=S, got {value!r}")
            theta = nominal_theta(0.0, rate, "rms_raw")
            return optax.chain(lopt.as_optax(theta), layered_growth(float(growth), int(until)))
        features = {"raw_growth": "rms_raw", "depth_growth": "rms_raw_depth"}.get(name, "rms")
        theta = nominal_theta(float(growth), rate, features, None if until is None else int(until))
        return lopt.as_optax(theta)
    return lopt.as_optax(lopt.load(spec))


def parse_set(text: str) -> tuple[int, int]:
    """``"20000x10"`` -> (20000, 10): the first seed and the number of tasks (at least 2)."""
    first, _, count = text.partition("x")
    if not (first.isdigit() and count.isdigit() and int(count) >= 2):
        raise argparse.ArgumentTypeError(f"a set is FIRSTxN with N ≥ 2, got {text!r}")
    return int(first), int(count)


def add_optimizers_and_sets(
    parser: argparse.ArgumentParser, default_sets: list[tuple[int, int]]
) -> None:
    """The OPTIMIZERS positional argument and ``--sets``, as this screen and
    ``lopt_dead_examples.py`` take them."""
    parser.add_argument(
        "optimizers",
        nargs="+",
        help="run dirs, growth=G, raw_growth=G, depth_growth=G (each [,until=S]), "
        "layered_growth=G,until=S, rmsprop=LR",
    )
    parser.add_argument("--sets", type=parse_set, nargs="+", default=default_sets)


def make_optimizers(
    parser: argparse.ArgumentParser, specs: list[str]
) -> dict[str, optax.GradientTransformation]:
    """{spec: optimizer}, every spec checked before the first (minutes-long) run: a bad one
    ends the script with the parser's usage and the reason."""
    optimizers = {}
    for spec in specs:
        try:
            optimizers[spec] = make_optimizer(spec)
        except (FileNotFoundError, ValueError) as error:
            parser.error(f"{spec}: {error}")
    return optimizers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_optimizers_and_sets(parser, DEFAULT_SETS)
    parser.add_argument(
        "--distribution",
        choices=("train", "heldout", "heldout_mlp"),
        default="train",
        help="the cnn_digits distribution the tasks are drawn from (default: train)",
    )
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    optimizers = make_optimizers(parser, args.optimizers)
    task = lopt_tasks.make("cnn_digits", args.distribution, 128, "digits")
    curve_fn = lopt_eval.make_curve(task, STEPS, RECORD_EVERY, lopt_eval.SPLITS)
    steps = np.arange(0, STEPS + 1, RECORD_EVERY)
    results = {}
    for spec, optimizer in optimizers.items():
        run = batched_curves(curve_fn, optimizer)
        start, rows = time.perf_counter(), {}
        for first_seed, count in args.sets:
            tasks = lopt_eval.draw_tasks(task, count, first_seed)
            whole, halves = one_batch_and_halves(run, tasks)
            one, two = stability(whole, steps), stability(halves, steps)
            rows[f"{first_seed}x{count}"] = {
                "steps_to_floor": one["steps_to_floor"],
                "steps_to_floor_in_halves": two["steps_to_floor"],
                "off_floor_points_after_300": one["off_floor_points_after_300"],
                "seeds_first_at_floor": lopt_eval.each_seed_steps_to(whole, ABOVE_FLOOR, steps),
            }
        results[spec] = rows
        summary = ", ".join(
            f"{name}: {row['steps_to_floor']} ({row['steps_to_floor_in_halves']})"
            for name, row in rows.items()
        )
        print(f"{spec}: to the floor {summary} ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
