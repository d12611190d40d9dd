"""Name → env constructor registry behind ``envs.make`` and ``envs.list_envs``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from pes_rl.checks import check_kwargs
from pes_rl.envs.base import Env

# Given an env's name, the callables its adapter's **kwargs travel on to (a Gymnasium env class,
# a user's factory); None when the name cannot be resolved (the adapter then says why).
KwargsTakers = Callable[[str], Sequence[Callable] | None]

_REGISTRY: dict[str, Callable[..., Env]] = {}
# Prefixes that route to adapters instead of the registry: "gym/<id>", "brax/<name>".
_PREFIXES: dict[str, tuple[Callable[..., Env], KwargsTakers | None]] = {}


def register(env_id: str, constructor: Callable[..., Env]) -> None:
    """Adds ``constructor`` under ``env_id`` so that ``make(env_id)`` builds it."""
    _REGISTRY[env_id] = constructor


def register_prefix(
    prefix: str, constructor: Callable[..., Env], kwargs_takers: KwargsTakers | None = None
) -> None:
    """Routes ``make(f"{prefix}/<name>", **kw)`` to ``constructor("<name>", **kw)``.

    ``kwargs_takers(name)`` names where the keywords ``constructor`` does not take itself go,
    so that ``make`` can refuse one nobody takes; without it they are not checked.
    """
    _PREFIXES[prefix] = (constructor, kwargs_takers)


def list_envs() -> list[str]:
    """Ids of the built-in envs (plus the ``gym/<id>`` and ``brax/<name>`` families)."""
    return sorted(_REGISTRY)


def make(env_id: str, **kwargs) -> Env:
    """Builds an env by id: a built-in id, ``gym/<Gymnasium id>`` or ``brax/<Brax name>``.

    Keyword arguments are checked here, once for every family, against the signatures they
    reach (the constructor, and for adapters the env class or factory behind them).
    An adapter's keyword-only arguments (an already built env, Gymnasium wrappers) are for
    Python callers and not listed as ``env.kwargs``.

    Raises:
      ValueError: unknown id (the message lists the ids that exist) or a keyword argument the
        env does not take (the message names ``env.kwargs.<name>`` and the ones it takes).
    """
    if env_id in _REGISTRY:
        constructor = _REGISTRY[env_id]
        check_kwargs(kwargs, [constructor], "env.kwargs", f"env {env_id!r}")
        return constructor(**kwargs)
    prefix, _, name = env_id.partition("/")
    if name and prefix in _PREFIXES:
        constructor, kwargs_takers = _PREFIXES[prefix]
        parameters = list(inspect.signature(constructor).parameters.values())
        python_only = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        takers = [constructor, *((kwargs_takers and kwargs_takers(name)) or [])]
        check_kwargs(
            {k: v for k, v in kwargs.items() if k not in python_only}, takers, "env.kwargs",
            f"env {env_id!r}", skip={parameters[0].name, *python_only},
        )  # fmt: skip
        return constructor(name, **kwargs)
    families = ", ".join(f"'{p}/<name>'" for p in sorted(_PREFIXES))
    raise ValueError(
        f"unknown env id {env_id!r}: env id must be one of {list_envs()} or {families}"
    )
