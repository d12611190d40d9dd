"""Device memory per particle of one estimate window as |θ| grows, read from XLA's compiled
memory analysis (no run needed, so it works the same on CPU and GPU).

    python benchmarks/memory_per_particle.py --json benchmarks/results/memory_per_particle.json

For each (task, policy, estimator) the window is compiled at N and 2N particles; the difference
divided by N is the memory one more particle costs: ``state`` is what stays on the device
between windows (env state, clocks, PES's accumulated ξ, ...), ``work`` the temporaries of the
window itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
from jax.flatten_util import ravel_pytree

from pes_rl import agents, envs, policies
from pes_rl.agents.base import WindowLength

CASES = [  # (env id, policy, policy kwargs, unroll length K; es unrolls whole episodes)
    ("brax/halfcheetah", "linear", {}, 100),
    ("brax/halfcheetah", "mlp", {"hidden_sizes": [32, 32]}, 100),
    ("brax/halfcheetah", "mlp", {"hidden_sizes": [256, 256]}, 100),
    ("learned_optimizer", "constant", {}, 10),
]


def window_bytes(agent, params, unroll_length: int) -> tuple[int, int]:
    """(state bytes, temporary bytes) of one compiled estimate window."""
    state = agent.init(jax.random.key(0), params)
    window = jax.jit(lambda s, p, k: agent.estimate(s, p, k, WindowLength(unroll_length)))
    compiled = window.lower(state, params, jax.random.key(1)).compile()
    analysis = compiled.memory_analysis()
    state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
    return state_bytes, analysis.temp_size_in_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-particles", type=int, default=64)
    parser.add_argument("--estimators", nargs="+", default=["es", "pes", "nres"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    num = args.num_particles
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    print(f"bytes per particle on {device}, from N = {num} and {2 * num}")
    print(f"{'task':18s} {'policy':14s} {'|θ|':>7s} {'estimator':9s} {'state':>10s} "
          f"{'work':>10s} {'θ floats':>9s}")  # fmt: skip
    rows = []
    for env_id, policy_name, policy_kwargs, unroll_length in CASES:
        env = envs.make(env_id)
        policy = policies.make(policy_name, env, **policy_kwargs)
        params = policy.init(jax.random.key(0))
        size = ravel_pytree(params)[0].size
        label = policy_name + (str(policy_kwargs["hidden_sizes"]) if policy_kwargs else "")
        for name in args.estimators:
            sizes = []
            for particles in (num, 2 * num):
                length = env.spec.horizon if name == "es" else unroll_length  # ES: episodes
                agent = agents.make(
                    name, env=env, policy=policy, num_particles=particles, sigma=0.1,
                    unroll_length=length,
                )  # fmt: skip
                sizes.append(window_bytes(agent, params, length))
            state, work = ((big - small) / num for small, big in zip(*sizes, strict=True))
            row = {
                "env": env_id, "policy": label, "theta_size": size, "estimator": name,
                "state_bytes": state, "work_bytes": work,
            }  # fmt: skip
            rows.append(row)
            print(f"{env_id:18s} {label:14s} {size:7d} {name:9s} {state:10,.0f} {work:10,.0f} "
                  f"{(state + work) / 4 / size:9.1f}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"device": device, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
