"""What a truncation curriculum costs: compilations and skipped steps of bucketed window lengths.

    python benchmarks/curriculum_compile.py [--estimator pes] [--iterations 200]

Runs a curriculum growing windows from 50 to 200 steps (jitter ±20%) with an estimator on the
learned-optimizer env (64-32-10 MLP on the digits, N = 16) and reports: how many distinct
window lengths it asked for, how many compilations the agent made (power-of-two buckets, each
with and without a step limit), the seconds spent compiling, and the time of a window of
length L run in the scan of its bucket (the rest skipped) against a scan of exactly L steps.
Writes ``benchmarks/results/curriculum_compile_<estimator>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from pes_rl import agents, envs, policies
from pes_rl.agents import curriculum

RESULTS = Path(__file__).resolve().parent / "results"


def make_agent(name: str, unroll_length: int):
    env = envs.make("learned_optimizer", task="mlp_digits", min_length=50, max_length=1000)
    policy = policies.make("constant", env)
    agent = agents.make(
        name, env=env, policy=policy, num_particles=16, sigma=0.01, unroll_length=unroll_length
    )
    return agent, policy.init(jax.random.key(0))


def timed_windows(agent, theta, length: int | None, repeats: int = 5) -> float:
    """Seconds per window of ``length`` steps, after one call that compiles."""
    state = agent.init(jax.random.key(1), theta)
    _, state, metrics = agent.estimate(state, theta, jax.random.key(2), length)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for i in range(repeats):
        _, state, metrics = agent.estimate(state, theta, jax.random.key(3 + i), length)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimator", default="pes", choices=["pes", "tes", "nres", "hybrid"])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()

    agent, theta = make_agent(args.estimator, 200)
    schedule = curriculum.make(end=200, start=50, iterations=args.iterations, jitter=0.2)
    state = agent.init(jax.random.key(1), theta)
    lengths, compile_seconds, run_seconds = [], 0.0, 0.0
    for iteration in range(args.iterations):
        length = schedule.length(iteration, jax.random.fold_in(jax.random.key(9), iteration))
        lengths.append(length)
        before = agent._jit_estimate._cache_size()
        start = time.perf_counter()
        _, state, metrics = agent.estimate(state, theta, jax.random.key(iteration), length)
        jax.block_until_ready(metrics)
        elapsed = time.perf_counter() - start
        if agent._jit_estimate._cache_size() > before:
            compile_seconds += elapsed  # this call compiled (and ran once)
        else:
            run_seconds += elapsed

    # Skipping cost: length 70 runs in the 128-step scan; compare with a scan of exactly 70.
    bucketed = timed_windows(agent, theta, 70)
    exact_agent, _ = make_agent(args.estimator, 70)
    exact = timed_windows(exact_agent, theta, None)
    result = {
        "estimator": args.estimator,
        "iterations": args.iterations,
        "distinct_lengths": len(set(lengths)),
        "compilations": agent._jit_estimate._cache_size(),
        "compile_seconds": round(compile_seconds, 1),
        "run_seconds": round(run_seconds, 1),
        "window_70_in_bucket_128_s": round(bucketed, 4),
        "window_70_exact_scan_s": round(exact, 4),
        "bucketed_over_exact": round(bucketed / exact, 2),
        "device": str(jax.devices()[0]),
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"curriculum_compile_{args.estimator}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
