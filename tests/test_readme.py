"""The README and the docs/ pages: their examples run as written and show what they claim, the
commands they show name configs, modules and scripts that exist, and their links resolve.

Every Python block of README.md and docs/*.md runs once (a block shown on two pages runs once):
the three examples with a claim to check in their own tests, every other block in
``test_other_python_blocks_run``. Training commands are composed with Hydra, not run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
# Python blocks with a claim of their own to check, by a string only that block holds.
CHECKED = {
    "influence": '"influence_balancing"',
    "learned optimizer": "lopt.as_optax",
    "train, load and act": "pes_rl.load(",
}


def code_blocks(language: str) -> list[tuple[str, str]]:
    """(``page:line``, code) of every fenced block in ``language``, in page order."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 1
                blocks.append((f"{page.relative_to(REPO)}:{line}", match.group(2)))
    return blocks


def python_blocks() -> dict[str, str]:
    """Each distinct Python block once: code -> where it first appears."""
    unique: dict[str, str] = {}
    for where, code in code_blocks("python"):
        unique.setdefault(code, where)
    return unique


def block_with(marker: str) -> tuple[str, str]:
    """(where, code) of the one distinct Python block that contains ``marker``."""
    found = [(where, code) for code, where in python_blocks().items() if marker in code]
    assert len(found) == 1, f"{len(found)} Python blocks contain {marker!r}: {found}"
    return found[0]


def run_block(where: str, code: str) -> dict[str, str]:
    """Executes a block; what it printed, as ``name value`` lines."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, where, "exec"), {})
    return dict(line.split(maxsplit=1) for line in output.getvalue().splitlines())


def test_readme_starts_with_the_two_setup_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    assert first_block.splitlines() == [
        "pip install -e . && python train.py",
        'pip install -e ".[dev]" && pytest',
    ]


def test_readme_is_a_front_page():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move text to docs/"


def test_python_example_pes_finds_optimum_tes_does_not(monkeypatch):
    monkeypatch.chdir(REPO)
    printed = run_block(*block_with(CHECKED["influence"]))
    assert abs(float(printed["pes"]) + 1 / 6) < 0.02
    assert float(printed["tes"]) > 0.5


def test_learned_optimizer_example_trains_a_network(monkeypatch):
    monkeypatch.chdir(REPO)  # it loads benchmarks/results/lopt_theta.npz
    printed = run_block(*block_with(CHECKED["learned optimizer"]))
    assert float(printed["after"]) < 0.01 * float(printed["before"])


def test_python_api_example_trains_loads_and_acts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run dir goes to ./runs/...
    printed = run_block(*block_with(CHECKED["train, load and act"]))
    # The zero policy balances CartPole for about 9 steps; the trained one far longer.
    assert float(printed["eval_return"]) > 200
    assert float(printed["episode_return"]) > 100
    (run_dir,) = (tmp_path / "runs" / "CartPole-v1" / "pes").iterdir()
    assert (run_dir / "policy.npz").exists()


OTHER_PYTHON_BLOCKS = [
    (where, code)
    for code, where in python_blocks().items()
    if not any(marker in code for marker in CHECKED.values())
]


@pytest.mark.parametrize(
    "where, code", OTHER_PYTHON_BLOCKS, ids=[where for where, _ in OTHER_PYTHON_BLOCKS]
)
def test_other_python_blocks_run(where, code, monkeypatch):
    monkeypatch.chdir(REPO)
    run_block(where, code)
    if "class PointMass" in code:  # the pages say this env ships as envs/point_mass.py
        assert code.strip() in (REPO / "envs" / "point_mass.py").read_text()
    if "class DecayingPES" in code:  # docs/own-estimator.md shows examples/decaying_pes.py
        assert code.strip() == (REPO / "examples" / "decaying_pes.py").read_text().strip()


# Commands -----------------------------------------------------------------------------------

GROUPS = ("env", "agent", "policy", "optimizer", "logger", "experiment")


def shell_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command in the bash blocks: continuation lines joined, comments
    dropped, ``$var`` of a ``for var in ...`` loop expanded, split at ``;``, ``&&``, ``&``."""
    commands = []
    for where, code in code_blocks("bash"):
        code = code.replace("\\\n", " ")
        loops = {var: values.split() for var, values in re.findall(r"for (\w+) in ([^;]+);", code)}
        for line in code.splitlines():
            line = re.sub(r"(^|\s)#.*", "", line)
            for part in re.split(r";|&&|&(?!&)", line):
                argv = shlex.split(part)
                while argv and argv[0] in ("do", "done"):
                    argv = argv[1:]
                if not argv or argv[0] == "for":
                    continue
                names = [v for v in loops if f"${v}" in part or f"${{{v}}}" in part]
                for values in itertools.product(*(loops[v] for v in names)):
                    expanded = part
                    for var, value in zip(names, values, strict=True):
                        expanded = expanded.replace(f"${{{var}}}", value).replace(f"${var}", value)
                    argv = shlex.split(expanded)
                    while argv and argv[0] in ("do", "done"):
                        argv = argv[1:]
                    commands.append((where, argv))
    return commands


def training_overrides(argv: list[str]) -> list[str] | None:
    """The overrides of ``python train.py ...`` / ``pes-rl train ...``, or None."""
    if argv[:2] == ["python", "train.py"]:
        return [a for a in argv[2:] if a != "-m"]
    if argv[:2] == ["pes-rl", "train"]:
        return [a for a in argv[2:] if a != "-m"]
    return None


def first_run(overrides: list[str]) -> tuple[str, ...]:
    """The first run of a sweep (``key=a,b,c`` at ``a``): the other runs set the same keys."""
    return tuple(re.sub(r"^([^=]+=[^,]*),.*$", r"\1", override) for override in overrides)


def test_shell_commands_name_configs_modules_and_scripts_that_exist():
    from pes_rl.cli import COMMANDS
    from pes_rl.training import config

    composed = set()
    for where, argv in shell_commands():
        overrides = training_overrides(argv)
        if overrides is not None:
            for override in overrides:  # every option of a sweep, too
                group, _, options = override.partition("=")
                for option in options.split(",") if group in GROUPS else []:
                    path = REPO / "configs" / group / f"{option}.yaml"
                    assert path.exists(), f"{where}: {override} (no {path.relative_to(REPO)})"
            run = first_run(overrides)
            if run not in composed:
                try:
                    config.compose(list(run))
                except Exception as error:
                    pytest.fail(f"{where}: python train.py {' '.join(run)}: {error}")
                composed.add(run)
        elif argv[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(argv[2]) is not None, f"{where}: no module {argv[2]}"
        elif argv[0] == "python" and argv[1].endswith(".py"):
            assert (REPO / argv[1]).exists(), f"{where}: no script {argv[1]}"
        elif argv[0] == "pes-rl":
            assert argv[1] in COMMANDS, f"{where}: no command pes-rl {argv[1]}"
    assert len(composed) > 20  # the parser still finds the pages' training commands


# Links --------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The page without fenced blocks and inline code."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lowercase, punctuation other than ``-``
    and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets ``-1``, ``-2``, ..."""
    slugs, counts = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", page.read_text()), re.M):
        slug = github_slug(heading)
        count = counts.get(slug, 0)
        counts[slug] = count + 1
        slugs.add(f"{slug}-{count}" if count else slug)
    return slugs


def test_github_slug_rule():
    assert github_slug("Scale: GPU, many processes and side by side") == (
        "scale-gpu-many-processes-and-side-by-side"
    )
    assert github_slug("ES vs TES vs PES vs NRES on Swimmer-v5 (PES paper settings)") == (
        "es-vs-tes-vs-pes-vs-nres-on-swimmer-v5-pes-paper-settings"
    )
    assert github_slug("Architecture: one `python train.py` call") == (
        "architecture-one-python-trainpy-call"
    )


def test_relative_links_and_anchors_resolve():
    broken = []
    for page in PAGES:
        for target in LINK.findall(prose(page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
