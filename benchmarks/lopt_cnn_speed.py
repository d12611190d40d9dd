"""Speed of the learned optimizer's CNN task family, in inner training steps per second.

Two questions, each answered by jitted ``lax.scan`` loops of ``--steps`` inner steps:

1. **A population of CNNs**: N particles each training their own CNN (``cnn_digits``, train
   distribution, minibatch 128), vmapped the way the engine runs them, with the family's
   patch-and-matmul convolution (:func:`pes_rl.envs.lopt_tasks.conv3x3`) vs N copies of one
   CNN's raw training step with ``lax.conv`` (one CNN's steps/s, the baseline a population
   should not fall below) and vs a vmapped ``lax.conv`` (what the family used before).
2. **The learned optimizer's overhead**: ms per inner step of one CNN trained by the learned
   optimizer (:func:`pes_rl.lopt.update`, all parameters through one fused MLP batch) vs by
   Adam and RMSProp, jitted the same way (Metz et al. 2019, appendix F: 16% overhead on CPU):
   the MLP of the CNN experiments (one hidden layer of 32, base or ``rms`` features) and the
   default one (two layers of 32).

    python benchmarks/lopt_cnn_speed.py --out benchmarks/results/lopt_cnn_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from pes_rl import lopt
from pes_rl.envs import lopt_tasks
from pes_rl.meta import data


def lax_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """``lax.conv_general_dilated`` with ``lopt_tasks.conv3x3``'s contract."""
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def lax_conv_task(batch_size: int = 128) -> lopt_tasks.InnerTask:
    """The training distribution's CNN task with ``lax.conv`` in place of ``conv3x3``."""
    channels = lopt_tasks.ARCHITECTURES["cnn_digits", "train"]
    sample, init, batch_loss, full_loss, full_metrics = lopt_tasks._classifier(
        data.load("digits"), *lopt_tasks._cnn(channels, conv=lax_conv), batch_size
    )
    return lopt_tasks.InnerTask(
        sample, init, batch_loss, full_loss, "cnn_digits/lax_conv", full_metrics
    )


def training_run(task: lopt_tasks.InnerTask, optimizer, steps: int):
    """``run(params, key) -> params`` after ``steps`` minibatch steps of ``optimizer``."""
    widths = jnp.asarray(lopt_tasks.ARCHITECTURES["cnn_digits", "train"])  # all channels
    variant = {"permutation": jnp.arange(10), "widths": widths}

    def run(params, key):
        def step(carry, step_key):
            params, state = carry
            grads = jax.grad(task.batch_loss)(params, variant, step_key, "train")
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        carry = (params, optimizer.init(params))
        return jax.lax.scan(step, carry, jax.random.split(key, steps))[0][0]

    return run


def seconds(run, *args, repeats: int) -> float:
    """Best wall-clock seconds of ``jit(run)(*args)`` over ``repeats`` (compiled first)."""
    run = jax.jit(run)
    jax.block_until_ready(run(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(*args))
        best = min(best, time.perf_counter() - start)
    return best


def population(run, params, key, num_particles: int):
    """(vmapped run, stacked params, keys) for ``num_particles`` CNNs."""
    stacked = jax.tree.map(lambda p: jnp.broadcast_to(p, (num_particles, *p.shape)), params)
    return jax.vmap(run), stacked, jax.random.split(key, num_particles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="inner steps per timed call")
    parser.add_argument("--particles", type=int, nargs="+", default=[8, 32], help="N values")
    parser.add_argument("--repeats", type=int, default=3, help="timings per case (best kept)")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args()

    task = lopt_tasks.make("cnn_digits", "train")
    key = jax.random.key(0)
    params = task.init(key)
    sgd = optax.sgd(0.1)
    patch_run = training_run(task, sgd, args.steps)
    lax_run = training_run(lax_conv_task(), sgd, args.steps)
    size = sum(p.size for p in jax.tree.leaves(params))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {size} parameters")
    one_lax = args.steps / seconds(lax_run, params, key, repeats=args.repeats)
    one_patch = args.steps / seconds(patch_run, params, key, repeats=args.repeats)
    rows = []
    print("| N | N copies of one lax.conv CNN | vmapped lax.conv | vmapped conv3x3 (ours) |")
    print("|---:|---:|---:|---:|")
    for n in args.particles:
        lax_sps = (
            n * args.steps / seconds(*population(lax_run, params, key, n), repeats=args.repeats)
        )
        patch_sps = (
            n * args.steps / seconds(*population(patch_run, params, key, n), repeats=args.repeats)
        )
        rows.append(
            {
                "particles": n,
                "copies_of_one_lax_conv_sps": one_lax,
                "vmapped_lax_conv_sps": lax_sps,
                "vmapped_conv3x3_sps": patch_sps,
            }
        )
        print(f"| {n} | {one_lax:,.0f} | {lax_sps:,.0f} | {patch_sps:,.0f} |")

    optimizers = {
        "adam": optax.adam(1e-3),
        "rmsprop": optax.rmsprop(1e-3),
        "learned": lopt.as_optax(lopt.init(key, (32,))),  # the CNN experiments' MLP
        "learned_rms": lopt.as_optax(lopt.init(key, (32,), features="rms")),
        "learned_two_layers": lopt.as_optax(lopt.init(key)),  # the default MLP: 32, 32
    }
    ms_per_step = {}
    for name, optimizer in optimizers.items():
        run = training_run(task, optimizer, args.steps)
        ms_per_step[name] = 1e3 * seconds(run, params, key, repeats=args.repeats) / args.steps
    overheads = {
        name: ms / ms_per_step["adam"] - 1
        for name, ms in ms_per_step.items()
        if name.startswith("learned")
    }
    print(f"one CNN, ms per inner step (with SGD: lax.conv {1e3 / one_lax:.3f}, conv3x3 "
          f"{1e3 / one_patch:.3f}):")  # fmt: skip
    for name, ms in ms_per_step.items():
        over = f" ({100 * overheads[name]:+.0f}% over Adam)" if name in overheads else ""
        print(f"  {name}: {ms:.3f}{over}")
    if args.out:
        args.out.write_text(json.dumps({
            "device": jax.devices()[0].device_kind, "steps": args.steps, "population": rows,
            "one_cnn_sgd_ms_per_step": {"lax_conv": 1e3 / one_lax, "conv3x3": 1e3 / one_patch},
            "one_cnn_ms_per_step": ms_per_step, "learned_overhead_over_adam": overheads,
        }, indent=2))  # fmt: skip
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
