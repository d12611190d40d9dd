"""gymnax envs on the JAX engine: ``envs.make("gymnax/CartPole-v1")``.

gymnax's ``step`` resets an episode that ended inside the same call, so its output after the
last step is already the next episode's first observation. The adapter calls ``step_env``,
the step without that reset, and leaves resets to the engine: a reset transition is never
credited to the episode that ended (PES would be biased by it). gymnax envs draw randomness
in ``step`` too, so the adapter keeps a PRNG key in the state and splits it every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from pes_rl.checks import init_chain, is_positive_int
from pes_rl.envs.base import Env, EnvSpec, State

INSTALL = "pip install gymnax six (both are pes_rl dependencies: reinstall with pip install -e .)"


def import_gymnax():
    """gymnax, or a ValueError that names the install command."""
    try:
        import gymnax
    except ImportError as error:
        raise ValueError(f"gymnax envs need the gymnax package ({error}); {INSTALL}") from None
    return gymnax


def twin_hint(gym_id: str | None) -> str | None:
    """A one-line hint when a Gymnasium id trained on the host has a gymnax twin (None: the
    env is no Gymnasium id)."""
    if gym_id is None:
        return None
    try:
        import gymnax
    except ImportError:
        return None
    if gym_id not in gymnax.registered_envs:
        return None
    return (
        f"hint: {gym_id} has a JAX twin in gymnax: env=gymnax env.id={gym_id} steps it on the "
        "JAX engine (CartPole-v1: ~200x the env-steps/s of the host engine on 2 CPU cores)"
    )


def gymnax_takers(name: str) -> list[Callable[..., Any]] | None:
    """Where ``env.kwargs`` of ``env=gymnax`` go past the adapter: the env's class (for
    ``envs.register_prefix``); None when gymnax or the name is missing (the adapter says so)."""
    try:
        gymnax = import_gymnax()
    except ValueError:
        return None
    name = name.removeprefix("gymnax/")
    if name not in gymnax.registered_envs:
        return None
    return init_chain(type(gymnax.make(name)[0]))


def as_gymnasium_space(space: Any) -> spaces.Box | spaces.Discrete:
    """A gymnax Box or Discrete space as Gymnasium's (observations flattened by the adapter)."""
    kind = type(space).__name__
    if kind == "Discrete":
        return spaces.Discrete(int(space.n))
    if kind == "Box":
        shape = tuple(space.shape)
        low = np.broadcast_to(np.asarray(space.low, np.float32), shape)
        high = np.broadcast_to(np.asarray(space.high, np.float32), shape)
        return spaces.Box(low, high, shape, np.float32)
    raise ValueError(f"gymnax space {space} is not supported: pes_rl needs Box or Discrete")


class GymnaxEnv(Env):
    """A gymnax env (and its ``EnvParams``) with a pes_rl spec; the engine owns resets."""

    def __init__(
        self,
        name: str | None = None,
        episode_length: int | None = None,
        *,
        gymnax_env: Any = None,
        env_params: Any = None,
        **make_kwargs: Any,
    ):
        if gymnax_env is None:
            gymnax = import_gymnax()
            name = name.removeprefix("gymnax/")
            if name not in gymnax.registered_envs:
                raise ValueError(
                    f"unknown gymnax env {name!r}: with env=gymnax, env.id must be one of "
                    f"{gymnax.registered_envs}"
                )
            gymnax_env, env_params = gymnax.make(name, **make_kwargs)
        self.gymnax_env = gymnax_env
        self.params = gymnax_env.default_params if env_params is None else env_params
        self.name = name or type(gymnax_env).__name__
        limit = int(getattr(self.params, "max_steps_in_episode", 0)) or None
        if episode_length is not None and not is_positive_int(episode_length):
            raise ValueError(
                f"env.kwargs.episode_length must be an int >= 1 or null, got {episode_length!r}"
            )
        observation_space = as_gymnasium_space(gymnax_env.observation_space(self.params))
        self.spec = EnvSpec(
            observation_space=spaces.Box(
                observation_space.low.reshape(-1), observation_space.high.reshape(-1),
                (int(np.prod(observation_space.shape)),), np.float32,
            ),  # fmt: skip
            action_space=as_gymnasium_space(gymnax_env.action_space(self.params)),
            horizon=episode_length or limit,
        )

    def reset(self, key: jax.Array) -> State:
        key, reset_key = jax.random.split(key)
        obs, env_state = self.gymnax_env.reset(reset_key, self.params)
        return State(
            inner={"env_state": env_state, "key": key},
            obs=jnp.asarray(obs, jnp.float32).reshape(-1),
            reward=jnp.zeros(()),
            done=jnp.zeros(()),
        )

    def step(self, state: State, action: jax.Array) -> State:
        key, step_key = jax.random.split(state.inner["key"])
        obs, env_state, reward, done, _ = self.gymnax_env.step_env(
            step_key, state.inner["env_state"], action, self.params
        )
        return state.replace(
            inner={"env_state": env_state, "key": key},
            obs=jnp.asarray(obs, jnp.float32).reshape(-1),
            reward=jnp.asarray(reward, jnp.float32).reshape(()),
            done=jnp.asarray(done, jnp.float32).reshape(()),
        )

    def __repr__(self) -> str:
        return f"GymnaxEnv({self.name!r})"
