"""Does a train-loss learned optimizer stay at the floor, and how much does float rounding move
its steps to the floor?

The CNN train-loss goal is met when the seeds' geometric-mean training loss reaches tuned
RMSProp's final loss, float32's floor (1e-6, ``lopt_eval.LOSS_FLOOR``): every seed at the floor
at once. For RUN_DIR's learned optimizer and RMSProp at ``--rmsprop-lr`` (``lopt-eval``'s tuned
rate) on ``--seeds`` unseen training-distribution tasks per set (``--first-seeds``), with
``lopt-eval``'s whole-split losses, minibatches and recording every 25 steps, it measures:

* the first step at which the mean is at the floor, the first at which it is below 1e-5, and
  the recorded (seed, step) points after step 300 that are above the floor;
* each twice: all seeds in one vmapped batch (as ``lopt-eval`` runs them) and in two halves.
  The math is the same, XLA's vectorization is not, so float rounding differs: a run that is
  chaotic after the floor shows it, and so does another CPU;
* the learned optimizer with every step skipped whose minibatch gradient is exactly 0
  (``still``: a hand-made rule tried here, not part of ``pes_rl.lopt``);
* for the first task: the weights' norm, and the update's norm on steps with a zero gradient
  (a memorized minibatch). RMSProp stands still there; the learned optimizer does not.

    python benchmarks/lopt_floor_stability.py \\
        benchmarks/results/lopt_cnn_train_variants/rms_growth0.004 \\
        --out benchmarks/results/lopt_cnn_train_variants/rms_growth0.004/floor_stability_cpu.json
    python benchmarks/lopt_floor_stability.py --nominal-growth 0.004 \\
        --out benchmarks/results/lopt_cnn_floor_stability_nominal_cpu.json

``--nominal-growth G`` evaluates, instead of a run's θ, the CNN train config's θ_0 before any
meta-training (``lopt.with_nominal_rmsprop`` at rate 0.02) with its growth path set by hand to
G: the hand-designed optimizer that meta-training starts from.
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

from pes_rl import lopt
from pes_rl.envs import learned_optimizer, lopt_tasks
from pes_rl.meta import lopt_eval

STEPS, RECORD_EVERY = 1000, 25
NEAR_FLOOR = 1e-5
SETTLED_FROM = 300  # off-floor points are counted from this step on
ABOVE_FLOOR = lopt_eval.LOSS_FLOOR * 1.0001  # a recorded loss above this is off the floor


def nominal_theta(
    growth: float, rate: float = 0.02, features: str = "rms", until: int | None = None
) -> lopt.Theta:
    """The CNN train config's θ_0 (RMSProp's direction at ``rate``, 0.02 in the config), its
    growth set to ``growth`` (``features="rms_raw"``: a fraction of each parameter per step),
    stopping around step ``until`` (None: never)."""
    initial = lopt.init(jax.random.key(learned_optimizer.THETA_SEED), (32,), features)
    return lopt.with_nominal_rmsprop(initial, rate, growth, until)


def all_zero(grads) -> jax.Array:
    """True where every gradient is exactly 0: a memorized minibatch."""
    return sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads)) == 0


def still_at_zero_gradient(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` with no step where every gradient is exactly 0 (its state still updates)."""

    def update(grads, state, params=None):
        updates, state = optimizer.update(grads, state, params)
        still = all_zero(grads)  # gradients reach it finite (lopt_tasks.finite_gradients)
        return jax.tree.map(lambda u: jnp.where(still, 0.0, u), updates), state

    return optax.GradientTransformation(optimizer.init, update)


def stability(curves: np.ndarray, steps: np.ndarray) -> dict:
    """Steps to the floor and near it, and off-floor points, of [seeds, points] curves."""
    floor = lopt_eval.LOSS_FLOOR
    curves = np.maximum(curves, floor)
    mean = lopt_eval.geometric_mean(curves, axis=0)
    return {
        "steps_to_floor": lopt_eval._steps_to(mean, floor * lopt_eval.AT_TARGET, steps),
        "steps_to_1e-5": lopt_eval._steps_to(mean, NEAR_FLOOR, steps),
        "off_floor_points_after_300": int(
            np.sum(curves[:, steps >= SETTLED_FROM] > ABOVE_FLOOR)
        ),
        "seeds_off_floor_at_end": int(np.sum(curves[:, -1] > ABOVE_FLOOR)),
    }


def batched_curves(curve_fn, optimizer: optax.GradientTransformation):
    """``curve_fn`` of ``optimizer`` vmapped over tasks with a leading seed axis, jitted."""
    return jax.jit(lambda *tasks: jax.vmap(lambda *inputs: curve_fn(optimizer, *inputs))(*tasks))


def one_batch_and_halves(run, tasks: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The training-loss curves ([seeds, points]) of ``run`` (``batched_curves``) on ``tasks``:
    all seeds in one batch, and in two halves (the second takes the odd seed out), which XLA
    vectorizes differently: other float rounding."""
    half = len(jax.tree.leaves(tasks)[0]) // 2
    parts = [jax.tree.map(lambda x: x[:half], tasks), jax.tree.map(lambda x: x[half:], tasks)]
    whole = np.asarray(run(*tasks))[..., 0]
    return whole, np.concatenate([np.asarray(run(*part))[..., 0] for part in parts])


def norms(task: lopt_tasks.InnerTask, optimizer: optax.GradientTransformation, inputs) -> dict:
    """The weights' norm at a few steps, and the mean update norm on zero-gradient steps."""
    params, variant, data_key = inputs

    def step(carry, key):
        params, state = carry
        grads = jax.grad(task.batch_loss)(params, variant, key, "train")
        grads = lopt_tasks.finite_gradients(grads)
        updates, state = optimizer.update(grads, state, params)
        zero = all_zero(grads)
        return (optax.apply_updates(params, updates), state), (
            optax.global_norm(params),
            optax.global_norm(updates),
            zero,
        )

    keys = jax.random.split(data_key, STEPS)
    run = jax.jit(lambda: jax.lax.scan(step, (params, optimizer.init(params)), keys)[1])
    weight_norm, update_norm, zero = (np.asarray(x) for x in run())
    return {
        "weight_norm": {str(t): float(weight_norm[t]) for t in (0, 250, 500, 999)},
        "zero_gradient_steps": int(zero.sum()),
        "update_norm_at_zero_gradient": float(update_norm[zero].mean()) if zero.any() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "run_dir", type=Path, nargs="?", help="a learned_optimizer run (has lopt_theta.npz)"
    )
    parser.add_argument("--nominal-growth", type=float, help="evaluate the nominal θ_0 instead")
    parser.add_argument("--first-seeds", type=int, nargs="+", default=[10_000, 20_000])
    parser.add_argument("--seeds", type=int, default=10, help="tasks per set")
    parser.add_argument("--rmsprop-lr", type=float, default=10**-1.5)  # lopt-eval tuned it so
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    if (args.run_dir is None) == (args.nominal_growth is None):
        parser.error("give one of RUN_DIR and --nominal-growth")
    theta = nominal_theta(args.nominal_growth) if args.run_dir is None else lopt.load(args.run_dir)
    optimizers = {
        "learned": lopt.as_optax(theta),
        "learned_still": still_at_zero_gradient(lopt.as_optax(theta)),
        "rmsprop": optax.rmsprop(args.rmsprop_lr),
    }
    task = lopt_tasks.make("cnn_digits", "train", 128, "digits")
    curve_fn = lopt_eval.make_curve(task, STEPS, RECORD_EVERY, lopt_eval.SPLITS)
    steps = np.arange(0, STEPS + 1, RECORD_EVERY)
    results = {"run_dir": args.run_dir and str(args.run_dir), "nominal_growth": args.nominal_growth}
    results |= {"seeds": args.seeds, "rmsprop_lr": args.rmsprop_lr}
    results["sets"] = {}
    for first_seed in args.first_seeds:
        tasks = lopt_eval.draw_tasks(task, args.seeds, first_seed)
        rows = {}
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            whole, halves = one_batch_and_halves(batched_curves(curve_fn, optimizer), tasks)
            first = jax.tree.map(lambda x: x[0], tasks)
            rows[name] = {
                "one_batch": stability(whole, steps),
                "two_halves": stability(halves, steps),
                f"seed_{first_seed}": norms(task, optimizer, first),
            }
            one, halves_row = rows[name]["one_batch"], rows[name]["two_halves"]
            print(
                f"seeds {first_seed}+: {name:14s} to the floor {one['steps_to_floor']} "
                f"(in halves {halves_row['steps_to_floor']}), to 1e-5 {one['steps_to_1e-5']}, "
                f"off-floor points after 300: {one['off_floor_points_after_300']} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        results["sets"][str(first_seed)] = rows
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
