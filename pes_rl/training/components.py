"""The env and the policy a run's config describes, built the same way for training and after.

``pes_rl.train`` builds them to train θ; ``pes_rl.load`` rebuilds them to use θ afterwards.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from pes_rl import envs, policies


def env_id_of(cfg: DictConfig) -> str:
    """The ``envs.make`` id: ``env.id`` under its family's prefix (``brax/ant``), if any."""
    return f"{cfg.env.family}/{cfg.env.id}" if cfg.env.get("family") else cfg.env.id


def make_env(cfg: DictConfig):
    """``envs.make(env_id_of(cfg), **env.kwargs)``, with ``env.wrappers`` for Gymnasium envs."""
    env = OmegaConf.to_container(cfg.env, resolve=True)
    kwargs = dict(env.get("kwargs") or {})
    wrappers = env.get("wrappers") or []
    if wrappers:
        if env.get("family") != "gym":
            raise ValueError(f"env.wrappers wraps Gymnasium envs (env=gym), not {env_id_of(cfg)}")
        kwargs["wrappers"] = wrappers
    return envs.make(env_id_of(cfg), **kwargs)


def make_policy(cfg: DictConfig, env) -> policies.Policy:
    """``policy.name`` with ``policy.kwargs``; ``auto`` is ``constant`` for meta tasks (θ drives
    them directly) and ``linear`` for RL envs."""
    name = cfg.policy.name
    if name == "auto":
        name = "constant" if env.spec.default_action is not None else "linear"
    return policies.make(name, env, **(cfg.policy.get("kwargs") or {}))
