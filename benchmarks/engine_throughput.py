"""Env-steps/s of the PES engine vs. a raw ``jit(lax.scan(vmap(env.step)))`` of the same env.

Both sides run the same env, the same policy and the same per-particle perturbed parameters
for the same number of steps; the raw side does nothing else (no resets, no clocks, no
accumulators, no gradient). The ratio engine/raw says how close the engine runs to the raw
speed of the env.

    python benchmarks/engine_throughput.py                       # both default envs
    python benchmarks/engine_throughput.py --envs brax/ant --num-particles 256
"""

from __future__ import annotations

import argparse
import time

import jax
from jax.flatten_util import ravel_pytree

from pes_rl import agents, envs, policies

POLICY_FOR = {"influence_balancing": "constant"}  # meta tasks are driven by θ itself


def time_calls(fn, num_calls: int) -> float:
    """Seconds per call, after two warm-up calls (the second catches re-compilation)."""
    for _ in range(2):
        jax.block_until_ready(fn())
    start = time.perf_counter()
    for _ in range(num_calls):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / num_calls


def benchmark(env_id: str, num_particles: int, unroll_length: int, num_calls: int) -> dict:
    env = envs.make(env_id)
    policy = policies.make(POLICY_FOR.get(env_id, "linear"), env)
    key = jax.random.key(0)
    params = policy.init(key)
    agent = agents.make(
        "pes", env=env, policy=policy, num_particles=num_particles, sigma=0.1,
        unroll_length=unroll_length,
    )  # fmt: skip

    # Engine: one PES window (estimate) per call.
    holder = {"state": agent.init(key, params), "key": key}

    def engine_call():
        holder["key"], window_key = jax.random.split(holder["key"])
        grad, holder["state"], _ = agent.estimate(holder["state"], params, window_key)
        return grad

    engine_seconds = time_calls(engine_call, num_calls)

    # Raw: the same steps with nothing around them.
    flat, unravel = ravel_pytree(params)
    theta = flat + 0.1 * jax.random.normal(key, (num_particles, flat.size))
    states = agent.reset_population(key).env_state

    def act(theta_i, obs):
        return policy.apply(unravel(theta_i), obs)

    @jax.jit
    def raw_window(states, theta):
        def step(states, unused_t):
            states = jax.vmap(env.step)(states, jax.vmap(act)(theta, states.obs))
            return states, states.reward

        states, rewards = jax.lax.scan(step, states, None, length=unroll_length)
        return states, rewards.sum(0)

    raw_holder = {"states": states}

    def raw_call():
        raw_holder["states"], rewards = raw_window(raw_holder["states"], theta)
        return rewards

    raw_seconds = time_calls(raw_call, num_calls)
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
    parser.add_argument(
        "--envs", nargs="+", default=["influence_balancing", "brax/inverted_pendulum"]
    )
    parser.add_argument("--num-particles", type=int, default=1000, help="N, particles")
    parser.add_argument("--unroll-length", type=int, default=100, help="K, steps per window")
    parser.add_argument("--calls", type=int, default=5, help="timed windows per side")
    args = parser.parse_args()

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    header = ("env", "N", "K", "raw steps/s", "engine steps/s", "ratio")
    print("{:28s} {:>6s} {:>5s} {:>14s} {:>15s} {:>6s}".format(*header))
    for env_id in args.envs:
        row = benchmark(env_id, args.num_particles, args.unroll_length, args.calls)
        print(
            f"{row['env']:28s} {row['particles']:6d} {row['unroll']:5d} {row['raw_sps']:14,.0f} "
            f"{row['engine_sps']:15,.0f} {row['engine_sps'] / row['raw_sps']:6.2f}"
        )


if __name__ == "__main__":
    main()
