"""Silence for what MuJoCo-based packages print while they import and build models."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# MuJoCo deprecation notices about the packages' own model files: no user can act on them.
# (MuJoCo would print them and append them to ./MUJOCO_LOG.TXT.)
IGNORED_MUJOCO_WARNINGS = ("settotalmass",)


@contextmanager
def mujoco_warnings_filtered() -> Iterator[None]:
    """Runs the block with MuJoCo's C-level warnings caught (when MuJoCo is installed): the
    ignored ones are dropped, any other becomes a Python warning after the block. Gymnasium's
    MuJoCo envs build their models in ``gymnasium.make``."""
    try:
        import mujoco
    except ImportError:
        yield
        return
    caught: list[str] = []

    def collect(message: str) -> None:
        if not any(ignored in message for ignored in IGNORED_MUJOCO_WARNINGS):
            caught.append(message)

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(collect)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
    for message in caught:
        warnings.warn(f"MuJoCo: {message}", stacklevel=3)


@contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Runs the block with Python's stdout, stderr and warnings silenced (Brax's "not actively
    maintained" notice, MJX's "Failed to import warp", Warp's banner, Playground's clone
    progress) and MuJoCo's C-level warnings caught: the ignored ones are dropped, any other
    becomes a Python warning after the block."""
    with (
        mujoco_warnings_filtered(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield
