"""``pes_rl.train(cfg)``: build everything from the config, then estimate → update → log.

The loop is Brax's: one jitted iteration (estimate + optax update) is the jit boundary; timing,
evaluation scheduling, logging and checkpoints stay on the host. Metrics are fetched from the
device in batches, not after every iteration, so the device stays busy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from omegaconf import DictConfig, OmegaConf

from pes_rl import agents, interrupts, lopt
from pes_rl.after.trained import POLICY_FILE, save_policy
from pes_rl.agents import curriculum
from pes_rl.agents.base import WindowLength
from pes_rl.checks import SettingError, is_number
from pes_rl.envs.gymnax_env import twin_hint
from pes_rl.envs.learned_optimizer import LearnedOptimizer
from pes_rl.stepping import distributed, memory, sharding
from pes_rl.stepping.evaluation import evaluation_key
from pes_rl.training.checkpoint import Checkpointer, NoCheckpoint
from pes_rl.training.components import make_env, make_policy
from pes_rl.training.config import RESUMABLE_KEYS, as_config, differing_keys, validate
from pes_rl.training.run_dir import RunDirError, atomic_write_text, claim, env_path, path_part
from pes_rl.training.run_log import MetricsFile, Progress, WandbRun, clean

Params = Any
FLUSH_EVERY = 32  # iterations whose metrics are fetched from the device together
QUEUED_AHEAD = 4  # iterations dispatched ahead of the newest one waited for (keeps JAX busy)
CURRICULUM_STREAM = 0x6375  # the curriculum's jitter: fold_in(eval_key, this), then the iteration
CHANGEABLE = [k for k in RESUMABLE_KEYS if k not in ("resume", "run_dir")]  # on a resume
THETA_LOG_SIZE = 32  # a meta task's θ up to this size is logged every iteration ("theta")


class TrainState(NamedTuple):
    """Everything a checkpoint must hold to continue a run bit for bit."""

    params: Params  # θ
    opt_state: optax.OptState
    agent_state: Any  # particles, accumulators, clocks, observation normalizer
    key: jax.Array  # the run's random stream
    iteration: jax.Array  # shape=(), int32: iterations done


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced; unpacks as ``params, history = pes_rl.train(...)``."""

    params: Params  # final θ
    history: list[dict]  # one metrics dict per iteration (as in metrics.jsonl)
    run_dir: Path  # metrics.jsonl, config.yaml, policy.npz, checkpoints/ (pes_rl.load(run_dir))

    def __iter__(self):
        return iter((self.params, self.history))


class TrainingDiverged(RuntimeError):
    """A reward or gradient became NaN or infinite."""


class TrainingInterrupted(Exception):
    """The user pressed Ctrl-C; a checkpoint of the last iteration was saved."""

    def __init__(self, iteration: int, run_dir: Path):
        super().__init__(f"stopped after iteration {iteration}; checkpoint saved in {run_dir}")
        self.iteration, self.run_dir = iteration, run_dir


def build(cfg: DictConfig):
    """The env, policy, strategy (:class:`pes_rl.agents.Strategy`) and optax optimizer a
    config describes.

    ``agent.curriculum`` (a dict, or null) is not the estimator's: see :func:`make_curriculum`.
    """
    env = make_env(cfg)
    policy = make_policy(cfg, env)
    agent_kwargs = OmegaConf.to_container(cfg.agent, resolve=True)
    agent_kwargs.pop("curriculum", None)
    name = agent_kwargs.pop("name")
    mesh = make_population_mesh(cfg, env, name)
    try:
        agent = agents.make(name, env=env, policy=policy, mesh=mesh, **agent_kwargs)
    except SettingError as error:  # the strategy's parameters are the agent.* keys
        raise error.as_config_error("agent.") from None
    optimizer = make_optimizer(cfg.optimizer)
    return env, policy, agent, optimizer


def make_population_mesh(cfg: DictConfig, env, agent_name: str):
    """The device mesh ``train.devices`` asks for (None: one device, unsharded). ``all`` uses
    every local device where the population can be split (a JAX env; es, ars, tes, pes, nres) and
    one device elsewhere; an explicit count > 1 there is an error."""
    devices = OmegaConf.select(cfg, "train.devices", default="all")
    strategy = agents.resolve(agent_name)
    if strategy.splits_over_devices(env):
        return sharding.make_mesh(devices)
    if jax.process_count() > 1 and not strategy.supports_sharding:
        raise ValueError(
            f"train.distributed runs es, ars, tes, pes or nres (got {agent_name}): hybrid and "
            "random_search run in one process"
        )
    if devices not in ("all", 1):
        raise ValueError(
            f"train.devices={devices} needs a JAX env and es, ars, tes, pes or nres (got "
            f"{agent_name} on {env!r}); use train.devices=1"
        )
    return None


def make_curriculum(cfg: DictConfig, agent) -> curriculum.TruncationCurriculum | None:
    """``agent.curriculum`` ({start, end, iterations, jitter}; end null = agent.unroll_length)."""
    settings = OmegaConf.select(cfg, "agent.curriculum")
    if settings is None:
        return None
    settings = OmegaConf.to_container(settings, resolve=True)
    if not isinstance(settings, dict):
        raise ValueError(f"agent.curriculum must be null or a mapping, got {settings!r}")
    if not agent.shortens_windows:
        raise ValueError(
            f"agent.curriculum needs a persistent estimator (tes, pes, nres, hybrid) on a JAX "
            f"env; got {agent.name} on {agent.env!r}"
        )
    unknown = set(settings) - {"start", "end", "iterations", "jitter"}
    if unknown:
        raise ValueError(f"agent.curriculum takes start, end, iterations, jitter; got {unknown}")
    if settings.get("end") is None:
        settings["end"] = agent.unroll_length
    if settings["end"] != agent.unroll_length:
        raise ValueError(
            f"agent.curriculum.end ({settings['end']}) must equal agent.unroll_length "
            f"({agent.unroll_length}), the longest window the agent compiles"
        )
    try:
        return curriculum.make(**settings)
    except SettingError as error:
        raise error.as_config_error("agent.curriculum.") from None


OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam}


def make_optimizer(cfg: DictConfig) -> optax.GradientTransformation:
    """``optimizer.name`` (sgd | adam) at ``optimizer.lr`` with numeric ``optimizer.kwargs``."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {list(OPTIMIZERS)}, got {cfg.name!r}")
    factory = OPTIMIZERS[cfg.name]
    accepted = [p for p in inspect.signature(factory).parameters if p != "learning_rate"]
    kwargs = {k: v for k, v in (cfg.get("kwargs") or {}).items() if v is not None}
    for key, value in kwargs.items():
        if key not in accepted:
            raise ValueError(
                f"optimizer.kwargs.{key} is not a setting of optax.{cfg.name}: it takes {accepted}"
            )
        if key == "nesterov" or key.endswith("dtype"):
            continue  # a flag or a dtype name; optax checks those
        if not is_number(value):
            raise ValueError(f"optimizer.kwargs.{key} must be a number, got {value!r}")
    return factory(cfg.lr, **kwargs)


def logs_theta(env) -> bool:
    """θ drives the env directly (meta tasks, influence balancing) and is small: its path is a
    result, logged as ``theta`` every iteration."""
    theta_init = env.spec.default_action
    return theta_init is not None and theta_init.size <= THETA_LOG_SIZE


def make_iteration(agent: agents.Strategy, optimizer: optax.GradientTransformation):
    """One outer iteration, the run's one jit boundary: the strategy's ``update`` (an
    estimator's: estimate the ascent direction, hand its negation to optax).

    ``iteration(state, steps, limit)``: the window runs ``steps`` (static) steps, of which the
    first ``limit`` count (None: all); see ``Estimator.estimate``.
    """
    log_theta = logs_theta(agent.env)

    def iteration(state: TrainState, steps: int, limit) -> tuple[TrainState, dict]:
        key, step_key = jax.random.split(state.key)
        params, opt_state, agent_state, metrics = agent.update(
            optimizer, state.params, state.opt_state, state.agent_state, step_key,
            WindowLength(steps, limit),
        )  # fmt: skip
        if log_theta:  # hyperparameters of a meta task: their trajectory is a result
            metrics["theta"] = ravel_pytree(params)[0]
        return TrainState(params, opt_state, agent_state, key, state.iteration + 1), metrics

    if not agent.jittable:
        return iteration  # host envs step in Python; the population jits the policy call
    return jax.jit(iteration, static_argnums=1, donate_argnums=0)


def resolve_run_dir(cfg: DictConfig) -> Path:
    run_dir = OmegaConf.select(cfg, "run_dir")
    if not run_dir:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        env = env_path(cfg.env.get("family"), cfg.env.id)
        run_dir = f"runs/{env}/{path_part(cfg.agent.name)}/seed{cfg.train.seed}-{stamp}"
    return Path(run_dir)


def env_steps_grid(env_steps: int, every: int) -> int:
    """The first multiple of ``every`` above ``env_steps``: where ``train.eval_every_steps``
    evaluates next (at the first iteration whose env steps reach it)."""
    return (env_steps // every + 1) * every


def checkpointed(state: TrainState, env_steps: int) -> dict:
    """What a checkpoint holds: the training state and the run's env-step count (an int64 on
    the host: a long GPU run passes 2**31 steps)."""
    return state._asdict() | {"env_steps": np.asarray(env_steps, np.int64)}


def restore_run(
    cfg: DictConfig,
    config_path: Path,
    checkpointer: Checkpointer,
    agent,
    template: TrainState,
    agent_key: jax.Array,
    records: list[dict],
) -> tuple[int, TrainState, int]:
    """The iteration, state and env-step count to resume from, after checking the config still
    matches: the newest checkpoint whose iteration metrics.jsonl still records, so the file
    keeps one record per iteration (a crash can tear its last line; an older checkpoint, or
    the start of the run, is then used and the lost iterations are trained again)."""
    if config_path.exists():
        changed = differing_keys(OmegaConf.load(config_path), cfg)
        if changed:
            raise ValueError(
                f"resume=true but the config differs from the run in {config_path.parent} at "
                f"{changed}; repeat the run's overrides (only {', '.join(CHANGEABLE)} may "
                "change)"
            )
    recorded = records[-1]["iteration"] if records else 0
    newest = checkpointer.latest_iteration()
    try:
        start, saved = checkpointer.restore_latest(checkpointed(template, 0), at_most=recorded)
    except NoCheckpoint:
        start, saved = 0, None
    if newest > recorded:
        warnings.warn(
            f"metrics.jsonl records iterations up to {recorded} but the newest checkpoint is "
            f"{newest}: resuming from {'checkpoint ' + str(start) if start else 'the start'} "
            "so that every iteration keeps its record",
            stacklevel=3,
        )
        checkpointer.delete_after(start)
    if saved is None:
        return 0, template, 0
    env_steps = saved.pop("env_steps", None)  # absent from checkpoints of pes_rl before 0.2
    if env_steps is None:
        env_steps = next(r["env_steps"] for r in records if r["iteration"] == start)
    state = TrainState(**saved)
    if not agent.restorable:
        # Gymnasium sub-envs cannot be restored from a checkpoint: θ, the optimizer, the
        # normalizer and the random stream continue; the particles start fresh episodes.
        fresh = agent.init(jax.random.fold_in(agent_key, start), state.params)
        state = state._replace(agent_state=fresh._replace(obs_norm=state.agent_state.obs_norm))
        warnings.warn(
            f"resuming a host (Gymnasium) env run from iteration {start}: particles start "
            "fresh episodes, so the run is not bit-identical to an uninterrupted one",
            stacklevel=3,
        )
    return start, state, int(env_steps)


def train(config: DictConfig | dict | list[str] | None = None) -> TrainResult:
    """Trains θ as ``python train.py`` would; writes metrics.jsonl, config.yaml, policy.npz and
    checkpoints to the run dir (``run_dir``, or a fresh ``runs/...`` dir when it is unset).

    ``config`` is a list of overrides (``["agent=tes", "train.seed=1"]``), a partial dict merged
    onto the defaults the same way (``{"agent": "tes", "train": {"seed": 1}}``: a group key with
    a string selects that option), None for the default run, or a complete config
    (``pes_rl.training.config.compose(...)``, Hydra's) used as is.

    The run owns run_dir while it trains (see ``pes_rl.training.run_dir.claim``).

    Raises:
      ValueError: a config value that cannot work (the message names the key), or a run dir
        that cannot be used (``pes_rl.training.run_dir.RunDirError``: in use, a file, not a
        run, ...).
      TrainingDiverged: a non-finite reward or gradient; the last good checkpoint stays.
      TrainingInterrupted: Ctrl-C; a checkpoint of the last finished iteration was saved.
    """
    cfg = as_config(config)
    validate(cfg)
    distributed.initialize(cfg)  # before any JAX op
    run_dir = distributed.agree_on_path(resolve_run_dir(cfg))
    with contextlib.ExitStack() as owned:
        refused = None
        if distributed.is_primary():  # the other processes of a distributed run wait for it
            try:
                owned.enter_context(claim(run_dir, resume=cfg.resume))
            except RunDirError as error:
                refused = error
        if not distributed.primary_says(refused is None):
            raise refused or RunDirError(f"process 0 could not use {run_dir}; its output says why")
        notices = owned.enter_context(HeldNotices())
        return train_in_run_dir(cfg, run_dir, notices)


class HeldNotices:
    """A run's set-up warnings and hints, held until the set-up succeeded (:meth:`release`),
    so that an error of the set-up is the first and only line the user reads; leaving the
    ``with`` block unreleased drops them."""

    def __enter__(self) -> HeldNotices:
        self.catcher: Any = warnings.catch_warnings(record=True)
        self.warnings = self.catcher.__enter__()
        warnings.simplefilter("always")  # held here; the filters judge them on release
        self.hints: list[str] = []
        return self

    def release(self) -> None:
        """Shows each held warning (once per message and place, as the filters say), then
        the hints; later warnings are shown as they come."""
        if self.catcher is None:
            return
        self.__exit__()
        shown: dict = {}  # warn_explicit's registry: a repeated warning is shown once
        for held in self.warnings:
            warnings.warn_explicit(
                held.message, held.category, held.filename, held.lineno, registry=shown
            )
        for hint in self.hints:
            print(hint, file=sys.stderr)

    def __exit__(self, *exc_info) -> None:
        if self.catcher is not None:
            self.catcher.__exit__(None, None, None)
            self.catcher = None


def train_in_run_dir(cfg: DictConfig, run_dir: Path, notices: HeldNotices) -> TrainResult:
    """``train`` in a run dir this process has claimed; ``notices`` holds the set-up's warnings
    and hints until it succeeded. The strategy's population (an async vector env's worker
    processes) is closed on every exit path."""
    env, policy, agent, optimizer = build(cfg)
    try:
        return train_built(cfg, run_dir, notices, env, policy, agent, optimizer)
    finally:
        agent.close()


def train_built(
    cfg: DictConfig, run_dir: Path, notices: HeldNotices, env, policy, agent, optimizer
) -> TrainResult:
    """:func:`train_in_run_dir` once its env, policy, agent and optimizer are built."""
    hint = twin_hint(getattr(env, "gym_id", None))
    if hint and distributed.is_primary():
        notices.hints.append(hint)
    cfg = OmegaConf.merge(cfg, {"run_dir": str(run_dir)})
    total = cfg.train.iterations

    # Initial state, or the last checkpoint when resuming.
    keys = agent.run_keys(cfg.train.seed)
    key, policy_key, agent_key, eval_key = keys
    params = policy.init(policy_key)
    params, opt_state, key, iteration = sharding.replicate(
        (params, optimizer.init(params), key, jnp.zeros((), jnp.int32)), agent.mesh
    )
    state = TrainState(params, opt_state, agent.init(agent_key, params), key, iteration)
    checkpointer = Checkpointer(run_dir, max_to_keep=cfg.train.keep_checkpoints)
    config_path = run_dir / "config.yaml"
    start, env_steps = 0, 0
    records = MetricsFile.read(run_dir) if cfg.resume else []
    if cfg.resume and checkpointer.latest_iteration() is not None:
        start, state, env_steps = restore_run(
            cfg, config_path, checkpointer, agent, state, agent_key, records
        )
    if start >= total:
        raise ValueError(
            f"train.iterations must exceed the {start} iterations already done in {run_dir}"
        )
    budget = cfg.train.get("max_env_steps")
    if budget is not None and env_steps >= budget:
        raise ValueError(
            f"train.max_env_steps must exceed the {env_steps:,} env steps already taken in "
            f"{run_dir}"
        )
    primary = distributed.is_primary()  # the one process that writes the run's files
    if primary:
        atomic_write_text(config_path, OmegaConf.to_yaml(cfg, resolve=True))

    kept = [r for r in records if r["iteration"] <= start]
    metrics_file = MetricsFile(run_dir, kept, write=primary)
    iteration_fn = make_iteration(agent, optimizer)
    schedule = make_curriculum(cfg, agent)
    curriculum_key = jax.random.fold_in(eval_key, CURRICULUM_STREAM)
    save_lopt = isinstance(env, LearnedOptimizer)
    evaluate = agent.make_evaluate(cfg.train.eval_episodes, cfg.train.eval_steps)
    notices.release()  # the set-up succeeded
    wandb_run = WandbRun(cfg, run_dir, enabled=primary)
    progress = Progress(
        cfg.train.progress and primary, total, start, budget=budget, start_env_steps=env_steps
    )
    eval_every, checkpoint_every = cfg.train.eval_every, cfg.train.checkpoint_every
    eval_every_steps = cfg.train.get("eval_every_steps")
    # The next multiple of train.eval_every_steps to evaluate at (None: no env-step grid).
    next_eval = None if eval_every_steps is None else env_steps_grid(env_steps, eval_every_steps)
    counts_steps = budget is not None or next_eval is not None
    last_checkpoint = start

    dispatched = env_steps  # env steps dispatched so far (max_env_steps, eval_every_steps)
    stop = {"requested": False}
    previous_handler = signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))
    pending: list[tuple[int, dict]] = []
    flush_time = time.perf_counter()

    def flush(eval_metrics: dict | None) -> None:
        """Fetches pending metrics, checks they are finite, writes them."""
        nonlocal env_steps, flush_time
        fetched = jax.device_get(pending)
        now = time.perf_counter()
        window_steps = sum(int(m["env_steps"]) for _, m in fetched)
        steps_per_s = window_steps / max(now - flush_time, 1e-9)
        flush_time = now
        for i, (iteration, metrics) in enumerate(fetched):
            for name in ("window_reward", "grad_norm"):
                if name in metrics and not np.isfinite(metrics[name]):
                    what = "reward" if name == "window_reward" else "gradient"
                    saved = (
                        f"The last good checkpoint is iteration {last_checkpoint} in "
                        f"{run_dir / 'checkpoints'}"
                        if last_checkpoint > 0  # iteration 0 is never saved
                        else "No checkpoint was saved before it"
                    )
                    raise TrainingDiverged(
                        f"non-finite {what} ({name}={float(metrics[name])}) at iteration "
                        f"{iteration}; training stopped. {saved}"
                    )
            env_steps += int(metrics["env_steps"])
            window = clean(metrics)
            window["env_steps_window"] = window.pop("env_steps")
            record = {"iteration": iteration, "env_steps": env_steps} | window
            record["steps_per_s"] = steps_per_s
            if i == len(fetched) - 1 and eval_metrics is not None:
                record |= clean(jax.device_get(eval_metrics))
            metrics_file.write(record)
            wandb_run.log(record)
            progress.update(record)
        pending.clear()

    try:
        interrupts.check()  # a Ctrl-C of the command's start-up that could not be raised then
        for iteration in range(start + 1, total + 1):
            window = WindowLength(agent.unroll_length)
            if schedule is not None:
                length = schedule.length(iteration, jax.random.fold_in(curriculum_key, iteration))
                window = agent.window_length(length)
            with memory.out_of_memory_as_value_error(
                agent.num_particles, agent.state_bytes, agent.mesh
            ):
                state, metrics = iteration_fn(state, *window)
            if schedule is not None:
                metrics["unroll_length"] = length
            pending.append((iteration, metrics))
            if len(pending) > QUEUED_AHEAD:  # flushes then follow real time on slow iterations
                jax.block_until_ready(pending[-1 - QUEUED_AHEAD][1])
            final, on_grid = iteration == total, False
            if counts_steps:  # one scalar fetched per iteration, only with env-step schedules
                dispatched += int(metrics["env_steps"])
                if budget is not None and dispatched >= budget and not final:
                    final = True
                    progress.end_at(iteration)
                if next_eval is not None and dispatched >= next_eval:
                    on_grid, next_eval = True, env_steps_grid(dispatched, eval_every_steps)
            do_eval = final or on_grid or (eval_every > 0 and iteration % eval_every == 0)
            do_checkpoint = final or (checkpoint_every > 0 and iteration % checkpoint_every == 0)
            due = time.perf_counter() - flush_time > 2.0 or len(pending) >= FLUSH_EVERY
            if do_eval or do_checkpoint or stop["requested"] or due:
                eval_metrics = None
                if do_eval:
                    eval_metrics = evaluate(
                        state.params,
                        state.agent_state.obs_norm,
                        evaluation_key(keys, iteration),
                    )
                flush(eval_metrics)
            if do_checkpoint or stop["requested"]:
                # Every process writes its own shards.
                checkpointer.save(iteration, checkpointed(state, env_steps))
                last_checkpoint = iteration
                if primary:
                    save_policy(
                        run_dir / POLICY_FILE, cfg, state.params, state.agent_state.obs_norm,
                        iteration,
                    )  # fmt: skip
                if save_lopt and primary:  # θ that loads without this config (pes_rl.lopt.load)
                    lopt.save(
                        run_dir / "lopt_theta.npz", env.lopt_theta(ravel_pytree(state.params)[0])
                    )
            if stop["requested"]:
                raise TrainingInterrupted(iteration, run_dir)
            if final:
                break
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        progress.close()
        metrics_file.close()
        wandb_run.finish()
        checkpointer.close()
        evaluate.close()  # a Gymnasium env's evaluation sub-envs
    return TrainResult(state.params, metrics_file.history, run_dir)
