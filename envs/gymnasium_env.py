"""Any Gymnasium env, stepped on the host: ``envs.make("gym/Swimmer-v5", **make_kwargs)``.

The engine runs one sub-env per particle in a ``gymnasium.vector`` env (sync or async) with
autoreset DISABLED: it resets finished sub-envs itself, with seeds it chooses (antithetic
partners get the same seed), so no reset transition ever reaches a window, an accumulator or an
episode return, whatever Gymnasium's default autoreset mode. Terminated and truncated are both
episode ends.

Wrappers (``env.wrappers``) are applied in order to every sub-env, and to the single env that
evaluation and videos use (:meth:`GymnasiumEnv.make_single`). Each is an import path
(``gymnasium.wrappers.FlattenObservation``, or ``module:Name``) or a mapping
``{path: ..., kwargs: {...}}``. Dict and Tuple observations are flattened into one Box after
them (``FlattenObservation``), with a one-line warning; a space Gymnasium cannot flatten
(a custom space such as MiniGrid's mission string, Graph, Sequence), alone or inside a Dict or
Tuple, is refused in one line that names it and its key.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator

from pes_rl.checks import check_kwargs, init_chain, is_positive_int
from pes_rl.envs.base import EnvSpec
from pes_rl.envs.quiet import mujoco_warnings_filtered

VECTORIZATIONS = ("sync", "async")
Wrapper = Callable[[gymnasium.Env], gymnasium.Env]


def import_wrapper(entry: Any, index: int) -> Wrapper:
    """One ``env.wrappers`` entry (an import path, or ``{path, kwargs}``) as a callable that
    wraps an env; a one-line ValueError naming ``env.wrappers[index]`` when it is not one."""
    where = f"env.wrappers[{index}]"
    kwargs: Any = {}
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"path", "kwargs"}
        if unknown or "path" not in entry:
            raise ValueError(
                f"{where} must be an import path or a mapping {{path: ..., kwargs: {{...}}}}, "
                f"got {dict(entry)!r}"
            )
        path, kwargs = entry["path"], entry.get("kwargs") or {}
    else:
        path = entry
    if not isinstance(path, str) or not isinstance(kwargs, Mapping):
        raise ValueError(f"{where} must be an import path with a kwargs mapping, got {entry!r}")
    module_name, _, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    try:
        wrapper = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"{where}: cannot import {path!r} ({error})") from None
    if not callable(wrapper):
        raise ValueError(f"{where}: {path!r} is not a wrapper class or function")
    check_kwargs(kwargs, [wrapper], f"{where}.kwargs", path, skip={"env"})
    return functools.partial(wrapper, **kwargs)


def gym_takers(gym_id: str) -> list[Callable[..., Any]] | None:
    """Where ``env.kwargs`` of ``env=gym`` go past the adapter: ``gymnasium.make`` and the
    id's entry point with its base classes (for ``envs.register_prefix``); None when the id
    cannot be found (the adapter then says why)."""
    module_name, _, name = gym_id.rpartition(":")
    try:
        if module_name:
            importlib.import_module(module_name)
        entry_point = gymnasium.spec(name).entry_point
        creator = entry_point if callable(entry_point) else load_env_creator(entry_point)
    except (gymnasium.error.Error, ImportError, AttributeError, ValueError):
        return None
    return [functools.partial(gymnasium.make, gym_id), *init_chain(creator)]


def unflattenable_part(
    space: spaces.Space, path: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], spaces.Space] | None:
    """The first part of an observation ``space`` that ``gymnasium.spaces.flatten_space``
    cannot turn into a Box, with its key path inside Dicts and Tuples (``()``: the whole
    space); None when all of it flattens."""
    if isinstance(space, spaces.Dict | spaces.Tuple):
        items = space.spaces.items() if isinstance(space, spaces.Dict) else enumerate(space.spaces)
        for key, child in items:
            found = unflattenable_part(child, (*path, str(key)))
            if found is not None:
                return found
        return None
    try:
        flat = spaces.flatten_space(space)
    except NotImplementedError:  # a space gymnasium does not know
        flat = None
    return None if isinstance(flat, spaces.Box) else (path, space)


def flatten_problem(gym_id: str, space: spaces.Space) -> str | None:
    """One line naming the part of an observation ``space`` that cannot be flattened (a
    custom space such as MiniGrid's mission string, Graph, Sequence), its key and a wrapper
    that helps; None when all of it flattens."""
    found = unflattenable_part(space)
    if found is None:
        return None
    path, part = found
    if not path:
        return (
            f"{gym_id}: the observation space is a {type(part).__name__}, which cannot be "
            "flattened to a vector; add a wrapper that makes it a flat Box to env.wrappers"
        )
    return (
        f"{gym_id}: observation key {'.'.join(path)!r} is a {type(part).__name__}, which "
        "cannot be flattened to a vector; drop it with a wrapper in env.wrappers "
        "(gymnasium.wrappers.FilterObservation keeps the keys you list; MiniGrid: "
        "env.wrappers=[minigrid.wrappers.ImgObsWrapper,gymnasium.wrappers.FlattenObservation])"
    )


class GymnasiumEnv:
    """A Gymnasium id plus the spec the policies and engine need; stepped on the host."""

    is_host = True

    def __init__(
        self,
        gym_id: str,
        vectorization: str = "sync",
        horizon: int | None = None,
        *,
        wrappers: Sequence[Any] = (),
        **make_kwargs: Any,
    ):
        if horizon is not None and not is_positive_int(horizon):
            raise ValueError(f"env.kwargs.horizon must be an int >= 1 or null, got {horizon!r}")
        if vectorization not in VECTORIZATIONS:
            raise ValueError(
                f"vectorization must be one of {list(VECTORIZATIONS)}, got {vectorization!r}"
            )
        if isinstance(wrappers, str | Mapping) or not isinstance(wrappers, Sequence):
            raise ValueError(f"env.wrappers must be a list, got {wrappers!r}")
        self.gym_id = gym_id
        self.vectorization = vectorization
        self.make_kwargs = make_kwargs
        self.wrappers = [import_wrapper(entry, i) for i, entry in enumerate(wrappers)]
        try:
            with mujoco_warnings_filtered():
                probe = gymnasium.make(gym_id, **make_kwargs)
        except (gymnasium.error.Error, ModuleNotFoundError, ImportError, AttributeError) as error:
            raise ValueError(
                f"unknown Gymnasium env id {gym_id!r} ({type(error).__name__}: {error}); "
                "use a registered id such as 'Swimmer-v5' or 'module:Id' for a third-party env"
            ) from error
        probe = self.wrap(probe)
        observation_space, action_space = probe.observation_space, probe.action_space
        problem = flatten_problem(gym_id, observation_space)
        if problem:
            probe.close()
            raise ValueError(problem)
        if isinstance(observation_space, spaces.Dict | spaces.Tuple):
            warnings.warn(
                f"{gym_id}: {type(observation_space).__name__} observations are flattened into "
                "one Box (gymnasium.wrappers.FlattenObservation after env.wrappers)",
                stacklevel=2,
            )
            self.wrappers.append(gymnasium.wrappers.FlattenObservation)
            probe = gymnasium.wrappers.FlattenObservation(probe)
            observation_space = probe.observation_space
        max_steps = probe.spec.max_episode_steps if probe.spec is not None else None
        # MuJoCo envs: one sub-env's physics state can be copied into the others (TES).
        self.can_set_state = all(
            callable(getattr(probe.unwrapped, name, None)) for name in ("set_state", "state_vector")
        )
        probe.close()
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) > 1:
            raise ValueError(
                f"observation space {observation_space} of {gym_id!r} is not supported: pes_rl "
                "policies need a flat Box observation; add a wrapper that makes one to "
                "env.wrappers (e.g. gymnasium.wrappers.FlattenObservation)"
            )
        if not isinstance(action_space, spaces.Box | spaces.Discrete):
            raise ValueError(
                f"action space {action_space} of {gym_id!r} is not supported: pes_rl needs Box "
                "or Discrete actions (flatten MultiDiscrete/Dict actions with a wrapper)"
            )
        self.spec = EnvSpec(
            observation_space=spaces.Box(
                observation_space.low.astype(np.float32),
                observation_space.high.astype(np.float32),
                observation_space.shape,
                np.float32,
            ),
            action_space=action_space,
            horizon=horizon if horizon is not None else max_steps,
        )

    def make_single(self, **extra_kwargs: Any) -> gymnasium.Env:
        """One env of the id with ``env.kwargs`` (updated by ``extra_kwargs``, e.g.
        ``render_mode``), wrapped as every sub-env is: what training, evaluation and videos
        step."""
        with mujoco_warnings_filtered():
            env = gymnasium.make(self.gym_id, **(self.make_kwargs | extra_kwargs))
        return self.wrap(env)

    def wrap(self, env: gymnasium.Env) -> gymnasium.Env:
        """``env`` inside the wrappers, in order."""
        for wrapper in self.wrappers:
            env = wrapper(env)
        return env

    def make_vector(self, num_envs: int) -> gymnasium.vector.VectorEnv:
        """``num_envs`` wrapped sub-envs that never reset on their own."""
        autoreset = {"autoreset_mode": gymnasium.vector.AutoresetMode.DISABLED}
        env_fns = [self.make_single] * num_envs
        if self.vectorization == "async":
            # forking a process that runs JAX can deadlock
            return gymnasium.vector.AsyncVectorEnv(env_fns, context="spawn", **autoreset)
        return gymnasium.vector.SyncVectorEnv(env_fns, **autoreset)

    def __repr__(self) -> str:
        return f"GymnasiumEnv({self.gym_id!r})"
