"""gymnax envs and your own JAX env on the engine: the checks Brax passes, and PES learns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from omegaconf import OmegaConf
from reference import WindowReference, assert_window_matches

import pes_rl
from pes_rl import agents, envs, policies
from pes_rl.after import evaluate
from pes_rl.envs.custom import adapt
from pes_rl.stepping import engine
from pes_rl.stepping.evaluation import make_evaluate

REPO = Path(__file__).resolve().parent.parent
FAMILIES = [
    ("gymnax/CartPole-v1", {}),  # Discrete actions, early termination
    ("gymnax/Pendulum-v1", {"episode_length": 15}),  # Box actions, the engine's clock ends it
    ("jax/pes_rl.envs.point_mass:make_env", {}),  # the README's own JAX env
]


def reference_window(env, act, theta, state, reset_key, num_steps, autoreset):
    """One particle stepped in Python with the engine's clock: what the engine must match.

    A reset happens here explicitly after an episode's end, so the step that ends an episode
    is credited to it and the next episode starts from ``env.reset`` (no reset transition)."""
    step = jax.jit(lambda state: env.step(state, act(theta, state.obs)))
    reset = jax.jit(env.reset)
    reference, clock = WindowReference(), 0
    for _ in range(num_steps):
        state = step(state)
        clock += 1
        done = bool(state.done) or (env.spec.horizon is not None and clock >= env.spec.horizon)
        reference.add(float(state.reward), done)
        if done:
            if not autoreset:
                break
            state, clock = reset(reset_key), 0
    return reference


def zero_policy_eval(env, policy, episodes: int) -> dict:
    evaluate = make_evaluate(env, policy, episodes, 500)
    return evaluate(policy.init(jax.random.key(0)), None, jax.random.key(0))


@pytest.mark.parametrize(
    "env_id, kwargs, autoreset",
    [(*family, True) for family in FAMILIES] + [(*FAMILIES[0], False)],  # ES: CartPole falls
)
def test_window_matches_a_python_loop(env_id, kwargs, autoreset):
    env = envs.make(env_id, **kwargs)
    policy = policies.make("linear", env)
    flat, unravel = ravel_pytree(policy.init(jax.random.key(0)))

    def act(theta, obs):
        return policy.apply(unravel(theta), obs)

    num, unroll_length = 4, 40
    theta = 2.0 * jax.random.normal(jax.random.key(1), (num, flat.size))
    reset_keys = jax.random.split(jax.random.key(2), num)
    window_key = jax.random.key(3)
    particles = engine.reset_particles(env, reset_keys)
    _, window = jax.jit(
        lambda p, t, k: engine.unroll(env, act, p, t, k, unroll_length, autoreset=autoreset)
    )(particles, theta, window_key)
    references = [
        reference_window(
            env, act, theta[i], env.reset(reset_keys[i]), jax.random.fold_in(window_key, i),
            unroll_length, autoreset,
        )
        for i in range(num)
    ]  # fmt: skip
    assert_window_matches(window, references)
    if env_id != "jax/pes_rl.envs.point_mass:make_env":  # point-mass episodes last 100 steps
        assert any(ref.ended for ref in references)  # an episode ended inside the window


def test_es_on_gymnax_counts_only_steps_before_termination():
    env = envs.make("gymnax/CartPole-v1")
    policy = policies.make("linear", env)
    params = policy.init(jax.random.key(0))
    es = agents.make("es", env=env, policy=policy, num_particles=8, sigma=0.5)
    _, _, metrics = es.estimate(es.init(jax.random.key(1), params), params, jax.random.key(2))
    assert int(metrics["episodes"]) == 8
    # CartPole pays 1 per step up to and including the one that ends the episode: the real
    # steps are exactly the sum of the returns (nothing after a particle's end is counted).
    assert int(metrics["env_steps"]) == pytest.approx(8 * float(metrics["train_return"]))
    assert 8 * 8 <= int(metrics["env_steps"]) < 8 * 500


@pytest.mark.slow  # a learning run; gymnax windows are checked against a loop by default
def test_pes_on_gymnax_cartpole_beats_the_zero_policy_fivefold(tmp_path, capsys):
    result = pes_rl.train([
        "experiment=gymnax_cartpole_pes_cpu", "train.iterations=40", "train.eval_every=10",
        "train.progress=false", f"run_dir={tmp_path / 'run'}",
    ])  # fmt: skip
    env = envs.make("gymnax/CartPole-v1")
    policy = policies.make("linear", env)
    zero = zero_policy_eval(env, policy, 8)
    evals = [h["eval_return"] for h in result.history if "eval_return" in h]
    assert float(zero["eval_return"]) < 15  # the zero policy always pushes left
    assert max(evals) >= 5 * float(zero["eval_return"]), evals

    # pes-rl evaluate with the run's episode count and no --seed repeats its last eval_return.
    episodes = str(OmegaConf.load(tmp_path / "run" / "config.yaml").train.eval_episodes)
    assert evaluate.main([str(tmp_path / "run"), "--episodes", episodes]) == 0
    printed = capsys.readouterr().out
    assert f": return {result.history[-1]['eval_return']:.6g} ± " in printed
    assert evaluate.main([str(tmp_path / "run"), "--episodes", episodes, "--json",
                          str(tmp_path / "e.json")]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["return_mean"] == result.history[-1]["eval_return"]  # to the last bit


def test_own_jax_env_from_a_module_trains_with_pes(tmp_path):
    """The README's custom env (the shipped default of env=jax) improves under PES."""
    readme = (REPO / "README.md").read_text()
    source = (REPO / "envs" / "point_mass.py").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "PointMass" in b)
    assert block.strip() in source  # the README shows the shipped file's code
    result = pes_rl.train({
        "env": "jax", "train": {"iterations": 30, "eval_every": 30, "progress": False},
        "run_dir": str(tmp_path / "run"),
    })  # fmt: skip
    env = envs.make("jax/pes_rl.envs.point_mass:make_env")
    policy = policies.make("linear", env)
    zero = zero_policy_eval(env, policy, 2)
    assert result.history[-1]["eval_return"] > 0.5 * float(zero["eval_return"])  # −loss: less


def test_factories_may_return_gymnax_or_brax_objects_and_bad_ids_say_what_to_do():
    import gymnax

    wrapped = adapt(gymnax.make("Acrobot-v1"), "my_module:make_acrobot")
    assert wrapped.spec.horizon == 500 and wrapped.spec.action_space.n == 3
    state = wrapped.step(wrapped.reset(jax.random.key(0)), jnp.asarray(1))
    assert state.obs.shape == (6,) and float(state.reward) == -1.0

    class BraxLike:  # the attributes a Brax env has
        observation_size, action_size = 3, 2

        def reset(self, key): ...

        def step(self, state, action): ...

    assert adapt(BraxLike(), "m:f").spec.action_space.shape == (2,)
    with pytest.raises(ValueError, match="expected a pes_rl JAX env"):
        adapt(object(), "m:f")
    for env_id, message in [
        ("jax/nocolon", "must name a factory as 'module:function'"),
        ("jax/no_such_module:f", "cannot import 'no_such_module'"),
        ("jax/pes_rl.envs:nope", "has no callable 'nope'"),
        ("gymnax/CartPole-v9", "unknown gymnax env 'CartPole-v9'"),
    ]:
        with pytest.raises(ValueError, match=message):
            envs.make(env_id)
    assert np.isfinite(envs.make("gymnax/MountainCarContinuous-v0").spec.action_space.high).all()


def test_the_docs_say_how_actions_arrive_and_what_each_spec_field_means():
    """docs/envs.md's "Your own JAX env": a table row for every EnvSpec field, and actions as
    it says they arrive in ``step``: Discrete a scalar int32 argmax of the logits, Box the
    output clipped to the bounds, or tanh-squashed with action_mode=tanh."""
    import dataclasses
    import types

    from gymnasium import spaces

    from pes_rl import policies
    from pes_rl.envs import EnvSpec

    docs = (REPO / "docs" / "envs.md").read_text()
    section = docs[docs.index("## Your own JAX env") :]
    assert [f.name for f in dataclasses.fields(EnvSpec) if f"| `{f.name}`" not in section] == []

    obs = jnp.array([1.0, -2.0, 0.5])
    observations = spaces.Box(-np.inf, np.inf, (3,))

    def act(action_space, params, **kwargs):
        env = types.SimpleNamespace(spec=EnvSpec(observations, action_space, horizon=10))
        return policies.make("linear", env, **kwargs).apply({"w": jnp.asarray(params)}, obs)

    logits_of = [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]  # → 1, -2, 0
    action = act(spaces.Discrete(4), logits_of)
    assert action.dtype == jnp.int32 and action.shape == () and int(action) == 1
    to_both = [[3.0, 0.2], [0.0, 0.0], [0.0, 0.0]]  # raw output (3, 0.2)
    box = spaces.Box(-1.0, 1.0, (2,))
    np.testing.assert_allclose(act(box, to_both), [1.0, 0.2])
    np.testing.assert_allclose(act(box, to_both, action_mode="tanh"), np.tanh([3, 0.2]), 1e-6)
    unbounded = spaces.Box(-np.inf, np.inf, (2,))
    np.testing.assert_allclose(act(unbounded, to_both), [3.0, 0.2])
