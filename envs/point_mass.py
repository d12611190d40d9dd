"""A point mass pushed to the origin: a complete pes_rl JAX env in 25 lines (README example)."""

import jax
import jax.numpy as jnp
from gymnasium import spaces

from pes_rl.envs import Env, EnvSpec, State


class PointMass(Env):
    """Position and velocity in 2D; the action is a force; reward = −distance to the origin."""

    spec = EnvSpec(
        observation_space=spaces.Box(-jnp.inf, jnp.inf, (4,)),
        action_space=spaces.Box(-1.0, 1.0, (2,)),
        horizon=100,  # the engine's episode clock ends episodes after 100 steps
    )

    def reset(self, key: jax.Array) -> State:
        obs = jnp.concatenate([jax.random.uniform(key, (2,), minval=-1, maxval=1), jnp.zeros(2)])
        return State(inner=None, obs=obs, reward=jnp.zeros(()), done=jnp.zeros(()))

    def step(self, state: State, action: jax.Array) -> State:
        velocity = 0.9 * state.obs[2:] + 0.1 * action
        position = state.obs[:2] + 0.1 * velocity
        reward = -jnp.linalg.norm(position)
        return state.replace(obs=jnp.concatenate([position, velocity]), reward=reward)


def make_env() -> PointMass:
    return PointMass()
