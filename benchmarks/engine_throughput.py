"""Env-steps/s of the PES engine vs. the raw speed of the same env and policy.

JAX envs: the raw side is a ``jit(lax.scan(vmap(env.step)))`` with the policy. Host
(Gymnasium) envs: the raw side is a Python loop of ``vector_env.step`` with the same jitted
batched policy call per step. Both sides run the same per-particle perturbed parameters for the
same number of steps; the raw side does nothing else (no resets, no clocks, no accumulators, no
gradient). The ratio engine/raw says how close the engine runs to the raw speed of the env.
"real steps/s" counts only the env steps the engine's particles really took: a particle whose
second episode ends inside a window waits for the next (the idle fraction of the timed windows).

    python benchmarks/engine_throughput.py                       # the default envs
    python benchmarks/engine_throughput.py --envs brax/ant --num-particles 256
    python benchmarks/engine_throughput.py --envs gymnax/CartPole-v1 gym/CartPole-v1 \
        --num-particles 256 --host-particles 256 --json benchmarks/results/gymnax_vs_host.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from pes_rl import agents, envs, policies

POLICY_FOR = {"influence_balancing": "constant"}  # meta tasks are driven by θ itself


def time_calls(fn, num_calls: int, repeats: int = 3) -> float:
    """Seconds per call: the best of ``repeats`` timings of ``num_calls`` calls, after two
    warm-up calls (the second catches re-compilation)."""
    for _ in range(2):
        jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(num_calls):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / num_calls)
    return best


def time_engine(
    agent, params, key: jax.Array, num_calls: int, repeats: int = 3
) -> tuple[float, float, float]:
    """Seconds per PES window (one ``estimate`` call, state carried between calls), and the
    mean real env steps and idle fraction of the timed windows (particles that wait after a
    second episode end in a window take no real steps)."""
    holder = {"state": agent.init(key, params), "key": key, "metrics": []}

    def engine_call():
        holder["key"], window_key = jax.random.split(holder["key"])
        grad, holder["state"], metrics = agent.estimate(holder["state"], params, window_key)
        holder["metrics"].append(metrics)
        return grad

    seconds = time_calls(engine_call, num_calls, repeats)
    timed = holder["metrics"][2:]
    env_steps = float(np.mean([float(m["env_steps"]) for m in timed]))
    idle = float(np.mean([float(m["idle_fraction"]) for m in timed]))
    return seconds, env_steps, idle


def benchmark(env_id: str, num_particles: int, unroll_length: int, num_calls: int) -> dict:
    env = envs.make(env_id)
    policy = policies.make(POLICY_FOR.get(env_id, "linear"), env)
    key = jax.random.key(0)
    params = policy.init(key)
    agent = agents.make(
        "pes", env=env, policy=policy, num_particles=num_particles, sigma=0.1,
        unroll_length=unroll_length,
    )  # fmt: skip

    engine_seconds, real_steps, idle_fraction = time_engine(agent, params, key, num_calls)

    # Raw: the same steps with nothing around them.
    flat, unravel = ravel_pytree(params)
    theta = flat + 0.1 * jax.random.normal(key, (num_particles, flat.size))
    states = agent.reset_population(key).env_state

    def act(theta_i, obs):
        return policy.apply(unravel(theta_i), obs)

    if not agent.population.jittable:
        raw_call = host_raw_window(agent.population.vector, act, theta, unroll_length)
    else:
        raw_call = jax_raw_window(env, act, states, theta, unroll_length)
    raw_seconds = time_calls(raw_call, num_calls)
    steps = num_particles * unroll_length
    return {
        "env": env_id,
        "particles": num_particles,
        "unroll": unroll_length,
        "raw_sps": steps / raw_seconds,
        "engine_sps": steps / engine_seconds,
        "engine_real_sps": real_steps / engine_seconds,
        "idle_fraction": idle_fraction,
    }


def jax_raw_window(env, act, states, theta, unroll_length):
    """One call = ``unroll_length`` steps of every particle in one jitted scan."""

    @jax.jit
    def raw_window(states, theta):
        def step(states, unused_t):
            states = jax.vmap(env.step)(states, jax.vmap(act)(theta, states.obs))
            return states, states.reward

        states, rewards = jax.lax.scan(step, states, None, length=unroll_length)
        return states, rewards.sum(0)

    holder = {"states": states}

    def raw_call():
        holder["states"], rewards = raw_window(holder["states"], theta)
        return rewards

    return raw_call


def host_raw_window(vector, act, theta, unroll_length):
    """One call = ``unroll_length`` vector steps, one jitted batched policy call each."""
    act_batch = jax.jit(jax.vmap(act))
    holder = {"obs": vector.reset(seed=0)[0]}

    def raw_call():
        total = 0.0
        for _ in range(unroll_length):
            action = np.asarray(act_batch(theta, holder["obs"].astype(np.float32)))
            holder["obs"], reward, terminated, truncated, _ = vector.step(action)
            total += float(reward.sum())
            if (terminated | truncated).any():
                holder["obs"] = vector.reset(options={"reset_mask": terminated | truncated})[0]
        return total

    return raw_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--envs", nargs="+",
        default=["influence_balancing", "brax/inverted_pendulum", "gym/Swimmer-v5"],
        help="env ids to measure",
    )  # fmt: skip
    parser.add_argument("--num-particles", type=int, default=1000, help="N, particles")
    parser.add_argument("--unroll-length", type=int, default=100, help="K, steps per window")
    parser.add_argument("--calls", type=int, default=5, help="timed windows per side")
    parser.add_argument("--host-particles", type=int, default=20, help="N for gym/ envs")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()

    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    rows = []
    header = ("env", "N", "K", "raw steps/s", "engine steps/s", "ratio", "real steps/s", "idle")
    print("{:28s} {:>6s} {:>5s} {:>14s} {:>15s} {:>6s} {:>13s} {:>5s}".format(*header))
    for env_id in args.envs:
        # Host envs step one sub-env per particle in Python: a CPU-sized population.
        num_particles = (
            min(args.num_particles, args.host_particles)
            if env_id.startswith("gym/")
            else args.num_particles
        )
        row = benchmark(env_id, num_particles, args.unroll_length, args.calls)
        rows.append(row)
        print(
            f"{row['env']:28s} {row['particles']:6d} {row['unroll']:5d} {row['raw_sps']:14,.0f} "
            f"{row['engine_sps']:15,.0f} {row['engine_sps'] / row['raw_sps']:6.2f} "
            f"{row['engine_real_sps']:13,.0f} {row['idle_fraction']:5.2f}"
        )
    if args.json:
        device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
        args.json.write_text(json.dumps({"device": device, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
