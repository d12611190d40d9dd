"""The persistent vectorized rollout engine shared by every estimator.

N particles each carry their own env state, episode clock and running episode return. One call
of :func:`unroll` advances all of them ``unroll_length`` steps inside a single ``lax.scan`` over
a ``vmap``'d env step; nothing goes to the host inside the window. Per particle it returns the
window's reward split at the first episode end inside the window, so that estimators can weight
the part of the window that belongs to the old episode differently from what follows
(DESIGN.md, "The engine").

Sign convention, stated once: rewards are "higher is better"; estimators built on this engine
return the ascent direction of expected return, and the trainer hands ``-grad`` to optax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from pes_rl import normalization
from pes_rl.envs.base import Env

ActFn = Callable[[jax.Array, jax.Array], jax.Array]  # (flat θ of one particle, obs) -> action


@struct.dataclass
class Particles:
    """The persistent part of a population (or of TES's single shared trajectory)."""

    env_state: Any  # [N, ...] each particle's env state
    clock: jax.Array  # [N] int32: steps since the particle's episode began (−1: its episode
    # ended and it waits for its reset group's others to end too, ``sync_groups``)
    episode_return: jax.Array  # [N] float32: return of the current episode so far


WAITS_FOR_GROUP = -1  # the clock of a particle that waits for its group (``sync_groups``)


class Window(NamedTuple):
    """What one window of ``unroll_length`` steps produced."""

    reward_first: jax.Array  # [N] reward up to and including the first episode end in the window
    reward_rest: jax.Array  # [N] reward after the first episode end (0 if none ended)
    ended: jax.Array  # [N] bool: an episode ended inside the window
    steps_since_end: jax.Array  # [N] int32: steps of the episode now running (0: ended last step)
    steps_first: jax.Array  # [N] int32: steps in the part before (and at) the first episode end
    steps_rest: jax.Array  # [N] int32: steps after it (0: no end, or it fell on the last step)
    waiting: jax.Array  # [N] bool: stopped stepping (a second end; autoreset=False or
    # sync_groups: the first, or waiting for its group since an earlier window)
    completed_return_sum: jax.Array  # shape=(): Σ returns of episodes that ended in the window
    completed_count: jax.Array  # shape=(): number of episodes that ended in the window
    env_steps: jax.Array  # shape=(): real env steps taken (finished, masked particles excluded)
    idle_steps: jax.Array  # shape=(): particle-steps not taken (finished or waiting particles)
    obs_moments: normalization.ObsMoments  # observation sums for the running normalizer


PER_PARTICLE_FIELDS = 7  # Window's first fields are [N] arrays, the others population totals


def split_window(window: Window) -> tuple[tuple, tuple]:
    """(the per-particle fields, the population totals) of a window: how a population split
    over devices or processes gathers the first and sums the second."""
    return tuple(window[:PER_PARTICLE_FIELDS]), tuple(window[PER_PARTICLE_FIELDS:])


class Tally(NamedTuple):
    """Per-window bookkeeping carried step to step (shared by the JAX and host engines)."""

    clock: jax.Array  # [N] int32: steps since each particle's episode began
    episode_return: jax.Array  # [N] return of the running episode so far
    alive: jax.Array  # [N] bool: still stepping (False only when autoreset=False)
    ended: jax.Array  # [N] bool: an episode has ended in this window
    steps_since_end: jax.Array  # [N] int32
    steps_first: jax.Array  # [N] int32
    steps_rest: jax.Array  # [N] int32
    reward_first: jax.Array  # [N]
    reward_rest: jax.Array  # [N]
    completed_return_sum: jax.Array  # shape=()
    completed_count: jax.Array  # shape=()
    env_steps: jax.Array  # shape=() int32
    idle_steps: jax.Array  # shape=() int32
    obs_moments: normalization.ObsMoments


def start_tally(particles: Particles, obs_size: int) -> Tally:
    """A window's bookkeeping before its first step; a particle that waits for its group
    (clock −1) starts the window stopped, as if its episode had just ended."""
    num = particles.clock.shape[0]
    zeros = jnp.zeros(num, jnp.float32)
    waits = jnp.asarray(particles.clock) == WAITS_FOR_GROUP
    return Tally(
        clock=jnp.asarray(particles.clock, jnp.int32),
        episode_return=jnp.asarray(particles.episode_return, jnp.float32),
        alive=~waits,
        ended=waits,
        steps_since_end=jnp.zeros(num, jnp.int32),
        steps_first=jnp.zeros(num, jnp.int32),
        steps_rest=jnp.zeros(num, jnp.int32),
        reward_first=zeros,
        reward_rest=zeros,
        completed_return_sum=jnp.zeros(()),
        completed_count=jnp.zeros(()),
        env_steps=jnp.zeros((), jnp.int32),
        idle_steps=jnp.zeros((), jnp.int32),
        obs_moments=normalization.zero_moments(obs_size),
    )


def account_step(
    tally: Tally,
    obs: jax.Array,
    reward: jax.Array,
    env_done: jax.Array,
    stepping: jax.Array,
    horizon: int | None,
    autoreset: bool,
    track_obs: bool,
    scheduled: jax.Array | bool = True,
) -> tuple[Tally, jax.Array]:
    """Books one step of every particle; returns the new tally and which episodes ended.

    ``obs`` is what the policy saw (for the normalizer), ``reward``/``env_done`` what the env
    returned, ``stepping`` which particles really stepped, ``scheduled`` which were due to step
    (a staggered burn-in schedules fewer). An episode ends when the env says so or when its
    clock reaches the horizon. Its reward belongs to the episode it ends.

    A particle starts at most one new episode per window: the episode after its first end runs
    on the perturbation drawn for it (``theta_after_end``), and a particle whose second episode
    ends in the same window *waits*, unstepped and uncounted, for a fresh episode and a fresh
    perturbation at the next window. A perturbation that moved an end is then never credited
    with an episode that the end started (which would estimate the gradient of the reward rate,
    not of the episode's return; DESIGN.md, "The engine").
    """
    reward = jnp.where(stepping, reward, 0.0)
    clock = tally.clock + stepping
    done = env_done if horizon is None else env_done | (clock >= horizon)
    done = done & stepping
    episode_return = tally.episode_return + reward
    moments = tally.obs_moments
    if track_obs:
        moments = normalization.add_moments(moments, normalization.moments(obs, stepping))
    tally = Tally(
        clock=jnp.where(done, 0, clock),
        episode_return=jnp.where(done, 0.0, episode_return),
        alive=tally.alive & ~(done & tally.ended) if autoreset else tally.alive & ~done,
        ended=tally.ended | done,
        steps_since_end=jnp.where(done, 0, tally.steps_since_end + stepping),
        steps_first=tally.steps_first + (stepping & ~tally.ended),
        steps_rest=tally.steps_rest + (stepping & tally.ended),
        reward_first=tally.reward_first + jnp.where(tally.ended, 0.0, reward),
        reward_rest=tally.reward_rest + jnp.where(tally.ended, reward, 0.0),
        completed_return_sum=tally.completed_return_sum
        + jnp.sum(jnp.where(done, episode_return, 0.0)),
        completed_count=tally.completed_count + jnp.sum(done),
        env_steps=tally.env_steps + jnp.sum(stepping),
        idle_steps=tally.idle_steps + jnp.sum(scheduled & ~stepping),
        obs_moments=moments,
    )
    return tally, done


def waiting(tally: Tally) -> jax.Array:
    """[N] bool: particles that stopped stepping in the window (a second episode end; with
    ``autoreset=False``, the first)."""
    return tally.ended & ~tally.alive


def finish(env_state: Any, tally: Tally) -> tuple[Particles, Window]:
    """The particles after a window and what the window produced."""
    window = Window(
        tally.reward_first, tally.reward_rest, tally.ended, tally.steps_since_end,
        tally.steps_first, tally.steps_rest, waiting(tally),
        tally.completed_return_sum, tally.completed_count, tally.env_steps, tally.idle_steps,
        tally.obs_moments,
    )  # fmt: skip
    return Particles(env_state, tally.clock, tally.episode_return), window


def tree_where(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Per-particle select: leaf[i] = on_true[i] if mask[i] else on_false[i]."""

    def select(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree.map(select, on_true, on_false)


def cast_like(tree: Any, reference: Any) -> Any:
    """Casts ``tree`` to the dtypes of ``reference``.

    Brax's reset state carries weak-typed scalars that ``step`` does not; carrying the reset
    state into a jitted window would re-compile it on the second call.
    """
    return jax.tree.map(lambda x, ref: jnp.asarray(x, dtype=ref.dtype), tree, reference)


def reset_particles(env: Env, keys: jax.Array) -> Particles:
    """Fresh episodes for a batch of reset keys [N], cast to the dtypes ``step`` returns."""
    env_state = jax.vmap(env.reset)(keys)
    stepped = jax.eval_shape(lambda s: jax.vmap(env.step)(s, _zero_actions(env, s)), env_state)
    env_state = cast_like(env_state, stepped)
    num = keys.shape[0]
    return Particles(env_state, jnp.zeros(num, jnp.int32), jnp.zeros(num, jnp.float32))


def _zero_actions(env: Env, env_state: Any) -> jax.Array:
    num = jax.tree.leaves(env_state)[0].shape[0]
    space = env.spec.action_space
    if hasattr(space, "n"):
        return jnp.zeros(num, jnp.int32)
    return jnp.zeros((num, *space.shape), jnp.float32)


def unroll(
    env: Env,
    act: ActFn,
    particles: Particles,
    theta: jax.Array,
    key: jax.Array,
    unroll_length: int,
    *,
    theta_after_end: jax.Array | None = None,
    reset_group: jax.Array | None = None,
    autoreset: bool = True,
    step_limit: jax.Array | None = None,
    num_steps: jax.Array | None = None,
    obs_norm: normalization.ObsNormState | None = None,
    record: Callable[[Any], Any] | None = None,
    sync_groups: bool = False,
) -> tuple[Particles, Window] | tuple[Particles, Window, Any]:
    """Advances every particle ``unroll_length`` steps in one ``lax.scan``.

    Args:
      env: a JAX env.
      act: maps one particle's flat parameters and observation to an action.
      particles: the population's persistent state, [N, ...].
      theta: [N, D] each particle's flat parameters (θ + its perturbation).
      key: randomness for resets: particle i's episode that starts in this window (after its
        first end) starts from ``env.reset(fold_in(key, reset_group[i]))``; a particle that
        waits (a second end) gets a reset of its own at the window's end, for the next window.
        No start is ever replayed.
      unroll_length: K, steps in the window (static).
      theta_after_end: [N, D] parameters of the episode a particle starts after its first
        end in the window: a perturbation drawn for that episode alone (PES, NRES); default:
        keep ``theta``.
      reset_group: [N] int: particles with the same group reset from the same key (antithetic
        partners start their episodes alike); default: every particle its own.
      autoreset: True: a particle whose episode ends starts a new one at once (PES, NRES,
        TES), once per window: after a second end it waits for the next window. False: it stops
        and is masked out for the rest of the window (ES on whole episodes).
      step_limit: [N] int: particle i takes only its first ``step_limit[i]`` steps (staggered
        burn-in); default: all take ``unroll_length``.
      num_steps: a traced int ≤ ``unroll_length``: the window takes only this many steps and
        skips the rest of the scan (a ``lax.cond``, no compute), so windows of any length share
        the compiled scan of ``unroll_length`` (truncation curricula); default: all.
      obs_norm: observation normalizer, frozen for the window; None = raw observations.
      record: maps one particle's env state after a step to what a caller needs of every
        step (an evaluation's rewards, render's joint positions); default: nothing.
      sync_groups: with ``autoreset``, the particles of a reset group start every episode
        together (antithetic partners stay in step): a particle whose episode ends stops,
        unstepped and uncounted, and at the end of the first window by which every particle
        of its group has ended they all start fresh episodes from the group's reset; until
        then it waits with clock −1, across windows. Groups are contiguous blocks (pairs).

    Returns:
      The particles after the window and the window's per-particle rewards and counters;
      with ``record``, also its values of every step, [unroll_length, N, ...] (a particle that
      stopped or waited repeats its last state's).
    """
    num = particles.clock.shape[0]
    group = jnp.arange(num) if reset_group is None else reset_group
    restarts_in_window = autoreset and not sync_groups
    freeze = (not restarts_in_window) or step_limit is not None
    obs_size = particles.env_state.obs.reshape(num, -1).shape[1]
    if restarts_in_window:
        # One fresh episode start per particle for the whole window, computed once (resets
        # can cost far more than steps): a particle whose episode ends continues from it.
        reset_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, group)

        def fresh_states():
            return cast_like(jax.vmap(env.reset)(reset_keys), particles.env_state)

        horizon = env.spec.horizon
        if env.spec.early_termination:
            fresh = fresh_states()
        else:  # episodes end on the clock (rare early ends aside): prepare resets only for
            # windows in which some clock reaches T; meta tasks' resets cost as much as steps.
            prepared = jnp.asarray(False)
            if horizon is not None:
                prepared = jnp.any(particles.clock + unroll_length >= horizon)
            fresh = jax.lax.cond(prepared, fresh_states, lambda: particles.env_state)

    def step(carry, index):
        env_state, tally = carry
        scheduled = True if step_limit is None else index < step_limit
        stepping = tally.alive & scheduled
        params = theta
        if theta_after_end is not None:
            params = jnp.where(tally.ended[:, None], theta_after_end, theta)
        obs = normalization.normalize(obs_norm, env_state.obs)
        next_state = jax.vmap(env.step)(env_state, jax.vmap(act)(params, obs))
        tally, done = account_step(
            tally, env_state.obs, next_state.reward, next_state.done > 0, stepping,
            env.spec.horizon, restarts_in_window, obs_norm is not None, scheduled,
        )  # fmt: skip
        if freeze:
            next_state = tree_where(stepping, next_state, env_state)
        recorded = None if record is None else jax.vmap(record)(next_state)  # before a restart
        if restarts_in_window:
            # An unprepared window (a rare early end) computes its resets when one happens.
            def start_new_episodes(s):
                starts = fresh
                if not env.spec.early_termination:  # resets may not be prepared
                    starts = jax.lax.cond(prepared, lambda: fresh, fresh_states)
                return tree_where(done, starts, s)

            next_state = jax.lax.cond(jnp.any(done), start_new_episodes, lambda s: s, next_state)
        return (next_state, tally), recorded

    body = step
    if num_steps is not None:

        def body(carry, index):
            skipped = None
            if record is not None:  # a skipped step records zeros
                shapes = jax.eval_shape(step, carry, index)[1]
                skipped = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
            return jax.lax.cond(index < num_steps, step, lambda c, i: (c, skipped), carry, index)

    init = (particles.env_state, start_tally(particles, obs_size))
    (env_state, tally), recorded = jax.lax.scan(body, init, jnp.arange(unroll_length))
    if restarts_in_window:
        env_state = _reset_waiting(env, env_state, waiting(tally), key, group)
    elif autoreset:  # sync_groups: a group whose particles have all ended starts together
        ready, tally = restart_whole_groups(tally, group)
        env_state = _reset_waiting(env, env_state, ready, key, group)
    particles, window = finish(env_state, tally)
    return (particles, window) if record is None else (particles, window, recorded)


WAIT_RESET_STREAM = 0x7FFFFFFF  # folded into a window's key for the resets of waiting particles


def restart_whole_groups(tally: Tally, group: jax.Array) -> tuple[jax.Array, Tally]:
    """``sync_groups`` at a window's end (both engines): which stopped particles start a fresh
    episode now (every particle of their reset group has stopped; groups are contiguous
    blocks, as populations make them), and the tally with their clocks at 0 and the others'
    that stopped at −1 (waiting for their group)."""
    stopped = waiting(tally)
    local = group - jnp.min(group)  # a shard of a split population holds whole groups
    everyone = jax.ops.segment_min(stopped.astype(jnp.int32), local, num_segments=len(stopped))
    ready = stopped & (everyone[local] > 0)
    clock = jnp.where(ready, 0, jnp.where(stopped, WAITS_FOR_GROUP, tally.clock))
    return ready, tally._replace(clock=clock)


def _reset_waiting(env: Env, env_state: Any, waiting: jax.Array, key: jax.Array, group):
    """Waiting particles start the next window from a reset of their own (their group's key
    from a stream apart from the window's first resets, so that no start is replayed and the
    draws do not depend on how the particles are split over devices); computed only when some
    particle waits."""

    def reset(state):
        wait_key = jax.random.fold_in(key, WAIT_RESET_STREAM)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(wait_key, group)
        return tree_where(waiting, cast_like(jax.vmap(env.reset)(keys), state), state)

    return jax.lax.cond(jnp.any(waiting), reset, lambda state: state, env_state)
