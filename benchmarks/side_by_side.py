"""Real env-steps/s of pes_rl's training loop beside raw stepping, Brax's own ES trainer and an
evosax OpenES loop, on the same Brax env, population and device.

    python benchmarks/side_by_side.py --env halfcheetah --num-particles 256 \
        --json benchmarks/results/side_by_side_cpu.json

Real env steps are steps taken before an episode's end. Brax's ES trainer and the evosax loop
run every episode for T steps in lockstep and keep stepping an env whose episode has ended; those
steps are not counted. pes_rl resets an ended episode at once, so all its steps count.

* raw: ``jit(lax.scan(vmap(env.step)))`` with the linear policy, K steps per call.
* pes_rl pes / es: ``pes_rl.train`` (the whole loop: estimate, optax update, metrics), with
  evaluation only at the end; the rate is the median of the trainer's own ``steps_per_s``
  records, the first (compilation) and last (evaluation) flushes left out.
* brax es: ``brax.training.agents.es.train`` with a linear network (``hidden_layer_sizes=()``);
  one epoch (N episodes of T steps) between its evaluations; the rate is Brax's own
  ``training/sps`` of the third epoch (timed by Brax, blocking, without its evaluations; the
  first two compile), times the fraction of that epoch's steps that were real.
* evosax: ``Open_ES`` ask → one jitted episode of all N members → tell, one jitted call per
  generation, timed after two warm-up generations.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from engine_throughput import jax_raw_window, time_calls
from jax.flatten_util import ravel_pytree

import pes_rl
from pes_rl import envs, policies

METHODS = ["raw", "pes_rl pes", "brax es", "pes_rl es", "evosax"]


def raw_rate(env_id: str, backend: str, num: int, length: int) -> float:
    env = envs.make(f"brax/{env_id}", backend=backend)
    policy = policies.make("linear", env)
    flat, unravel = ravel_pytree(policy.init(jax.random.key(0)))
    theta = flat + 0.1 * jax.random.normal(jax.random.key(1), (num, flat.size))
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(2), num))
    call = jax_raw_window(env, lambda t, o: policy.apply(unravel(t), o), states, theta, length)
    return num * length / time_calls(call, num_calls=3, repeats=2)


def pes_rl_rate(
    env_id: str, backend: str, estimator: str, num: int, length: int | None, horizon: int,
    iterations: int,
) -> float:  # fmt: skip
    """Median steps/s of the trainer's own records (one per flush, about every 2 s), the
    first (compilation) and last (final evaluation) flushes left out."""
    with tempfile.TemporaryDirectory() as run_dir:
        result = pes_rl.train([
            "env=brax", f"env.id={env_id}", f"env.kwargs.backend={backend}",
            f"env.kwargs.episode_length={horizon}", f"agent={estimator}",
            f"agent.num_particles={num}", f"agent.unroll_length={length or 'null'}",
            "agent.sigma=0.03", "agent.obs_normalization=true", "policy=linear",
            f"train.iterations={iterations}", "train.eval_every=0", "train.eval_episodes=1",
            "train.checkpoint_every=0", "train.progress=false", f"run_dir={run_dir}",
        ])  # fmt: skip
    rates = list(dict.fromkeys(record["steps_per_s"] for record in result.history))
    if len(rates) < 3:
        raise SystemExit(f"pes_rl {estimator}: {len(rates)} flushes, too few; raise --seconds")
    return statistics.median(rates[1:-1])


class _Enough(Exception):
    """Stops Brax's ES trainer once the epochs to time have run."""


def brax_es_rate(env_id: str, backend: str, num: int, horizon: int, eval_envs: int) -> float:
    from brax import envs as brax_envs
    from brax.training.agents.es import networks, train

    calls: list[tuple[int, dict]] = []

    def progress(steps, metrics) -> None:
        calls.append((int(steps), metrics))
        if len(calls) == 4:  # before training, then after 3 epochs: the first two compile
            raise _Enough

    budget = 10**9  # never reached: with as many evaluations, Brax evaluates after every epoch
    with contextlib.suppress(_Enough):
        train.train(
            environment=brax_envs.get_environment(env_id, backend=backend),
            num_timesteps=budget,
            num_evals=budget + 1,
            episode_length=horizon,
            population_size=num // 2,  # Brax runs each member and its antithetic twin
            perturbation_std=0.03,
            normalize_observations=True,
            num_eval_envs=eval_envs,
            network_factory=functools.partial(networks.make_es_networks, hidden_layer_sizes=()),
            progress_fn=progress,
        )
    (steps_before, _), (steps_after, metrics) = calls[-2], calls[-1]
    real_fraction = (steps_after - steps_before) / (num * horizon)
    return float(metrics["training/sps"]) * real_fraction


def evosax_rate(env_id: str, backend: str, num: int, horizon: int, generations: int) -> float:
    from brax import envs as brax_envs
    from evosax.algorithms import Open_ES

    env = brax_envs.get_environment(env_id, backend=backend)
    policy = policies.make("linear", envs.make(f"brax/{env_id}", backend=backend))
    flat, unravel = ravel_pytree(policy.init(jax.random.key(0)))
    strategy = Open_ES(
        population_size=num, solution=flat, optimizer=optax.sgd(0.02),
        std_schedule=optax.constant_schedule(0.03),
    )  # fmt: skip
    es_params = strategy.default_params

    def episode(members, key):
        """Every member plays one episode of ``horizon`` steps; returns and real steps."""
        states = jax.vmap(env.reset)(jax.random.split(key, num))

        def step(carry, unused_t):
            states, alive, returns, real = carry
            actions = jax.vmap(lambda t, o: policy.apply(unravel(t), o))(members, states.obs)
            states = jax.vmap(env.step)(states, actions)
            returns = returns + alive * states.reward
            real = real + alive
            return (states, alive * (1.0 - states.done), returns, real), None

        zeros = jnp.zeros(num)
        (_, _, returns, real), _ = jax.lax.scan(
            step, (states, jnp.ones(num), zeros, zeros), None, length=horizon
        )
        return returns, real.sum()

    @jax.jit
    def generation(state, key):
        ask_key, episode_key, tell_key = jax.random.split(key, 3)
        members, state = strategy.ask(ask_key, state, es_params)
        returns, real = episode(members, episode_key)
        state, _ = strategy.tell(tell_key, members, -returns, state, es_params)  # minimizes
        return state, real

    state = strategy.init(jax.random.key(1), flat, es_params)
    for warm_up in range(2):  # the second call compiles again: the state's types settle
        state, real = jax.block_until_ready(generation(state, jax.random.key(warm_up)))
    start, total = time.perf_counter(), 0.0
    for g in range(generations):
        state, real = generation(state, jax.random.key(2 + g))
        total += float(real)
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="halfcheetah", help="a Brax env name")
    parser.add_argument("--backend", default="generalized")
    parser.add_argument("--num-particles", type=int, default=256)
    parser.add_argument("--unroll-length", type=int, default=100, help="PES window K")
    parser.add_argument("--horizon", type=int, default=1000, help="episode length T")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="rough length of each pes_rl run after compilation")  # fmt: skip
    parser.add_argument("--brax-eval-envs", type=int, default=16)
    parser.add_argument("--evosax-generations", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    num, length, horizon = args.num_particles, args.unroll_length, args.horizon
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    print(f"brax/{args.env} ({args.backend}), N = {num}, K = {length}, T = {horizon}, {device}")
    rows: dict[str, float] = {}
    raw = raw_rate(args.env, args.backend, num, length)
    for method in args.methods:
        if method == "raw":
            rate = raw
        elif method.startswith("pes_rl"):
            estimator = method.split()[1]
            window = length if estimator != "es" else horizon
            iterations = max(5, round(args.seconds * raw / (num * window)))
            rate = pes_rl_rate(
                args.env, args.backend, estimator, num,
                None if estimator == "es" else length, horizon, iterations,
            )  # fmt: skip
        elif method == "brax es":
            rate = brax_es_rate(args.env, args.backend, num, horizon, args.brax_eval_envs)
        elif method == "evosax":
            rate = evosax_rate(args.env, args.backend, num, horizon, args.evosax_generations)
        else:
            raise SystemExit(f"unknown method {method!r}")
        rows[method] = rate
        print(f"{method:12s} {rate:13,.0f} real env-steps/s  {rate / raw:5.2f}x raw", flush=True)
    if args.json:
        record = {
            "env": f"brax/{args.env}", "backend": args.backend, "device": device,
            "particles": num, "unroll": length, "horizon": horizon, "real_steps_per_s": rows,
        }  # fmt: skip
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
