"""The unrolled-optimization tasks against plain reference loops, their published constants,
their Gymnasium face, divergence safety, the dataset loader and random θ_0.

The references below are written independently of ``pes_rl.envs``: a NumPy loop with a
hand-written gradient for the 2D toy, and for the MLP tasks their own MLP forward pass,
cross-entropy, momentum SGD and θ → hyperparameter mapping (from the task docstrings). The
only piece they share with the envs is the key-splitting convention that draws minibatch
indices (``_minibatch_indices``); the initial inner params are taken from ``env.reset``
(initialization is not under test).
"""

from __future__ import annotations

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pes_rl import envs, policies
from pes_rl.meta import data

NUM_STEPS = 5  # inner steps compared with the references
BATCH_SIZE = 100  # the MLP tasks' default minibatch size


def env_rewards(env, theta, num_steps: int, key=None):
    """(rewards, dones, initial state) of ``num_steps`` jitted env steps from a reset."""
    state = env.reset(jax.random.key(0) if key is None else key)
    initial = state
    step = jax.jit(env.step)
    rewards, dones = [], []
    for _ in range(num_steps):
        state = step(state, jnp.asarray(theta, jnp.float32))
        rewards.append(float(state.reward))
        dones.append(float(state.done))
    return np.array(rewards), np.array(dones), initial


# 2D toy: NumPy loop with a hand-written gradient ----------------------------------------------


def toy_f(x):
    return (
        np.sqrt(x[0] ** 2 + 5) - np.sqrt(5)
        + np.sin(x[1]) ** 2 * np.exp(-5 * x[0] ** 2)
        + 0.25 * abs(x[1] - 100)
    )  # fmt: skip


def toy_grad(x):
    decay = np.exp(-5 * x[0] ** 2)
    return np.array(
        [
            x[0] / np.sqrt(x[0] ** 2 + 5) - 10 * x[0] * np.sin(x[1]) ** 2 * decay,
            2 * np.sin(x[1]) * np.cos(x[1]) * decay + 0.25 * np.sign(x[1] - 100),
        ]
    )


def toy_reference_rewards(theta, num_steps: int, horizon: int = 100):
    x = np.array([1.0, 1.0])
    rewards = []
    for t in range(num_steps):
        lr = (1 - t / horizon) * np.exp(theta[0]) + (t / horizon) * np.exp(theta[1])
        x = x - lr * (toy_grad(x) + 1e-10 * x)
        rewards.append(-toy_f(x))
    return np.array(rewards)


def test_lr_toy2d_matches_numpy_reference():
    theta = np.array([-1.0, 0.5])
    rewards, dones, _ = env_rewards(envs.make("lr_toy2d"), theta, NUM_STEPS)
    np.testing.assert_allclose(rewards, toy_reference_rewards(theta, NUM_STEPS), rtol=1e-4)
    assert dones.tolist() == [0.0] * NUM_STEPS


def test_lr_toy2d_published_meta_loss_at_theta0():
    env = envs.make("lr_toy2d")
    np.testing.assert_allclose(env.spec.default_action, [-4.0, -4.0])
    rewards, dones, _ = env_rewards(env, env.spec.default_action, 100)
    assert -rewards.sum() == pytest.approx(2487.8, abs=0.1)
    assert dones[-1] == 1.0 and dones[:-1].sum() == 0.0
    # The NumPy reference agrees on the whole run.
    np.testing.assert_allclose(-rewards.sum(), -toy_reference_rewards([-4.0, -4.0], 100).sum(),
                               rtol=1e-4)  # fmt: skip


# MLP tasks: a plain loop with jax.grad on a separately written loss ----------------------------


def _minibatch_indices(step_key, num_train: int, num_objective: int):
    """The one shared piece: the envs' key convention for this step's minibatch indices.

    The step key splits into (batch key, objective key); each draws ``BATCH_SIZE`` row indices
    uniformly with replacement.
    """
    batch_key, objective_key = jax.random.split(step_key)
    train_index = jax.random.randint(batch_key, (BATCH_SIZE,), 0, num_train)
    objective_index = jax.random.randint(objective_key, (BATCH_SIZE,), 0, num_objective)
    return np.asarray(train_index), np.asarray(objective_index)


def ref_logits(weights, biases, masks, x):
    """ReLU MLP on lists of weight matrices and bias vectors; masks[l] gates hidden layer l."""
    h = x
    for layer, (w, b) in enumerate(zip(weights[:-1], biases[:-1], strict=True)):
        h = jnp.maximum(h @ w + b, 0.0)
        if masks is not None:
            h = h * masks[layer]
    return h @ weights[-1] + biases[-1]


def ref_cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = jnp.log(jnp.exp(shifted).sum(axis=1))
    return jnp.mean(log_z - shifted[jnp.arange(len(labels)), labels])


def ref_loss(wb, masks, x, y):
    weights, biases = wb
    return ref_cross_entropy(ref_logits(weights, biases, masks, x), y)


def ref_mlp_rewards(env, theta, hyperparameters, objective: str, num_steps: int):
    """Rewards of ``num_steps`` inner steps of SGD + momentum from the env's initial params.

    ``hyperparameters(theta, t) -> (masks or None, lrs, momentums)``, the last two as
    (weights, biases) pairs of per-layer lists.
    """
    dataset = data.load("digits")
    train_x, train_y = np.asarray(dataset.train_x), np.asarray(dataset.train_y)
    val_x, val_y = np.asarray(dataset.val_x), np.asarray(dataset.val_y)
    state = env.reset(jax.random.key(0))
    layers = state.inner["params"]
    wb = (
        [jnp.asarray(layer["w"]) for layer in layers],
        [jnp.asarray(layer["b"]) for layer in layers],
    )
    buffer = jax.tree.map(jnp.zeros_like, wb)
    key = jax.random.wrap_key_data(state.inner["key"])
    objective_x, objective_y = (train_x, train_y) if objective == "train_loss" else (val_x, val_y)
    rewards = []
    for t in range(num_steps):
        key, step_key = jax.random.split(key)
        train_index, objective_index = _minibatch_indices(step_key, len(train_x), len(objective_x))
        masks, lr, momentum = hyperparameters(theta, t)
        x, y = train_x[train_index], train_y[train_index]
        wb, buffer = ref_momentum_sgd_step(wb, buffer, masks, lr, momentum, x, y)
        x, y = objective_x[objective_index], objective_y[objective_index]
        if objective == "val_accuracy":
            rewards.append(float(ref_accuracy(wb, masks, x, y)))
        else:
            rewards.append(-float(jax.jit(ref_loss)(wb, masks, x, y)))
    return np.array(rewards)


@jax.jit
def ref_momentum_sgd_step(wb, buffer, masks, lr, momentum, x, y):
    """buf ← m·buf + g; p ← p − lr·buf, leaf by leaf (jitted only to keep the test fast)."""
    grads = jax.grad(ref_loss)(wb, masks, x, y)
    buffer = jax.tree.map(lambda m, b, g: m * b + g, momentum, buffer, grads)
    wb = jax.tree.map(lambda p, rate, b: p - rate * b, wb, lr, buffer)
    return wb, buffer


@jax.jit
def ref_accuracy(wb, masks, x, y):
    return jnp.mean(jnp.argmax(ref_logits(*wb, masks, x), axis=1) == y)


def lr_schedule_hyperparameters(horizon: int):
    """lr_t = exp(θ0) / (1 + t/T)^exp(θ1) for every leaf; momentum 0.9; no masks."""

    def hyperparameters(theta, t):
        lr = np.exp(theta[0]) / (1 + t / horizon) ** np.exp(theta[1])
        return None, ([lr] * 3, [lr] * 3), ([0.9] * 3, [0.9] * 3)

    return hyperparameters


@pytest.mark.parametrize("objective", ["train_loss", "val_accuracy"])
def test_lr_schedule_matches_plain_loop(objective):
    env = envs.make("lr_schedule", horizon=50, objective=objective)
    theta = np.asarray(env.spec.default_action, np.float64)
    np.testing.assert_allclose(theta, [np.log(0.003), np.log(30.0)], rtol=1e-6)
    rewards, dones, _ = env_rewards(env, theta, NUM_STEPS)
    expected = ref_mlp_rewards(env, theta, lr_schedule_hyperparameters(50), objective, NUM_STEPS)
    np.testing.assert_allclose(rewards, expected, rtol=1e-4)
    assert dones.tolist() == [0.0] * NUM_STEPS
    if objective == "train_loss":
        assert np.all(rewards < 0)
    else:
        assert np.all((rewards >= 0) & (rewards <= 1))


def hparams29_hyperparameters(theta, t):
    """θ[0:5] mask logits (keep the first ⌊sigmoid·100⌋ units), θ[5:17] log lrs and θ[17:29]
    logit momentums of the leaves in the order w0, b0, w1, b1, ..., w5, b5."""
    del t
    theta = np.asarray(theta, np.float64)
    kept = np.floor(100 / (1 + np.exp(-theta[:5]))).astype(int)
    masks = [jnp.asarray((np.arange(100) < k).astype(np.float32)) for k in kept]
    lr = np.exp(theta[5:17])
    momentum = 1 / (1 + np.exp(-theta[17:29]))
    return masks, (list(lr[0::2]), list(lr[1::2])), (list(momentum[0::2]), list(momentum[1::2]))


def hparams29_theta():
    """Masks keeping 50, 73, 33, 88 and 18 of 100 units (clear of the floor's steps), and
    distinct per-leaf learning rates and momentums."""
    rng = np.random.default_rng(0)
    mask_logits = np.array([0.0, 1.0, -0.7, 2.0, -1.5])
    log_lrs = rng.uniform(np.log(1e-3), np.log(1e-1), 12)
    momentum_logits = rng.uniform(-2.0, 2.0, 12)
    return np.concatenate([mask_logits, log_lrs, momentum_logits])


def test_hparams29_matches_plain_loop():
    env = envs.make("hparams29", horizon=50)
    theta = hparams29_theta()
    assert theta.shape == env.spec.action_space.shape == (29,)
    rewards, dones, _ = env_rewards(env, theta, NUM_STEPS)
    expected = ref_mlp_rewards(env, theta, hparams29_hyperparameters, "val_loss", NUM_STEPS)
    np.testing.assert_allclose(rewards, expected, rtol=1e-4)
    assert dones.tolist() == [0.0] * NUM_STEPS


# Gymnasium, divergence ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*Box action space")
def test_lr_toy2d_gymnasium_make_passes_env_checker():
    env = gymnasium.make("pes_rl.envs:LRToy2D-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1,) and obs[0] == 0.0
    obs, reward, terminated, truncated, _ = env.step(np.array([-4.0, -4.0], np.float32))
    assert np.isfinite(reward) and not terminated and not truncated
    assert obs[0] == pytest.approx(0.01)


@pytest.mark.parametrize(
    "gym_id, env_id, horizon",
    [("pes_rl.envs:LRSchedule-v0", "lr_schedule", 5), ("pes_rl.envs:Hparams29-v0", "hparams29", 3)],
)
def test_mlp_tasks_gymnasium_make_reset_and_step(gym_id, env_id, horizon):
    env = gymnasium.make(gym_id, horizon=horizon)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1,)
    action = envs.make(env_id, horizon=horizon).spec.default_action
    for t in range(horizon):
        obs, reward, terminated, truncated, _ = env.step(action)
        assert np.isfinite(reward) and not terminated
        assert truncated == (t == horizon - 1)
    assert obs[0] == pytest.approx(1.0)


def test_lr_schedule_divergence_is_capped_and_ends_the_run():
    env = envs.make("lr_schedule", horizon=50)
    rewards, dones, _ = env_rewards(env, [10.0, -10.0], 3)  # lr = e^10: diverges at once
    assert np.all(np.isfinite(rewards))
    # Charged the cap for this step and the 49 it had left, as if it had carried on to T.
    assert rewards[0] == -env.loss_cap * 50 == -5e4
    assert dones[0] == 1.0
    # The accuracy objective cannot exceed the cap: non-finite params end the run instead,
    # with accuracy 0 for the steps left (the objective's own scale, not the loss cap).
    accuracy_env = envs.make("lr_schedule", horizon=50, objective="val_accuracy")
    rewards, dones, _ = env_rewards(accuracy_env, [10.0, -10.0], 6)
    assert np.all(np.isfinite(rewards)) and dones.max() == 1.0
    assert np.all((rewards >= 0.0) & (rewards <= 1.0))
    # Below the cap a sane θ neither ends the run nor reaches the cap.
    rewards, dones, _ = env_rewards(env, env.spec.default_action, 3)
    assert np.all(rewards > -env.loss_cap) and dones.sum() == 0.0


# Data -----------------------------------------------------------------------------------------


def test_digits_loads_offline_with_standardized_splits():
    digits = data.load("digits")
    assert digits.train_x.shape == (1257, 64)
    assert digits.val_x.shape == digits.test_x.shape == (270, 64)
    assert digits.train_y.shape == (1257,) and digits.val_y.shape == digits.test_y.shape == (270,)
    assert digits.num_classes == 10
    assert digits.train_x.dtype == jnp.float32 and digits.train_y.dtype == jnp.int32
    np.testing.assert_allclose(np.asarray(digits.train_x).mean(0), 0.0, atol=1e-4)
    assert set(np.unique(np.asarray(digits.train_y))) == set(range(10))


def test_npz_loads_with_last_sixth_of_train_as_validation(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.normal(3.0, 2.0, (60, 4, 4))
    y_train = rng.integers(0, 3, 60)
    x_test, y_test = rng.normal(3.0, 2.0, (12, 4, 4)), rng.integers(0, 3, 12)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    dataset = data.load(str(path))
    assert dataset.train_x.shape == (50, 16) and dataset.val_x.shape == (10, 16)
    assert dataset.test_x.shape == (12, 16) and dataset.num_classes == 3
    flat = x_train.reshape(60, 16)
    mean, std = flat[:50].mean(0), flat[:50].std(0)
    np.testing.assert_allclose(dataset.train_x, (flat[:50] - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dataset.val_x, (flat[50:] - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        dataset.test_x, (x_test.reshape(12, 16) - mean) / std, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(dataset.train_y, y_train[:50])
    np.testing.assert_array_equal(dataset.val_y, y_train[50:])
    np.testing.assert_array_equal(dataset.test_y, y_test)


@pytest.mark.parametrize("kind", ["missing", "lacks_y_test", "garbage"])
def test_bad_dataset_files_raise_one_line_data_error(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    if kind == "lacks_y_test":
        np.savez(path, x_train=np.zeros((6, 2)), y_train=np.zeros(6), x_test=np.zeros((2, 2)))
    elif kind == "garbage":
        path.write_bytes(b"this is not an npz file\n\x00\x01\x02")
    with pytest.raises(data.DataError) as error:
        data.load(str(path))
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert str(path) in message and "x_train" in message and "\n" not in message
    if kind == "lacks_y_test":
        assert "y_test" in message


# Random θ_0 -----------------------------------------------------------------------------------


def test_hparams29_random_init_draws_in_the_published_ranges():
    env = envs.make("hparams29")
    policy = policies.make("constant", env, random_init=True)
    first, second = (np.asarray(policy.init(jax.random.key(seed)), np.float64) for seed in (0, 1))
    for theta in (first, second):
        assert theta.shape == (29,) and np.all(np.isfinite(theta))
        fractions = 1 / (1 + np.exp(-theta[:5]))
        lrs = np.exp(theta[5:17])
        momentums = 1 / (1 + np.exp(-theta[17:29]))
        assert np.all((fractions >= 0.2 - 1e-6) & (fractions <= 0.8 + 1e-6))
        assert np.all((lrs >= 1e-4 * (1 - 1e-5)) & (lrs <= 1e-2 * (1 + 1e-5)))
        assert np.all((momentums >= 0.01 - 1e-6) & (momentums <= 0.9 + 1e-6))
    assert not np.allclose(first, second)
    # Without random_init the policy starts at the env's fixed θ_0.
    fixed = policies.make("constant", env).init(jax.random.key(0))
    np.testing.assert_allclose(fixed, env.spec.default_action)


def test_random_init_needs_a_meta_task():
    with pytest.raises(ValueError, match="random_init"):
        policies.make("constant", envs.make("influence_balancing"), random_init=True)


def test_a_diverging_theta_has_one_return_in_training_evaluation_and_random_search():
    """ES stops a diverged particle, evaluation and random search carry the run on to T:
    all three must give the same return, or they would optimize different objectives."""
    from pes_rl import agents, policies
    from pes_rl.agents.random_search import make_search_step
    from pes_rl.stepping.evaluation import make_evaluate

    env = envs.make("lr_toy2d", horizon=20)
    theta = jnp.array([20.0, 20.0])  # lr e^20: diverges on the first step
    policy = policies.make("constant", env)
    evaluated = float(
        make_evaluate(env, policy, 1, 1)(theta, None, jax.random.key(0))["eval_return"]
    )
    assert evaluated == -env.loss_cap * 20
    es = agents.make("es", env=env, policy=policy, num_particles=2, sigma=1e-6)
    _, _, metrics = es.estimate(es.init(jax.random.key(0), theta), theta, jax.random.key(1))
    assert float(metrics["train_return"]) == pytest.approx(evaluated, rel=1e-6)
    env.sample_search_point = lambda key: theta  # score exactly this point
    _, returns = jax.jit(make_search_step(env, 1))(jax.random.key(2))
    assert float(returns[0]) == evaluated


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7, 2, 1])
def test_conv3x3_matches_lax_conv(stride, size):
    """The CNN family's patch-and-matmul convolution is ``lax.conv`` with SAME padding, also
    under vmap over particles (each with its own weights), the way populations train."""
    from pes_rl.envs.lopt_tasks import conv3x3

    rng = np.random.default_rng(size)
    x = jnp.asarray(rng.normal(size=(3, 5, size, size, 4)), jnp.float32)  # [N, B, H, W, C]
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 4, 6)), jnp.float32)  # [N, 3, 3, C, F]

    def reference(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    expected = jax.vmap(reference)(x, w)
    got = jax.vmap(lambda x, w: conv3x3(x, w, stride))(x, w)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_cnn_family_distributions():
    """Train: 3 convs of up to (8, 16, 16) channels; held out: 4 convs (12, 24, 24, 24) and the
    64-32-10 MLP, from another seed stream; losses start near log 10 and gradients are finite.
    Training variants draw each conv's width in [half, all] of its channels, and the channels
    past it change nothing: their weights get 0 gradient and their biases do not move the loss."""
    from pes_rl.envs import lopt_tasks

    key = jax.random.key(0)
    kernels, widths = {}, {}
    draws = jax.random.split(key, 64)  # task variants
    for distribution in lopt_tasks.EVAL_DISTRIBUTIONS["cnn_digits"]:
        task = lopt_tasks.make("cnn_digits", distribution)
        params, variant = task.init(key), task.sample(key)
        kernels[distribution] = [p["w"].shape for p in params]
        widths[distribution] = np.stack([task.sample(k)["widths"] for k in draws])
        loss_and_grad = jax.jit(jax.value_and_grad(task.batch_loss), static_argnums=3)
        loss, grads = loss_and_grad(params, variant, key, "train")  # jitted: eager is slower
        assert 1.5 < float(loss) < 4.0, distribution
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads)), distribution
        if distribution == "train":  # the same compiled loss, at chosen widths
            variant = {"permutation": jnp.arange(10), "widths": jnp.asarray([5, 9, 12])}
            loss, grads = loss_and_grad(params, variant, key, "train")
            moved = [dict(layer) for layer in params]
            for layer, grad, width in zip(moved[:-1], grads[:-1], [5, 9, 12], strict=True):
                assert np.all(np.asarray(grad["w"])[..., width:] == 0)
                assert np.any(np.asarray(grad["w"])[..., :width] != 0)
                layer["b"] = layer["b"].at[width:].add(3.0)
            moved_loss = loss_and_grad(moved, variant, key, "train")[0]
            assert float(moved_loss) == pytest.approx(float(loss))
    assert [s[-1] for s in kernels["train"]] == [8, 16, 16, 10]
    assert [s[-1] for s in kernels["heldout"]] == [12, 24, 24, 24, 10]
    assert kernels["heldout_mlp"] == [(64, 32), (32, 10)]
    most = np.asarray([8, 16, 16])
    assert np.all(widths["train"].min(0) == most // 2) and np.all(widths["train"].max(0) == most)
    assert np.all(widths["heldout"] == [12, 24, 24, 24])  # fixed
    with pytest.raises(ValueError, match="distribution must be one of"):
        lopt_tasks.make("mlp_digits", "heldout_mlp")
