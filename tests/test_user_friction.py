"""Issue 20: user errors are one line naming the key, and small frictions of the CLI are gone."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli import REPO, cli_env
from gymnasium import spaces
from omegaconf import OmegaConf

import pes_rl
from pes_rl import agents, cli, envs, policies
from pes_rl.after import evaluate, render
from pes_rl.envs.gymnasium_env import unflattenable_part
from pes_rl.stepping import memory
from pes_rl.training.components import make_env, make_policy
from pes_rl.training.config import compose, from_dict, validate

# Unknown env.kwargs / policy.kwargs -------------------------------------------------------------


@pytest.mark.parametrize(
    "env_id, kwargs, message",
    [
        ("gym/toy_gym:Counting-v0", {"foo": 1}, r"env.kwargs.foo is not a setting of env "
         r"'gym/toy_gym:Counting-v0': it takes \['vectorization', 'horizon', .*'discrete'\]"),
        # Swimmer's class takes **kwargs and passes them on to MujocoEnv: checked against both
        ("gym/Swimmer-v5", {"foo": 1}, r"env.kwargs.foo .*'ctrl_cost_weight', .*'width'"),
        ("jax/pes_rl.envs.point_mass:make_env", {"horizon": 50}, r"env.kwargs.horizon .*\[\]$"),
        ("gymnax/CartPole-v1", {"foo": 1}, r"env.kwargs.foo .*: it takes \['episode_length'\]"),
        ("influence_balancing", {"foo": 1}, r"env.kwargs.foo .*: it takes \['horizon', "),
    ],
)  # fmt: skip
def test_unknown_env_kwargs_are_one_line_errors(env_id, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        envs.make(env_id, **kwargs)
    assert "\n" not in str(error.value)


def test_known_env_kwargs_still_reach_the_env():
    assert envs.make("gym/toy_gym:Counting-v0", discrete=True).spec.action_space.n == 3
    assert envs.make("gymnax/Breakout-MinAtar", use_minimal_action_set=False).spec.horizon


def test_unknown_env_kwargs_from_the_config():
    with pytest.raises(ValueError, match="^env.kwargs.horizon is not a setting of env 'jax/"):
        make_env(compose(["env=jax", "+env.kwargs.horizon=50"]))


def test_unknown_policy_kwargs_are_one_line_errors():
    env = envs.make("influence_balancing")
    with pytest.raises(ValueError, match=r"^policy.kwargs.hidden_size is not a setting of "
                       r"policy 'mlp': it takes \['hidden_sizes', 'action_mode'\]$"):  # fmt: skip
        policies.make("mlp", env, hidden_size=[32])


# A population that does not fit in memory -------------------------------------------------------


def influence_agent(num_particles: int) -> agents.Estimator:
    env = envs.make("influence_balancing")
    policy = policies.make("constant", env)
    return agents.make(
        "pes", env=env, policy=policy, num_particles=num_particles, sigma=0.1, unroll_length=1
    )


def test_too_many_particles_is_refused_before_anything_is_built(monkeypatch):
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 2**30)
    with pytest.raises(ValueError) as error:
        influence_agent(10**8)
    assert str(error.value).startswith("agent.num_particles=100000000 needs about ")
    assert "GiB for the particles' state and a window's work; 1 GiB is available: use fewer" in (
        str(error.value)
    )


@pytest.mark.parametrize(
    "failure",
    [MemoryError(), jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating")],
)
def test_failed_allocations_become_one_line_errors(failure):
    agent = influence_agent(4)

    def fail(*args):
        raise failure

    agent._jit_init = fail
    with pytest.raises(ValueError, match=r"^agent.num_particles=4 ran out of memory: it needs"):
        agent.init(jax.random.key(0), np.zeros(1, np.float32))


def test_other_runtime_errors_pass_through():
    agent = influence_agent(4)

    def fail(*args):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    agent._jit_init = fail
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        agent.init(jax.random.key(0), np.zeros(1, np.float32))


def test_accelerator_memory_is_the_smallest_free_share():
    def device(limit: int, in_use: int):
        stats = {"bytes_limit": limit, "bytes_in_use": in_use}
        return types.SimpleNamespace(platform="gpu", memory_stats=lambda: stats)

    assert memory.available_bytes([device(100, 10), device(100, 40)]) == 2 * 60
    no_stats = types.SimpleNamespace(platform="gpu", memory_stats=lambda: None)
    assert memory.available_bytes([no_stats]) is None


# Modules in the current directory ---------------------------------------------------------------

MY_JAX_MODULE = """
from pes_rl.envs.point_mass import PointMass


def make_env():
    return PointMass()
"""


def test_pes_rl_imports_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "friction_jax_module.py").write_text(MY_JAX_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    with pytest.raises(ValueError, match="cannot import 'friction_jax_module'"):
        envs.make("jax/friction_jax_module:make_env")
    cli.import_from_cwd()
    assert envs.make("jax/friction_jax_module:make_env").spec.horizon == 100


@pytest.mark.parametrize(
    "command", [["pes-rl", "train"], [sys.executable, str(REPO / "train.py")]]
)
def test_an_env_of_the_current_directory_trains(tmp_path, command):
    """The installed ``pes-rl`` and ``python train.py`` run from elsewhere both import it."""
    (tmp_path / "my_module.py").write_text(MY_JAX_MODULE)
    result = subprocess.run(
        [*command, "env=jax", "env.id=my_module:make_env", "train.iterations=1",
         "agent.num_particles=2", "agent.unroll_length=5", "train.eval_episodes=1"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "done: 1 iterations" in result.stdout
    assert "--video" not in result.stdout  # a custom JAX env has nothing to film


# Gymnasium wrappers -----------------------------------------------------------------------------

APPEND = "toy_gym:AppendObservation"


def test_dict_observations_are_flattened_with_one_warning():
    with pytest.warns(UserWarning, match=r"Dict observations are flattened into one Box"):
        env = envs.make("gym/toy_gym:DictObservation-v0")
    assert env.spec.observation_space.shape == (2,)
    obs, _ = env.make_single().reset(seed=0)
    assert obs.shape == (2,) and obs[1] == 0  # sorted keys: length, then t (0 at a reset)


MISSION_ERROR = (
    "toy_gym:MissionObservation-v0: observation key 'mission' is a MissionSpace, which cannot "
    "be flattened to a vector; drop it with a wrapper in env.wrappers "
    "(gymnasium.wrappers.FilterObservation keeps the keys you list; MiniGrid: "
    "env.wrappers=[minigrid.wrappers.ImgObsWrapper,gymnasium.wrappers.FlattenObservation])"
)


def test_observations_that_cannot_be_flattened_are_one_line_errors():
    """A Dict observation holding a custom space (MiniGrid's mission string) is refused in one
    line naming the key and the space, before any flattening warning, and so is a whole
    observation gymnasium cannot flatten; a wrapper that drops the key makes it train."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as error:
            envs.make("gym/toy_gym:MissionObservation-v0")
    assert str(error.value) == MISSION_ERROR
    assert not [w for w in caught if "flattened" in str(w.message)]
    with pytest.raises(ValueError, match=r"^toy_gym:SequenceObservation-v0: the observation "
                       r"space is a Sequence, which cannot be flattened to a vector; add a "
                       r"wrapper that makes it a flat Box to env.wrappers$"):  # fmt: skip
        envs.make("gym/toy_gym:SequenceObservation-v0")

    keep_image = {"path": "gymnasium.wrappers.FilterObservation",
                  "kwargs": {"filter_keys": ["image"]}}  # fmt: skip
    with pytest.warns(UserWarning, match="Dict observations are flattened"):
        env = envs.make("gym/toy_gym:MissionObservation-v0", wrappers=[keep_image])
    assert env.spec.observation_space.shape == (2,)

    graph = spaces.Graph(spaces.Box(0, 1, (2,)), None)
    nested = spaces.Dict({"a": spaces.Tuple((spaces.Discrete(2), graph))})
    assert unflattenable_part(nested) == (("a", "1"), graph)
    # Gymnasium flattens Text (into character indices): not refused
    assert unflattenable_part(spaces.Dict({"text": spaces.Text(8)})) is None


def test_training_on_an_observation_that_cannot_be_flattened_stops_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        ["pes-rl", "train", "env.id=toy_gym:MissionObservation-v0", f"hydra.run.dir={run_dir}"],
        cwd=REPO / "tests", env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {MISSION_ERROR}"]
    assert not run_dir.exists()


def test_wrappers_apply_in_order_to_sub_envs_and_the_single_env():
    wrappers = [
        "gymnasium.wrappers.FlattenObservation",
        {"path": APPEND, "kwargs": {"value": 7.0}},
        {"path": APPEND, "kwargs": {"value": 8.0}},
    ]
    env = envs.make("gym/toy_gym:DictObservation-v0", wrappers=wrappers)
    assert env.spec.observation_space.shape == (4,)
    vector = env.make_vector(2)
    obs, _ = vector.reset(seed=[0, 1])
    vector.close()
    np.testing.assert_array_equal(obs[:, 2:], [[7.0, 8.0], [7.0, 8.0]])
    np.testing.assert_array_equal(env.make_single().reset(seed=0)[0][2:], [7.0, 8.0])

    # and the engine trains on it: one PES window over the flattened observations
    policy = policies.make("linear", env)
    agent = agents.make("pes", env=env, policy=policy, num_particles=2, sigma=0.1, unroll_length=3)
    params = policy.init(jax.random.key(0))
    grad, _, metrics = agent.estimate(agent.init(jax.random.key(1), params), params,
                                      jax.random.key(2))  # fmt: skip
    assert grad["w"].shape == (4, 1) and int(metrics["env_steps"]) == 6


def test_wrapper_errors_name_the_entry():
    with pytest.raises(ValueError, match=r"^env.wrappers\[0\]: cannot import 'nope.Wrapper'"):
        envs.make("gym/toy_gym:Counting-v0", wrappers=["nope.Wrapper"])
    with pytest.raises(ValueError, match=r"^env.wrappers\[1\].kwargs.valu is not a setting of "):
        envs.make("gym/toy_gym:Counting-v0", wrappers=[APPEND, {"path": APPEND,
                                                               "kwargs": {"valu": 1}}])  # fmt: skip


def test_config_wrappers_reach_evaluation():
    """``pes-rl evaluate``'s episodes see the wrapped observation: a policy that reads only
    the appended 5.0 earns reward from it."""
    cfg = compose(["env.id=toy_gym:Counting-v0", f"env.wrappers=[{{path: '{APPEND}', "
                   "kwargs: {value: 5.0}}]", "train.eval_steps=5"])  # fmt: skip
    env = make_env(cfg)
    policy = make_policy(cfg, env)
    params = jax.tree.map(jnp.zeros_like, policy.init(jax.random.key(0)))
    params["w"] = params["w"].at[-1].set(0.1)  # action = 0.1 x the appended value
    trained = types.SimpleNamespace(env=env, policy=policy, params=params, obs_norm=None,
                                    config=cfg, iteration=1)  # fmt: skip
    returns, _ = evaluate.episode_returns(trained, 3, jax.random.key(0))
    # Counting pays action + t at step t of an episode of 2..5 steps: 0.5 n + n (n + 1) / 2.
    possible = [0.5 * n + n * (n + 1) / 2 for n in range(2, 6)]
    assert all(min(abs(float(r) - p) for p in possible) < 1e-5 for r in returns), returns
    with pytest.raises(ValueError, match="env.wrappers wraps Gymnasium envs"):
        make_env(compose(["env=jax", "+env.wrappers=[gymnasium.wrappers.FlattenObservation]"]))


# The end-of-run video hint ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, filmable",
    [(["env.id=toy_gym:Counting-v0"], True), (["env=gymnax"], False), (["env=jax"], False),
     (["env=influence_balancing"], False)],
)  # fmt: skip
def test_video_hint_only_where_evaluate_can_film(overrides, filmable):
    cfg = compose(overrides)
    assert (cli.video_hint(cfg) != "") is filmable
    assert (render.can_render(make_env(cfg), cfg.env.id) is None) is filmable


# Help, prog names, integral floats --------------------------------------------------------------


def test_help_points_to_command_help(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    assert "pes-rl <command> --help" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--episodes", "--video-episodes"])
def test_evaluate_names_the_bad_flag_under_its_pes_rl_name(flag, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["pes-rl evaluate"])
    with pytest.raises(SystemExit):
        evaluate.parse_args(["run", flag, "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {flag} must be >= 1, got 0 (see pes-rl evaluate --help)"]


def test_integral_floats_are_ints_at_integer_keys():
    cfg = compose(["train.iterations=1e2", "agent.num_particles=2e1"])
    validate(cfg)
    assert cfg.train.iterations == 100 and isinstance(cfg.train.iterations, int)
    assert cfg.agent.num_particles == 20 and isinstance(cfg.agent.num_particles, int)
    with pytest.raises(ValueError, match=r"train.iterations must be an int >= 1, got 1.5"):
        validate(compose(["train.iterations=1.5"]))


def test_a_run_with_one_evaluation_is_drawn_as_a_dot(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from pes_rl.after import plot
    from pes_rl.training.run_log import MetricsFile

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    OmegaConf.save(compose(["env=influence_balancing"]), run_dir / "config.yaml")
    metrics = MetricsFile(run_dir, [{"iteration": 1, "env_steps": 10, "eval_return": -3.0}])
    metrics.close()
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot.plot_runs([run_dir], tmp_path / "c.png")
    (line,) = figures[0].axes[0].lines
    assert line.get_marker() == "o"


# Mistyped keys, and errors before hints --------------------------------------------------------


def test_a_mistyped_key_gets_the_nearest_key_in_one_line(tmp_path):
    """Hydra's own message ("To append to your config use +agent.sigmaa=0.1") invites adding
    the typo; ours names the key it was meant to be, before anything is written."""
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "agent.sigmaa=0.1", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    typo = "error: unknown key agent.sigmaa; did you mean agent.sigma?"
    assert result.stderr.splitlines() == [typo]
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["agnt.sigma=1"], "unknown key agnt.sigma; did you mean agent.sigma?"),
        (["train.distributed.enable=true"],
         "unknown key train.distributed.enable; did you mean train.distributed.enabled?"),
        (["env.kwargs.foo=1"],
         "unknown key env.kwargs.foo (+env.kwargs.foo=1 passes a setting the config does not "
         "list)"),
        (["train.foo=1"], "unknown key train.foo (python train.py --cfg job lists the keys)"),
        (["-m", "agent=es,hybrid", "agent.curriculum=null"],  # es has no curriculum
         "unknown key agent.curriculum (python train.py --cfg job lists the keys)"),
        (["+agent.sigmaa=1", "++train.foo=1", "agent.sigma=0.1"], None),  # adds: agents judge
    ],
    ids=["group", "nested", "kwargs", "none close", "one agent of a sweep", "added keys"],
)  # fmt: skip
def test_unknown_keys_name_the_nearest_one(argv, message):
    line = cli.parse_command_line(argv)
    assert cli.unknown_key(line, cli.run_configs(line)) == message


def test_from_python_a_mistyped_key_names_the_nearest_one():
    with pytest.raises(ValueError, match=r"^unknown config key 'agent.sigmaa': did you mean "
                       r"'agent.sigma'\?$"):  # fmt: skip
        from_dict({"agent": {"sigmaa": 0.1}})


@pytest.mark.parametrize(
    "env_id, notice",
    [("CartPole-v1", "hint: CartPole-v1 has a JAX twin"),
     ("toy_gym:DictObservation-v0", "Dict observations are flattened")],
)  # fmt: skip
def test_a_set_up_error_comes_before_any_hint_or_warning(tmp_path, capsys, env_id, notice):
    """The env's hint or warning waits until the set-up succeeded: an error found after the
    env was built (agent.curriculum on a host env) is the only thing the user reads."""
    cfg = compose([f"env.id={env_id}", "agent.num_particles=4", "agent.curriculum={start: 10}",
                   "train.progress=false"])  # fmt: skip
    cfg.run_dir = str(tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="^agent.curriculum needs a persistent estimator"):
            pes_rl.train(cfg)
    assert notice not in capsys.readouterr().err + " ".join(str(w.message) for w in caught)
