"""The learned optimizer (``pes_rl.lopt``) and the ``learned_optimizer`` env family."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pes_rl import agents, envs, lopt, policies
from pes_rl.envs import lopt_tasks, unrolled
from pes_rl.meta import lopt_eval
from pes_rl.meta.lopt_eval import Setting, markdown_table, summarize, tune
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
    for layer in theta.layers[:-1]:
        x = np.maximum(x @ np.asarray(layer["w"]) + np.asarray(layer["b"]), 0)
    out = x @ np.asarray(theta.layers[-1]["w"]) + np.asarray(theta.layers[-1]["b"])
    return param - out[..., 0] * np.exp(1e-3 * out[..., 1]) * 1e-3, momenta


def test_update_matches_a_hand_computation():
    layers = lopt.init(jax.random.key(0)).layers
    # Large output weights so that the step is far from its tiny initial size.
    theta = lopt.Theta(
        [*layers[:-1], {"w": layers[-1]["w"] * 300.0, "b": jnp.array([0.5, 2000.0])}]
    )
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
        shape = np.shape(params[name])
        assert state.momenta[name].shape == (6, np.size(params[name]))  # decay-major, flat
        expected, momenta = hand_update(
            theta, np.asarray(grads[name]), np.asarray(params[name]),
            np.asarray(state.momenta[name]).T.reshape(*shape, 6), 37,
        )  # fmt: skip
        np.testing.assert_allclose(new_params[name], expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(new_state.momenta[name], momenta.reshape(-1, 6).T, rtol=1e-5)
        assert np.max(np.abs(expected - params[name])) > 1e-2  # the step is not negligible
    assert int(new_state.step) == 38


def test_features_are_normalized_per_tensor_and_time_features_are_tanh():
    grad, param = jnp.arange(6.0).reshape(2, 3), jnp.ones((2, 3))
    features = lopt.features(grad, param, jnp.zeros((6, 6)), jnp.asarray(10))
    assert features.shape == (lopt.NUM_FEATURES, 6) == (19, 6)  # one row per feature
    np.testing.assert_allclose(jnp.mean(features[0] ** 2), 1.0, rtol=1e-4)  # unit RMS
    np.testing.assert_allclose(features[0], np.arange(6.0) / np.sqrt(1e-5 + 55 / 6), rtol=1e-5)
    expected = np.tanh(10 / np.array(lopt.TIMESCALES) - 1)
    np.testing.assert_allclose(features[8:, 0], expected, rtol=1e-6)


def test_update_is_tiny_at_init():
    theta = lopt.init(jax.random.key(1))
    params = {"w": jax.random.normal(jax.random.key(2), (64, 32))}
    grads = {"w": 100.0 * jax.random.normal(jax.random.key(3), (64, 32))}  # scale is normalized
    new_params, _ = lopt.update(theta, grads, params, lopt.init_state(params))
    step = np.abs(np.asarray(new_params["w"] - params["w"]))
    assert 0 < step.mean() < 3e-3 and step.max() < 2e-2


def sign_descent_theta(step: float, feature: int = 0, features: str = "base") -> lopt.Theta:
    """A hand-built θ: o_dir = the normalized input ``feature`` (0: the gradient),
    exp(λ·o_mag)·λ = ``step``."""
    first = jnp.zeros((lopt.FEATURE_SETS[features], 2))
    hidden = [{"w": first.at[feature, 0].set(1.0).at[feature, 1].set(-1.0), "b": jnp.zeros(2)}]
    magnitude = np.log(step / lopt.STEP_MULT) / lopt.EXP_MULT
    out = {"w": jnp.array([[1.0, 0.0], [-1.0, 0.0]]), "b": jnp.array([0.0, magnitude])}
    return lopt.Theta(hidden + [out], features)


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


def test_rms_features_give_every_parameter_a_step_of_its_own_scale():
    # Gradients 6 decades apart: base features (normalized per tensor) step in proportion to g,
    # the rms features' g·r (RMSProp's direction, v at decay 0.9) by ~λ·sign(g) for each.
    grads = {"w": jnp.array([1e-4, -1.0, 100.0, -3e-3])}
    params = {"w": jnp.zeros(4)}
    rmsprop = sign_descent_theta(1e-3, lopt.NUM_TENSOR_FEATURES, "rms")  # g·r, RMS_DECAYS[0]
    state = lopt.init_state(params, "rms")
    new_params, new_state = lopt.update(rmsprop, grads, params, state)
    np.testing.assert_allclose(new_params["w"], -1e-3 * np.sign(grads["w"]), rtol=1e-4)
    decays = np.array(lopt.RMS_DECAYS)
    np.testing.assert_allclose(
        new_state.second_moments["w"], (1 - decays)[:, None] * np.square(grads["w"]), rtol=1e-4
    )
    # Adam's direction m_0.9·r at decay 0.9 after a second step with the same gradient.
    adam = sign_descent_theta(1e-3, lopt.NUM_TENSOR_FEATURES + len(lopt.RMS_DECAYS), "rms")
    second, _ = lopt.update(adam, grads, params, new_state)
    np.testing.assert_allclose(second["w"], -1e-3 * np.sign(grads["w"]), rtol=1e-4)
    # A gradient that stays 0 (a masked channel) gets no step, not 0/0.
    zero, _ = lopt.update(rmsprop, {"w": grads["w"].at[0].set(0.0)}, params, state)
    assert float(zero["w"][0]) == 0.0 and np.all(np.isfinite(zero["w"]))
    with pytest.raises(ValueError, match="init_state"):
        lopt.update(rmsprop, grads, params, lopt.init_state(params))
    other = lopt.init_state({"w": jnp.zeros(3)}, "rms")  # a state for another network
    expected = r"made for other parameters .* are \[3\], the parameters' \[4\]"
    with pytest.raises(ValueError, match=expected):
        lopt.update(rmsprop, grads, params, other)
    # θ's feature set is its own field, checked against its first layer, never read off it.
    mislabelled = lopt.Theta(rmsprop.layers, "base")
    with pytest.raises(ValueError, match=r"reads the 'base' features \(19\) but its first layer"):
        lopt.update(mislabelled, grads, params, lopt.init_state(params))


@pytest.mark.parametrize("hidden_sizes", [(8,), (8, 6)])
def test_nominal_theta_0_is_rmsprops_direction_and_nothing_else(hidden_sizes):
    grads = {"w": jnp.array([1e-4, -1.0, 100.0, -3e-3]), "b": jnp.array([0.5, -0.2])}
    params = {"w": jnp.array([1.0, -2.0, 3.0, 0.5]), "b": jnp.array([4.0, -1.0])}
    state = lopt.init_state(params, "rms")
    theta = lopt.init(jax.random.key(0), hidden_sizes, "rms", nominal_rate=0.02)
    assert theta.features == "rms"
    random = lopt.init(jax.random.key(0), hidden_sizes, "rms")
    # Only units 0 and 1 of each hidden layer and o_dir's weights differ from the random MLP.
    for layer, start in zip(theta.layers[:-1], random.layers[:-1], strict=True):
        np.testing.assert_array_equal(layer["w"][:, 2:], start["w"][:, 2:])
    out, start = theta.layers[-1]["w"], random.layers[-1]["w"]
    np.testing.assert_allclose(out[2:, 0], lopt.NOMINAL_OTHERS_SCALE * start[2:, 0], rtol=1e-6)
    np.testing.assert_array_equal(out[2:, 1], start[2:, 1])
    # The nominal path alone (the random units' o_dir silenced): every parameter steps 0.02
    # against its gradient's sign, whatever its value: no growth, no decay.
    silent_out = {"w": out.at[2:, 0].set(0.0).at[:, 1].set(0.0), "b": jnp.zeros(2)}
    silent = lopt.Theta([*theta.layers[:-1], silent_out], "rms")
    nominal = lopt.update(silent, grads, params, state)[0]
    for name in params:
        np.testing.assert_allclose(
            nominal[name], params[name] - 0.02 * np.sign(grads[name]), rtol=1e-5, atol=1e-7
        )
    still = lopt.update(silent, jax.tree.map(jnp.zeros_like, grads), params, state)[0]
    for name in params:
        np.testing.assert_array_equal(still[name], params[name])
    # With the random units (a tenth of their steps) it stays close to that.
    full = lopt.update(theta, grads, params, state)[0]
    assert 0 < float(jnp.abs(full["w"] - nominal["w"]).max()) < 0.005
    # The rate may be traced: one compilation for a grid of rates.
    rates = jnp.array([0.01, 0.02])
    steps = jax.vmap(
        lambda rate: lopt.update(
            lopt.init(jax.random.key(0), hidden_sizes, "rms", rate), grads, params, state
        )[0]["w"]
    )(rates)
    np.testing.assert_allclose(steps[1], full["w"], rtol=1e-6)
    with pytest.raises(ValueError, match="needs features='rms'"):
        lopt.init(jax.random.key(0), nominal_rate=0.02)
    with pytest.raises(ValueError, match="at least 2 units"):
        lopt.init(jax.random.key(0), (1,), "rms", nominal_rate=0.02)
    kwargs = dict(task="quadratic", min_length=3, max_length=3)
    with pytest.raises(ValueError, match="lopt_nominal_rate needs env.kwargs.lopt_features rms"):
        envs.make("learned_optimizer", lopt_nominal_rate=0.02, **kwargs)
    with pytest.raises(ValueError, match="lopt_nominal_rate must be a number > 0"):
        envs.make("learned_optimizer", lopt_features="rms", lopt_nominal_rate=-1, **kwargs)
    env = envs.make(
        "learned_optimizer",
        lopt_features="rms",
        lopt_nominal_rate=0.02,
        lopt_hidden_sizes=hidden_sizes,
        step_mult=0.003,
        **kwargs,
    )
    started = env.lopt_theta(jnp.asarray(env.spec.default_action))
    assert started.features == "rms"
    for a, b in zip(jax.tree.leaves(started), jax.tree.leaves(theta), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_env_starts_from_a_saved_theta(tmp_path):
    theta = lopt.init(jax.random.key(3), hidden_sizes=(4,), features="rms")
    lopt.save(tmp_path / "lopt_theta.npz", theta)
    kwargs = dict(task="quadratic", min_length=3, max_length=3, lopt_hidden_sizes=(4,))
    env = envs.make(
        "learned_optimizer", lopt_features="rms", lopt_init=str(tmp_path), step_mult=0.003, **kwargs
    )
    # θ_0 is the saved optimizer: in meta-training's units (o_dir / 3), back to it when saved.
    started = env.lopt_theta(jnp.asarray(env.spec.default_action))
    for layer, saved in zip(started.layers, theta.layers, strict=True):
        np.testing.assert_allclose(layer["w"], saved["w"], rtol=1e-6)
        np.testing.assert_allclose(layer["b"], saved["b"], rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"'rms' features and hidden sizes \[4\]; this run has 'rms' and \[8\]"
    ):
        envs.make(
            "learned_optimizer",
            lopt_features="rms",
            lopt_init=str(tmp_path),
            **{**kwargs, "lopt_hidden_sizes": (8,)},
        )
    with pytest.raises(
        ValueError, match="'rms' features and hidden sizes \\[4\\]; this run has 'base'"
    ):
        envs.make("learned_optimizer", lopt_init=str(tmp_path), **kwargs)
    with pytest.raises(ValueError, match="lopt_init: no learned optimizer at"):
        envs.make("learned_optimizer", lopt_features="rms", lopt_init=str(tmp_path / "x"), **kwargs)
    with pytest.raises(ValueError, match="lopt_init and env.kwargs.lopt_nominal_rate exclude"):
        envs.make(
            "learned_optimizer",
            lopt_features="rms",
            lopt_nominal_rate=0.02,
            lopt_init=str(tmp_path),
            **kwargs,
        )


def test_rms_theta_saves_loads_and_steps_as_optax(tmp_path):
    theta = lopt.init(jax.random.key(0), hidden_sizes=(8,), features="rms")
    assert theta.layers[0]["w"].shape == (25, 8) and theta.features == "rms"
    lopt.save(tmp_path / "lopt_theta.npz", theta)
    loaded = lopt.load(tmp_path)
    assert loaded.features == "rms"
    optimizer = lopt.as_optax(loaded)
    params = {"w": jnp.ones((3, 2))}
    state = optimizer.init(params)
    assert state.second_moments["w"].shape == (len(lopt.RMS_DECAYS), 6)
    updates, _ = optimizer.update({"w": jnp.full((3, 2), 0.5)}, state, params)
    assert 0 < float(jnp.abs(updates["w"]).max()) < 1e-2
    with pytest.raises(ValueError, match="unknown learned-optimizer features 'adam'"):
        lopt.init(jax.random.key(0), features="adam")


def rewrite_header(path, **changes) -> None:
    """The saved θ at ``path`` with its header's entries changed (None: removed)."""
    with np.load(path) as saved:
        arrays = dict(saved)
    header = json.loads(str(arrays["header"])) | changes
    arrays["header"] = np.asarray(json.dumps({k: v for k, v in header.items() if v is not None}))
    np.savez(path, **arrays)


def test_the_feature_set_is_read_from_the_file(tmp_path):
    path = tmp_path / "lopt_theta.npz"
    lopt.save(path, lopt.init(jax.random.key(0), hidden_sizes=(8,)))
    rewrite_header(path, features="rms")  # a 19-input θ that says it reads 25 inputs
    with pytest.raises(ValueError, match=r"reads the 'rms' features \(25\) but its first layer"):
        lopt.load(path)
    rewrite_header(path, features="rms_raw_depth")  # a θ of the removed hand-set growth rule
    with pytest.raises(ValueError, match="'rms_raw_depth' features, which this version"):
        lopt.load(path)
    rewrite_header(path, features=None)  # written before headers named a set: the base set
    assert lopt.load(path).features == "base"


def test_env_meta_trains_rms_features():
    kwargs = dict(task="quadratic", min_length=3, max_length=3, lopt_hidden_sizes=(4,))
    env = envs.make("learned_optimizer", lopt_features="rms", **kwargs)
    assert np.size(env.spec.default_action) == 25 * 4 + 4 + 4 * 2 + 2
    assert env.lopt_theta(jnp.asarray(env.spec.default_action)).features == "rms"
    base = envs.make("learned_optimizer", **kwargs)
    assert np.size(base.spec.default_action) == 19 * 4 + 4 + 4 * 2 + 2
    params, opt_state = env.init_inner(jax.random.key(0))
    theta = jnp.asarray(env.spec.default_action)
    after, _, loss = env.inner_step(theta, params, opt_state, 0, jax.random.key(1))
    assert np.isfinite(float(loss))
    assert 0 < float(jnp.abs(after["p"] - params["p"]).max()) < 0.1
    with pytest.raises(ValueError, match="env.kwargs.lopt_features: unknown"):
        envs.make("learned_optimizer", lopt_features="adam", **kwargs)
    for removed in ("lopt_nominal_growth", "lopt_nominal_growth_until"):
        with pytest.raises(ValueError, match=f"{removed} is not a setting"):
            envs.make("learned_optimizer", lopt_features="rms", **{removed: 0.01}, **kwargs)


def test_save_and_load_without_a_config(tmp_path):
    theta = lopt.init(jax.random.key(4), hidden_sizes=(8, 8))
    lopt.save(tmp_path / "lopt_theta.npz", theta)
    loaded = lopt.load(tmp_path)  # a run dir works too
    assert jax.tree.structure(loaded) == jax.tree.structure(theta) and loaded.features == "base"
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


def test_log_loss_rewards_minus_the_log_loss_and_charges_the_log_cap_on_divergence():
    kwargs = dict(task="quadratic", min_length=5, max_length=5)
    plain, logged = (
        envs.make("learned_optimizer", **kwargs),
        envs.make("learned_optimizer", log_loss=True, **kwargs),
    )
    theta = jnp.asarray(plain.spec.default_action)
    key = jax.random.key(3)
    _, plain_rewards = unrolled.inner_run(plain, lambda obs: theta, key)
    _, log_rewards = unrolled.inner_run(logged, lambda obs: theta, key)
    np.testing.assert_allclose(log_rewards, -np.log(-np.asarray(plain_rewards) + 1e-6), rtol=1e-5)
    huge = theta.at[-2:].set(jnp.array([1e4, 1e4]))  # the second step's loss is past the cap
    _, rewards = unrolled.inner_run(logged, lambda obs: huge, key)
    assert float(rewards[0]) == pytest.approx(float(log_rewards[0]))  # the same start
    charged = -4 * np.log(logged.loss_cap + 1e-6)  # the log cap for the step and the 3 left
    assert float(rewards[1:].sum()) == pytest.approx(charged, rel=1e-5)
    with pytest.raises(ValueError, match="log_loss must be true or false"):
        envs.make("learned_optimizer", log_loss="yes", **kwargs)


def test_step_mult_scales_meta_trainings_steps_from_the_same_initial_optimizer():
    kwargs = dict(task="quadratic", min_length=3, max_length=3)
    standard = envs.make("learned_optimizer", **kwargs)
    tenfold = envs.make("learned_optimizer", step_mult=1e-2, **kwargs)
    theta = jnp.asarray(standard.spec.default_action)
    params = {"w": jax.random.normal(jax.random.key(0), (5, 4))}
    grads = {"w": jax.random.normal(jax.random.key(1), (5, 4))}

    def step(layers):
        return lopt.update(layers, grads, params, lopt.init_state(params))[0]["w"] - params["w"]

    # The same flat θ moves the parameters 10× as far (to float32 rounding of p − step, |p| ~ 1).
    tenfold_step = step(tenfold.lopt_theta(theta))
    assert np.abs(tenfold_step).mean() > 1e-3  # far above the tolerance below
    np.testing.assert_allclose(tenfold_step, 10 * step(standard.lopt_theta(theta)), atol=3e-6)
    # Both start from lopt.init's optimizer: θ_0's o_dir weights are a tenth in the tenfold env.
    theta_0 = tenfold.lopt_theta(jnp.asarray(tenfold.spec.default_action))
    initial = standard.lopt_theta(theta)
    for a, b in zip(jax.tree.leaves(theta_0), jax.tree.leaves(initial), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    sampled = tenfold.lopt_theta(tenfold.sample_theta(jax.random.key(3)))
    np.testing.assert_allclose(
        sampled.layers[-1]["w"], lopt.init(jax.random.key(3)).layers[-1]["w"], rtol=1e-6
    )
    for bad in (0, -1e-3, "big", True):
        with pytest.raises(ValueError, match="step_mult must be a number > 0"):
            envs.make("learned_optimizer", step_mult=bad, **kwargs)


def test_train_and_heldout_distributions_differ():
    key = jax.random.key(5)
    for task in lopt_tasks.TASKS:
        train = lopt_tasks.make(task, "train")
        heldout = lopt_tasks.make(task, "heldout")
        train_shapes = [p.shape for p in jax.tree.leaves(jax.eval_shape(train.init, key))]
        heldout_shapes = [p.shape for p in jax.tree.leaves(jax.eval_shape(heldout.init, key))]
        assert train_shapes != heldout_shapes, task  # another width / depth
        if task != "quadratic":  # label permutations from disjoint seed streams
            permutations = train.sample(key)["permutation"], heldout.sample(key)["permutation"]
            assert not np.array_equal(*permutations)
    with pytest.raises(ValueError, match="env.kwargs.task must be one of"):
        lopt_tasks.make("resnet")
    with pytest.raises(ValueError, match="min_length"):
        envs.make("learned_optimizer", min_length=50, max_length=10)


def splits(train, val=None, test=None, **accuracies) -> dict:
    """Curves [seeds, points] of one optimizer by split (val and test default to train), and
    any ``{split}_accuracy`` curves."""
    return {"train": train, "val": train if val is None else val,
            "test": train if test is None else test, **accuracies}  # fmt: skip


def eval_result(steps, learned, baselines, objective="train_loss", learned_sps=2e-3) -> dict:
    """``evaluate_distribution``'s result; ``baselines``: {name: (lr or Setting, seconds/step,
    curves)}."""

    def entry(setting, sps, curves):
        setting = setting if isinstance(setting, Setting) else Setting(setting)
        scores = {setting: lopt_eval.tuning_score(curves, objective)}
        return {"setting": setting, "scores": scores, "seconds_per_step": sps, **curves}

    return {
        "steps": steps, "objective": objective, "learned": learned,
        "learned_seconds_per_step": learned_sps,
        "baselines": {name: entry(*spec) for name, spec in baselines.items()},
    }  # fmt: skip


def three_seeds(curve) -> np.ndarray:
    """Seeds at 0.5×, 1× and 2× ``curve``: their geometric mean is ``curve``."""
    return np.outer([0.5, 1.0, 2.0], curve)


def staircase(*drops: dict[int, float], start: float = 2.0) -> np.ndarray:
    """[seeds, 11] curves on ``STEPS``: each seed at ``start`` until the steps of its ``drops``
    ({step: value}), then at the latest drop's value."""
    curves = np.full((len(drops), len(STEPS)), start)
    for curve, seed_drops in zip(curves, drops, strict=True):
        for step, value in sorted(seed_drops.items()):
            curve[STEPS >= step] = value
    return curves


STEPS = np.arange(0, 101, 10)
T_2 = 4.302652729749462  # the 97.5 % quantile of Student's t with 2 degrees of freedom
T_1 = 12.706204736174694  # ... with 1


def test_evaluation_measures_speedup_against_the_best_baseline_on_the_training_loss():
    adam = splits(np.tile(np.linspace(2.0, 0.5, 11), (3, 1)))
    rmsprop = splits(
        np.tile(np.linspace(2.0, 0.3, 11), (3, 1)),
        test=three_seeds([2.0, 1.0, 0.6, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7]),
    )
    sgd = splits(np.tile(np.linspace(2.0, 1.0, 11), (3, 1)))
    learned = splits(  # reaches 0.3 (RMSProp's final loss) at step 90, 0.5 (Adam's) at 80
        np.tile(np.linspace(2.0, 0.1, 11), (3, 1)),
        test=three_seeds([2.0, 1.0, 0.5, 0.3, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]),
    )
    tuned = Setting(3e-3, "cosine", 0.1)
    baselines = {"adam": (1e-3, 1e-3, adam), "rmsprop": (tuned, 1.5e-3, rmsprop),
                 "sgd_momentum": (0.1, 0.5e-3, sgd)}  # fmt: skip
    row = summarize(eval_result(STEPS, learned, baselines))
    assert row["best_baseline"] == "rmsprop" and row["best_baseline_lr"] == 3e-3
    assert row["best_baseline_schedule"] == "cosine" and row["best_baseline_weight_decay"] == 0.1
    assert row["best_baseline_final_loss"] == pytest.approx(0.3)
    assert row["target_loss"] == pytest.approx(0.3)
    assert row["learned_steps_to_target"] == 90 and row["baseline_steps_to_target"] == 100
    assert row["speedup_steps"] == pytest.approx(100 / 90)
    assert row["learned_seconds_to_target"] == pytest.approx(90 * 2e-3)
    assert row["baseline_seconds_to_target"] == pytest.approx(100 * 1.5e-3)
    assert row["speedup_seconds"] == pytest.approx(100 * 1.5e-3 / (90 * 2e-3))
    assert row["learned_ms_per_step"] == pytest.approx(2.0)
    assert row["best_baseline_ms_per_step"] == pytest.approx(1.5)
    # Test loss: at each seed's best validation step (here the last point), not the test
    # curve's own minimum (0.25 for the learned optimizer, 0.4 for RMSProp).
    assert row["learned_test_loss_at_best_val"] == pytest.approx(0.8 * 3.5 / 3)
    assert row["best_baseline_test_loss_at_best_val"] == pytest.approx(0.7 * 3.5 / 3)
    assert "learned_best_val_loss" not in row and "learned_test_accuracy_at_best_val" not in row
    for name, (setting, sps, curves) in baselines.items():
        lr = setting.lr if isinstance(setting, Setting) else setting
        assert row[f"{name}_lr"] == lr and row[f"{name}_ms_per_step"] == pytest.approx(1e3 * sps)
        assert row[f"{name}_final_loss"] == pytest.approx(curves["train"][0, -1])
    assert row["rmsprop_grid"] == [{"lr": 3e-3, "schedule": "cosine", "weight_decay": 0.1,
                                    "score": pytest.approx(0.3)}]  # fmt: skip
    # The adam_* keys (and learned_steps_to_adam_final) still compare with tuned Adam.
    assert row["adam_lr"] == 1e-3 and row["adam_final_loss"] == pytest.approx(0.5)
    assert row["learned_steps_to_adam_final"] == 80 and row["adam_steps_to_final"] == 100
    assert row["adam_speedup_steps"] == pytest.approx(100 / 80)
    assert row["adam_speedup_seconds"] == pytest.approx(100 * 1e-3 / (80 * 2e-3))
    assert row["learned_diverged"] == 0
    table = markdown_table({"train": row}, 100, 3)
    assert "| train | RMSProp (lr 0.003, cosine, wd 0.1) | 0.3 |" in table
    assert "| 90 / 100 | 1.11× | 0.83× |" in table
    # Each tuned baseline: its setting, final loss and test loss at the best validation step.
    assert ("| train | lr 0.001 | 0.5 | 0.5 | lr 0.003, cosine, wd 0.1 | 0.3 | 0.817 "
            "| lr 0.1 | 1 | 1 |") in table  # fmt: skip

    # A baseline at its final loss from step 50 on: its own steps count, not the run's length.
    early = splits(np.tile(np.concatenate([np.linspace(2.0, 0.3, 6), np.full(5, 0.3)]), (3, 1)))
    row = summarize(eval_result(STEPS, learned, {**baselines, "rmsprop": (3e-3, 1e-3, early)}))
    assert row["baseline_steps_to_target"] == 50 and row["speedup_steps"] == pytest.approx(50 / 90)
    # Never reached, and a diverged run (NaN) counted.
    worse = splits(np.tile(np.linspace(3.0, 1.5, 11), (3, 1)))
    worse["train"][1, -1] = np.nan
    never = summarize(eval_result(STEPS, worse, baselines))
    assert never["learned_steps_to_target"] is None and never["speedup_seconds"] is None
    assert never["learned_steps_to_adam_final"] is None and never["learned_diverged"] == 1
    assert "| never / 100 | — | — |" in markdown_table({"train": never}, 100, 3)
    assert never["learned_seed_steps_to_target"] == [None, None, None]


def test_fixed_targets_pair_each_seed_with_the_best_baseline():
    # Three seeds: each optimizer's first step at 1e-1, 1e-2, 1e-3 and 100 % training accuracy
    # set by hand, and the speed-ups, counts and t intervals that follow from them.
    learned = splits(
        staircase({20: 0.1, 50: 0.01, 80: 1e-3}, {30: 0.1, 60: 0.01}, {40: 0.1, 70: 0.05}),
        train_accuracy=staircase({30: 1.0}, {100: 1.0}, {10: 0.99}, start=0.5),
    )
    rmsprop = splits(  # final training loss 0.01 on every seed
        staircase({40: 0.1, 100: 0.01}, {60: 0.01}, {40: 0.1, 90: 0.01}),
        train_accuracy=staircase({60: 1.0}, {50: 1.0}, {70: 1.0}, start=0.5),
    )
    adam = splits(np.full((3, 11), 1.0), train_accuracy=np.full((3, 11), 0.5))
    baselines = {"adam": (1e-3, 1e-3, adam), "rmsprop": (3e-3, 1e-3, rmsprop)}
    targets = summarize(eval_result(STEPS, learned, baselines, learned_sps=2e-3))["targets"]
    assert list(targets) == [
        "train_loss_0.1", "train_loss_0.01", "train_loss_0.001", "train_accuracy_100",
        "baseline_final_loss",
    ]  # fmt: skip
    loss_1 = targets["train_loss_0.1"]
    assert loss_1["learned_steps"] == [20, 30, 40] and loss_1["baseline_steps"] == [40, 60, 40]
    assert loss_1["speedup_steps"] == [2.0, 2.0, 1.0]
    assert loss_1["speedup_seconds"] == pytest.approx([1.0, 1.0, 0.5])  # a step costs 2×
    assert (loss_1["sooner"], loss_1["same"], loss_1["later"]) == (2, 1, 0)
    assert loss_1["paired_seeds"] == 3
    # log speed-ups ln 2, ln 2, 0: mean (2/3)·ln 2, standard error ln 2 / 3.
    geomean = loss_1["speedup_steps_geomean"]
    assert geomean["mean"] == pytest.approx(2 ** (2 / 3))
    assert geomean["ci"] == pytest.approx([2 ** ((2 - T_2) / 3), 2 ** ((2 + T_2) / 3)])
    wall_clock = loss_1["speedup_seconds_geomean"]
    assert wall_clock["mean"] == pytest.approx(0.5 * 2 ** (2 / 3))
    assert wall_clock["ci"] == pytest.approx(
        [0.5 * 2 ** ((2 - T_2) / 3), 0.5 * 2 ** ((2 + T_2) / 3)]
    )
    # Seconds saved per seed: 0.04 − 0.04, 0.06 − 0.06, 0.04 − 0.08.
    saved = loss_1["seconds_saved"]
    half = T_2 * np.std([0, 0, -0.04], ddof=1) / np.sqrt(3)
    assert saved["mean"] == pytest.approx(-0.04 / 3)
    assert saved["ci"] == pytest.approx([-0.04 / 3 - half, -0.04 / 3 + half])
    # A seed that never gets there: later than any step, and out of the paired statistics.
    for name in ("train_loss_0.01", "baseline_final_loss"):
        paired = targets[name]
        assert paired["learned_steps"] == [50, 60, None], name
        assert paired["baseline_steps"] == [100, 60, 90], name
        assert paired["speedup_steps"] == [2.0, 1.0, None], name
        assert (paired["sooner"], paired["same"], paired["later"]) == (1, 1, 1), name
        assert paired["learned_reached"] == 2 and paired["baseline_reached"] == 3, name
        geomean = paired["speedup_steps_geomean"]
        assert paired["paired_seeds"] == 2 and geomean["mean"] == pytest.approx(np.sqrt(2)), name
        low, high = (np.log(2) / 2 - T_1 * np.log(2) / 2, np.log(2) / 2 + T_1 * np.log(2) / 2)
        assert geomean["ci"] == pytest.approx([np.exp(low), np.exp(high)]), name
    # Neither ever gets there on two seeds: the same; no pair, no interval.
    loss_3 = targets["train_loss_0.001"]
    assert loss_3["learned_steps"] == [80, None, None] and loss_3["baseline_steps"] == [None] * 3
    assert (loss_3["sooner"], loss_3["same"], loss_3["later"]) == (1, 2, 0)
    assert loss_3["paired_seeds"] == 0 and loss_3["speedup_seconds_geomean"]["mean"] is None
    accuracy = targets["train_accuracy_100"]
    assert accuracy["learned_steps"] == [30, 100, None]
    assert accuracy["baseline_steps"] == [60, 50, 70]
    assert (accuracy["sooner"], accuracy["same"], accuracy["later"]) == (1, 0, 2)
    assert accuracy["speedup_steps_geomean"]["mean"] == pytest.approx(1.0)  # 2× and 0.5×
    table = markdown_table({"train": summarize(eval_result(STEPS, learned, baselines))}, 100, 3)
    assert "| train | train_loss_0.1 | 3 / 3 | 2 / 1 / 0 | 1.59× [" in table
    assert "| train | train_loss_0.001 | 1 / 0 | 1 / 2 / 0 | — | — | — |" in table
    assert "| train | train_loss_0.01 | 1.00× | 0.50× | — |" in table  # each seed, wall-clock


def test_paired_interval_is_a_t_interval():
    interval = lopt_eval.paired_interval([1.0, 2.0, 3.0])
    assert interval["n"] == 3 and interval["mean"] == pytest.approx(2.0)
    assert interval["ci"] == pytest.approx([2 - T_2 / np.sqrt(3), 2 + T_2 / np.sqrt(3)])
    assert lopt_eval.paired_interval([0.5]) == {"n": 1, "mean": 0.5, "ci": None}
    assert lopt_eval.paired_interval([]) == {"n": 0, "mean": None, "ci": None}


def test_test_loss_is_read_at_each_seeds_best_validation_step():
    # Seed 0's validation loss is lowest at point 3 (step 30), seed 1's at point 7 (step 70)
    # and its run diverges after point 8 (NaN); the test curves are lowest elsewhere.
    val = np.array([[2.0, 1.5, 1.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1],
                    [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8, 0.3, 0.9, np.nan, np.nan]])  # fmt: skip
    test = np.tile(np.linspace(1.0, 0.1, 11), (2, 1))
    accuracy = np.tile(np.linspace(0.5, 1.0, 11), (2, 1))
    learned = splits(val, val=val, test=test, test_accuracy=accuracy)
    found = lopt_eval.at_best_validation(learned)
    assert found["points"] == [3, 7]
    assert found["test_loss"] == pytest.approx([test[0, 3], test[1, 7]])
    assert found["test_accuracy"] == pytest.approx([accuracy[0, 3], accuracy[1, 7]])
    # Against a baseline whose best validation points are 10 and 5.
    base_val = np.array([np.linspace(2.0, 0.2, 11), [2, 1, 0.9, 0.8, 0.7, 0.1, 1, 1, 1, 1, 1]])
    base_test = np.full((2, 11), 0.5)
    base_accuracy = np.full((2, 11), 0.8)
    baseline = splits(base_val, val=base_val, test=base_test, test_accuracy=base_accuracy)
    row = summarize(eval_result(STEPS, learned, {"adam": (1e-3, 1e-3, baseline)}, "val_loss"))
    expected = [test[0, 3] - 0.5, test[1, 7] - 0.5]
    assert row["test"]["learned_best_val_points"] == [3, 7]
    assert row["test"]["baseline_best_val_points"] == [10, 5]
    assert row["learned_test_loss_at_best_val"] == pytest.approx(np.mean([test[0, 3], test[1, 7]]))
    assert row["best_baseline_test_loss_at_best_val"] == pytest.approx(0.5)
    difference = row["test"]["test_loss_difference"]
    assert difference["per_seed"] == pytest.approx(expected)
    half = T_1 * np.std(expected, ddof=1) / np.sqrt(2)
    assert difference["ci"] == pytest.approx([np.mean(expected) - half, np.mean(expected) + half])
    assert difference["wins"] == sum(d < 0 for d in expected)
    accuracy_difference = row["test"]["test_accuracy_difference"]
    assert accuracy_difference["per_seed"] == pytest.approx(
        [accuracy[0, 3] - 0.8, accuracy[1, 7] - 0.8]
    )
    assert accuracy_difference["wins"] == 1  # seed 1's 0.85 is above 0.8, seed 0's 0.65 not
    assert row["adam_test_accuracy_at_best_val"] == pytest.approx(0.8)


def test_the_baselines_grid_tunes_schedules_and_weight_decay():
    assert lopt_eval.SCHEDULES == ("constant", "cosine")
    assert lopt_eval.WEIGHT_DECAYS[0] == 0.0 and len(lopt_eval.WEIGHT_DECAYS) > 1
    middle = lopt_eval.LR_GRID[5]
    second = lopt_eval.round_two(middle)
    neighbours = set(lopt_eval.LR_GRID[4:7])
    assert {s.lr for s in second} == neighbours
    assert {(s.schedule, s.weight_decay) for s in second} == {
        (schedule, decay) for schedule in lopt_eval.SCHEDULES for decay in lopt_eval.WEIGHT_DECAYS
    } - {("constant", 0.0)}  # round one ran those
    assert len(second) == 3 * 2 * len(lopt_eval.WEIGHT_DECAYS) - 3
    assert {s.lr for s in lopt_eval.round_two(lopt_eval.LR_GRID[0])} == set(lopt_eval.LR_GRID[:2])
    # A constant, undecayed setting is the plain optax optimizer.
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = {"w": jnp.array([0.5, 0.1, -1.0])}

    def updates(optimizer, times=3, grads=grads):
        state = optimizer.init(params)
        for _ in range(times):
            update, state = optimizer.update(grads, state, params)
        return np.asarray(update["w"])

    plain = {"adam": optax.adam, "rmsprop": optax.rmsprop,
             "sgd_momentum": lambda lr: optax.sgd(lr, momentum=0.9)}  # fmt: skip
    for name, make in plain.items():
        ours = lopt_eval.baseline(name, 10)(jnp.asarray(Setting(0.03).vector()))
        np.testing.assert_allclose(updates(ours), updates(make(0.03)), rtol=1e-6, err_msg=name)
    # Cosine: the rate decays from lr to 0 over the run (optax.cosine_decay_schedule).
    cosine = lopt_eval.baseline("sgd_momentum", 10)(jnp.asarray(Setting(0.1, "cosine").vector()))
    state = cosine.init(params)
    for _ in range(6):
        update, state = cosine.update({"w": jnp.ones(3)}, state, params)
    momentum = sum(0.9**k for k in range(6))
    rate = 0.1 * 0.5 * (1 + np.cos(np.pi * 5 / 10))
    np.testing.assert_allclose(update["w"], -rate * momentum, rtol=1e-5)
    # Weight decay, decoupled: with no gradient the update is −lr·decay·p, for every baseline.
    zero = {"w": jnp.zeros(3)}
    for name in plain:
        decayed = lopt_eval.baseline(name, 10)(
            jnp.asarray(Setting(0.03, weight_decay=0.1).vector())
        )
        np.testing.assert_allclose(
            updates(decayed, 1, zero), -0.03 * 0.1 * params["w"], rtol=1e-6, err_msg=name
        )


def test_evaluation_tunes_every_baseline_over_the_whole_grid(capsys):
    # The quadratic family, 4 steps: every baseline's grid holds the 11 rates of round one and
    # round two's schedules and weight decays, and the tuned setting is the best-scored one.
    task = lopt_tasks.make("quadratic")
    theta = lopt.init(jax.random.key(0), (4,))
    result = lopt_eval.evaluate_distribution(task, theta, 4, 2, 2, has_splits=False)
    for name, curves in result["baselines"].items():
        scores = curves["scores"]
        assert len(scores) == 11 + 3 * 2 * len(lopt_eval.WEIGHT_DECAYS) - 3 or len(scores) == (
            11 + 2 * 2 * len(lopt_eval.WEIGHT_DECAYS) - 2
        ), name
        assert {s.schedule for s in scores} == {"constant", "cosine"}, name
        assert {s.weight_decay for s in scores} == set(lopt_eval.WEIGHT_DECAYS), name
        assert curves["setting"] == min(scores, key=scores.get), name
        assert curves["train"].shape == (2, 3) and "train_accuracy" not in curves, name
    assert "sgd_momentum: tuned lr" in capsys.readouterr().out
    row = summarize(result)
    assert (
        "train_accuracy_100" not in row["targets"] and "test_accuracy_difference" not in row["test"]
    )
    assert len(row["adam_grid"]) == len(result["baselines"]["adam"]["scores"])


def test_evaluation_names_each_seeds_steps_to_the_target():
    # Seeds at 0.5×, 1× and 2× the curve reach RMSProp's 0.3 at 80, 90 and 100 (their
    # geometric mean at 90); the baseline's identical seeds all at 100.
    learned = splits(three_seeds(np.linspace(2.0, 0.1, 11)))
    rmsprop = splits(np.tile(np.linspace(2.0, 0.3, 11), (3, 1)))
    adam = splits(np.tile(np.linspace(2.0, 0.5, 11), (3, 1)))
    baselines = {"adam": (1e-3, 1e-3, adam), "rmsprop": (3e-3, 1e-3, rmsprop)}
    row = summarize(eval_result(STEPS, learned, baselines))
    assert row["learned_steps_to_target"] == 90
    assert row["learned_seed_steps_to_target"] == [80, 90, 100]
    assert row["baseline_seed_steps_to_target"] == [100, 100, 100]
    table = markdown_table({"train": row}, 100, 3, first_seed=30_000)
    assert "| distribution | seed 30000 | seed 30001 | seed 30002 |" in table
    assert "| train | 80 / 100 | 90 / 100 | 100 / 100 |" in table
    # A seed that never gets there is named as such.
    stuck = splits(three_seeds(np.linspace(2.0, 0.1, 11)))
    stuck["train"][2] = 1.0
    row = summarize(eval_result(STEPS, stuck, baselines))
    assert row["learned_seed_steps_to_target"] == [80, 90, None]
    assert "| train | 80 / 100 | 90 / 100 | never / 100 |" in markdown_table({"train": row}, 100, 3)
    # Every seed at the float32 floor, where the baseline ends: the geometric mean (the target)
    # rounds below each seed's own 1e-6, and each seed still counts as at the target.
    floor = np.float32(lopt_eval.LOSS_FLOOR)
    at_floor = np.concatenate([np.linspace(2.0, 0.1, 6), np.full(5, floor)]).astype(np.float32)
    ended = splits(np.tile(at_floor, (10, 1)))
    row = summarize(eval_result(STEPS, ended, {"adam": (1e-3, 1e-3, ended)}))
    assert row["learned_seed_steps_to_target"] == [60] * 10


def test_evaluation_on_the_validation_loss_tunes_for_and_targets_the_best_val_loss():
    # Adam overfits: the lowest validation loss (0.4 at step 50), but RMSProp the lowest final
    # training and validation losses.
    adam = splits(
        np.tile(np.linspace(2.0, 0.5, 11), (3, 1)),
        val=three_seeds([2.0, 1.5, 1.0, 0.8, 0.6, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    )
    rmsprop = splits(
        np.tile(np.linspace(2.0, 0.3, 11), (3, 1)),
        val=three_seeds(np.linspace(2.0, 0.5, 11)),
        test=three_seeds(np.linspace(2.0, 0.6, 11)),
    )
    sgd = splits(np.tile(np.linspace(2.0, 1.0, 11), (3, 1)))
    learned = splits(
        np.tile(np.linspace(2.0, 0.1, 11), (3, 1)),
        val=three_seeds([2.0, 1.0, 0.5, 0.35, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]),
    )
    baselines = {"adam": (1e-3, 1e-3, adam), "rmsprop": (3e-3, 1e-3, rmsprop),
                 "sgd_momentum": (0.1, 1e-3, sgd)}  # fmt: skip
    row = summarize(eval_result(STEPS, learned, baselines, objective="val_loss"))
    assert row["best_baseline"] == "adam" and row["best_baseline_lr"] == 1e-3
    assert row["target_loss"] == pytest.approx(0.4)
    assert row["best_baseline_best_val_loss"] == pytest.approx(0.4)
    assert row["learned_best_val_loss"] == pytest.approx(0.3)
    assert row["rmsprop_best_val_loss"] == pytest.approx(0.5)
    assert row["learned_steps_to_target"] == 30 and row["baseline_steps_to_target"] == 50
    assert row["speedup_steps"] == pytest.approx(50 / 30)
    assert row["speedup_seconds"] == pytest.approx(50 * 1e-3 / (30 * 2e-3))
    # Adam's test loss (its training curve) at its best validation step, 50: 1.25.
    assert row["best_baseline_test_loss_at_best_val"] == pytest.approx(1.25)
    table = markdown_table({"heldout": row}, 100, 3, "val_loss")
    assert "| heldout | Adam (lr 0.001) |" in table and "| 0.3 / 0.4 |" in table
    # Every baseline's, not only the best's: RMSProp's best validation step is the last.
    assert row["rmsprop_test_loss_at_best_val"] == pytest.approx(0.6 * 3.5 / 3)
    assert "| heldout | lr 0.001 | 0.4 | 1.25 | lr 0.003 | 0.5 | 0.7 | lr 0.1 | 1 | 1 |" in table
    # On the training loss, the same curves make RMSProp the best baseline.
    assert summarize(eval_result(STEPS, learned, baselines))["best_baseline"] == "rmsprop"
    # Tuning a baseline: the tail of the training loss, or the best validation loss.
    grid = {Setting(1e-3): adam, Setting(1e-2, "cosine", 0.1): rmsprop}
    assert tune(grid, "train_loss")[0] == Setting(1e-2, "cosine", 0.1)
    assert tune(grid, "val_loss")[0] == Setting(1e-3)


@pytest.mark.slow  # ~20 s of compiling; summarize's numbers are tested in the default suite
def test_lopt_eval_compares_with_three_tuned_baselines_on_the_validation_loss(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lopt.save(run_dir / "lopt_theta.npz", lopt.init(jax.random.key(0)))
    (run_dir / "config.yaml").write_text("env: {kwargs: {task: mlp_digits, objective: val_loss}}\n")
    argv = [str(run_dir), "--steps", "20", "--seeds", "2", "--record-every", "10"]
    assert lopt_eval.main([*argv, "--distributions", "heldout"]) == 0  # one: compiling is slow
    assert "sgd_momentum: tuned lr" in capsys.readouterr().out  # progress, per baseline
    out = run_dir / "lopt_eval"
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "mlp_digits" and results["objective"] == "val_loss"
    assert results["first_seed"] == lopt_eval.SEED_OFFSET
    assert results["machine"] == lopt_eval.machine()
    assert list(lopt_tasks.EVAL_DISTRIBUTIONS["mlp_digits"]) == ["train", "heldout"]
    assert "train" not in results
    for distribution in ("heldout",):
        row = results[distribution]
        best = row["best_baseline"]
        assert best in {"adam", "rmsprop", "sgd_momentum"}, distribution
        assert row["best_baseline_lr"] == row[f"{best}_lr"]
        assert row["best_baseline_best_val_loss"] == min(
            row[f"{name}_best_val_loss"] for name in lopt_eval.BASELINES
        )
        assert row["target_loss"] == row["best_baseline_best_val_loss"]
        for name in lopt_eval.BASELINES:
            assert row[f"{name}_lr"] in lopt_eval.LR_GRID and row[f"{name}_ms_per_step"] > 0
            assert np.isfinite(row[f"{name}_final_loss"])
        for key in ("learned_test_loss_at_best_val", "best_baseline_test_loss_at_best_val",
                    "learned_test_accuracy_at_best_val", "learned_best_val_loss",
                    "best_baseline_final_loss", "learned_ms_per_step"):  # fmt: skip
            assert 0 < row[key] < np.inf, (distribution, key)
        assert row["baseline_steps_to_target"] in (0, 10, 20)
        assert set(row["targets"]) >= {"train_loss_0.01", "train_accuracy_100"}
        assert row[f"{best}_schedule"] in lopt_eval.SCHEDULES
        assert "speedup_steps" in row and "speedup_seconds" in row and "adam_final_loss" in row
    assert "| heldout |" in (out / "results.md").read_text()
    assert (out / "curves.png").stat().st_size > 10_000
    # The quadratic family has no validation split.
    assert lopt_eval.main([str(run_dir), "--task", "quadratic"]) == 2
    assert "no validation split" in capsys.readouterr().err
    assert lopt_eval.main([*argv, "--distributions", "heldout_mlp"]) == 2
    assert "not among mlp_digits's ['train', 'heldout']" in capsys.readouterr().err


def test_lopt_eval_curves_see_the_same_minibatches_at_any_recording_interval():
    task = lopt_tasks.make("mlp_digits", batch_size=16)
    params, variant, data_key = jax.tree.map(lambda x: x[0], lopt_eval.draw_tasks(task, 1))
    optimizer = optax.sgd(0.1)
    coarse = lopt_eval.make_curve(task, 12, 6)(optimizer, params, variant, data_key)
    fine = lopt_eval.make_curve(task, 12, 3)(optimizer, params, variant, data_key)
    # Steps 0, 6 and 12 are in both: the same minibatches give the same losses.
    np.testing.assert_allclose(coarse, fine[::2], rtol=1e-5)
    assert float(fine[-1, 0]) < float(fine[0, 0])
    # With accuracy: the three splits' losses, then their accuracies, from one forward pass each.
    both = lopt_eval.make_curve(task, 12, 6, lopt_eval.SPLITS, accuracy=True)
    recorded = np.asarray(both(optimizer, params, variant, data_key))
    assert recorded.shape == (3, 6)
    np.testing.assert_allclose(recorded[:, 0], coarse[:, 0], rtol=1e-5)
    for column, split in enumerate(lopt_eval.SPLITS):
        np.testing.assert_allclose(
            recorded[0, [column, 3 + column]], task.full_metrics(params, variant, split), rtol=1e-5
        )
    assert np.all((recorded[:, 3:] >= 0) & (recorded[:, 3:] <= 1))


def test_lopt_eval_first_seed_draws_other_tasks_and_refuses_low_seeds(tmp_path, capsys):
    task = lopt_tasks.make("quadratic")
    targets = [lopt_eval.draw_tasks(task, 2, first)[1] for first in (10_000, 10_001, 20_000)]
    np.testing.assert_array_equal(lopt_eval.draw_tasks(task, 2)[1], targets[0])
    np.testing.assert_array_equal(targets[0][1], targets[1][0])  # seed 10,001 in both
    assert not np.allclose(targets[0], targets[2])
    lopt.save(tmp_path / "lopt_theta.npz", lopt.init(jax.random.key(0)))
    assert lopt_eval.main([str(tmp_path), "--first-seed", "5"]) == 2
    assert "--first-seed must be >= 10000, got 5" in capsys.readouterr().err


def test_lopt_eval_records_the_machine():
    machine = lopt_eval.machine()
    assert machine["jax"] == jax.__version__ and machine["device"] == jax.devices()[0].device_kind
    assert isinstance(machine["cpu"], str) and machine["cpu"]
