"""How good is each estimator's gradient per env step on Hopper-v5, at one fixed θ?

docs/results-rl.md leaves open why PES and NRES (K = 100 windows, persistent particles) lose to
ARS (whole episodes, top-b pairs) on Hopper although they are unbiased. This script measures
it without any update: θ and the observation normalizer are a checkpoint's and stay fixed, and
every estimator runs its ``experiment=hopper_*`` settings (N = 16, σ = 0.025, reward shift 1,
std shaping, top b = 4 of 8 pairs where the experiment has it) or one change of them.

* Reference: the mean of many whole-episode antithetic ES estimates without fitness shaping
  and without top-b (``agent=es fitness_shaping=none``): unbiased for ∇ E_ε[Σ_t (r_t − 1)],
  the shifted episodic return the runs train, smoothed by ε ~ N(0, σ²I). Its own noise is
  measured by r = cos(half 1, half 2); cos(reference, true gradient) ≈ sqrt(2r / (1 + r)).
* Each estimator: one stream of ``estimate`` calls (persistent ones after ``--burn-in``
  windows, discarded), cut into consecutive blocks of at least B env steps; a block's estimate
  is the sum of its calls' estimates. Reported: cos(block, reference), mean ± SE over blocks,
  for each B in ``--budgets`` and for the whole stream (B = all).
* The same windows re-credited offline with each part's reward centered on its mean over the
  credited particles (a constant baseline per window; antithetic ±ε weights make it a no-op).
  For whole episodes that is an ordinary baseline (unbiased). For PES and NRES it is not a
  noise decomposition: an episode's ε is credited in every window it lives through, so a
  constant per window acts like a larger per-step reward shift and changes the objective
  (the "live longer" part of the gradient is carried by the mean window reward). Every
  window's estimate is rebuilt from its recorded parts first, and the worst
  1 − cos(rebuilt, returned) is reported as a check of the rebuild.
* Antithetic partners (particles 2j, 2j+1): at every window's start, whether their episode
  clocks agree (in phase: they began their episodes on the same step, from the same reset
  seed), whether their weights are still ±ε of each other, the correlation of their shifted
  window rewards in and out of phase, and how often top-b keeps out-of-phase pairs.

    OMP_NUM_THREADS=1 XLA_FLAGS=--xla_force_host_platform_device_count=1 taskset -c 1 \\
        python benchmarks/gradient_quality.py --run /work/mj/hopper_nres-seed0 --iteration 800 \\
        --json benchmarks/results/gradient_quality_hopper.json          # about 45 minutes
    python benchmarks/gradient_quality.py --run RUN_DIR --iteration 800 \\
        --ref-steps 60000 --steps 24000 --budgets 8000 16000   # a smoke test, about 2 minutes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

import pes_rl
from pes_rl.agents import shaping
from pes_rl.training.config import compose
from pes_rl.training.trainer import build

# name: (experiment, overrides, what it is)
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "ars": ("hopper_ars", [], "ARS V2-t as trained: whole episodes, std, top 4 of 8 pairs"),
    "es_std": ("hopper_es", ["agent.top_directions=null"], "ARS without top-b: std, all pairs"),
    "es_std_indep": (
        "hopper_es", ["agent.top_directions=null", "agent.antithetic=false"],
        "whole episodes, std, 16 independent ε (no pairs)",
    ),
    "es_none": (
        "hopper_es", ["agent.top_directions=null", "agent.fitness_shaping=none"],
        "whole episodes, unbiased: no shaping, all pairs (the reference's estimator)",
    ),
    "pes": ("hopper_pes", [], "PES as trained: K=100, std, top 4 of 8 pairs"),
    "pes_all": ("hopper_pes", ["agent.top_directions=null"], "PES, std, all pairs"),
    "pes_indep": (
        "hopper_pes", ["agent.top_directions=null", "agent.antithetic=false"],
        "PES, std, 16 independent ε",
    ),
    "nres": ("hopper_nres", [], "NRES as trained: K=100, std, top 4 of 8 pairs"),
    "nres_all": ("hopper_nres", ["agent.top_directions=null"], "NRES, std, all pairs"),
    "nres_indep": (
        "hopper_nres", ["agent.top_directions=null", "agent.antithetic=false"],
        "NRES, std, 16 independent ε",
    ),
    "pes_sync": (
        "hopper_pes", ["agent.sync_pairs=true"],
        "PES as trained, partners in step (agent.sync_pairs): top 4 of 8 pairs",
    ),
    "nres_sync": (
        "hopper_nres", ["agent.sync_pairs=true"],
        "NRES as trained, partners in step (agent.sync_pairs): top 4 of 8 pairs",
    ),
    "nres_sync_all": (
        "hopper_nres", ["agent.sync_pairs=true", "agent.top_directions=null"],
        "NRES, partners in step, all pairs",
    ),
}  # fmt: skip
REFERENCE = ("hopper_es", ["agent.top_directions=null", "agent.fitness_shaping=none"])


def build_agent(experiment: str, overrides: list[str]) -> Any:
    """The estimator ``python train.py experiment=<experiment> <overrides>`` would train."""
    return build(compose([f"experiment={experiment}", *overrides]))[2]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


# Recording and rebuilding one window --------------------------------------------------------


class Recorder:
    """What each window of one agent drew and returned: its population's ``unroll`` and its
    ``sample_perturbations`` are wrapped on this instance only (the library is unchanged)."""

    def __init__(self, agent: Any):
        self.windows: list[tuple[np.ndarray, Any]] = []  # (episode clocks at start, Window)
        self.samples: list[np.ndarray] = []  # the window's perturbation draws, in order
        unroll, sample = agent.population.unroll, agent.sample_perturbations

        def recording_unroll(particles, *args, **kwargs):
            clocks = np.array(particles.clock)
            particles, window = unroll(particles, *args, **kwargs)
            self.windows.append((clocks, jax.tree.map(np.asarray, window)))
            return particles, window

        def recording_sample(key, dim):
            draws = sample(key, dim)
            self.samples.append(np.asarray(draws, np.float64))
            return draws

        agent.population.unroll = recording_unroll
        agent.sample_perturbations = recording_sample

    def clear(self) -> None:
        self.windows.clear()
        self.samples.clear()


def window_weights(agent: Any, state: Any, draws: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """[N, D] weights of the window's reward before and after a particle's first episode end,
    from the state before the window and the window's draws (agents/es.py, pes.py, nres.py):
    ES ε, ε; PES ξ + ε, ε′; NRES the episode's ε, a fresh ε′."""
    if agent.name == "pes":
        return np.asarray(state.xi, np.float64) + draws[0], draws[1]
    if agent.name == "nres":
        return np.asarray(state.eps, np.float64), draws[0]
    return draws[0], draws[0]


def kept_particles(agent: Any, window_reward: np.ndarray) -> np.ndarray:
    """[N] bool: the particles the estimate credits (Estimator._kept_particles in NumPy)."""
    if agent.top_directions is None:
        return np.ones(window_reward.shape, bool)
    best = window_reward.reshape(-1, 2).max(axis=1)
    kept = np.zeros(best.shape, bool)
    kept[np.argsort(-best, kind="stable")[: agent.top_directions]] = True
    return np.repeat(kept, 2)


def rebuild_estimates(agent: Any, weights: tuple, window: Any) -> tuple[np.ndarray, np.ndarray]:
    """The window's estimate rebuilt from its parts (as Estimator._estimate does), and the same
    with each part's reward centered on its mean over the credited particles."""
    first = window.reward_first - agent.reward_shift * window.steps_first
    rest = window.reward_rest - agent.reward_shift * window.steps_rest
    kept = kept_particles(agent, first + rest)
    has_first, has_rest = (window.steps_first > 0) & kept, (window.steps_rest > 0) & kept

    def estimate(first: np.ndarray, rest: np.ndarray) -> np.ndarray:
        shaped_first, shaped_rest, scale = shaping.shape(
            agent.fitness_shaping, first, rest, has_first, has_rest, agent.sigma,
            num_credited=kept.sum(),
        )  # fmt: skip
        shaped_first = np.where(kept, np.asarray(shaped_first, np.float64), 0.0)
        shaped_rest = np.where(kept, np.asarray(shaped_rest, np.float64), 0.0)
        credited = weights[0].T @ shaped_first + weights[1].T @ shaped_rest
        return agent.direction_scale * float(scale) * credited

    def centered(reward: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mean = reward[mask].mean() if mask.any() else 0.0
        return np.where(mask, reward - mean, 0.0).astype(np.float32)

    return estimate(first, rest), estimate(centered(first, has_first), centered(rest, has_rest))


# One stream of estimates at the fixed θ -------------------------------------------------------


def run_stream(
    agent: Any,
    params: Any,
    obs_norm: Any,
    key: jax.Array,
    env_steps: int,
    burn_in: int,
    label: str,
) -> dict[str, Any]:
    """``estimate`` at the fixed (params, obs_norm) until ``env_steps`` counted env steps
    (after ``burn_in`` discarded windows for persistent estimators): the flat estimates as
    returned and centered offline, env steps per call, whole episodes' lengths and, for
    antithetic estimators, the partner statistics."""
    init_key, key = jax.random.split(key)
    state = agent.init(init_key, params)
    recorder = Recorder(agent)
    for _ in range(burn_in if hasattr(state, "particles") else 0):
        key, window_key = jax.random.split(key)
        _, state, _ = agent.estimate(state._replace(obs_norm=obs_norm), params, window_key)
    grads, centered, steps, windows, antithetic = [], [], [], [], []
    worst_rebuild, start, next_print = 0.0, time.perf_counter(), env_steps / 10
    while sum(steps) < env_steps:
        recorder.clear()
        before = state  # host populations are stepped in Python: nothing is donated
        key, window_key = jax.random.split(key)
        grad, state, metrics = agent.estimate(state._replace(obs_norm=obs_norm), params, window_key)
        grad = np.asarray(ravel_pytree(grad)[0], np.float64)
        clocks, window = recorder.windows[-1]
        weights = window_weights(agent, before, recorder.samples)
        rebuilt, rebuilt_centered = rebuild_estimates(agent, weights, window)
        if np.linalg.norm(grad) > 0:
            worst_rebuild = max(worst_rebuild, 1.0 - cosine(rebuilt, grad))
        grads.append(grad)
        centered.append(rebuilt_centered)
        steps.append(int(metrics["env_steps"]))
        windows.append((clocks, window))
        if agent.antithetic:
            antithetic.append(np.all(np.isclose(weights[0][0::2], -weights[0][1::2]), axis=1))
        if sum(steps) >= next_print:
            elapsed = time.perf_counter() - start
            print(f"  {label:13s} {sum(steps):>9,} env steps  {elapsed:6.0f} s  "
                  f"{sum(steps) / elapsed:6,.0f} steps/s", flush=True)  # fmt: skip
            next_print += env_steps / 10
    return {
        "grads": np.stack(grads),
        "centered": np.stack(centered),
        "steps": np.asarray(steps),
        "seconds": time.perf_counter() - start,
        "rebuild_worst_1_minus_cos": worst_rebuild,
        "lengths": np.concatenate([w.steps_first for _, w in windows]),
        "pairs": partner_stats(agent, windows, antithetic) if agent.antithetic else None,
    }


def partner_stats(
    agent: Any, windows: list[tuple[np.ndarray, Any]], antithetic: list[np.ndarray]
) -> dict[str, Any]:
    """Antithetic partners (particles 2j, 2j+1) over the recorded windows: in phase = equal
    episode clocks at the window's start; R+, R− their shifted window rewards."""
    clocks = np.stack([c for c, _ in windows])  # [windows, N]
    rewards = np.stack(
        [
            w.reward_first + w.reward_rest - agent.reward_shift * (w.steps_first + w.steps_rest)
            for _, w in windows
        ]
    )
    in_phase = clocks[:, 0::2] == clocks[:, 1::2]  # [windows, pairs]
    plus, minus = rewards[:, 0::2], rewards[:, 1::2]

    def correlation(mask: np.ndarray) -> float | None:
        return float(np.corrcoef(plus[mask], minus[mask])[0, 1]) if mask.sum() > 2 else None

    def cancellation(mask: np.ndarray) -> float | None:
        """var(R+ − R−) / (var R+ + var R−): 1 for unrelated rewards, 0 when they cancel."""
        if mask.sum() < 3:
            return None
        return float(np.var(plus[mask] - minus[mask]) / (np.var(plus[mask]) + np.var(minus[mask])))

    gaps = np.abs(clocks[:, 0::2] - clocks[:, 1::2])[~in_phase]
    stats = {
        "windows": len(windows),
        "out_of_phase_fraction": float(1.0 - in_phase.mean()),
        "weights_not_antithetic_fraction": float(1.0 - np.mean(antithetic)),
        "reward_corr_in_phase": correlation(in_phase),
        "reward_corr_out_of_phase": correlation(~in_phase),
        "cancellation_in_phase": cancellation(in_phase),
        "cancellation_out_of_phase": cancellation(~in_phase),
        "mean_clock_gap_out_of_phase": float(gaps.mean()) if gaps.size else None,
        "window_reward_mean": float(rewards.mean()),
        "window_reward_std": float(rewards.std()),
    }
    if agent.top_directions is not None:
        best = np.maximum(plus, minus)
        kept = np.argsort(-best, axis=1, kind="stable")[:, : agent.top_directions]
        stats["top_b_out_of_phase_fraction"] = float(
            1.0 - np.take_along_axis(in_phase, kept, axis=1).mean()
        )
    return stats


# Cosines over env-step budgets ----------------------------------------------------------------


def blocks(grads: np.ndarray, steps: np.ndarray, budget: int) -> tuple[np.ndarray, list[int]]:
    """Consecutive blocks of calls with at least ``budget`` env steps each (the remainder is
    dropped): the summed estimates [blocks, D] and each block's env steps."""
    sums, used, total, count = [], [], np.zeros(grads.shape[1]), 0
    for grad, step in zip(grads, steps, strict=True):
        total, count = total + grad, count + int(step)
        if count >= budget:
            sums.append(total)
            used.append(count)
            total, count = np.zeros(grads.shape[1]), 0
    return np.asarray(sums).reshape(-1, grads.shape[1]), used


def cosine_table(
    grads: np.ndarray, steps: np.ndarray, reference: np.ndarray, budgets: list[int]
) -> dict[str, dict[str, Any]]:
    """Per budget: mean ± SE over blocks of cos(block estimate, reference); "all": the stream."""
    rows = {}
    for budget in budgets:
        sums, used = blocks(grads, steps, budget)
        if len(sums) == 0:
            continue
        cosines = np.array([cosine(s, reference) for s in sums])
        rows[str(budget)] = {
            "blocks": len(cosines),
            "mean_env_steps": float(np.mean(used)),
            "cos": float(cosines.mean()),
            "cos_se": float(cosines.std(ddof=1) / np.sqrt(len(cosines)))
            if len(cosines) > 1
            else None,
        }
    rows["all"] = {
        "blocks": 1,
        "mean_env_steps": float(steps.sum()),
        "cos": cosine(grads.sum(0), reference),
        "cos_se": None,
    }
    return rows


def print_table(title: str, tables: dict[str, dict], budgets: list[int]) -> None:
    print(f"\n{title}")
    columns = [str(b) for b in budgets] + ["all"]
    print(f"{'estimator':13s}" + "".join(f"{'B=' + c:>22s}" for c in columns))
    for name, table in tables.items():
        cells = []
        for column in columns:
            row = table.get(column)
            se = "" if row is None or row["cos_se"] is None else f" ± {row['cos_se']:.3f}"
            cell = "-" if row is None else f"{row['cos']:.3f}{se} ({row['blocks']})"
            cells.append(cell.rjust(22))
        print(f"{name:13s}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a Hopper-v5 run dir (θ and normalizer)")
    parser.add_argument("--iteration", type=int, help="its checkpoint (default: policy.npz)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--ref-steps", type=int, default=3_000_000, help="reference env steps")
    parser.add_argument("--steps", type=int, default=1_024_000, help="env steps per variant")
    parser.add_argument("--budgets", nargs="+", type=int, default=[16_000, 64_000, 256_000])
    parser.add_argument("--burn-in", type=int, default=20, help="discarded windows (PES/NRES)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    args = parser.parse_args()
    started = time.perf_counter()
    key = jax.random.key(args.seed)

    trained = pes_rl.load(args.run, iteration=args.iteration)
    params, obs_norm = trained.params, trained.obs_norm
    print(f"θ: {args.run} iteration {trained.iteration}, |θ| = {ravel_pytree(params)[0].size}")

    # θ unperturbed, 20 episodes with the env's own reward (what an evaluation reports).
    reference_agent = build_agent(*REFERENCE)
    episode_returns = reference_agent.population.make_episode_returns(
        reference_agent.env, reference_agent.policy, 20, 1000
    )
    eval_returns = episode_returns(params, obs_norm, jax.random.fold_in(key, 999))
    episode_returns.close()
    print(f"eval return (θ unperturbed, 20 episodes): {eval_returns.mean():.0f} ± "
          f"{eval_returns.std():.0f}", flush=True)  # fmt: skip

    print(f"reference: {args.ref_steps:,} env steps, {REFERENCE[0]} {' '.join(REFERENCE[1])}")
    ref = run_stream(reference_agent, params, obs_norm, jax.random.fold_in(key, 1000),
                     args.ref_steps, 0, "reference")  # fmt: skip
    reference_agent.population.close()
    half = len(ref["grads"]) // 2
    reference = ref["grads"].sum(0)
    self_cos = cosine(ref["grads"][:half].sum(0), ref["grads"][half:].sum(0))
    ref_accuracy = float(np.sqrt(2 * max(self_cos, 0.0) / (1 + max(self_cos, 0.0))))
    lengths = ref["lengths"]
    print(f"reference: cos(half 1, half 2) = {self_cos:.3f}, so cos(reference, true) ≈ "
          f"{ref_accuracy:.3f}; perturbed episodes {np.median(lengths):.0f} steps (median; "
          f"10–90 %: {np.percentile(lengths, 10):.0f}–{np.percentile(lengths, 90):.0f})",
          flush=True)  # fmt: skip

    results = {}
    for index, name in enumerate(args.variants):
        experiment, overrides, description = VARIANTS[name]
        print(f"{name}: {description}", flush=True)
        agent = build_agent(experiment, overrides)
        stream = run_stream(agent, params, obs_norm, jax.random.fold_in(key, index),
                            args.steps, args.burn_in, name)  # fmt: skip
        agent.population.close()
        results[name] = {
            "experiment": experiment,
            "overrides": overrides,
            "description": description,
            "env_steps": int(stream["steps"].sum()),
            "calls": len(stream["steps"]),
            "seconds": stream["seconds"],
            "rebuild_worst_1_minus_cos": stream["rebuild_worst_1_minus_cos"],
            "cosine": cosine_table(stream["grads"], stream["steps"], reference, args.budgets),
            "cosine_centered_offline": cosine_table(
                stream["centered"], stream["steps"], reference, args.budgets
            ),
            "pairs": stream["pairs"],
        }
        cells = [f"B={b}: {r['cos']:.3f}" for b, r in results[name]["cosine"].items()]
        print(f"  cos {'  '.join(cells)}; rebuild check 1 − cos ≤ "
              f"{stream['rebuild_worst_1_minus_cos']:.1e}", flush=True)  # fmt: skip
        if stream["pairs"]:
            print(f"  pairs {json.dumps(stream['pairs'])}", flush=True)

    corrections = f"divide by {ref_accuracy:.3f} to correct for the reference's own noise"
    print(f"\nreference: cos(half 1, half 2) = {self_cos:.3f} ({corrections})")
    title = "cos(estimate summed over B env steps, reference): mean ± SE (blocks)"
    print_table(title, {n: r["cosine"] for n, r in results.items()}, args.budgets)
    print_table(
        "the same, each window re-credited offline with centered rewards",
        {n: r["cosine_centered_offline"] for n, r in results.items()},
        args.budgets,
    )
    runtime = time.perf_counter() - started
    print(f"\ntotal {runtime / 60:.1f} minutes")
    if not args.json:
        return
    output = {
        "commit": git_commit(),
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "theta": {
            "run": str(args.run),
            "iteration": trained.iteration,
            "eval_return_mean": float(eval_returns.mean()),
            "eval_return_std": float(eval_returns.std()),
            "eval_episodes": len(eval_returns),
            "obs_normalizer": "the checkpoint's, fixed (reset into every state before a call)",
        },
        "objective": "grad of E_eps[sum_t (r_t - 1)] over one episode from a reset "
        "(reward_shift 1), eps ~ N(0, 0.025^2 I) on theta",
        "reference": {
            "estimator": f"{REFERENCE[0]} {' '.join(REFERENCE[1])}",
            "env_steps": int(ref["steps"].sum()),
            "calls": len(ref["steps"]),
            "cos_half1_half2": self_cos,
            "cos_reference_true_estimate": ref_accuracy,
            "perturbed_episode_length": {
                "mean": float(lengths.mean()),
                "p10": float(np.percentile(lengths, 10)),
                "median": float(np.median(lengths)),
                "p90": float(np.percentile(lengths, 90)),
            },
            "pairs": ref["pairs"],
            "seconds": ref["seconds"],
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "variants": results,
        "runtime_minutes": runtime / 60,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(output, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
