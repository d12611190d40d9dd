"""The learned optimizer: a per-parameter MLP (Metz et al. 2019; learned_optimization ``MLPLOpt``).

Every scalar parameter p of an inner model gets the same small MLP applied to 19 features:

* its gradient g, its value p and 6 momenta m ← d·m + (1−d)·g, d ∈ ``DECAYS`` — these 8 are
  normalized per tensor by x·rsqrt(1e-5 + mean(x²)) (the mean over the tensor's elements);
* 11 time features tanh(t/τ − 1), τ ∈ ``TIMESCALES`` (t = the inner step).

With ``features="rms"`` (Metz et al. 2019's RMS terms) it also gets, for each d ∈
``RMS_DECAYS``, g·r and m_d·r with r = 1/√v_d, v_d ← d·v_d + (1−d)·g² (RMSProp's and Adam's
per-parameter directions; also normalized per tensor): 25 features. The per-tensor
normalization of the base features cannot give one parameter a step of its own scale; these can.

The MLP outputs (o_dir, o_mag) and the update is p ← p − o_dir·exp(λ·o_mag)·λ with λ = 1e-3.
θ (:class:`Theta`) is the MLP's weights (~1.8k numbers with two hidden layers of 32), what
ES/PES meta-train, and the name of the feature set they read. :func:`init` makes θ_0, either
the paper's small random MLP (an update moves each parameter by about 1e-3, a tiny and stable
first step) or that MLP made to step along RMSProp's direction (``nominal_rate``).

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from pes_rl import lopt
  >>> theta = lopt.init(jax.random.key(0))
  >>> optimizer = lopt.as_optax(theta)
  >>> params = {"w": jnp.ones(3)}
  >>> state = optimizer.init(params)
  >>> updates, state = optimizer.update({"w": jnp.ones(3)}, state, params)
  >>> bool(jnp.all(jnp.abs(updates["w"]) < 0.01))
  True

References:
  Metz, Maheswaranathan, Nixon, Freeman, Sohl-Dickstein, "Understanding and correcting
  pathologies in the training of learned optimizers", ICML 2019. https://arxiv.org/abs/1810.10180
  learned_optimization, ``learned_optimizers/mlp_lopt.py``.
  Harrison, Metz, Sohl-Dickstein, "A closer look at learned optimization: stability,
  robustness, and inductive biases", NeurIPS 2022 (the nominal descent term).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Params = Any
Layers = list[dict[str, jax.Array]]  # the MLP's layers {"w": [fan_in, fan_out], "b": [fan_out]}

DECAYS = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
TIMESCALES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4, 3e4, 1e5)
NUM_TENSOR_FEATURES = 2 + len(DECAYS)  # g, p and the momenta: normalized per tensor
NUM_FEATURES = NUM_TENSOR_FEATURES + len(TIMESCALES)  # 19
RMS_DECAYS = (0.9, 0.99, 0.999)  # each is also in DECAYS: m_d·r pairs momentum and RMS
NUM_RMS_FEATURES = 2 * len(RMS_DECAYS)  # g·r and m_d·r per decay
RMS_EPSILON = 1e-8  # r = 1/√(v + ε²): a gradient that stays 0 gives features of 0
FEATURE_SETS = {"base": NUM_FEATURES, "rms": NUM_FEATURES + NUM_RMS_FEATURES}  # name -> inputs
NOMINAL_OTHERS_SCALE = 0.1  # init(nominal_rate=…): the random units' share of o_dir at θ_0
STEP_MULT = 1e-3  # λ in p ← p − o_dir·exp(λ·o_mag)·λ
EXP_MULT = 1e-3
HIDDEN_SIZES = (32, 32)
FORMAT = "pes_rl.lopt/1"  # written into saved files, checked when loading


def check_features(features: str) -> str:
    """``features`` if it names a feature set, else a ValueError listing them."""
    if features not in FEATURE_SETS:
        raise ValueError(
            f"unknown learned-optimizer features {features!r}: choose one of "
            f"{', '.join(FEATURE_SETS)}"
        )
    return features


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Theta:
    """θ: the per-parameter MLP's layers and the feature set they read.

    A pytree of the layers' arrays alone (the feature set is static), so that ``ravel_pytree``
    flattens and ES perturbs the weights only; :func:`save` writes the feature set into the
    file and :func:`load` reads it back.
    """

    layers: Layers
    features: str = dataclasses.field(default="base", metadata={"static": True})

    def __post_init__(self):
        check_features(self.features)


class LOptState(NamedTuple):
    """What the learned optimizer carries between inner steps.

    Decay-major and flat: a parameter p has momenta of shape [len(DECAYS), p.size], so that
    its features are rows [num_features, p.size], each one contiguous vector (with a trailing
    decay axis, building the rows cost more than the MLP; see :func:`update`).
    """

    momenta: Params  # like the inner params, each leaf [len(DECAYS), size]
    step: jax.Array  # shape=(), int32: inner steps taken
    second_moments: Params = None  # "rms" features only: each leaf [len(RMS_DECAYS), size]


def init(
    key: jax.Array,
    hidden_sizes: Sequence[int] = HIDDEN_SIZES,
    features: str = "base",
    nominal_rate: float | jax.Array | None = None,
) -> Theta:
    """θ_0, the learned optimizer before meta-training: one of two starts.

    * ``nominal_rate=None``: Metz et al.'s random MLP, truncated-normal weights with std
      1/√fan_in (haiku's default) and zero biases.
    * ``nominal_rate=r`` (``features="rms"``): an MLP that reproduces a plain optimizer, r times
      RMSProp's direction g/√v (v at ``RMS_DECAYS[0]``, normalized per tensor like every rms
      feature), plus a tenth of the random MLP's steps. The first two hidden units of every
      layer carry relu(±g/√v) forward, o_dir reads them at ±r/λ, and the other units' o_dir
      weights are scaled by ``NOMINAL_OTHERS_SCALE``. Nothing else is set by hand: no growth,
      no decay, no schedule; what the optimizer adds to RMSProp is meta-training's to learn
      (Harrison et al.'s nominal descent term, as an initialization). ``r`` may be traced.
    """
    features = check_features(features)
    sizes = (FEATURE_SETS[features], *hidden_sizes, 2)
    layers = []
    for layer_key, fan_in, fan_out in zip(
        jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:], strict=True
    ):
        # 0.8796 is the std of a unit normal truncated to [-2, 2] (haiku divides it out).
        std = 1.0 / np.sqrt(fan_in) / 0.87962566
        w = std * jax.random.truncated_normal(layer_key, -2.0, 2.0, (fan_in, fan_out))
        layers.append({"w": w, "b": jnp.zeros(fan_out)})
    if nominal_rate is None:
        return Theta(layers, features)
    if features != "rms":
        raise ValueError("a nominal RMSProp θ_0 needs features='rms' (g/√v is an rms feature)")
    if not hidden_sizes or min(hidden_sizes) < 2:
        raise ValueError(
            f"a nominal RMSProp θ_0 needs hidden layers of at least 2 units, got {hidden_sizes}"
        )
    # Units 0 and 1 read ±(g/√v) in the first layer and themselves in the next ones.
    carried = jnp.zeros((sizes[0], 2)).at[NUM_TENSOR_FEATURES].set(jnp.array([1.0, -1.0]))
    for layer in layers[:-1]:
        layer["w"] = layer["w"].at[:, :2].set(carried)
        layer["b"] = layer["b"].at[:2].set(0.0)
        carried = jnp.zeros((layer["w"].shape[1], 2)).at[jnp.arange(2), jnp.arange(2)].set(1.0)
    out = layers[-1]
    paths = jnp.array([[1.0, 0.0], [-1.0, 0.0]]) * (jnp.asarray(nominal_rate) / STEP_MULT)
    w = out["w"].at[2:, 0].multiply(NOMINAL_OTHERS_SCALE).at[:2].set(paths)
    layers[-1] = {"w": w, "b": out["b"]}
    return Theta(layers, features)


def init_state(params: Params, features: str = "base") -> LOptState:
    """Zero momenta (and second moments for the "rms" features) for ``params``, step 0."""

    def zeros(decays):
        return jax.tree.map(lambda p: jnp.zeros((len(decays), jnp.size(p)), jnp.float32), params)

    second_moments = zeros(RMS_DECAYS) if check_features(features) == "rms" else None
    return LOptState(zeros(DECAYS), jnp.zeros((), jnp.int32), second_moments)


def time_features(step: jax.Array) -> jax.Array:
    """[11] tanh(t/τ − 1) for τ in ``TIMESCALES``."""
    return jnp.tanh(jnp.asarray(step, jnp.float32) / jnp.asarray(TIMESCALES) - 1.0)


def normalize(rows: jax.Array) -> jax.Array:
    """rows·rsqrt(1e-5 + mean(rows²)) along each row (one feature of one tensor): per-tensor
    normalization."""
    return rows * jax.lax.rsqrt(1e-5 + jnp.mean(jnp.square(rows), axis=-1, keepdims=True))


def tensor_features(
    grad: jax.Array,
    param: jax.Array,
    momenta: jax.Array,
    second_moments: jax.Array | None = None,
) -> jax.Array:
    """[8, param.size] per-parameter inputs of one tensor, one row per feature: g, p and the
    momenta, normalized per tensor; with ``second_moments`` (the "rms" features) 6 more rows,
    g·r and m_d·r (r = 1/√v_d, d ∈ ``RMS_DECAYS``): [14, param.size]."""
    grad = grad.reshape(1, -1)
    rows = normalize(jnp.concatenate([grad, param.reshape(1, -1), momenta]))
    if second_moments is None:
        return rows
    # Normalized apart from the base rows (the same numbers): XLA fuses it ~2× faster on a CPU.
    inverse_rms = jax.lax.rsqrt(second_moments + RMS_EPSILON**2)
    paired = momenta[np.array([DECAYS.index(d) for d in RMS_DECAYS])]
    rms_rows = jnp.concatenate([grad * inverse_rms, paired * inverse_rms])
    return jnp.concatenate([rows, normalize(rms_rows)])


def features(grad: jax.Array, param: jax.Array, momenta: jax.Array, step: jax.Array) -> jax.Array:
    """[19, param.size] inputs of the per-parameter MLP for one tensor (base features)."""
    times = jnp.broadcast_to(time_features(step)[:, None], (len(TIMESCALES), param.size))
    return jnp.concatenate([tensor_features(grad, param, momenta), times])


def mlp_split_time(layers: Layers, stacked: jax.Array, times: jax.Array) -> jax.Array:
    """The per-parameter MLP on the columns [stacked; times] ([num_features, n] in, [2, n]
    (o_dir, o_mag) out; ReLU hidden layers), with the time features shared by every column:
    their part of the first layer is one [11] × [11, hidden] product, not one per parameter."""
    first, per_parameter = layers[0], stacked.shape[0]
    bias = times @ first["w"][per_parameter:] + first["b"]
    x = jax.nn.relu(first["w"][:per_parameter].T @ stacked + bias[:, None])
    for layer in layers[1:-1]:
        x = jax.nn.relu(layer["w"].T @ x + layer["b"][:, None])
    out = layers[-1]
    # One matrix-vector product per output: on a CPU ~2× faster than one [2, hidden] product.
    return jnp.stack([column @ x for column in out["w"].T]) + out["b"][:, None]


def step_size(outputs: jax.Array) -> jax.Array:
    """o_dir·exp(λ·o_mag)·λ: what is subtracted from each parameter."""
    return outputs[0] * jnp.exp(EXP_MULT * outputs[1]) * STEP_MULT


def scale_steps(theta: Theta, factor: float) -> Theta:
    """θ of the same optimizer with every step ``factor``× as large: o_dir's output weights and
    bias scaled (exact, since the step is linear in o_dir)."""
    last = theta.layers[-1]
    column = jnp.asarray([factor, 1.0], jnp.float32)  # (o_dir, o_mag)
    layers = [*theta.layers[:-1], {"w": last["w"] * column, "b": last["b"] * column}]
    return Theta(layers, theta.features)


def update(
    theta: Theta, grads: Params, params: Params, state: LOptState
) -> tuple[Params, LOptState]:
    """One learned-optimizer step: (new params, new state). Pure; jit and vmap freely.

    Fused: every tensor's features are normalized on their own, then all parameters go
    through the MLP as one batch of columns, [rows, num_params] with 8 rows (base) or 14
    (rms): one matmul per layer, not one per tensor; the time features are the same for every
    column and enter as a bias.
    Feature-major rows and decay-major state cost ~40% less than [num_params, features] rows
    (the layout before; on the 3.7k-parameter training CNN, a 2-core CPU: ~80 µs per update
    against ~130 µs).
    """
    fan_in = int(jnp.shape(theta.layers[0]["w"])[0])
    if fan_in != FEATURE_SETS[theta.features]:
        raise ValueError(
            f"θ says it reads the {theta.features!r} features ({FEATURE_SETS[theta.features]}) "
            f"but its first layer takes {fan_in} inputs"
        )
    rms = theta.features == "rms"
    if rms != (state.second_moments is not None):
        raise ValueError(
            f"θ takes {theta.features!r} features but the state was made for another set: "
            f"use init_state(params, {theta.features!r})"
        )
    sizes = [jnp.size(p) for p in jax.tree.leaves(params)]
    state_sizes = [jnp.shape(m)[-1] for m in jax.tree.leaves(state.momenta)]
    if state_sizes != sizes:
        raise ValueError(
            f"the learned optimizer's state was made for other parameters (its tensors' sizes "
            f"are {state_sizes}, the parameters' {sizes}): use init_state(params) for these"
        )
    momenta = _moving_averages(DECAYS, state.momenta, grads)
    second_moments = (
        _moving_averages(RMS_DECAYS, state.second_moments, jax.tree.map(jnp.square, grads))
        if rms
        else None
    )
    leaves, treedef = jax.tree.flatten(params)
    flat = [treedef.flatten_up_to(tree) for tree in (grads, momenta)]
    flat.append(treedef.flatten_up_to(second_moments) if rms else [None] * len(leaves))
    columns = [tensor_features(g, p, m, v) for p, g, m, v in zip(leaves, *flat, strict=True)]
    stacked = jnp.concatenate(columns, axis=1)
    outputs = mlp_split_time(theta.layers, stacked, time_features(state.step))
    steps = step_size(outputs)
    offsets = np.cumsum([0] + [p.size for p in leaves])
    new_leaves = [
        p - steps[start:end].reshape(p.shape)
        for p, start, end in zip(leaves, offsets[:-1], offsets[1:], strict=True)
    ]
    new_state = LOptState(momenta, state.step + 1, second_moments)
    return jax.tree.unflatten(treedef, new_leaves), new_state


def _moving_averages(decays: Sequence[float], averages: Params, values: Params) -> Params:
    """a ← d·a + (1−d)·x for every decay d: ``averages``' leaves are [len(decays), x.size]."""
    d = jnp.asarray(decays, jnp.float32)[:, None]
    return jax.tree.map(lambda a, x: d * a + (1.0 - d) * jnp.reshape(x, (1, -1)), averages, values)


def as_optax(theta: Theta) -> optax.GradientTransformation:
    """A meta-trained θ as an ``optax.GradientTransformation`` (updates = new params − params).

    Use it like any optax optimizer: ``updates, state = opt.update(grads, state, params)``,
    then ``optax.apply_updates(params, updates)``. ``params`` must be passed to ``update``.
    """
    theta = jax.tree.map(jnp.asarray, theta)

    def init_fn(params: Params) -> LOptState:
        return init_state(params, theta.features)

    def update_fn(grads: Params, state: LOptState, params: Params | None = None):
        if params is None:
            raise ValueError(
                "the learned optimizer needs params: call update(grads, state, params)"
            )
        new_params, state = update(theta, grads, params, state)
        return jax.tree.map(lambda new, old: new - old, new_params, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def save(path: str | Path, theta: Theta) -> None:
    """Writes θ and its feature set as a self-describing ``.npz`` that :func:`load` reads
    without any config."""
    arrays = {}
    for index, layer in enumerate(theta.layers):
        arrays[f"w{index}"] = np.asarray(layer["w"], np.float32)
        arrays[f"b{index}"] = np.asarray(layer["b"], np.float32)
    header = {
        "format": FORMAT,
        "num_layers": len(theta.layers),
        "features": theta.features,
        "decays": DECAYS,
        "rms_decays": RMS_DECAYS,
        "timescales": TIMESCALES,
    }
    arrays["header"] = np.asarray(json.dumps(header))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        np.savez(file, **arrays)
    tmp.replace(path)


def load(path: str | Path) -> Theta:
    """θ saved by :func:`save` (``lopt_theta.npz`` in a learned-optimizer run dir), with the
    feature set its header names (files written before the header named one read the base
    features, the only set then)."""
    path = Path(path)
    if path.is_dir():
        path = path / "lopt_theta.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no learned optimizer at {path}: expected lopt_theta.npz")
    with np.load(path) as arrays:
        if "header" not in arrays:
            raise ValueError(f"{path} is not a saved learned optimizer (no header)")
        header = json.loads(str(arrays["header"]))
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} has format {header.get('format')!r}, expected {FORMAT!r}")
        features = header.get("features", "base")
        if features not in FEATURE_SETS:
            raise ValueError(
                f"{path} reads the {features!r} features, which this version of pes_rl.lopt "
                f"does not have (it has {', '.join(FEATURE_SETS)})"
            )
        layers = [
            {"w": jnp.asarray(arrays[f"w{i}"]), "b": jnp.asarray(arrays[f"b{i}"])}
            for i in range(header["num_layers"])
        ]
    if layers[0]["w"].shape[0] != FEATURE_SETS[features]:
        raise ValueError(
            f"{path} says it reads the {features!r} features ({FEATURE_SETS[features]}) but "
            f"its first layer takes {layers[0]['w'].shape[0]} inputs"
        )
    return Theta(layers, features)
