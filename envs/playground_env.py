"""MuJoCo Playground envs on the JAX engine: ``envs.make("playground/CheetahRun")``.

Playground's state is Brax-shaped (``obs``, ``reward``, ``done``) with ``data`` where Brax has
``pipeline_state``; the adapter keeps the whole Playground state as the engine's ``inner`` and
leaves resets and time limits to the engine: the dm_control suite envs set ``done`` only on
NaN and do not enforce their 1000-step episodes, so the engine's clock ends them at
``episode_length``. Observation dicts are flattened in sorted key order.

Needs the optional extra: ``pip install -e ".[playground]"`` (``playground``, which pulls in
warp-lang). Physics ``impl``: ``jax`` (MJX in JAX) on CPU, where Playground's default ``warp``
compiles kernels for ~46 s and steps ~4x slower; ``warp`` on GPUs, Playground's own choice.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from pes_rl.checks import is_positive_int
from pes_rl.envs.base import Env, EnvSpec, State
from pes_rl.envs.quiet import quiet_model_loading

INSTALL = 'pip install -e ".[playground]"'
IMPLS = ("jax", "warp")


def default_impl() -> str:
    """``jax`` on CPU, ``warp`` on accelerators (see the module docstring)."""
    return "jax" if jax.default_backend() == "cpu" else "warp"


@contextmanager
def _git_without_waiting() -> Iterator[None]:
    """No credential prompt, and a stalled transfer (< 1 kB/s for 20 s) is an error."""
    settings = {
        "GIT_TERMINAL_PROMPT": "0", "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": "20",
    }  # fmt: skip
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update({k: v for k, v in settings.items() if previous[k] is None})
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)


def is_suite_env(playground_env: Any) -> bool:
    """A dm_control suite env (they never end early), not a locomotion or manipulation one."""
    return ".dm_control_suite." in type(playground_env).__module__


def flatten_obs(obs: Any) -> jax.Array:
    """An observation (array, or dict of arrays in sorted key order) as one float32 vector."""
    if isinstance(obs, dict):
        return jnp.concatenate([flatten_obs(obs[key]) for key in sorted(obs)])
    return jnp.asarray(obs, jnp.float32).reshape(-1)


def load(name: str, impl: str | None, config_overrides: dict) -> tuple[str, str, Any]:
    """``registry.load`` with the checks and one-line errors (missing extra, unknown name,
    offline model download)."""
    try:
        with quiet_model_loading():
            from mujoco_playground import registry
    except ImportError as error:
        raise ValueError(
            f"env=playground needs MuJoCo Playground ({error}); install it with {INSTALL}"
        ) from None
    name = name.removeprefix("playground/")
    if name not in registry.ALL_ENVS:
        raise ValueError(
            f"unknown Playground env {name!r}: with env=playground, env.id must be one of "
            f"{list(registry.ALL_ENVS)}"
        )
    impl = impl or default_impl()
    if impl not in IMPLS:
        raise ValueError(f"env.kwargs.impl must be one of {list(IMPLS)}, got {impl!r}")
    try:  # git must fail, not prompt or wait forever, when the model download cannot work
        with quiet_model_loading(), _git_without_waiting():
            env = registry.load(name, config_overrides={"impl": impl, **config_overrides})
    except (subprocess.CalledProcessError, OSError) as error:
        raise ValueError(
            f"Playground env {name!r} could not be created ({type(error).__name__}): "
            "locomotion and manipulation envs clone a model repository (mujoco_menagerie) "
            "from GitHub when first created, which needs a network connection; the 25 "
            f"dm_control suite envs work offline: {list(registry.dm_control_suite.ALL_ENVS)}"
        ) from None
    return name, impl, env


class PlaygroundEnv(Env):
    """A MuJoCo Playground env with a pes_rl spec; the engine owns resets and the clock."""

    def __init__(
        self,
        name: str | None = None,
        impl: str | None = None,
        episode_length: int | None = None,
        *,
        playground_env: Any = None,
        **config_overrides: Any,
    ):
        """A registered Playground env by ``name``, or an already built ``playground_env``."""
        if episode_length is not None and not is_positive_int(episode_length):
            raise ValueError(
                f"env.kwargs.episode_length must be an int >= 1 or null, got {episode_length!r}"
            )
        if playground_env is None:
            name, impl, playground_env = load(name, impl, config_overrides)
        self.playground_env = playground_env
        self.name = name or type(playground_env).__name__
        self.impl = impl
        config_length = int(getattr(self.playground_env._config, "episode_length", 0)) or None
        observation_size = self.playground_env.observation_size
        if isinstance(observation_size, dict):
            size = sum(int(np.prod(shape)) for shape in observation_size.values())
        else:
            size = int(np.prod(observation_size))
        self.spec = EnvSpec(
            observation_space=spaces.Box(-np.inf, np.inf, (size,), np.float32),
            action_space=spaces.Box(-1.0, 1.0, (self.playground_env.action_size,), np.float32),
            horizon=episode_length or config_length,
            # The suite's episodes end only on the clock (done flags only NaN), so the engine
            # prepares resets only for windows that reach it: a CheetahRun reset settles the
            # model for hundreds of physics steps, more than a whole window costs.
            early_termination=not is_suite_env(self.playground_env),
        )

    def reset(self, key: jax.Array) -> State:
        inner = self.playground_env.reset(key)
        return State(
            inner=inner,
            obs=flatten_obs(inner.obs),
            reward=jnp.zeros(()),
            done=jnp.zeros(()),
        )

    def step(self, state: State, action: jax.Array) -> State:
        inner = self.playground_env.step(state.inner, action)
        return state.replace(
            inner=inner,
            obs=flatten_obs(inner.obs),
            reward=jnp.asarray(inner.reward, jnp.float32).reshape(()),
            done=jnp.asarray(inner.done, jnp.float32).reshape(()),
        )

    def __repr__(self) -> str:
        return f"PlaygroundEnv({self.name!r})"
