"""Run in its own process with 4 CPU devices (see test_sharding.py): each estimator split over
1, 2 and 4 devices must match the unsharded estimator, and keep its particles split."""

from __future__ import annotations

import re
import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)  # before any JAX op

import numpy as np  # noqa: E402
from jax.sharding import AxisType, Mesh  # noqa: E402

from pes_rl import agents, envs, policies  # noqa: E402
from pes_rl.stepping.sharding import AXIS  # noqa: E402

WINDOWS = 3


def run(name: str, mesh: Mesh | None, obs_normalization: bool = False, windows: int = WINDOWS):
    env = envs.make("gymnax/CartPole-v1")  # episodes end inside windows, at random times
    policy = policies.make("linear", env)
    params = policy.init(jax.random.key(0))
    params = jax.tree.map(lambda x: x + 0.3, params)
    settings = {"unroll_length": 20}
    if name in ("es", "ars"):
        settings = {"unroll_length": None}
    if name == "ars":  # the top-b pairs are ranked across the shards
        settings["top_directions"] = 3
    agent = agents.make(
        name, env=env, policy=policy, num_particles=16, sigma=0.5,
        obs_normalization=obs_normalization, mesh=mesh, **settings,
    )  # fmt: skip
    state = agent.init(jax.random.key(1), params)
    grads, metrics = [], []
    for window in range(windows):
        grad, state, metric = agent.estimate(state, params, jax.random.key(10 + window))
        grads.append(grad)
        metrics.append(metric)
    return state, grads, metrics


def main() -> int:
    devices = jax.devices()
    assert len(devices) == 4, devices
    for name in ("es", "ars", "tes", "pes", "nres"):
        reference_state, reference_grads, reference_metrics = run(name, None)
        for count in (1, 2, 4):
            mesh = Mesh(np.array(devices[:count]), (AXIS,), axis_types=(AxisType.Auto,))
            state, grads, metrics = run(name, mesh)
            # Particle states bit for bit; gradients up to float summation order.
            for ref, got in zip(jax.tree.leaves(reference_state), jax.tree.leaves(state),
                                strict=True):  # fmt: skip
                if jax.dtypes.issubdtype(ref.dtype, jax.dtypes.prng_key):
                    ref, got = jax.random.key_data(ref), jax.random.key_data(got)
                np.testing.assert_array_equal(np.asarray(ref), np.asarray(got), err_msg=name)
            for ref, got in zip(reference_grads, grads, strict=True):
                np.testing.assert_allclose(ref["w"], got["w"], rtol=1e-5, atol=1e-5, err_msg=name)
                assert got["w"].sharding.is_fully_replicated, (name, got["w"].sharding)
            for ref, got in zip(reference_metrics, metrics, strict=True):
                assert int(ref["env_steps"]) == int(got["env_steps"]), name
                assert int(ref["episodes"]) == int(got["episodes"]), name
            # Per-particle arrays stay split over the mesh between windows.
            for leaf in jax.tree.leaves(state):
                if leaf.ndim >= 1 and leaf.shape[0] == 16 and count > 1:
                    assert leaf.sharding.spec[0] == AXIS, (name, leaf.sharding)
                    assert len(leaf.sharding.device_set) == count, (name, leaf.sharding)
        # The normalizer's moments are summed across devices: equal up to summation order
        # (after one window: from then on that rounding can flip a discrete action).
        reference_state, reference_grads, _ = run(name, None, obs_normalization=True, windows=1)
        state, grads, _ = run(name, mesh, obs_normalization=True, windows=1)
        for ref, got in zip(reference_state.obs_norm, state.obs_norm, strict=True):
            np.testing.assert_allclose(ref, got, rtol=1e-5, err_msg=name)
            assert got.sharding.is_fully_replicated, (name, got.sharding)
        np.testing.assert_allclose(reference_grads[0]["w"], grads[0]["w"], rtol=1e-4, atol=1e-5)
        print(f"{name}: 1, 2, 4 devices match the unsharded estimator")
    assert collectives_outside_main(pes_on(mesh)) == 0
    print("no collective inside the window's scan")
    return 0


def pes_on(mesh: Mesh) -> str:
    """The compiled HLO of one PES window (with the normalizer) over ``mesh``."""
    env = envs.make("gymnax/CartPole-v1")
    policy = policies.make("linear", env)
    params = policy.init(jax.random.key(0))
    agent = agents.make(
        "pes", env=env, policy=policy, num_particles=16, sigma=0.5, unroll_length=20,
        obs_normalization=True, mesh=mesh,
    )  # fmt: skip
    state = agent.init(jax.random.key(1), params)
    lowered = agent._jit_estimate.lower(state, params, jax.random.key(2), 20, None)
    return lowered.compile().as_text()


def collectives_outside_main(hlo: str) -> int:
    """Cross-device ops in any computation but the entry one (scan bodies, conds): each would
    run once per step."""
    computations = re.split(r"\n(?=\S)", hlo)
    pattern = r"(all-reduce|all-gather|collective-permute|all-to-all|reduce-scatter)(-start)?\("
    inner = [c for c in computations if not c.startswith("ENTRY")]
    assert any(re.search(pattern, c) for c in computations if c.startswith("ENTRY"))
    return sum(len(re.findall(pattern, c)) for c in inner)


if __name__ == "__main__":
    sys.exit(main())
