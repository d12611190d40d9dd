"""ARS V2-t (Mania, Guy & Recht 2018) as a plain NumPy loop, to check ``agent=ars``'s pace.

The paper's algorithm and nothing else, one env stepped one episode at a time:

* linear policy a = M·(s − μ)/σ_s from M = 0, no bias, actions clipped to the bounds;
* μ, σ_s: running mean and std of every state visited in training rollouts, frozen during an
  iteration and updated after it (std entries below 1e-7 zero their state entry, as the
  authors' filter does); evaluation rollouts do not update them;
* each iteration: N directions δ_k ~ N(0, I), a whole episode with M + ν·δ_k and one with
  M − ν·δ_k from the same reset seed; reward − shift per step in training;
* keep the b directions with the largest max(r+, r−); M += α / (b·σ_R) · Σ_top (r+ − r−)·δ_k,
  σ_R the std of the 2b returns kept.

Per-task settings (``--task``) are the paper's V2-t hyperparameters (its appendix table, as
restated in the authors' README and in rl-baselines3-zoo's "closest to the original paper"
ARS settings). Evaluation: θ unperturbed, ``--eval-episodes`` episodes with the env's own reward
every ``--eval-every`` env steps.

    python benchmarks/ars_reference.py --task halfcheetah --seeds 0 1 2 --env-steps 1500000 \
        --out benchmarks/results/ars_reference/halfcheetah

writes one run dir per seed (``seed0/metrics.jsonl`` and ``config.yaml``, agent name
``ars_reference``), so ``pes-rl plot`` draws and tabulates it beside pes_rl's runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium
import numpy as np
import yaml

# task: (env id, N directions, b top directions, α step size, ν noise, shift)
TASKS = {
    "swimmer": ("Swimmer-v5", 1, 1, 0.02, 0.01, 0.0),
    "hopper": ("Hopper-v5", 8, 4, 0.01, 0.025, 1.0),
    "halfcheetah": ("HalfCheetah-v5", 32, 4, 0.02, 0.03, 0.0),
    "walker2d": ("Walker2d-v5", 40, 30, 0.03, 0.025, 1.0),
    "ant": ("Ant-v5", 60, 20, 0.015, 0.025, 1.0),
}


class StateStats:
    """Running mean and variance of visited states (Welford), frozen copies per iteration."""

    def __init__(self, size: int):
        self.count, self.mean_sum, self.sq = 0, np.zeros(size), np.zeros(size)
        self.mean, self.std = np.zeros(size), np.ones(size)

    def push(self, state: np.ndarray) -> None:
        self.count += 1
        delta = state - self.mean_sum
        self.mean_sum += delta / self.count
        self.sq += delta * (state - self.mean_sum)

    def freeze(self) -> None:
        """The statistics the next iteration's rollouts use."""
        self.mean = self.mean_sum.copy()
        var = self.sq / (self.count - 1) if self.count > 1 else np.square(self.mean_sum)
        std = np.sqrt(var)
        self.std = np.where(std < 1e-7, np.inf, std)


def rollout(env, weights, stats, seed, shift, low, high, record):
    """One whole episode: (Σ reward − shift·steps, steps)."""
    obs, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        if record:
            stats.push(obs)
        action = np.clip(weights @ ((obs - stats.mean) / stats.std), low, high)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward - shift
        steps += 1
        if terminated or truncated:
            return total, steps


def run(task: str, seed: int, total_env_steps: int, eval_every: int, eval_episodes: int):
    """Trains one seed; returns one metrics record per iteration (``pes-rl plot``'s keys)."""
    env_id, directions, top, step_size, noise, shift = TASKS[task]
    rng = np.random.default_rng(seed)
    env = gymnasium.make(env_id)
    low, high = env.action_space.low, env.action_space.high
    weights = np.zeros((env.action_space.shape[0], env.observation_space.shape[0]))
    stats = StateStats(env.observation_space.shape[0])
    env_steps, next_eval, records = 0, eval_every, []
    while env_steps < total_env_steps:
        start = time.perf_counter()
        deltas = rng.standard_normal((directions, *weights.shape))
        returns = np.zeros((directions, 2))  # reward − shift per step: what ARS ranks
        steps = np.zeros((directions, 2), int)
        for k in range(directions):
            episode_seed = int(rng.integers(2**31 - 1))
            for side, sign in enumerate((1.0, -1.0)):
                returns[k, side], steps[k, side] = rollout(
                    env, weights + sign * noise * deltas[k], stats, episode_seed, shift, low,
                    high, record=True,
                )  # fmt: skip
        best = np.argsort(-returns.max(axis=1), kind="stable")[:top]
        used = returns[best]
        std = used.std()
        if std > 0:
            step = np.einsum("k,kij->ij", used[:, 0] - used[:, 1], deltas[best]) / (top * std)
            weights = weights + step_size * step
        stats.freeze()
        env_steps += int(steps.sum())
        record = {
            "iteration": len(records) + 1,
            "env_steps": env_steps,
            "env_steps_window": int(steps.sum()),
            "train_return": float((returns + shift * steps).mean()),  # the env's own return
        }
        if env_steps >= next_eval or env_steps >= total_env_steps:
            next_eval = (env_steps // eval_every + 1) * eval_every
            record["eval_return"] = float(np.mean([
                rollout(env, weights, stats, int(rng.integers(2**31 - 1)), 0.0, low, high, False)[0]
                for _ in range(eval_episodes)
            ]))  # fmt: skip
            evaluation = record["eval_return"]
            print(f"{task} seed {seed} env_steps {env_steps} eval_return {evaluation:.1f}",
                  flush=True)  # fmt: skip
        record["steps_per_s"] = record["env_steps_window"] / (time.perf_counter() - start)
        records.append(record)
    return records


def write_run(run_dir: Path, task: str, seed: int, records: list[dict]) -> None:
    """``records`` as a run dir ``pes-rl plot`` reads: metrics.jsonl and a config.yaml."""
    env_id, directions, top, step_size, noise, shift = TASKS[task]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = {
        "env": {"family": "gym", "id": env_id},
        "agent": {"name": "ars_reference", "num_particles": 2 * directions, "sigma": noise,
                  "unroll_length": None, "top_directions": top, "reward_shift": shift},
        "optimizer": {"name": "sgd", "lr": step_size},
        "train": {"seed": seed},
    }  # fmt: skip
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--env-steps", type=int, default=1_000_000)
    parser.add_argument("--eval-every", type=int, default=100_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write a run dir per seed: OUT/seed<S>/")
    args = parser.parse_args()
    for seed in args.seeds:
        records = run(args.task, seed, args.env_steps, args.eval_every, args.eval_episodes)
        if args.out:
            write_run(args.out / f"seed{seed}", args.task, seed, records)


if __name__ == "__main__":
    main()
