"""Env-steps/s of PES with the population split over 1, 2 and 4 devices.

Run it on the devices you have (GPUs), or on forced CPU devices:

    python benchmarks/sharding_scaling.py --cpu-devices 4 --env gymnax/CartPole-v1

Forced CPU devices share the machine's cores, so on a 2-core CPU they show the overhead of
splitting (and at most 2x), not the scaling of real devices.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="gymnax/CartPole-v1")
    parser.add_argument("--num-particles", type=int, default=1024)
    parser.add_argument("--unroll-length", type=int, default=100)
    parser.add_argument("--cpu-devices", type=int, help="force this many CPU devices")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before any JAX op

    from engine_throughput import time_engine

    from pes_rl import agents, envs, policies
    from pes_rl.stepping import sharding

    env = envs.make(args.env)
    policy = policies.make("linear", env)
    params = policy.init(jax.random.key(0))
    counts = [c for c in (1, 2, 4, 8) if c <= len(jax.devices())]
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    print(f"{args.env}, N = {args.num_particles}, K = {args.unroll_length}, on {device}")
    rows = []
    for count in counts:
        mesh = sharding.make_mesh(count)
        agent = agents.make(
            "pes", env=env, policy=policy, num_particles=args.num_particles, sigma=0.1,
            unroll_length=args.unroll_length, mesh=mesh,
        )  # fmt: skip
        seconds = time_engine(agent, params, jax.random.key(1), args.calls)
        steps_per_s = args.num_particles * args.unroll_length / seconds
        rows.append({"devices": count, "steps_per_s": steps_per_s})
        print(f"{count} device(s): {steps_per_s:14,.0f} env steps/s "
              f"({steps_per_s / rows[0]['steps_per_s']:.2f}x one device)")  # fmt: skip
    if args.json:
        record = {"env": args.env, "particles": args.num_particles,
                  "unroll": args.unroll_length, "device": device, "rows": rows}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
