"""Small deterministic and stochastic JAX envs written for the tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from pes_rl.envs.base import Env, EnvSpec, State


class RandomLengthEpisodes(Env):
    """Reward = action + step index; each episode lasts a random min_length..max_length steps.

    Episodes of different particles end at different steps, inside windows, which is what the
    engine's per-particle bookkeeping must get right.
    """

    def __init__(self, max_length: int = 4, horizon: int | None = None, min_length: int = 1):
        self.min_length, self.max_length = min_length, max_length
        self.spec = EnvSpec(
            observation_space=spaces.Box(-np.inf, np.inf, (2,), np.float32),
            action_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            horizon=horizon,
        )

    def reset(self, key: jax.Array) -> State:
        length = jax.random.randint(key, (), self.min_length, self.max_length + 1)
        inner = {"t": jnp.zeros((), jnp.int32), "length": length}
        return State(inner, self._obs(inner), jnp.zeros(()), jnp.zeros(()))

    def step(self, state: State, action: jax.Array) -> State:
        t = state.inner["t"] + 1
        inner = {"t": t, "length": state.inner["length"]}
        reward = jnp.reshape(action, ()) + t.astype(jnp.float32)
        done = (t >= state.inner["length"]).astype(jnp.float32)
        return state.replace(inner=inner, obs=self._obs(inner), reward=reward, done=done)

    @staticmethod
    def _obs(inner) -> jax.Array:
        return jnp.stack([inner["t"], inner["length"]]).astype(jnp.float32)


class NaNAfter(Env):
    """Influence balancing whose reward turns NaN once the particle has taken ``steps`` steps."""

    def __init__(self, steps: int = 100):
        from pes_rl.envs.influence_balancing import InfluenceBalancing

        self.base = InfluenceBalancing()
        self.steps = steps
        self.spec = self.base.spec

    def reset(self, key: jax.Array) -> State:
        return self.base.reset(key)

    def step(self, state: State, action: jax.Array) -> State:
        state = self.base.step(state, action)
        bad = state.inner["t"] > self.steps
        return state.replace(reward=jnp.where(bad, jnp.nan, state.reward))


class GeometricEpisodes(Env):
    """x ← x + θ, reward −(x − 1)²; each step ends the episode with probability ``end_prob``.

    Terminations are random and independent of θ, so the exact expected window reward is a
    sum over the episode-clock distribution (see ``exact_window_gradients``).
    """

    def __init__(self, end_prob: float = 0.2, horizon: int = 10):
        self.end_prob = end_prob
        self.spec = EnvSpec(
            observation_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            action_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            horizon=horizon,
            differentiable=True,
            default_action=np.array([0.3], np.float32),
        )

    def reset(self, key: jax.Array) -> State:
        inner = {"x": jnp.zeros(()), "key": key}
        return State(inner, jnp.zeros(1), jnp.zeros(()), jnp.zeros(()))

    def step(self, state: State, action: jax.Array) -> State:
        key, end_key = jax.random.split(state.inner["key"])
        x = state.inner["x"] + jnp.reshape(action, ())
        done = (jax.random.uniform(end_key) < self.end_prob).astype(jnp.float32)
        return state.replace(
            inner={"x": x, "key": key}, obs=x[None], reward=-((x - 1.0) ** 2), done=done
        )

    def exact_window_gradients(self, theta: float, unroll_length: int) -> np.ndarray:
        """∇θ E[window reward | the window starts at episode clock c], for c in [0, T).

        Under constant θ, step s of an episode gives reward f(s) = −(sθ − 1)², so
        ∂f/∂θ = −2(sθ − 1)s; the clock moves c → c + 1, and back to 0 on a random end
        (probability ``end_prob``) or at the horizon.
        """
        horizon = self.spec.horizon
        grads = np.zeros(horizon)
        for start in range(horizon):
            clock_dist = np.zeros(horizon)
            clock_dist[start] = 1.0
            for _ in range(unroll_length):
                steps = np.arange(1, horizon + 1)
                grads[start] += clock_dist @ (-2.0 * (steps * theta - 1.0) * steps)
                survive = clock_dist * (1.0 - self.end_prob)
                next_dist = np.zeros(horizon)
                next_dist[1:] = survive[:-1]  # clock c → c + 1 < T
                next_dist[0] = clock_dist.sum() - survive[:-1].sum()  # ended: random or at T
                clock_dist = next_dist
        return grads


class HazardEnv(Env):
    """One decision with an end the policy sets: the action a (clipped to [−2, 2]) is paid as
    every step's reward, and after each step the episode ends with probability
    h(a) = ``base_hazard`` + ``hazard_slope``·a² (horizon 1000).

    The expected return E[R](a) = a·(1 − (1 − h)^H)/h peaks at a* = √(base/slope) (0.5), while
    the reward per step, a, grows without bound: an estimator that follows the reward rate
    instead of the episode's return goes the wrong way.

    The end is drawn by inversion: each episode draws one uniform U at reset and ends at the
    first step whose survival Π(1 − h(a_s)) falls below U, which ends it after each step with
    probability exactly h(a) given that it survived so far. Antithetic partners reset alike
    share U, so their fall times differ smoothly with ±ε (common random numbers): the
    estimates' variance is small enough for a tight test.
    """

    def __init__(self, base_hazard: float = 0.01, hazard_slope: float = 0.04, horizon: int = 1000):
        self.base_hazard, self.hazard_slope = base_hazard, hazard_slope
        self.spec = EnvSpec(
            observation_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            action_space=spaces.Box(-np.inf, np.inf, (1,), np.float32),
            horizon=horizon,
            early_termination=True,
            default_action=np.zeros(1, np.float32),
        )

    def hazard(self, action):
        return self.base_hazard + self.hazard_slope * action**2

    def reset(self, key: jax.Array) -> State:
        inner = {"log_u": jnp.log(jax.random.uniform(key)), "log_survival": jnp.zeros(())}
        return State(inner, jnp.ones(1), jnp.zeros(()), jnp.zeros(()))

    def step(self, state: State, action: jax.Array) -> State:
        action = jnp.clip(jnp.reshape(action, ()), -2.0, 2.0)
        log_survival = state.inner["log_survival"] + jnp.log1p(-self.hazard(action))
        done = (log_survival < state.inner["log_u"]).astype(jnp.float32)
        inner = {"log_u": state.inner["log_u"], "log_survival": log_survival}
        return state.replace(inner=inner, reward=action, done=done)

    def smoothed_return_gradient(self, theta: float, sigma: float) -> float:
        """∇θ E_ε[E[R](θ + ε)], ε ~ N(0, σ²): autodiff through 40-point Gauss–Hermite
        quadrature of the exact expected return a·(1 − (1 − h)^H)/h."""
        nodes, weights = np.polynomial.hermite_e.hermegauss(40)
        weights = weights / weights.sum()

        def expected_return(action):
            action = jnp.clip(action, -2.0, 2.0)
            hazard = self.hazard(action)
            return action * (1.0 - (1.0 - hazard) ** self.spec.horizon) / hazard

        def smoothed(theta):
            return jnp.sum(weights * jax.vmap(expected_return)(theta + sigma * nodes))

        return float(jax.grad(smoothed)(jnp.float32(theta)))

    def window_smoothed_return_gradient(self, theta: float, sigma: float, window: int) -> float:
        """PES's own target where episodes start on window boundaries (``sync_pairs``): ∇θ of
        the expected return when every window of K steps of the episode draws its own
        ε ~ N(0, σ²). Windows are independent, so with f = E_ε[a(1 − (1 − h)^K)/h] (a window's
        return) and q = E_ε[(1 − h)^K] (surviving it), E[R] = f·(1 − q^n)/(1 − q), n = H/K.
        It differs from ``smoothed_return_gradient`` (one ε per episode) by O(σ²)."""
        nodes, weights = np.polynomial.hermite_e.hermegauss(40)
        weights = weights / weights.sum()
        windows = self.spec.horizon // window

        def smoothed(theta):
            action = jnp.clip(theta + sigma * nodes, -2.0, 2.0)
            hazard = self.hazard(action)
            window_return = jnp.sum(weights * action * (1 - (1 - hazard) ** window) / hazard)
            survival = jnp.sum(weights * (1 - hazard) ** window)
            return window_return * (1 - survival**windows) / (1 - survival)

        return float(jax.grad(smoothed)(jnp.float32(theta)))
