"""Config helpers: compose the Hydra config from Python and check values before training."""

from __future__ import annotations

import difflib
import importlib.resources
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pes_rl.checks import is_number, is_positive_int

CONFIG_DIR = Path(str(importlib.resources.files("pes_rl.configs")))  # package data
# Keys that may change between a run and its resumption without changing its results.
RESUMABLE_KEYS = (
    "train.iterations", "train.max_env_steps", "train.progress", "train.devices",
    "train.distributed", "train.keep_checkpoints", "logger", "resume", "run_dir",
)  # fmt: skip


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config ``python train.py <overrides>`` would use, for calling ``pes_rl.train``.

    ``run_dir`` is unset (None) unless an override sets it: ``pes_rl.train`` then picks a fresh
    ``runs/...`` dir.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides or []))
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    if OmegaConf.is_interpolation(cfg, "run_dir"):  # Hydra's output dir: none outside Hydra
        cfg.run_dir = None
    return cfg


def groups() -> list[str]:
    """The config groups (``agent``, ``env``, ...): ``group=option`` selects a file."""
    return sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))


def dotted(values: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"seed": 1}}`` -> ``{"train.seed": 1}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out |= dotted(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


_MISSING = object()
OPEN_MAPPINGS = ("kwargs", "curriculum")  # nodes whose keys are the user's to choose


def has_key(cfg: DictConfig, key: str) -> bool:
    """Whether the dotted ``key`` is in ``cfg`` (its value may be null)."""
    return OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING


def nearest_key(cfg: DictConfig, key: str) -> str | None:
    """The key of ``cfg`` closest to a mistyped one, or None when none is close
    (``difflib.get_close_matches``): a sibling where the parent exists (``agent.sigmaa`` ->
    ``agent.sigma``), else any key (``agnt.sigma`` -> ``agent.sigma``)."""
    parent, _, name = key.rpartition(".")
    if not parent or has_key(cfg, parent):
        node = OmegaConf.select(cfg, parent) if parent else cfg
        siblings = [str(k) for k in node] if isinstance(node, DictConfig) else []
        close = difflib.get_close_matches(name, siblings, n=1)
        return None if not close else f"{parent}.{close[0]}" if parent else close[0]
    close = difflib.get_close_matches(key, list(dotted(OmegaConf.to_container(cfg))), n=1)
    return close[0] if close else None


def in_open_mapping(key: str) -> bool:
    """Whether ``key`` lies in a mapping whose keys are the user's (``env.kwargs.<name>``)."""
    return "." in key and key.split(".")[-2] in OPEN_MAPPINGS


def from_dict(values: dict) -> DictConfig:
    """The defaults with ``values`` merged on, as ``python train.py`` would merge overrides.

    A group key with a string (``{"agent": "tes"}``) selects that option first, like
    ``agent=tes``; every other key (nested, or dotted: ``{"agent.sigma": 0.1}``) sets a value.
    Only ``*.kwargs`` mappings take keys the config lacks (``+key=`` on the command line);
    any other unknown key is a ValueError naming it.
    """
    selections = {k: v for k, v in values.items() if k in groups() and isinstance(v, str)}
    cfg = compose([f"{group}={option}" for group, option in selections.items()])
    rest = {k: v for k, v in values.items() if k not in selections}
    OmegaConf.set_struct(cfg, False)
    for key, value in dotted(rest).items():
        if not has_key(cfg, key) and not in_open_mapping(key):
            near = nearest_key(cfg, key)
            hint = f"did you mean {near!r}?" if near else "see python train.py --cfg job"
            raise ValueError(f"unknown config key {key!r}: {hint}")
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    return cfg


def as_config(config: DictConfig | dict | list[str] | tuple[str, ...] | None) -> DictConfig:
    """A complete config from what ``pes_rl.train`` accepts: a complete DictConfig as is,
    override strings (``["agent=tes", "train.seed=1"]``), a partial dict, or None (defaults)."""
    if isinstance(config, DictConfig):
        return config
    if config is None or isinstance(config, list | tuple):
        return compose(list(config or []))
    if isinstance(config, dict):
        return from_dict(config)
    raise TypeError(f"a config is a DictConfig, a dict or a list of overrides, got {config!r}")


# Count-like keys: an integral float there (train.iterations=1e2 parses as 100.0) is its int.
INTEGER_KEYS = (
    "train.iterations", "train.eval_every", "train.checkpoint_every", "train.eval_episodes",
    "train.eval_steps", "train.seed", "train.keep_checkpoints", "train.max_env_steps",
    "train.eval_every_steps", "agent.num_particles", "agent.unroll_length",
)  # fmt: skip
EVAL_EVERY = 25  # train.eval_every when neither it nor train.eval_every_steps is set


def default_eval_every(eval_every_steps: int | None) -> int:
    """configs/train.yaml's ``train.eval_every``: ``EVAL_EVERY`` iterations, or 0 (no
    iteration schedule) when ``train.eval_every_steps`` sets the env-step grid."""
    return EVAL_EVERY if eval_every_steps is None else 0


OmegaConf.register_new_resolver("eval_every", default_eval_every, replace=True)


def integral_floats_as_ints(cfg: DictConfig) -> None:
    """Replaces, in place, an integral float at one of ``INTEGER_KEYS`` by the int it equals."""
    for key in INTEGER_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, float) and value.is_integer():
            OmegaConf.update(cfg, key, int(value))


def _nonnegative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def evaluation_schedule(train: DictConfig) -> None:
    """Checks ``train.eval_every_steps`` and fills in a null ``train.eval_every`` (in place,
    as the config's default does): both schedules at once is a ValueError."""
    every_steps = train.get("eval_every_steps")
    if every_steps is not None and not is_positive_int(every_steps):
        raise ValueError(f"train.eval_every_steps must be an int >= 1 or null, got {every_steps!r}")
    if train.get("eval_every") is None:
        train.eval_every = default_eval_every(every_steps)
    elif every_steps is not None and train.eval_every != 0:
        raise ValueError(
            f"train.eval_every={train.eval_every} (iterations) and train.eval_every_steps="
            f"{every_steps} (env steps) are both set: keep one (train.eval_every=null)"
        )


def validate(cfg: DictConfig) -> None:
    """Raises ValueError naming the config key when a value cannot work; first takes an
    integral float at an integer key as its int (``integral_floats_as_ints``) and fills in
    the evaluation schedule (``evaluation_schedule``)."""
    integral_floats_as_ints(cfg)
    train = cfg.train
    evaluation_schedule(train)
    checks = [
        ("train.iterations", train.iterations, is_positive_int, "an int >= 1"),
        ("train.eval_every", train.eval_every, _nonnegative_int, "an int >= 0"),
        ("train.checkpoint_every", train.checkpoint_every, _nonnegative_int, "an int >= 0"),
        ("train.eval_episodes", train.eval_episodes, is_positive_int, "an int >= 1"),
        ("train.eval_steps", train.eval_steps, is_positive_int, "an int >= 1"),
        ("train.seed", train.seed, _nonnegative_int, "an int >= 0"),
    ]
    budget = train.get("max_env_steps")
    if budget is not None and not is_positive_int(budget):
        raise ValueError(f"train.max_env_steps must be an int >= 1 or null, got {budget!r}")
    keep = train.get("keep_checkpoints")
    if keep is not None and not is_positive_int(keep):
        raise ValueError(f"train.keep_checkpoints must be an int >= 1 or null (all), got {keep!r}")
    for name, value, ok, allowed in checks:
        if not ok(value):
            raise ValueError(f"{name} must be {allowed}, got {value!r}")
    lr = cfg.optimizer.lr
    if not is_number(lr) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"optimizer.lr must be a finite number > 0, got {lr!r}")


def differing_keys(
    a: DictConfig, b: DictConfig, ignore: tuple[str, ...] = RESUMABLE_KEYS
) -> list[str]:
    """Dotted keys whose values differ between two configs, skipping ``ignore`` prefixes and
    keys ``a`` lacks that ``b`` leaves empty or off (settings added to pes_rl since ``a`` was
    saved, such as ``env.wrappers: []`` or ``agent.sync_pairs: false``)."""

    def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                out.update(flatten(value, f"{prefix}{key}."))
            return out
        return {prefix[:-1]: node}

    flat_a = flatten(OmegaConf.to_container(a, resolve=True))
    flat_b = flatten(OmegaConf.to_container(b, resolve=True))
    keys = sorted(set(flat_a) | set(flat_b))

    def ignored(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in ignore)

    def added_empty(key: str) -> bool:  # a key added since ``a`` was saved, left empty
        value = flat_b.get(key)
        return key not in flat_a and (value is None or value is False or value == [])

    return [
        k for k in keys if not ignored(k) and not added_empty(k) and flat_a.get(k) != flat_b.get(k)
    ]
