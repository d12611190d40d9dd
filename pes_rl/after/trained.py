"""A trained policy outside training: ``pes_rl.load(run)`` and the run's ``policy.npz``.

Every checkpoint of a run also writes ``policy.npz`` into the run dir: θ, the observation
normalizer, the iteration and the resolved config in one small NumPy file. It loads without
orbax and without the config tree; only the env is rebuilt (for the policy's shapes).

Examples:
  >>> trained = pes_rl.load("runs/Swimmer-v5/pes/seed0-...")  # doctest: +SKIP
  >>> trained.act(obs)  # one observation -> one action; a batch [B, ...] -> [B, ...]
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from pes_rl import normalization
from pes_rl.policies import Policy
from pes_rl.training.components import env_id_of, make_env, make_policy
from pes_rl.training.run_dir import foreign_run

POLICY_FILE = "policy.npz"
FORMAT = "pes_rl.policy/1"
PARAM_PREFIX = "params"  # θ's leaves are stored as params/<pytree path>
NORM_FIELDS = normalization.ObsNormState._fields


class TrainedPolicy:
    """θ and what it needs to act: the env (for its spaces), the policy, the normalizer."""

    def __init__(
        self,
        config: DictConfig,
        env: Any,
        policy: Policy,
        params: Any,
        obs_norm: normalization.ObsNormState | None,
        iteration: int,
    ):
        self.config = config
        self.env_id = env_id_of(config)
        self.env = env
        self.policy = policy
        self.params = params
        self.obs_norm = obs_norm
        self.iteration = iteration
        self.observation_shape = tuple(env.spec.observation_space.shape)

        @jax.jit
        def act_batch(params, obs_norm, obs):
            return jax.vmap(policy.apply, (None, 0))(params, normalization.normalize(obs_norm, obs))

        self._act_batch = act_batch

    def act(self, obs: Any) -> np.ndarray:
        """The action for one observation, or actions [B, ...] for a batch [B, *obs_shape]."""
        obs = np.asarray(obs, np.float32)
        single = obs.shape == self.observation_shape
        if not single and obs.shape[1:] != self.observation_shape:
            raise ValueError(
                f"act takes one observation of shape {self.observation_shape} or a batch "
                f"[B, *{self.observation_shape}], got shape {obs.shape}"
            )
        batch = obs[None] if single else obs
        actions = np.asarray(self._act_batch(self.params, self.obs_norm, jnp.asarray(batch)))
        return actions[0] if single else actions

    def __repr__(self) -> str:
        return f"TrainedPolicy({self.env_id!r}, iteration={self.iteration})"


def _path_names(tree: Any) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [PARAM_PREFIX + jax.tree_util.keystr(path) for path, _ in paths]


def save_policy(
    path: Path,
    config: DictConfig,
    params: Any,
    obs_norm: normalization.ObsNormState | None,
    iteration: int,
) -> None:
    """Writes ``policy.npz`` whole or not at all (a temp file, then a rename)."""
    arrays = {
        "format": np.asarray(FORMAT),
        "config": np.asarray(OmegaConf.to_yaml(config, resolve=True)),
        "iteration": np.asarray(iteration),
    }
    leaves = jax.device_get(jax.tree.leaves(params))
    arrays |= dict(zip(_path_names(params), leaves, strict=True))
    if obs_norm is not None:
        arrays |= {f"obs_norm/{name}": np.asarray(v) for name, v in obs_norm._asdict().items()}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(run: str | Path, iteration: int | None = None) -> TrainedPolicy:
    """The trained policy of a run: its ``policy.npz`` (the latest checkpoint's θ), or with
    ``iteration`` the orbax checkpoint of that iteration. ``run`` is a run dir or a
    ``policy.npz`` file (a copy loads anywhere, without the run dir)."""
    path = Path(run)
    if path.is_file():
        if iteration is not None:
            raise ValueError(f"iteration= needs a run dir with checkpoints/, not the file {path}")
        return _from_policy_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no run dir or {POLICY_FILE} at {path}")
    other_run = foreign_run(path)
    if other_run:
        raise ValueError(f"{path} is not a pes_rl run ({other_run})")
    if iteration is None and (path / POLICY_FILE).exists():
        return _from_policy_file(path / POLICY_FILE)
    return _from_checkpoint(path, iteration)


def _rebuild(config: DictConfig) -> tuple[Any, Policy, Any]:
    """The env and policy a run's config describes, and θ's structure (shapes only)."""
    env = make_env(config)
    policy = make_policy(config, env)
    return env, policy, jax.eval_shape(policy.init, jax.random.key(0))


def _from_policy_file(path: Path) -> TrainedPolicy:
    with np.load(path, allow_pickle=False) as data:
        if "format" not in data or str(data["format"]) != FORMAT:
            raise ValueError(f"{path} is not a pes_rl policy file (format {FORMAT})")
        stored = {name: data[name] for name in data.files}
    config = OmegaConf.create(str(stored["config"]))
    env, policy, template = _rebuild(config)
    names = _path_names(template)
    missing = [name for name in names if name not in stored]
    if missing:
        raise ValueError(f"{path} lacks {missing[:3]} of the policy its config describes")
    params = jax.tree.unflatten(
        jax.tree.structure(template), [jnp.asarray(stored[name]) for name in names]
    )
    obs_norm = None
    if f"obs_norm/{NORM_FIELDS[0]}" in stored:
        obs_norm = normalization.ObsNormState(
            *(jnp.asarray(stored[f"obs_norm/{name}"]) for name in NORM_FIELDS)
        )
    return TrainedPolicy(config, env, policy, params, obs_norm, int(stored["iteration"]))


def _from_checkpoint(run_dir: Path, iteration: int | None) -> TrainedPolicy:
    from pes_rl.training.checkpoint import (
        Checkpointer,  # orbax: only for runs read from checkpoints
    )

    config_path = run_dir / "config.yaml"
    if not config_path.exists() or not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(
            f"{run_dir} holds no {POLICY_FILE} and no config.yaml + checkpoints/: not a pes_rl "
            "run, or one that stopped before its first checkpoint"
        )
    checkpointer = Checkpointer(run_dir)
    try:
        saved = checkpointer.iterations()
        if not saved:
            raise FileNotFoundError(f"{run_dir / 'checkpoints'} holds no checkpoint")
        chosen = saved[-1] if iteration is None else iteration
        if chosen not in saved:
            keep = OmegaConf.load(config_path).train.get("keep_checkpoints")
            why = f" (train.keep_checkpoints={keep} keeps the newest {keep})" if keep else ""
            raise ValueError(
                f"no checkpoint of iteration {chosen} in {run_dir}: saved are {saved}{why}"
            )
        state = checkpointer.restore_saved(chosen)
    finally:
        checkpointer.close()
    config = OmegaConf.load(config_path)
    env, policy, template = _rebuild(config)
    if jax.tree.structure(state["params"]) != jax.tree.structure(template):
        raise ValueError(
            f"the θ in {run_dir} checkpoint {chosen} does not fit the policy its config.yaml "
            "describes (was config.yaml edited?)"
        )
    params = jax.tree.map(jnp.asarray, state["params"])
    saved_norm = (state.get("agent_state") or {}).get("obs_norm")
    obs_norm = None
    if saved_norm is not None:
        obs_norm = normalization.ObsNormState(*(jnp.asarray(saved_norm[n]) for n in NORM_FIELDS))
    return TrainedPolicy(config, env, policy, params, obs_norm, chosen)
