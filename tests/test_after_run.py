"""After the run: pes_rl.load(...).act, policy.npz, the evaluate command (returns, video)."""

from __future__ import annotations

import json
import re
import shutil
import types

import gymnasium
import jax
import numpy as np
import pytest
from cli import read_metrics, run_evaluate

import pes_rl
from pes_rl import envs, normalization
from pes_rl.after import evaluate, render
from pes_rl.after.trained import POLICY_FILE
from pes_rl.stepping.host_engine import seed_stream

CARTPOLE = [
    "env.id=CartPole-v1", "agent.num_particles=8", "agent.unroll_length=50",
    "agent.obs_normalization=true", "train.iterations=6", "train.eval_every=0",
    "train.checkpoint_every=3", "train.progress=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """A short CartPole run (host env, observation normalization on), trained in-process from
    a list of overrides."""
    run_dir = tmp_path_factory.mktemp("after") / "cartpole"
    result = pes_rl.train([*CARTPOLE, f"run_dir={run_dir}"])
    return run_dir, result


@pytest.fixture(scope="module")
def influence_run(tmp_path_factory):
    """A short influence-balancing run (a JAX env), trained from a partial dict."""
    run_dir = tmp_path_factory.mktemp("after") / "influence"
    settings = {
        "experiment": "influence_balancing_pes", "agent.num_particles": 20,
        "train": {"iterations": 20, "progress": False}, "run_dir": str(run_dir),
    }  # fmt: skip
    return run_dir, pes_rl.train(settings)


def test_load_gives_the_final_params_normalizer_and_an_act(cartpole_run, tmp_path):
    run_dir, result = cartpole_run
    trained = pes_rl.load(run_dir)
    assert trained.iteration == 6 and trained.env_id == "gym/CartPole-v1"
    np.testing.assert_array_equal(trained.params["w"], result.params["w"])
    assert trained.obs_norm is not None and float(trained.obs_norm.count) > 0

    # The same θ and normalizer from the orbax checkpoint, and from a copy of policy.npz alone.
    from_checkpoint = pes_rl.load(run_dir, iteration=6)
    copy = tmp_path / "elsewhere.npz"
    shutil.copy(run_dir / POLICY_FILE, copy)
    from_copy = pes_rl.load(copy)
    for other in (from_checkpoint, from_copy):
        np.testing.assert_array_equal(other.params["w"], trained.params["w"])
        for a, b in zip(other.obs_norm, trained.obs_norm, strict=True):
            np.testing.assert_array_equal(a, b)
    older = pes_rl.load(run_dir, iteration=3)
    assert older.iteration == 3 and not np.array_equal(older.params["w"], trained.params["w"])

    # act: one observation -> one action, a batch -> a batch, the policy on normalized obs.
    batch = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    actions = trained.act(batch)
    assert actions.shape == (16,) and set(np.unique(actions)) <= {0, 1}
    assert [int(trained.act(obs)) for obs in batch] == actions.tolist()
    normalized = normalization.normalize(trained.obs_norm, jax.numpy.asarray(batch))
    expected = np.argmax(np.asarray(normalized) @ np.asarray(trained.params["w"]), axis=1)
    np.testing.assert_array_equal(actions, expected)
    assert len(np.unique(actions)) == 2  # the trained policy is not constant

    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        trained.act(np.zeros(5))
    with pytest.raises(ValueError, match=r"saved are \[3, 6\]"):
        pes_rl.load(run_dir, iteration=4)
    with pytest.raises(FileNotFoundError, match="no run dir"):
        pes_rl.load(tmp_path / "missing")


def test_evaluate_command_returns_and_video(cartpole_run, tmp_path):
    """As a user runs it: N episodes of θ unperturbed, each seeded, and an MP4 of the first."""
    run_dir, _ = cartpole_run
    video, report = tmp_path / "episode.mp4", tmp_path / "evaluation.json"
    result = run_evaluate(
        run_dir, "--episodes", "3", "--seed", "1", "--json", report, "--video", video
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(report.read_text())
    assert "return" in result.stdout and "over 3 episodes" in result.stdout

    # The same episodes stepped here through load(...).act give the same returns.
    trained = pes_rl.load(run_dir)
    env = gymnasium.make("CartPole-v1")
    expected = []
    for seed in seed_stream(jax.random.key(1)).integers(0, 2**31 - 1, size=3):
        obs, _ = env.reset(seed=int(seed))
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(trained.act(obs))
            total, done = total + reward, terminated or truncated
        expected.append(total)
    assert summary["returns"] == expected
    assert summary["return_mean"] == pytest.approx(np.mean(expected))

    import imageio

    frames = imageio.mimread(video, memtest=False)
    assert len(frames) == expected[0] + 1  # the reset frame, then one per step (reward 1/step)
    assert frames[0].ndim == 3 and frames[0].std() > 0  # a picture, not a blank
    assert f"video: {video}" in result.stdout


def test_evaluate_without_seed_repeats_the_runs_last_eval_return(cartpole_run, capsys):
    """A host env: the run's own evaluation key and episode count give its eval_return."""
    run_dir, result = cartpole_run
    episodes = str(pes_rl.load(run_dir).config.train.eval_episodes)
    assert evaluate.main([str(run_dir), "--episodes", episodes]) == 0
    printed = capsys.readouterr().out
    last = result.history[-1]["eval_return"]
    assert f": return {last:.6g} ± " in printed and "the run's evaluation seeds" in printed


def test_evaluate_a_jax_env_matches_the_runs_own_evaluation(influence_run, capsys, tmp_path):
    run_dir, result = influence_run
    assert len(read_metrics(run_dir)) == 20  # trained from the partial dict as asked
    assert evaluate.main([str(run_dir), "--episodes", "2", "--json", str(tmp_path / "e.json")]) == 0
    summary = json.loads((tmp_path / "e.json").read_text())
    # Influence balancing is deterministic: the run's final evaluation, recomputed.
    final_eval = result.history[-1]["eval_return"]
    assert summary["return_mean"] == pytest.approx(final_eval, rel=1e-4)
    capsys.readouterr()

    assert evaluate.main([str(run_dir), "--video", str(tmp_path / "x.mp4")]) == 2
    assert "influence_balancing has nothing to draw" in capsys.readouterr().err
    assert evaluate.main([str(tmp_path / "nowhere")]) == 2
    assert "no run dir or policy.npz" in capsys.readouterr().err


def test_run_dir_without_policy_file_or_checkpoints_is_one_line(tmp_path):
    (tmp_path / "config.yaml").write_text("agent: {}\nenv: {}\ntrain: {}\n")
    with pytest.raises(FileNotFoundError, match="holds no policy.npz and no config.yaml"):
        pes_rl.load(tmp_path)


def test_plot_skips_and_evaluate_refuses_another_programs_run_in_one_line(tmp_path, capsys):
    """Another project's Hydra output: its own config.yaml, metrics.jsonl and checkpoints/."""
    from pes_rl.after import plot

    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    (other / "config.yaml").write_text("model: resnet18\nlr: 0.001\n")
    (other / "metrics.jsonl").write_text('{"epoch": 1, "top1": 0.31}\n')
    why = f"{other} is not a pes_rl run (its config.yaml lacks agent, env, train)"
    run = fake_run(tmp_path / "run", 0, [1.0, 2.0])
    plot.main([str(other), str(run), "-o", str(tmp_path / "c.png")])
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"skipped {other}: not a pes_rl run (its config.yaml "
                                         "lacks agent, env, train)"]  # fmt: skip
    assert "ARS Hopper-v5" in captured.out and (tmp_path / "c.png").exists()

    assert evaluate.main([str(other)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {why}"]
    with pytest.raises(ValueError, match=f"^{re.escape(why)}$"):
        pes_rl.load(other)


# Videos of Gymnasium envs that are not MuJoCo envs -------------------------------------------


def toy_policy(env_id: str, **kwargs) -> types.SimpleNamespace:
    """What host_video needs of a trained policy: the env and an act (always action 0)."""
    return types.SimpleNamespace(env=envs.make(f"gym/{env_id}", **kwargs), act=lambda obs: 0)


@pytest.mark.parametrize(
    "env_id, shape, fps",
    [("toy_gym:GridRender-v0", (32, 40, 3), 4.0),
     ("toy_gym:FixedSizeRender-v0", (32, 48, 3), 10.0)],
)  # fmt: skip
def test_videos_of_envs_without_a_frame_size_are_drawn_at_their_own_size(env_id, shape, fps):
    """The video's width and height go to MuJoCo envs only: GridRender reads them as its
    grid's size (as MiniGrid does), FixedSizeRender takes none."""
    frames, frame_rate = evaluate.host_video(toy_policy(env_id), jax.random.key(0), 2)
    assert {frame.shape for frame in frames} == {shape} and frame_rate == fps
    assert 2 * 3 <= len(frames) <= 2 * 6  # a reset frame and one per step (2..5 steps)


def test_a_failure_to_render_names_the_env_and_the_cause_in_one_line():
    broken = toy_policy("toy_gym:GridRender-v0", broken=True)
    with pytest.raises(render.RenderError) as error:
        evaluate.host_video(broken, jax.random.key(0), 1)
    # an empty AssertionError (MiniGrid's) is named by where it was raised
    assert re.fullmatch(r"cannot render GridRender-v0 \(AssertionError at toy_gym\.py:\d+\)",
                        str(error.value))  # fmt: skip
    with pytest.raises(render.RenderError, match=r"^--camera 'track': toy_gym:GridRender-v0 "
                       "has no MuJoCo cameras$"):  # fmt: skip
        render.gym_renderer(broken, evaluate.VIDEO_SIZE, camera="track")


def test_mujoco_envs_still_get_the_videos_frame_size():
    gym_env = render.gym_renderer(toy_policy("Swimmer-v5"), evaluate.VIDEO_SIZE)
    assert (gym_env.unwrapped.height, gym_env.unwrapped.width) == evaluate.VIDEO_SIZE
    assert gym_env.unwrapped.camera_name == "track"  # the model's tracking camera
    gym_env.close()


@pytest.mark.slow
def test_evaluate_renders_a_brax_episode(tmp_path):
    """Brax states are drawn by MuJoCo's renderer (headless: EGL), one frame per step."""
    run_dir = tmp_path / "pendulum"
    pes_rl.train([
        "env=brax", "env.id=inverted_pendulum", "env.kwargs.backend=spring",
        "env.kwargs.episode_length=100", "agent.num_particles=8", "agent.unroll_length=50",
        "train.iterations=2", "train.progress=false", f"run_dir={run_dir}",
    ])  # fmt: skip
    video = tmp_path / "pendulum.mp4"
    result = run_evaluate(run_dir, "--episodes", "2", "--video", video)
    assert result.returncode == 0, result.stderr
    assert "Failed to import" not in result.stdout + result.stderr  # MJX's warp notice
    import imageio

    frames = imageio.mimread(video, memtest=False)
    assert 2 <= len(frames) <= 101 and frames[0].std() > 0
    assert f"({len(frames)} frames at 50 fps)" in result.stdout


def fake_run(run_dir, seed: int, returns: list[float], lr: float = 0.01):
    """A run dir as train.py leaves it: config.yaml and one eval per 1000 env steps."""
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(
        "env: {family: gym, id: Hopper-v5}\n"
        "agent: {name: ars, num_particles: 16, sigma: 0.025, unroll_length: null,"
        " top_directions: 4}\n"
        f"optimizer: {{name: sgd, lr: {lr}}}\n"
        f"train: {{seed: {seed}, progress: {seed == 0}}}\n"
    )
    records = [
        {"iteration": i + 1, "env_steps": 1000 * (i + 1), "env_steps_window": 1000,
         "steps_per_s": 10.0, "eval_return": value}
        for i, value in enumerate(returns)
    ]  # fmt: skip
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def test_plot_table_counts_env_steps_to_a_threshold_and_minutes(tmp_path):
    """``pes-rl plot --budgets ... --threshold X``: returns at the budgets, the median env
    steps at which seeds first reached X (and how many did), the runs' mean minutes."""
    from pes_rl.after import plot

    curves = {0: [100.0, 250.0, 400.0], 1: [50.0, 320.0, 280.0], 2: [10.0, 20.0, 30.0]}
    dirs = [fake_run(tmp_path / f"seed{seed}", seed, returns) for seed, returns in curves.items()]
    table = plot.budget_table(dirs, [2000], threshold=300).splitlines()
    assert table[0] == "| run | seeds | 2,000 steps | env steps to 300 | minutes |"
    # at 2000 steps: 250, 320, 20; seeds 0 and 1 reach 300 at 3000 and 2000 steps
    label = "ARS Hopper-v5 K=T σ=0.025 N=16 b=4"
    assert table[2] == f"| {label} | 3 | 196.7 ± 130 | 2,500 (2/3) | 5.0 |"
    table = plot.budget_table(dirs[:2], [2000], threshold=300).splitlines()
    assert table[2].endswith("| 2,500 | 5.0 |")
    table = plot.budget_table(dirs[2:], [2000], threshold=300).splitlines()
    assert table[2].endswith("| not reached (0/1) | 5.0 |")


def swept_run(run_dir, agent: str, per_iteration: int, iterations: int, evaluated: list[int],
              budget: int | None = None, env_id: str = "influence_balancing"):  # fmt: skip
    """A sweep's run of ``agent`` on a built-in env: ``per_iteration`` env steps per
    iteration, an evaluation (return = its env steps / 1000) at the ``evaluated``
    iterations."""
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(
        f"env: {{family: null, id: {env_id}}}\n"
        f"agent: {{name: {agent}, num_particles: 10, sigma: 0.1, unroll_length: 1}}\n"
        f"train: {{seed: 0, max_env_steps: {'null' if budget is None else budget}}}\n"
    )
    records = [
        {"iteration": i, "env_steps": per_iteration * i, "env_steps_window": per_iteration}
        | ({"eval_return": per_iteration * i / 1000} if i in evaluated else {})
        for i in range(1, iterations + 1)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def test_plot_reads_budgets_at_equal_env_steps_and_warns_of_unequal_ends(tmp_path, capsys):
    """max_env_steps=10000, eval_every_steps=5000: ES (3000 steps per iteration) is evaluated
    at 6000 and 12000 env steps, PES (1000) at 5000 and 10000; an NRES run on an iteration
    schedule stopped at 4000."""
    from pes_rl.after import plot

    es = swept_run(tmp_path / "es", "es", 3000, 4, [2, 4], budget=10000)
    pes = swept_run(tmp_path / "pes", "pes", 1000, 10, [5, 10], budget=10000)
    nres = swept_run(tmp_path / "nres", "nres", 1000, 4, [2, 4])
    table = plot.budget_table([es, pes, nres], [5000, 10000]).splitlines()
    # Each run at the first iteration that reached the budget; NRES never reached 5000.
    assert table[2:] == [
        "| ES influence_balancing K=1 σ=0.1 N=10 | 1 | 6 ± 0 | 12 ± 0 |",
        "| NRES influence_balancing K=1 σ=0.1 N=10 | 1 | – | – |",
        "| PES influence_balancing K=1 σ=0.1 N=10 | 1 | 5 ± 0 | 10 ± 0 |",
    ]
    assert plot.unequal_budgets([es, pes]) is None  # both trained to the 10,000 budget
    plot.main([str(es), str(pes), str(nres), "-o", str(tmp_path / "c.png")])
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "warning: these runs end at different env steps (ES influence_balancing K=1 σ=0.1 "
        "N=10: 10,000; NRES influence_balancing K=1 σ=0.1 N=10: 4,000; PES influence_balancing "
        "K=1 σ=0.1 N=10: 10,000); train them with one train.max_env_steps and "
        "train.eval_every_steps to compare them at equal env steps"
    )


def test_plot_x_axis_says_env_steps_for_rl_and_inner_steps_for_meta_tasks(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from pes_rl.after import plot
    from pes_rl.envs import registry
    from pes_rl.envs.unrolled import UnrolledOptimizationEnv

    rl = swept_run(tmp_path / "rl", "pes", 100, 2, [2])
    meta = swept_run(tmp_path / "meta", "pes", 100, 2, [2], env_id="lr_toy2d")
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    labels = {}
    for name, dirs in {"rl": [rl], "meta": [meta], "both": [rl, meta]}.items():
        plot.plot_runs(dirs, tmp_path / f"{name}.png", x_axes=("env_steps", "iteration"))
        labels[name] = [ax.get_xlabel() for ax in figures[-1].axes[:2]]
    assert labels == {
        "rl": ["env steps", "outer iterations"],
        "meta": ["inner steps", "outer iterations"],
        "both": ["env steps (meta tasks: inner steps)", "outer iterations"],
    }
    # META_TASKS are the built-in envs whose steps are inner optimization steps
    unrolled = {
        name for name, make in registry._REGISTRY.items()
        if isinstance(make, type) and issubclass(make, UnrolledOptimizationEnv)
    }  # fmt: skip
    assert set(plot.META_TASKS) == unrolled


def test_plot_labels_name_the_settings_a_sweep_varies(tmp_path):
    """Seeds of one setting share a label; runs that differ in a setting the label does not
    show (here optimizer.lr) get one label each, naming it."""
    from pes_rl.after import plot

    runs = [fake_run(tmp_path / f"{lr}-{seed}", seed, [1.0], lr) for lr in (0.01, 0.1)
            for seed in (0, 1)]  # fmt: skip
    groups = plot.group_runs(runs)
    base = "ARS Hopper-v5 K=T σ=0.025 N=16 b=4"
    assert {k: len(v) for k, v in groups.items()} == {f"{base} lr=0.01": 2, f"{base} lr=0.1": 2}
    assert list(plot.group_runs(runs[:2])) == [base]


def test_plot_reads_an_archived_run_dir_as_a_live_one(tmp_path):
    """benchmarks/results keeps runs' metrics as ``metrics.jsonl.gz``: the budget table of an
    archived run equals the live run's, and such a dir counts as holding results."""
    import gzip

    from pes_rl.after import plot
    from pes_rl.training.run_dir import holds_results

    live = swept_run(tmp_path / "live", "pes", 1000, 10, [5, 10])
    archived = swept_run(tmp_path / "archived", "pes", 1000, 10, [5, 10])
    metrics = archived / "metrics.jsonl"
    (archived / "metrics.jsonl.gz").write_bytes(gzip.compress(metrics.read_bytes()))
    metrics.unlink()
    assert holds_results(archived)
    assert plot.budget_table([archived], [5000, 10000]) == plot.budget_table([live], [5000, 10000])
    assert "5 ± 0 | 10 ± 0" in plot.budget_table([archived], [5000, 10000])
