"""The engine for host envs (any Gymnasium env): the same windows, stepped in Python.

One ``gymnasium.vector`` env holds one sub-env per particle; every step is one jitted, batched
policy call for all particles and one vector step. The bookkeeping is
:func:`pes_rl.stepping.engine.account_step`, the function the JAX engine scans, jitted once per step
here. Finished sub-envs are reset by the engine with seeds drawn from the window's key,
antithetic partners alike.
"""

from __future__ import annotations

import functools
import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from jax.experimental import multihost_utils
from jax.flatten_util import ravel_pytree

from pes_rl import normalization
from pes_rl.envs.gymnasium_env import GymnasiumEnv
from pes_rl.stepping import engine, memory, sharding
from pes_rl.stepping.engine import Particles, Window
from pes_rl.stepping.evaluation import Evaluation, mean_return
from pes_rl.stepping.population import Population


def seed_stream(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key: how host envs draw reset seeds from the run's
    random stream, so seeded runs stay reproducible."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())


def episode_seeds(key: jax.Array, count: int) -> np.ndarray:
    """The reset seeds of ``count`` episodes drawn from ``key``: one rule for training resets,
    evaluation episodes and the ones ``pes-rl evaluate`` films."""
    return seed_stream(key).integers(0, 2**31 - 1, size=count)


class HostPopulation(Population):
    """``num_particles`` sub-envs of a Gymnasium env and the jitted batched policy.

    In a ``train.distributed`` run this process steps only its slice of the particles; every
    process passes and gets back the whole population, and after each window the slices'
    results are gathered, so the estimators see all N particles and compute the same update in
    every process (``split_over_processes=False``: this process steps them all, as an
    evaluation does). MuJoCo envs can copy one sub-env's state into the others (``set_state``):
    TES runs its Algorithm 1 on them.
    """

    jittable = False  # stepped from Python; the policy call inside each step is jitted
    can_stagger = False  # sub-envs cannot be advanced one at a time
    can_shorten_windows = False
    restorable = False  # Gymnasium sub-envs cannot be saved: a resume starts fresh episodes
    can_split_over_devices = False

    def __init__(
        self, env: GymnasiumEnv, policy, num_particles: int, antithetic: bool = False,
        mesh=None, split_over_processes: bool = True,
    ):  # fmt: skip
        if mesh is not None:
            raise ValueError(
                f"a device mesh needs a JAX env; {env!r} steps on the host (use train.devices=1)"
            )
        processes = jax.process_count() if split_over_processes else 1
        process = jax.process_index() if split_over_processes else 0
        names = ("process", "processes")  # a distributed run: each process steps a slice
        sharding.check_split(num_particles, processes, names, antithetic, "fewer processes")
        super().__init__(env, policy, num_particles, antithetic)
        self.processes = processes
        share = num_particles // processes
        self.owned = slice(process * share, (process + 1) * share)
        self.can_copy_state = env.can_set_state
        self.discrete = isinstance(env.spec.action_space, spaces.Discrete)
        self._vector = None
        self._was_reset = False
        act = self.act

        @jax.jit
        def act_batch(theta, theta_after_end, ended, obs, obs_norm):
            params = jnp.where(ended[:, None], theta_after_end, theta)
            return jax.vmap(act)(params, normalization.normalize(obs_norm, obs))

        self._act_batch = act_batch
        self._account = jax.jit(
            functools.partial(engine.account_step, horizon=env.spec.horizon),
            static_argnames=("autoreset", "track_obs"),
        )

    @property
    def vector(self) -> gymnasium.vector.VectorEnv:
        """This process's sub-envs, made when first used."""
        if self._vector is None:
            self._vector = self.env.make_vector(self.owned.stop - self.owned.start)
        return self._vector

    def particle_bytes(self) -> int:
        return memory.particle_bytes(
            self.policy, 4 * math.prod(self.env.spec.observation_space.shape)
        )

    def reset(self, key: jax.Array) -> Particles:
        seeds = episode_seeds(key, self.num_groups)[self.reset_group][self.owned]
        obs, _ = self.vector.reset(seed=[int(s) for s in seeds])
        self._was_reset = True
        obs = self._gather(obs.astype(np.float32))
        num = self.num_particles
        return Particles(obs, np.zeros(num, np.int32), np.zeros(num, np.float32))

    def shared(self) -> HostPopulation:
        return HostPopulation(self.env, self.policy, 1, split_over_processes=False)

    def copy_state(self, source: HostPopulation, particles: Particles) -> Particles:
        """Sets every sub-env to ``source``'s sub-env's physics state (``set_state(qpos,
        qvel)``) and episode step count, and returns its particle bookkeeping N times."""
        (state, elapsed), count = source.physics_states()[0], self.owned.stop - self.owned.start
        if not self._was_reset:  # Gymnasium refuses to touch an env before its first reset
            self.vector.reset(seed=[0] * count)
            self._was_reset = True
        num_positions = self.vector.get_attr("init_qpos")[0].size
        self.vector.call("set_state", state[:num_positions], state[num_positions:])
        self.vector.set_attr("_elapsed_steps", [elapsed] * count)  # Gymnasium's TimeLimit
        return jax.tree.map(
            lambda x: np.broadcast_to(np.asarray(x), (self.num_particles, *np.shape(x)[1:])),
            particles,
        )

    def physics_states(self) -> list[tuple[np.ndarray, int]]:
        """([qpos, qvel], steps since its episode began) of each of this process's sub-envs."""
        states = self.vector.call("state_vector")
        elapsed = self.vector.get_attr("_elapsed_steps")
        return [(np.asarray(s), int(e)) for s, e in zip(states, elapsed, strict=True)]

    @classmethod
    def make_episode_returns(cls, env, policy, num_episodes, num_steps):
        return make_host_episode_returns(env, policy, num_episodes, num_steps)

    @classmethod
    def make_evaluate(cls, env, policy, num_episodes, num_steps):
        return make_host_evaluate(env, policy, num_episodes, num_steps)

    def unroll(
        self,
        particles: Particles,
        theta: jax.Array,
        key: jax.Array,
        steps: int,
        *,
        theta_after_end: jax.Array | None = None,
        reset_group: np.ndarray | None = None,
        autoreset: bool = True,
        obs_norm: normalization.ObsNormState | None = None,
        sync_groups: bool = False,
    ) -> tuple[Particles, Window]:
        """Advances every sub-env ``steps`` steps; see :func:`pes_rl.stepping.engine.unroll`.

        With ``autoreset=False`` a finished particle is masked out (its sub-env is reset so
        the vector env can keep stepping, but nothing it does is counted), and the window
        stops early once every particle has finished. With ``autoreset=True`` a particle whose
        second episode ends in the window waits the same way, and its sub-env is reset once
        more at the window's end: the next window starts it on a fresh episode. With
        ``sync_groups`` an end stops the particle until every particle of its group has ended;
        the group's sub-envs are then reset together at a window's end.
        """
        group = np.arange(self.num_particles) if reset_group is None else np.asarray(reset_group)
        num_groups = int(group.max()) + 1  # every process draws the seeds of all groups
        theta_after_end = theta if theta_after_end is None else theta_after_end
        owned = self.owned
        group, theta, theta_after_end = group[owned], theta[owned], theta_after_end[owned]
        particles = jax.tree.map(lambda x: np.asarray(x)[owned], particles)
        rng = seed_stream(key)
        obs = np.asarray(particles.env_state, np.float32)
        tally = engine.start_tally(particles, obs.reshape(len(obs), -1).shape[1])
        restarts_in_window = autoreset and not sync_groups

        for _ in range(steps):
            alive = np.asarray(tally.alive)
            if not alive.any():
                break
            action = np.asarray(self._act_batch(theta, theta_after_end, tally.ended, obs, obs_norm))
            next_obs, reward, terminated, truncated, _ = self.vector.step(action)
            tally, done = self._account(
                tally, obs, np.asarray(reward, np.float32), terminated | truncated, alive,
                autoreset=restarts_in_window, track_obs=obs_norm is not None,
            )  # fmt: skip
            # Masked-out particles keep stepping (the vector steps them all): reset them too.
            needs_reset = np.asarray(done) | terminated | truncated
            group_seeds = rng.integers(0, 2**31 - 1, size=num_groups)
            next_obs = np.asarray(next_obs, np.float32).reshape(obs.shape)
            obs = self._reset_where(needs_reset, group_seeds[group], next_obs)
        waiting = np.asarray(engine.waiting(tally))
        if autoreset and sync_groups:  # a group whose particles have all ended starts together
            ready, tally = engine.restart_whole_groups(tally, group)
            ready = np.asarray(ready)
            if ready.any():
                group_seeds = rng.integers(0, 2**31 - 1, size=num_groups)
                obs = self._reset_where(ready, group_seeds[group], obs)
        elif autoreset and waiting.any():
            group_seeds = rng.integers(0, 2**31 - 1, size=num_groups)
            obs = self._reset_where(waiting, group_seeds[group], obs)
        particles, window = engine.finish(obs, tally)
        if self.processes == 1:
            return particles, window
        per_particle, totals = engine.split_window(window)
        particles, per_particle = self._gather((particles, per_particle))
        totals = jax.tree.map(
            lambda x: np.sum(x, axis=0), multihost_utils.process_allgather(totals)
        )
        return particles, Window(*per_particle, *totals)

    def _reset_where(self, mask: np.ndarray, seeds: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """``obs`` [n, ...] with the sub-envs in ``mask`` reset from ``seeds`` (one each)."""
        if not mask.any():
            return obs
        reset_obs, _ = self.vector.reset(seed=[int(s) for s in seeds], options={"reset_mask": mask})
        mask = mask.reshape(mask.shape + (1,) * (obs.ndim - 1))
        return np.where(mask, np.asarray(reset_obs, np.float32).reshape(obs.shape), obs)

    def _gather(self, tree):
        """Every process's slice of the particle axis, in process order (or ``tree`` itself in
        a one-process run)."""
        if self.processes == 1:
            return tree
        return multihost_utils.process_allgather(tree, tiled=True)

    def close(self) -> None:
        """Closes this process's sub-envs (an async vector env's worker processes too)."""
        if self._vector is not None:
            self._vector.close()
            self._vector = None


def make_host_episode_returns(
    env: GymnasiumEnv, policy, num_episodes: int, num_steps: int
) -> Evaluation:
    """``episode_returns(params, obs_norm, key) -> [num_episodes]``: one complete episode of θ
    unperturbed on each of ``num_episodes`` sub-envs (at most ``num_steps`` steps when the env
    has no time limit), reset with seeds drawn from ``key``. ``episode_returns.close()`` closes
    the sub-envs (made at the first call)."""
    population = HostPopulation(env, policy, num_episodes, split_over_processes=False)

    def episode_returns(params, obs_norm, key: jax.Array) -> np.ndarray:
        flat = ravel_pytree(params)[0]
        theta = jnp.broadcast_to(flat, (num_episodes, flat.size))
        length = env.spec.horizon or num_steps
        _, window = population.unroll(
            population.reset(key), theta, key, length, autoreset=False, obs_norm=obs_norm
        )
        return np.asarray(window.reward_first)

    return Evaluation(episode_returns, population.close)


def make_host_evaluate(
    env: GymnasiumEnv, policy, num_episodes: int, num_steps: int
) -> Evaluation:
    """``evaluate(params, obs_norm, key) -> {"eval_return": ...}``: the mean of
    :func:`make_host_episode_returns`; ``evaluate.close()`` closes its sub-envs."""
    episode_returns = make_host_episode_returns(env, policy, num_episodes, num_steps)

    def evaluate(params, obs_norm, key: jax.Array) -> dict:
        return {"eval_return": float(mean_return(episode_returns(params, obs_norm, key)))}

    return Evaluation(evaluate, episode_returns.close)
