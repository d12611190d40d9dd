"""The engine against raw stepping over a grid of N and K, each estimator, compile time apart.

    python benchmarks/engine_grid.py --env gymnax/CartPole-v1 \
        --json benchmarks/results/engine_grid_cpu.json

Raw stepping is ``jit(lax.scan(vmap(env.step)))`` with the same policy and perturbed θ
(``engine_throughput.jax_raw_window``); compile time is the first call's time minus a steady
call's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
from engine_throughput import jax_raw_window, time_calls, time_engine
from jax.flatten_util import ravel_pytree

from pes_rl import agents, envs, policies


def first_call_seconds(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="gymnax/CartPole-v1")
    parser.add_argument("--particles", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--unroll-lengths", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--estimators", nargs="+", default=["tes", "pes", "nres"])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = envs.make(args.env)
    policy = policies.make("linear", env)
    params = policy.init(jax.random.key(0))
    flat, unravel = ravel_pytree(params)
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    print(f"{args.env} on {device}")
    print(f"{'estimator':9s} {'N':>5s} {'K':>4s} {'raw steps/s':>13s} {'engine':>13s} "
          f"{'ratio':>6s} {'compile s':>9s}")  # fmt: skip
    rows = []
    for num in args.particles:
        for length in args.unroll_lengths:
            theta = flat + 0.1 * jax.random.normal(jax.random.key(1), (num, flat.size))
            states = jax.vmap(env.reset)(jax.random.split(jax.random.key(2), num))
            raw = jax_raw_window(
                env, lambda t, o: policy.apply(unravel(t), o), states, theta, length
            )
            raw_seconds = time_calls(raw, args.calls)
            for name in args.estimators:
                agent = agents.make(
                    name, env=env, policy=policy, num_particles=num, sigma=0.1,
                    unroll_length=length,
                )  # fmt: skip
                state = agent.init(jax.random.key(3), params)
                first = first_call_seconds(
                    lambda agent=agent, state=state: agent.estimate(
                        state, params, jax.random.key(4)
                    )[0]
                )
                seconds = time_engine(agent, params, jax.random.key(5), args.calls)
                row = {
                    "estimator": name, "particles": num, "unroll": length,
                    "raw_sps": num * length / raw_seconds, "engine_sps": num * length / seconds,
                    "compile_s": first - seconds,
                }  # fmt: skip
                rows.append(row)
                print(f"{name:9s} {num:5d} {length:4d} {row['raw_sps']:13,.0f} "
                      f"{row['engine_sps']:13,.0f} {row['engine_sps'] / row['raw_sps']:6.2f} "
                      f"{row['compile_s']:9.2f}", flush=True)  # fmt: skip
                if args.json:  # after every row: a run stopped early keeps what it measured
                    record = {"env": args.env, "device": device, "rows": rows}
                    args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
