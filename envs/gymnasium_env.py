"""Any Gymnasium env, stepped on the host: ``envs.make("gym/Swimmer-v5", **make_kwargs)``.

The engine runs one sub-env per particle in a ``gymnasium.vector`` env (sync or async) with
autoreset DISABLED: it resets finished sub-envs itself, with seeds it chooses (antithetic
partners get the same seed), so no reset transition ever reaches a window, an accumulator or an
episode return, whatever Gymnasium's default autoreset mode. Terminated and truncated are both
episode ends.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from pes_rl.checks import is_positive_int
from pes_rl.envs.base import EnvSpec

VECTORIZATIONS = ("sync", "async")


class GymnasiumEnv:
    """A Gymnasium id plus the spec the policies and engine need; stepped on the host."""

    is_host = True

    def __init__(
        self,
        gym_id: str,
        vectorization: str = "sync",
        horizon: int | None = None,
        **make_kwargs: Any,
    ):
        if horizon is not None and not is_positive_int(horizon):
            raise ValueError(f"env.kwargs.horizon must be an int >= 1 or null, got {horizon!r}")
        if vectorization not in VECTORIZATIONS:
            raise ValueError(
                f"vectorization must be one of {list(VECTORIZATIONS)}, got {vectorization!r}"
            )
        try:
            probe = gymnasium.make(gym_id, **make_kwargs)
        except (gymnasium.error.Error, ModuleNotFoundError, ImportError, AttributeError) as error:
            raise ValueError(
                f"unknown Gymnasium env id {gym_id!r} ({type(error).__name__}: {error}); "
                "use a registered id such as 'Swimmer-v5' or 'module:Id' for a third-party env"
            ) from error
        observation_space, action_space = probe.observation_space, probe.action_space
        max_steps = probe.spec.max_episode_steps if probe.spec is not None else None
        probe.close()
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) > 1:
            raise ValueError(
                f"observation space {observation_space} of {gym_id!r} is not supported: pes_rl "
                "policies need a flat Box observation; wrap the env with "
                "gymnasium.wrappers.FlattenObservation (Dict/Tuple/image spaces) and register it"
            )
        if not isinstance(action_space, spaces.Box | spaces.Discrete):
            raise ValueError(
                f"action space {action_space} of {gym_id!r} is not supported: pes_rl needs Box "
                "or Discrete actions (flatten MultiDiscrete/Dict actions with a wrapper)"
            )
        self.gym_id = gym_id
        self.vectorization = vectorization
        self.make_kwargs = make_kwargs
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

    def make_vector(self, num_envs: int) -> gymnasium.vector.VectorEnv:
        """``num_envs`` sub-envs that never reset on their own."""
        vector_kwargs: dict[str, Any] = {"autoreset_mode": gymnasium.vector.AutoresetMode.DISABLED}
        if self.vectorization == "async":
            vector_kwargs["context"] = "spawn"  # forking a process that runs JAX can deadlock
        return gymnasium.make_vec(
            self.gym_id,
            num_envs=num_envs,
            vectorization_mode=self.vectorization,
            vector_kwargs=vector_kwargs,
            **self.make_kwargs,
        )

    def __repr__(self) -> str:
        return f"GymnasiumEnv({self.gym_id!r})"
