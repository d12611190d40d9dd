"""The learned optimizer (``pes_rl.lopt``) and the ``learned_optimizer`` env family."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pes_rl import agents, envs, lopt, policies
from pes_rl.envs import lopt_tasks
from pes_rl.meta.lopt_eval import markdown_table, summarize
from pes_rl.stepping import engine

# The optimizer --------------------------------------------------------------------------------


def hand_update(theta, grad, param, momenta, step):
    """The update of one tensor written out in NumPy: momenta, features, MLP, step."""
    decays = np.array([0.1, 0.5, 0.9, 0.99, 0.999, 0.9999])
    momenta = decays * momenta + (1 - decays) * grad[..., None]
    stacked = np.concatenate([grad[..., None], param[..., None], momenta], axis=-1)
    stacked = stacked / np.sqrt(1e-5 + np.mean(stacked**2, axis=tuple(range(param.ndim))))
    taus = np.array([1, 3, 10, 30, 100, 300, 1e3, 3e3, 1e4, 3e4, 1e5])
    times = np.broadcast_to(np.tanh(step / taus - 1), (*param.shape, 11))
    x = np.concatenate([stacked, times], axis=-1)
    for layer in theta[:-1]:
        x = np.maximum(x @ np.asarray(layer["w"]) + np.asarray(layer["b"]), 0)
    out = x @ np.asarray(theta[-1]["w"]) + np.asarray(theta[-1]["b"])
    return param - out[..., 0] * np.exp(1e-3 * out[..., 1]) * 1e-3, momenta


def test_update_matches_a_hand_computation():
    theta = lopt.init(jax.random.key(0))
    # Large output weights so that the step is far from its tiny initial size.
    theta[-1] = {"w": theta[-1]["w"] * 300.0, "b": jnp.array([0.5, 2000.0])}
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": np.float32(0.7)}
    grads = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": np.float32(-2.0)}
    state = lopt.init_state(params)
    state = state._replace(
        momenta=jax.tree.map(lambda m: rng.normal(size=m.shape).astype(np.float32), state.momenta),
        step=jnp.asarray(37),
    )
    new_params, new_state = lopt.update(theta, grads, params, state)
    for name in ("w", "b"):
        expected, momenta = hand_update(
            theta, np.asarray(grads[name]), np.asarray(params[name]),
            np.asarray(state.momenta[name]), 37,
        )  # fmt: skip
        np.testing.assert_allclose(new_params[name], expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(new_state.momenta[name], momenta, rtol=1e-5)
        assert np.max(np.abs(expected - params[name])) > 1e-2  # the step is not negligible
    assert int(new_state.step) == 38


def test_features_are_normalized_per_tensor_and_time_features_are_tanh():
    grad, param = jnp.arange(6.0).reshape(2, 3), jnp.ones((2, 3))
    features = lopt.features(grad, param, jnp.zeros((2, 3, 6)), jnp.asarray(10))
    assert features.shape == (2, 3, lopt.NUM_FEATURES) == (2, 3, 19)
    np.testing.assert_allclose(jnp.mean(features[..., 0] ** 2), 1.0, rtol=1e-4)  # unit RMS
    expected = np.tanh(10 / np.array(lopt.TIMESCALES) - 1)
    np.testing.assert_allclose(features[0, 0, 8:], expected, rtol=1e-6)


def test_update_is_tiny_at_init():
    theta = lopt.init(jax.random.key(1))
    params = {"w": jax.random.normal(jax.random.key(2), (64, 32))}
    grads = {"w": 100.0 * jax.random.normal(jax.random.key(3), (64, 32))}  # scale is normalized
    new_params, _ = lopt.update(theta, grads, params, lopt.init_state(params))
    step = np.abs(np.asarray(new_params["w"] - params["w"]))
    assert 0 < step.mean() < 3e-3 and step.max() < 2e-2


def sign_descent_theta(step: float) -> lopt.Theta:
    """A hand-built θ: o_dir = normalized gradient, exp(λ·o_mag)·λ = ``step``."""
    hidden = [{"w": jnp.zeros((19, 2)).at[0, 0].set(1.0).at[0, 1].set(-1.0), "b": jnp.zeros(2)}]
    magnitude = np.log(step / lopt.STEP_MULT) / lopt.EXP_MULT
    out = {"w": jnp.array([[1.0, 0.0], [-1.0, 0.0]]), "b": jnp.array([0.0, magnitude])}
    return hidden + [out]


def test_as_optax_trains_a_regression_in_an_ordinary_optax_loop():
    x = jax.random.normal(jax.random.key(0), (128, 5))
    y = x @ jnp.array([1.0, -2.0, 0.5, 3.0, -1.0]) + 0.3

    def loss(params):
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

    optimizer = lopt.as_optax(sign_descent_theta(0.02))
    params = {"w": jnp.zeros(5), "b": jnp.zeros(())}
    state = optimizer.init(params)
    start = float(loss(params))

    @jax.jit
    def train_step(params, state):
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(300):
        params, state = train_step(params, state)
    assert float(loss(params)) < 0.01 * start
    with pytest.raises(ValueError, match="needs params"):
        optimizer.update(jax.grad(loss)(params), state)


def test_save_and_load_without_a_config(tmp_path):
    theta = lopt.init(jax.random.key(4), hidden_sizes=(8, 8))
    lopt.save(tmp_path / "lopt_theta.npz", theta)
    loaded = lopt.load(tmp_path)  # a run dir works too
    assert jax.tree.structure(loaded) == jax.tree.structure(theta)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(theta), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="no learned optimizer"):
        lopt.load(tmp_path / "missing")
    np.savez(tmp_path / "other.npz", w0=np.zeros(3))
    with pytest.raises(ValueError, match="not a saved learned optimizer"):
        lopt.load(tmp_path / "other.npz")


# The env family ------------------------------------------------------------------------------


def test_horizons_are_log_uniform_and_each_particle_ends_at_its_own():
    env = envs.make("learned_optimizer", task="quadratic", min_length=10, max_length=1000)
    horizons = np.asarray(jax.vmap(env.sample_horizon)(jax.random.split(jax.random.key(0), 4000)))
    assert horizons.min() >= 10 and horizons.max() <= 1000
    assert np.median(horizons) == pytest.approx(100, rel=0.15)  # geometric mean of [10, 1000]
    assert np.mean(horizons < 100) == pytest.approx(0.5, abs=0.03)

    env = envs.make("learned_optimizer", task="quadratic", min_length=3, max_length=9)
    policy = policies.make("constant", env)
    theta = policy.init(jax.random.key(0))
    num = 6
    particles = engine.reset_particles(env, jax.random.split(jax.random.key(1), num))
    first_horizons = np.asarray(particles.env_state.inner["horizon"])
    assert len(set(first_horizons.tolist())) > 1
    thetas = jnp.broadcast_to(theta, (num, theta.size))
    _, window = engine.unroll(env, lambda t, o: t, particles, thetas, jax.random.key(2), 12)
    # The first episode of particle i ends after exactly its own horizon.
    np.testing.assert_array_equal(window.steps_first, np.minimum(first_horizons, 12))


def test_a_diverging_learned_optimizer_gives_finite_rewards_and_gradients():
    env = envs.make("learned_optimizer", task="quadratic", min_length=20, max_length=40)
    policy = policies.make("constant", env)
    theta = policy.init(jax.random.key(0))
    huge = theta.at[-2:].set(jnp.array([1e4, 1e4]))  # output biases: steps of exp(10)·10
    for name in ("pes", "hybrid"):
        agent = agents.make(
            name, env=env, policy=policy, num_particles=4, sigma=0.01, unroll_length=10
        )
        state = agent.init(jax.random.key(1), huge)
        for window_key in jax.random.split(jax.random.key(2), 2):
            grad, state, metrics = agent.estimate(state, huge, window_key)
            assert np.all(np.isfinite(np.asarray(grad))), name
            assert np.isfinite(float(metrics["window_reward"])), name
        # Every run diverged: it ended and was charged the loss cap for its remaining steps.
        assert float(metrics["window_reward"]) < -env.loss_cap * 10, name


def test_train_and_heldout_distributions_differ():
    key = jax.random.key(5)
    for task in lopt_tasks.TASKS:
        train = lopt_tasks.make(task, "train")
        heldout = lopt_tasks.make(task, "heldout")
        train_shapes = [p.shape for p in jax.tree.leaves(jax.eval_shape(train.init, key))]
        heldout_shapes = [p.shape for p in jax.tree.leaves(jax.eval_shape(heldout.init, key))]
        assert train_shapes != heldout_shapes, task  # another width / depth
        if task != "quadratic":  # label permutations from disjoint seed streams
            assert not np.array_equal(train.sample(key), heldout.sample(key))
    with pytest.raises(ValueError, match="env.kwargs.task must be one of"):
        lopt_tasks.make("resnet")
    with pytest.raises(ValueError, match="min_length"):
        envs.make("learned_optimizer", min_length=50, max_length=10)


def row_inputs(steps, learned, adam) -> dict:
    return {"steps": steps, "learned": learned, "adam": adam, "learned_seconds_per_step": 2e-3,
            "adam_seconds_per_step": 1e-3}  # fmt: skip


def test_evaluation_table_counts_steps_to_adams_final_loss():
    steps = np.arange(0, 101, 10)
    adam = np.tile(np.linspace(2.0, 0.5, 11), (3, 1))
    learned = np.tile(np.linspace(2.0, 0.1, 11), (3, 1))  # reaches 0.5 at step 80
    row = summarize(
        {"steps": steps, "learned": learned, "adam": adam, "adam_lr": 1e-3,
         "learned_seconds_per_step": 2e-3, "adam_seconds_per_step": 1e-3}
    )  # fmt: skip
    assert row["learned_steps_to_adam_final"] == 80
    assert row["speedup_steps"] == pytest.approx(100 / 80)
    assert row["speedup_seconds"] == pytest.approx(100 * 1e-3 / (80 * 2e-3))
    assert row["learned_diverged"] == 0
    # Adam at its final loss from step 50 on: its own steps count, not the run's length.
    early = np.tile(np.concatenate([np.linspace(2.0, 0.5, 6), np.full(5, 0.5)]), (3, 1))
    row = summarize({**row_inputs(steps, learned, early), "adam_lr": 1e-3})
    assert row["adam_steps_to_final"] == 50 and row["speedup_steps"] == pytest.approx(50 / 80)
    never = summarize(
        {
            **{"steps": steps, "learned": adam + 1, "adam": adam, "adam_lr": 1e-3},
            "learned_seconds_per_step": 1e-3,
            "adam_seconds_per_step": 1e-3,
        }
    )
    assert never["learned_steps_to_adam_final"] is None
    assert "never" in markdown_table({"train": never}, 100, 3)
