"""How fast hand-designed optimizers can memorize the CNN family's training split.

The train-loss goal of the learned optimizer on ``cnn_digits`` is a wall-clock speed-up against
the best tuned baseline's *final* training loss. On the digits that loss is float32's floor
(1e-6, ``lopt_eval.LOSS_FLOOR``): tuned RMSProp memorizes every seed's training split. This
script measures, on ``lopt-eval``'s 5 unseen training-distribution seeds and its whole-split
losses, the first step at which each optimizer's geometric-mean curve reaches the floor:

* RMSProp, Adam and SGD+momentum at constant rates (a finer grid than ``lopt-eval``'s);
* RMSProp with cosine decay (to 1% over 400 and 1000 steps) and with linear growth;
* RMSProp plus multiplicative weight growth p ← p + γ·p per step: once the split is classified
  correctly, growing every weight raises every margin, so the cross-entropy falls far faster
  than any step along the gradient makes it fall;
* RMSProp plus layered growth (:func:`layered_growth`): weights grown by G per step and layer
  k's bias by (1 + G)^k − 1, which keeps a ReLU network's function (no unit switches off)
  while its logits grow, until step S. The hand-set rule the library's learned optimizer was
  once wired to reproduce (removed in issue 42); here a baseline, "RMSProp + layered growth";
* the learned optimizer's nominal θ_0 (``env.kwargs.lopt_nominal_rate``: RMSProp's direction
  normalized per tensor at the rate plus a tenth of the random MLP's steps; the θ_0 of
  ``experiment=learned_optimizer_cnn_train``), before any meta-training.

    python benchmarks/lopt_cnn_schedules.py --out benchmarks/results/lopt_cnn_schedules_cpu.json
    python benchmarks/lopt_cnn_schedules.py --optimizers rmsprop lopt_nominal_theta_0
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pes_rl import lopt
from pes_rl.envs import learned_optimizer, lopt_tasks
from pes_rl.meta import lopt_eval

STEPS, RECORD_EVERY, SEEDS = 1000, 25, 5
RATES = tuple(float(lr) for lr in np.geomspace(0.005, 0.08, 7))  # around tuned RMSProp's 0.03
SGD_RATES = tuple(5 * lr for lr in RATES)  # around tuned SGD+momentum's 0.1


def weight_growth(learning_rate: float, gamma: float) -> optax.GradientTransformation:
    """RMSProp at ``learning_rate`` plus ``gamma``·p: every weight grows by γ per step."""
    # RMSProp's updates are already −lr·(scaled gradient): adding +γ·p grows the weights.
    return optax.chain(optax.rmsprop(learning_rate), optax.add_decayed_weights(gamma))


def layered_growth(growth: float, until: int) -> optax.GradientTransformation:
    """Adds, before step ``until``, growth·w to every weight's update and ((1 + growth)^k − 1)·b
    to layer k's bias (k = 1 for the first): a ReLU network's activation pattern is unchanged
    and its logits grow by (1 + growth)^depth. ``params`` is a list of layers whose weights and
    bias are named by their keys, {"w": …, "b": …} (the ``cnn_digits`` and ``mlp_digits``
    networks)."""

    def factor(depth: int, name: str) -> float:
        if name not in ("w", "b"):
            raise ValueError(f"layered_growth: a layer's keys are 'w' and 'b', got {name!r}")
        return growth if name == "w" else (1.0 + growth) ** depth - 1.0

    def update(updates, count, params):
        on = (count < until).astype(jnp.float32)
        grown = [
            {name: updates[k][name] + on * factor(k + 1, name) * p for name, p in layer.items()}
            for k, layer in enumerate(params)
        ]
        return grown, count + 1

    return optax.GradientTransformation(lambda params: jnp.zeros((), jnp.int32), update)


def nominal_theta_0(learning_rate: jax.Array) -> optax.GradientTransformation:
    """The CNN train config's θ_0 (rms features, one hidden layer of 32, the env's θ seed)
    with its nominal RMSProp rate set to ``learning_rate`` (traced: one compilation)."""
    key = jax.random.key(learned_optimizer.THETA_SEED)
    return lopt.as_optax(lopt.init(key, (32,), "rms", nominal_rate=learning_rate))


Optimizer = Callable[[jax.Array], optax.GradientTransformation]
OPTIMIZERS: dict[str, tuple[Optimizer, tuple[float, ...]]] = {  # name -> (make(lr), rates)
    "rmsprop": (optax.rmsprop, RATES),
    "adam": (optax.adam, RATES),
    "sgd_momentum": (lambda lr: optax.sgd(lr, momentum=0.9), SGD_RATES),
    "rmsprop_cosine_1000": (
        lambda lr: optax.rmsprop(optax.cosine_decay_schedule(lr, 1000, 0.01)), RATES
    ),
    "rmsprop_cosine_400": (
        lambda lr: optax.rmsprop(optax.cosine_decay_schedule(lr, 400, 0.01)), RATES
    ),
    "rmsprop_linear_growth": (lambda lr: optax.rmsprop(lambda t: lr * (1 + t / 300)), RATES),
    "rmsprop_weight_growth_0.003": (lambda lr: weight_growth(lr, 0.003), RATES),
    "rmsprop_weight_growth_0.01": (lambda lr: weight_growth(lr, 0.01), RATES),
    "rmsprop_layered_growth_0.01_until_250": (
        lambda lr: optax.chain(optax.rmsprop(lr), layered_growth(0.01, 250)), RATES
    ),
    "lopt_nominal_theta_0": (nominal_theta_0, RATES),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
    args = parser.parse_args()
    task = lopt_tasks.make("cnn_digits", "train", 128, "digits")
    curve_fn = lopt_eval.make_curve(task, STEPS, RECORD_EVERY)
    tasks = lopt_eval.draw_tasks(task, SEEDS)
    steps = np.arange(0, STEPS + 1, RECORD_EVERY)
    floor = lopt_eval.LOSS_FLOOR
    results = {"steps": STEPS, "seeds": SEEDS, "floor": floor, "optimizers": {}}
    for name in args.optimizers:
        make, rates = OPTIMIZERS[name]
        start = time.perf_counter()
        grid_fn = jax.jit(
            jax.vmap(
                lambda lr, *tasks, make=make: jax.vmap(
                    lambda *inputs: curve_fn(make(lr), *inputs)
                )(*tasks),
                in_axes=(0, None, None, None),
            )
        )
        curves = np.asarray(grid_fn(jnp.asarray(rates), *tasks))[..., 0]  # [rates, seeds, points]
        rows = {}
        for lr, rate_curves in zip(rates, curves, strict=True):
            mean = lopt_eval.geometric_mean(np.maximum(rate_curves, floor), axis=0)
            rows[f"{lr:.4g}"] = {  # at the floor: within float rounding of it, as lopt-eval
                "steps_to_floor": lopt_eval._steps_to(mean, floor * (1 + 1e-6), steps),
                "loss_at_300": float(mean[300 // RECORD_EVERY]),
                "final_loss": float(mean[-1]),
            }
        reached = [row["steps_to_floor"] for row in rows.values() if row["steps_to_floor"]]
        fastest = min(reached) if reached else None
        best_300 = min(row["loss_at_300"] for row in rows.values())
        results["optimizers"][name] = {"fastest_steps_to_floor": fastest, "rates": rows}
        print(
            f"{name:28s} fastest to the floor: {fastest} steps; best loss at step 300: "
            f"{best_300:.2g} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
