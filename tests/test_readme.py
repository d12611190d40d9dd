"""The README's Python example runs as written and shows what it claims."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_starts_with_the_two_setup_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    assert first_block.splitlines() == [
        "pip install -e . && python train.py",
        'pip install -e ".[dev]" && pytest',
    ]


def test_readme_python_example_pes_finds_optimum_tes_does_not():
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, str(README), "exec"), {})
    printed = dict(line.split() for line in output.getvalue().splitlines())
    assert abs(float(printed["pes"]) + 1 / 6) < 0.02
    assert float(printed["tes"]) > 0.5


def test_readme_learned_optimizer_example_trains_a_network():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(block for block in blocks if "lopt.as_optax" in block)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, str(README), "exec"), {})
    printed = dict(line.split() for line in output.getvalue().splitlines())
    assert float(printed["after"]) < 0.01 * float(printed["before"])


def test_readme_python_api_example_trains_loads_and_acts(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(block for block in blocks if "pes_rl.load(" in block)
    monkeypatch.chdir(tmp_path)  # the run dir goes to ./runs/...
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, str(README), "exec"), {})
    printed = dict(line.split() for line in output.getvalue().splitlines())
    # The zero policy balances CartPole for about 9 steps; the trained one far longer.
    assert float(printed["eval_return"]) > 200
    assert float(printed["episode_return"]) > 100
    (run_dir,) = (tmp_path / "runs" / "CartPole-v1" / "pes").iterdir()
    assert (run_dir / "policy.npz").exists()
