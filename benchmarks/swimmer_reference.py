"""The PES paper's Swimmer recipe as a plain NumPy loop, to check pes_rl's pace against it.

Exactly the published settings and nothing else: a = θ·obs (no bias) from θ = 0, clipped to
the action bounds; N = 10 antithetic pairs; windows of K = 100 steps of T = 1000-step episodes
(all particles in lockstep, so episodes end on window boundaries and the accumulators restart
there); σ = 0.3; plain SGD with lr 0.1 on g = Σ_i ξ_i R_i / (std(R)·N), where R_i is particle
i's window reward and ξ_i the sum of its perturbations since its episode began. Antithetic
partners reset from the same seed. θ is evaluated unperturbed on 2 episodes every
``--eval-every`` env steps.

    python benchmarks/swimmer_reference.py --seeds 0 1 2 --env-steps 500000

prints one line per evaluation and, at the end, the env steps at which each seed first
reached an eval return of 300.
"""

from __future__ import annotations

import argparse

import gymnasium
import numpy as np

NUM_PAIRS, UNROLL_LENGTH, HORIZON, SIGMA, LR = 10, 100, 1000, 0.3, 0.1


def evaluate(theta: np.ndarray, envs: list, rng: np.random.Generator) -> float:
    returns = []
    for env in envs:
        obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
        total = 0.0
        for _ in range(HORIZON):
            action = np.clip(theta @ obs, -1.0, 1.0)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            if terminated or truncated:
                break
        returns.append(total)
    return float(np.mean(returns))


def run(seed: int, total_env_steps: int, eval_every: int) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    num = 2 * NUM_PAIRS
    envs = [gymnasium.make("Swimmer-v5") for _ in range(num)]
    eval_envs = [gymnasium.make("Swimmer-v5") for _ in range(2)]
    obs_size = envs[0].observation_space.shape[0]
    act_size = envs[0].action_space.shape[0]
    theta = np.zeros((act_size, obs_size))
    xi = np.zeros((num, act_size, obs_size))
    clock = HORIZON  # forces a reset before the first window
    obs = np.zeros((num, obs_size))
    env_steps, curve = 0, []
    while env_steps < total_env_steps:
        if clock >= HORIZON:  # every episode ends at once: fresh episodes, ξ restarts
            pair_seeds = rng.integers(2**31 - 1, size=NUM_PAIRS)
            seeds = [int(pair_seeds[i // 2]) for i in range(num)]
            obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)])
            xi[:] = 0.0
            clock = 0
        half = SIGMA * rng.standard_normal((NUM_PAIRS, act_size, obs_size))
        eps = np.stack([half, -half], axis=1).reshape(num, act_size, obs_size)
        rewards = np.zeros(num)
        for _ in range(UNROLL_LENGTH):
            for i, env in enumerate(envs):
                action = np.clip((theta + eps[i]) @ obs[i], -1.0, 1.0)
                obs[i], reward, _, _, _ = env.step(action)
                rewards[i] += reward
        clock += UNROLL_LENGTH
        xi += eps
        std = rewards.std()
        grad = np.einsum("i,ijk->jk", rewards, xi) / (std * num) if std > 0 else 0.0 * theta
        theta = theta + LR * grad  # ascent on return
        previous = env_steps
        env_steps += num * UNROLL_LENGTH
        if env_steps // eval_every > previous // eval_every:
            curve.append((env_steps, evaluate(theta, eval_envs, rng)))
            print(f"seed {seed} env_steps {env_steps} eval_return {curve[-1][1]:.1f}", flush=True)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--env-steps", type=int, default=500_000)
    parser.add_argument("--eval-every", type=int, default=50_000)
    args = parser.parse_args()
    for seed in args.seeds:
        curve = run(seed, args.env_steps, args.eval_every)
        reached = [steps for steps, value in curve if value >= 300]
        best = max(value for _, value in curve)
        first = f"{reached[0]:,}" if reached else "never"
        print(f"seed {seed}: first eval return >= 300 at {first} env steps; best {best:.1f}")


if __name__ == "__main__":
    main()
