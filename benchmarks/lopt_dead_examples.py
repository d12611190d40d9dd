"""Why is a training task never memorized? Count its dead examples: training images for which
the CNN's last conv layer outputs 0 everywhere, so that the logits are the dense layer's bias.

No gradient from such an image reaches the conv layers or the dense weights (its last
layer's ReLUs are all off), only the dense bias: it is fitted only if the bias favours its
label, and otherwise its loss stays whatever the optimizer does. RMSProp makes none on these
tasks; a growth of every tensor by one rule (the learned optimizers') does, on a few; one that
grows layer k's bias by (1 + G)^k − 1 (``layered_growth``) keeps the network's function and
made one or none. For every OPTIMIZER (as ``lopt_cnn_floor_screen.py`` takes them: a run
dir, ``growth=G``, ``raw_growth=G,until=S``, ``layered_growth=G,until=S``, ``rmsprop=LR``) and
set ``FIRSTxN`` of unseen training-distribution tasks, it trains every task for 1000 steps
(all seeds in one vmapped batch, minibatches as ``lopt-eval`` draws them) and records per seed:
the final whole-split training loss, its dead examples and their share of the summed loss.

    python benchmarks/lopt_dead_examples.py \\
        benchmarks/results/lopt_cnn_train_variants/rms_growth0.004 \\
        raw_growth=0.012,until=250 \\
        benchmarks/results/lopt_cnn_train_variants/rms_raw_growth0.012_until250_sigma0.003 \\
        layered_growth=0.012,until=250 layered_growth=0.010,until=250 rmsprop=0.0316227766 \\
        --sets 10000x10 20000x10 30000x10 40000x10 50000x10 60000x10 70000x10 \\
        --out benchmarks/results/lopt_cnn_dead_examples_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from lopt_cnn_floor_screen import add_optimizers_and_sets, make_optimizers
from lopt_floor_stability import ABOVE_FLOOR, STEPS

from pes_rl.envs import lopt_tasks
from pes_rl.meta import data, lopt_eval

TASK, DISTRIBUTION = "cnn_digits", "train"


def train(task: lopt_tasks.InnerTask, optimizer: optax.GradientTransformation):
    """(params, variant, data_key) -> params after ``STEPS`` steps, on ``lopt-eval``'s
    minibatches (step t's from the t-th key split from data_key)."""

    def run(params, variant, data_key):
        step = lopt_eval.training_step(task, optimizer, variant)
        keys = jax.random.split(data_key, STEPS)
        return jax.lax.scan(step, (params, optimizer.init(params)), keys)[0][0]

    return run


def dead_examples(params, variant, x: jax.Array, y: jax.Array) -> dict:
    """One task's final loss (as ``full_loss``), its dead examples and their share of it."""
    features = lopt_tasks.cnn_features(params, x, variant["widths"])
    logits = features @ params[-1]["w"] + params[-1]["b"]
    labels = variant["permutation"][y]
    losses = -jax.nn.log_softmax(logits)[jnp.arange(len(y)), labels]
    dead = jnp.all(features == 0.0, axis=1)
    total = jnp.sum(losses)
    return {
        "loss": jnp.mean(losses),
        "dead": jnp.sum(dead),
        "dead_loss_share": jnp.where(total > 0, jnp.sum(jnp.where(dead, losses, 0.0)) / total, 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_optimizers_and_sets(parser, [(30_000, 10), (40_000, 10)])
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    optimizers = make_optimizers(parser, args.optimizers)
    task = lopt_tasks.make(TASK, DISTRIBUTION, 128, "digits")
    digits = data.load("digits")
    x, y = digits.train_x, digits.train_y
    count = jax.jit(jax.vmap(lambda params, variant: dead_examples(params, variant, x, y)))
    task_loss = jax.jit(jax.vmap(lambda params, variant: task.full_loss(params, variant, "train")))
    results = {}
    for spec, optimizer in optimizers.items():
        run, start, rows = jax.jit(jax.vmap(train(task, optimizer))), time.perf_counter(), {}
        for first_seed, seeds in args.sets:
            params, variants, data_keys = lopt_eval.draw_tasks(task, seeds, first_seed)
            final = run(params, variants, data_keys)
            found = {key: np.asarray(value) for key, value in count(final, variants).items()}
            if not np.allclose(found["loss"], task_loss(final, variants), rtol=1e-4, atol=1e-7):
                raise RuntimeError("the recomputed loss is not the task's full_loss")
            rows[f"{first_seed}x{seeds}"] = [
                {
                    "seed": first_seed + index,
                    "final_loss": float(found["loss"][index]),
                    "at_floor": bool(found["loss"][index] <= ABOVE_FLOOR),
                    "dead_examples": int(found["dead"][index]),
                    "dead_loss_share": float(found["dead_loss_share"][index]),
                }
                for index in range(seeds)
            ]
        results[spec] = rows
        seeds_off = [row for set_rows in rows.values() for row in set_rows if not row["at_floor"]]
        with_dead = [row for row in seeds_off if row["dead_examples"]]
        summary = "; ".join(
            f"{row['seed']}: loss {row['final_loss']:.1e}, {row['dead_examples']} dead "
            f"({row['dead_loss_share']:.0%} of it)"
            for row in seeds_off
        )
        print(
            f"{spec}: {len(seeds_off)} seeds off the floor at step {STEPS}, {len(with_dead)} with "
            f"dead examples [{summary}] ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
