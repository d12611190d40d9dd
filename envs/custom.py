"""Your own JAX env, imported from a module: ``envs.make("jax/my_module:make_env", **kwargs)``.

The factory (any callable) gets ``env.kwargs`` and returns a pes_rl JAX env (``spec``,
``reset``, ``step``: see :mod:`pes_rl.envs.base`), a Brax env, a MuJoCo Playground env, or a
gymnax env (alone or as ``(env, env_params)``); those are adapted as ``env=brax``,
``env=playground`` and ``env=gymnax`` adapt theirs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pes_rl.checks import init_chain
from pes_rl.envs.base import Env, EnvSpec
from pes_rl.envs.brax_env import BraxEnv
from pes_rl.envs.gymnax_env import GymnaxEnv
from pes_rl.envs.playground_env import PlaygroundEnv


def import_factory(target: str) -> Callable[..., Any]:
    """The callable ``module:factory`` names (a ValueError saying why when there is none)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(
            f"env.id {target!r} must name a factory as 'module:function' (env=jax), "
            "e.g. pes_rl.envs.point_mass:make_env"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r} for env.id {target!r}: {error}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attribute!r} (env.id {target!r})")
    return factory


def make_custom(target: str, **kwargs: Any) -> Env:
    """``module:factory`` → ``factory(**kwargs)``, adapted to a pes_rl JAX env."""
    return adapt(import_factory(target)(**kwargs), target)


def factory_takers(target: str) -> list[Callable[..., Any]]:
    """Where ``env.kwargs`` of ``env=jax`` go: the factory (for ``envs.register_prefix``)."""
    return init_chain(import_factory(target))


def adapt(made: Any, target: str) -> Env:
    """A pes_rl env as is; a Brax or gymnax env wrapped; anything else a ValueError."""
    if isinstance(getattr(made, "spec", None), EnvSpec) and callable(getattr(made, "step", None)):
        return made
    if type(made).__module__.startswith("mujoco_playground"):
        return PlaygroundEnv(target, playground_env=made)
    if isinstance(made, tuple) and len(made) == 2 and hasattr(made[0], "step_env"):
        return GymnaxEnv(target, gymnax_env=made[0], env_params=made[1])
    if hasattr(made, "step_env") and hasattr(made, "default_params"):
        return GymnaxEnv(target, gymnax_env=made)
    if all(hasattr(made, a) for a in ("observation_size", "action_size", "reset", "step")):
        return BraxEnv(target, brax_env=made)
    raise ValueError(
        f"{target} returned {type(made).__name__}: expected a pes_rl JAX env (an EnvSpec "
        "`spec`, `reset(key)`, `step(state, action)`), a Brax env or a gymnax env"
    )
