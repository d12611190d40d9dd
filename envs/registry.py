"""Name → env constructor registry behind ``envs.make`` and ``envs.list_envs``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from pes_rl.envs.base import Env

_REGISTRY: dict[str, Callable[..., Env]] = {}
# Prefixes that route to adapters instead of the registry: "gym/<id>", "brax/<name>".
_PREFIXES: dict[str, Callable[..., Env]] = {}


def register(env_id: str, constructor: Callable[..., Env]) -> None:
    """Adds ``constructor`` under ``env_id`` so that ``make(env_id)`` builds it."""
    _REGISTRY[env_id] = constructor


def register_prefix(prefix: str, constructor: Callable[..., Env]) -> None:
    """Routes ``make(f"{prefix}/<name>", **kw)`` to ``constructor("<name>", **kw)``."""
    _PREFIXES[prefix] = constructor


def list_envs() -> list[str]:
    """Ids of the built-in envs (plus the ``gym/<id>`` and ``brax/<name>`` families)."""
    return sorted(_REGISTRY)


def make(env_id: str, **kwargs) -> Env:
    """Builds an env by id: a built-in id, ``gym/<Gymnasium id>`` or ``brax/<Brax name>``.

    Raises:
      ValueError: unknown id (the message lists the ids that exist) or keyword arguments the
        env does not take.
    """
    if env_id in _REGISTRY:
        constructor = _REGISTRY[env_id]
        try:
            inspect.signature(constructor).bind(**kwargs)
        except TypeError:
            accepted = list(inspect.signature(constructor).parameters)
            raise ValueError(
                f"env.kwargs {sorted(kwargs)} do not fit env {env_id!r}: it takes {accepted}"
            ) from None
        return constructor(**kwargs)
    prefix, _, name = env_id.partition("/")
    if name and prefix in _PREFIXES:
        return _PREFIXES[prefix](name, **kwargs)
    families = ", ".join(f"'{p}/<name>'" for p in sorted(_PREFIXES))
    raise ValueError(
        f"unknown env id {env_id!r}: env id must be one of {list_envs()} or {families}"
    )
