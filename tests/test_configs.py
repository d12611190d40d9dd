"""Every shipped config composes, validates and builds; the async vector env works."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from pes_rl import agents, envs, policies
from pes_rl.training.config import CONFIG_DIR, compose, validate
from pes_rl.training.trainer import build

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
# Playground experiments need the playground extra (and load an MJX model each): -m playground.
# Brax's HalfCheetah and Hopper build in 7-14 s each (test_rl builds Brax in the default suite).
SLOW_BUILDS = ("brax_halfcheetah_pes_cpu", "brax_hopper_pes_cpu")
EXPERIMENT_PARAMS = [
    pytest.param(name, marks=pytest.mark.playground)
    if name.startswith("playground_")
    else pytest.param(name, marks=pytest.mark.slow)
    if name in SLOW_BUILDS
    else name
    for name in EXPERIMENTS
]


@pytest.mark.parametrize("experiment", EXPERIMENT_PARAMS)
def test_experiment_configs_build(experiment):
    if experiment.startswith("playground_"):
        pytest.importorskip("mujoco_playground", reason='pip install -e ".[playground]"')
    cfg = compose([f"experiment={experiment}"])
    validate(cfg)
    if cfg.agent.name == "random_search":  # a search strategy: pes_rl.agents.random_search
        assert envs.make(cfg.env.id, **cfg.env.kwargs).spec.default_action is not None
        return
    if cfg.env.family == "brax" and cfg.env.kwargs.backend == "generalized":
        # Building Brax's generalized HalfCheetah takes ~20 s; its _cpu variant (spring
        # backend) builds below, the GPU config differs in backend and sizes only.
        assert experiment + "_cpu" in EXPERIMENTS
        return
    env, policy, agent, optimizer = build(cfg)
    assert agent.name == cfg.agent.name
    assert agent.num_particles == cfg.agent.num_particles
    if experiment.startswith("swimmer"):  # the PES paper's N = 20; ARS's N = 1 direction
        paper_particles = 2 if agent.name == "ars" else 20
        assert env.spec.horizon == 1000 and agent.num_particles == paper_particles
        assert cfg.agent.fitness_shaping == "std"


def test_default_run_is_pes_on_swimmer():
    cfg = compose([])
    assert (cfg.env.family, cfg.env.id, cfg.agent.name) == ("gym", "Swimmer-v5", "pes")
    env, policy, agent, _ = build(cfg)
    assert agent.unroll_length == 100 and env.spec.horizon == 1000


@pytest.mark.parametrize("agent_name", ["es", "pes"])
def test_sweepable_agents_build_on_the_default_env(agent_name):
    build(compose([f"agent={agent_name}"]))


def test_async_vectorization():
    env = envs.make("gym/CartPole-v1", vectorization="async")
    policy = policies.make("linear", env)
    agent = agents.make("pes", env=env, policy=policy, num_particles=4, sigma=0.1, unroll_length=30)
    params = policy.init(jax.random.key(0))
    state = agent.init(jax.random.key(1), params)
    grad, state, metrics = agent.estimate(state, params, jax.random.key(2))
    assert int(metrics["episodes"]) >= 4 and np.isfinite(np.asarray(grad["w"])).all()
    agent.population.close()


def test_config_files_document_every_key():
    for path in Path(CONFIG_DIR).rglob("*.yaml"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", "-")) or stripped.endswith(":"):
                continue
            if (
                path.parent.name == "experiment"
                or path.name == "train.yaml"
                and line.startswith("  ")
            ):
                continue  # experiments restate documented keys
            assert "#" in line or stripped.startswith(("name:", "kwargs: {}")), f"{path}: {line}"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+agent.sigmaa=0.1"], "agent.sigmaa is not a setting of agent 'pes'"),
        (["optimizer=adam", "optimizer.kwargs.b1=abc"], "optimizer.kwargs.b1 must be a number"),
        (["+optimizer.kwargs.beta=0.9"], "optimizer.kwargs.beta is not a setting of optax.sgd"),
        (["policy=mlp", "policy.kwargs.hidden_sizes=[0]"], "policy.kwargs.hidden_sizes must be"),
        (["+env.kwargs.horizon=0"], "env.kwargs.horizon must be an int >= 1 or null"),
        (["agent.unroll_length=0"], "agent.unroll_length must be an int >= 1"),
    ],
)
def test_mistakes_users_made_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        build(compose(["env.id=CartPole-v1", *overrides]))


def test_a_partial_dict_is_merged_onto_the_defaults_as_overrides_would_be():
    from pes_rl.training.config import as_config, differing_keys

    settings = {
        "agent": "tes", "agent.sigma": 0.05, "train": {"iterations": 7, "seed": 3},
        "env": {"id": "CartPole-v1", "kwargs": {"horizon": 100}},
    }  # fmt: skip
    overrides = [
        "agent=tes", "agent.sigma=0.05", "train.iterations=7", "train.seed=3",
        "env.id=CartPole-v1", "+env.kwargs.horizon=100",
    ]  # fmt: skip
    assert differing_keys(as_config(settings), compose(overrides), ignore=()) == []
    assert differing_keys(as_config(overrides), compose(overrides), ignore=()) == []
    assert as_config(None).agent.name == "pes"
    with pytest.raises(ValueError, match="unknown config key 'train.sedd'"):
        as_config({"train": {"sedd": 1}})
    with pytest.raises(TypeError, match="a list of overrides"):
        as_config("agent=tes")
