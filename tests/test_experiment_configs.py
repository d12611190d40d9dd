"""Experiments that extend a sibling (``defaults: [swimmer_pes, override /agent: nres]``) resolve
to the configs they resolved to before they inherited (issue 21): tests/data/ holds that snapshot.

Regenerate the snapshot only for an intended change of an experiment's values, and say so in the
commit: ``python tests/test_experiment_configs.py``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pes_rl.training.config import CONFIG_DIR, compose, dotted

SNAPSHOT = Path(__file__).parent / "data" / "experiment_configs.json"
EXPERIMENT_DIR = CONFIG_DIR / "experiment"
EXPERIMENTS = sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def resolved(overrides: tuple[str, ...]) -> dict:
    """The composed config as plain data, without ``run_dir`` (a path chosen at run time)."""
    cfg = OmegaConf.to_container(compose(list(overrides)), resolve=True)
    cfg.pop("run_dir", None)
    return cfg


@functools.cache
def snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


def mismatches(expected: dict, actual: dict, prefix: str = "") -> list[str]:
    """Keys of ``expected`` whose value differs in ``actual`` (keys only ``actual`` has are new
    defaults of a config group, not settings of the experiment, and are ignored)."""
    out = []
    for key, value in expected.items():
        if key not in actual:
            out.append(f"{prefix}{key}: missing, was {value!r}")
        elif isinstance(value, dict) and isinstance(actual[key], dict):
            out += mismatches(value, actual[key], f"{prefix}{key}.")
        elif actual[key] != value or type(actual[key]) is not type(value):
            out.append(f"{prefix}{key}: {actual[key]!r}, was {value!r}")
    return out


def test_the_snapshot_lists_every_experiment():
    assert EXPERIMENTS == sorted(snapshot())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_resolves_as_before_it_inherited(experiment):
    if experiment not in snapshot():
        pytest.fail(f"{experiment} is not in {SNAPSHOT.name}: regenerate it (see module docstring)")
    actual = resolved((f"experiment={experiment}",))
    assert mismatches(snapshot()[experiment], actual) == []


def extended(experiment: str) -> tuple[str | None, list[str]]:
    """The sibling ``experiment`` extends (None for a root) and its group overrides."""
    defaults = OmegaConf.to_container(OmegaConf.load(EXPERIMENT_DIR / f"{experiment}.yaml"))
    entries = defaults.get("defaults", [])
    parents = [e for e in entries if isinstance(e, str) and e in EXPERIMENTS]
    overrides = [
        f"{key.removeprefix('override /')}={value}"
        for e in entries
        if isinstance(e, dict)
        for key, value in e.items()
    ]
    assert len(parents) <= 1, f"{experiment} extends {parents}: one sibling at most"
    return (parents[0] if parents else None), overrides


@pytest.mark.parametrize(
    "experiment", [name for name in EXPERIMENTS if extended(name)[0] is not None]
)
def test_an_experiment_that_extends_a_sibling_states_only_what_differs(experiment):
    parent, overrides = extended(experiment)
    # the sibling with the same config groups selected (agent=es ...): what the child inherits
    inherited = dotted(resolved((f"experiment={parent}", *overrides)))
    body = OmegaConf.to_container(OmegaConf.load(EXPERIMENT_DIR / f"{experiment}.yaml"))
    body.pop("defaults", None)
    restated = [k for k, v in dotted(body).items() if k in inherited and inherited[k] == v]
    assert restated == [], f"{experiment} restates {parent}'s values"


if __name__ == "__main__":  # regenerate the snapshot
    configs = {name: resolved((f"experiment={name}",)) for name in EXPERIMENTS}
    SNAPSHOT.write_text(json.dumps(configs, sort_keys=True, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(configs)} experiments to {SNAPSHOT}")
