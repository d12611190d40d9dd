"""Random search, the baseline of the hyperparameter tasks, at the estimators' compute.

``python train.py experiment=hparams29_random_search`` (or ``agent=random_search`` on any
unrolled-optimization task) draws ``agent.num_particles`` points per iteration from the task's
search space (``env.sample_search_point``), scores each by one full inner run of T steps
(its return: minus the summed objective) and keeps the best. ``env_steps`` counts every
inner step, as for ES/TES/PES, so curves of the two share the x-axis: equal ``env_steps`` is
equal compute. The best point so far is θ; it is evaluated every ``train.eval_every``
iterations with the same evaluation as the estimators' θ (``eval_return`` etc.), and its
search score is ``search_return``. The run writes the same ``metrics.jsonl`` and
``config.yaml``, so ``python -m pes_rl.plot`` draws it beside PES and TES.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from pes_rl import policies
from pes_rl.checks import is_positive_int
from pes_rl.components import make_env
from pes_rl.envs.unrolled import UnrolledOptimizationEnv, inner_run
from pes_rl.evaluation import make_evaluate
from pes_rl.run_dir import atomic_write_text
from pes_rl.run_log import MetricsFile, Progress, WandbRun, clean
from pes_rl.trained import POLICY_FILE, save_policy


def make_search_step(env: UnrolledOptimizationEnv, num_points: int) -> Callable:
    """A jitted ``search_step(key) -> (points [P, D], returns [P])``: whole inner runs."""

    def inner_run_return(theta, reset_key):
        return inner_run(env, lambda obs: theta, reset_key)[1].sum()

    @jax.jit
    def search_step(key):
        point_key, run_key = jax.random.split(key)
        points = jax.vmap(env.sample_search_point)(jax.random.split(point_key, num_points))
        returns = jax.vmap(inner_run_return)(points, jax.random.split(run_key, num_points))
        return points, jnp.where(jnp.isfinite(returns), returns, -jnp.inf)

    return search_step


def run(cfg: DictConfig, run_dir: Path) -> tuple[jax.Array, list[dict]]:
    """Random search as ``cfg`` says; returns (best θ, metrics history)."""
    from pes_rl.trainer import logs_theta  # the trainer imports this module

    env = make_env(cfg)
    if not isinstance(env, UnrolledOptimizationEnv):
        raise ValueError(
            f"agent=random_search needs an unrolled-optimization task (lr_toy2d, lr_schedule, "
            f"hparams29), got env.id={cfg.env.id!r}"
        )
    num_points = cfg.agent.num_particles
    if not is_positive_int(num_points):
        raise ValueError(f"agent.num_particles must be an int >= 1, got {num_points!r}")
    if cfg.resume:
        raise ValueError("resume=true is not supported for agent=random_search: start a new run")
    cfg = OmegaConf.merge(cfg, {"run_dir": str(run_dir)})
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    policy = policies.make("constant", env)
    search_step = make_search_step(env, num_points)
    evaluate = make_evaluate(env, policy, cfg.train.eval_episodes, cfg.train.eval_steps)
    key = jax.random.key(cfg.train.seed)
    key, init_key, eval_key = jax.random.split(key, 3)
    best = policy.init(init_key)
    best_return = -np.inf
    metrics_file = MetricsFile(run_dir)
    wandb_run = WandbRun(cfg, run_dir)
    total, eval_every = cfg.train.iterations, cfg.train.eval_every
    progress = Progress(cfg.train.progress, total, 0)
    env_steps = 0
    try:
        for iteration in range(1, total + 1):
            key, step_key = jax.random.split(key)
            points, returns = jax.device_get(search_step(step_key))
            if returns.max() > best_return:
                best_return = float(returns.max())
                best = jnp.asarray(points[int(np.argmax(returns))])
            env_steps += num_points * env.spec.horizon
            record = {
                "iteration": iteration,
                "env_steps": env_steps,
                "search_return": best_return,
                "train_return": float(np.mean(returns[np.isfinite(returns)]))
                if np.isfinite(returns).any()
                else None,
            }
            if logs_theta(env):
                record["theta"] = [float(v) for v in np.asarray(best)]
            if iteration == total or (eval_every > 0 and iteration % eval_every == 0):
                metrics = evaluate(best, None, jax.random.fold_in(eval_key, iteration))
                record |= clean(jax.device_get(metrics))
            record = {k: v for k, v in record.items() if v is not None}
            metrics_file.write(record)
            wandb_run.log(record)
            progress.update(record)
        save_policy(run_dir / POLICY_FILE, cfg, best, None, total)
    finally:
        progress.close()
        metrics_file.close()
        wandb_run.finish()
    return best, metrics_file.history
