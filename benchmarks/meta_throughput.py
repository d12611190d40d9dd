"""Inner steps/s of the PES engine on a meta task vs. a raw jitted loop of the same task.

The engine side is one ``agents.make("pes", ...).estimate`` (jitted, constant policy) per call:
a window of K inner steps of every particle, with perturbations, episode clocks, resets and the
gradient. The raw side is a ``jit(lax.scan(vmap(env.step)))`` over the same N particles with
θ broadcast, K steps per call, carrying the state: no resets, no perturbations, no
accumulators. Both count every inner step of every particle; the ratio engine/raw says how
close the engine runs to the raw speed of the inner training runs.

    python benchmarks/meta_throughput.py                       # lr_schedule, T=1000, N=100, K=10
    python benchmarks/meta_throughput.py --num-particles 1000 --unroll-length 100
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from engine_throughput import (  # benchmarks/ is on sys.path when run as a script
    jax_raw_window,
    time_calls,
    time_engine,
)

from pes_rl import agents, envs, policies


def benchmark(
    env_id: str, horizon: int, num_particles: int, unroll_length: int, num_calls: int, repeats: int
) -> dict:
    env = envs.make(env_id, horizon=horizon)
    policy = policies.make("constant", env)
    key = jax.random.key(0)
    theta = policy.init(key)
    agent = agents.make(
        "pes", env=env, policy=policy, num_particles=num_particles, sigma=0.01,
        unroll_length=unroll_length,
    )  # fmt: skip

    engine_seconds = time_engine(agent, theta, key, num_calls, repeats)  # one window per call

    # Raw: the same inner steps with nothing around them.
    states = jax.vmap(env.reset)(jax.random.split(key, num_particles))
    thetas = jnp.broadcast_to(jnp.asarray(theta, jnp.float32), (num_particles, theta.size))
    raw_call = jax_raw_window(env, lambda theta_i, obs: theta_i, states, thetas, unroll_length)
    raw_seconds = time_calls(raw_call, num_calls, repeats)
    steps = num_particles * unroll_length
    return {
        "env": env_id,
        "particles": num_particles,
        "unroll": unroll_length,
        "raw_sps": steps / raw_seconds,
        "engine_sps": steps / engine_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["lr_schedule"], help="meta task ids")
    parser.add_argument("--horizon", type=int, default=1000, help="T, inner steps per run")
    parser.add_argument("--num-particles", type=int, default=100, help="N, particles")
    parser.add_argument("--unroll-length", type=int, default=10, help="K, steps per window")
    parser.add_argument("--calls", type=int, default=10, help="timed windows per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timings per side (best is kept)")
    args = parser.parse_args()

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print("| env | N | K | raw steps/s | engine steps/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for env_id in args.envs:
        row = benchmark(
            env_id, args.horizon, args.num_particles, args.unroll_length, args.calls, args.repeats
        )
        print(
            f"| {row['env']} | {row['particles']} | {row['unroll']} | {row['raw_sps']:,.0f} "
            f"| {row['engine_sps']:,.0f} | {row['engine_sps'] / row['raw_sps']:.2f} |"
        )


if __name__ == "__main__":
    main()
