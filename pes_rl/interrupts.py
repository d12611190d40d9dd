"""Ctrl-C during a command's start-up (imports, Hydra, building the run): never lost.

Python raises KeyboardInterrupt wherever the main thread is when Ctrl-C arrives. Inside a
garbage-collection callback (JAX registers one), a weakref callback or a ``__del__`` that
exception is printed as ``Exception ignored in: ...`` and dropped, and the run trains on;
inside the initialization of a compiled module (jaxlib's imports NumPy) it becomes an
ImportError. The commands install :func:`install`'s handler first: it records every Ctrl-C
and raises it where it can; where it cannot, or where it was dropped all the same, the signal
comes again a moment later, and the next :func:`check` raises it too (the trainer checks
before its loop takes Ctrl-C over). Library users who never call :func:`install` keep
Python's own handler, and :func:`check` does nothing for them.
"""

from __future__ import annotations

import gc
import importlib.machinery
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

# What a training command says when Ctrl-C stopped it before its first iteration finished.
STOPPED_AT_START = "stopped before the first iteration finished; nothing was saved"
AGAIN_AFTER_S = 0.05  # a Ctrl-C that could not be raised, or was dropped, comes again after this
# pending: a Ctrl-C not raised yet; raising: raise at once (else at the next check);
# raised: our KeyboardInterrupt is on its way out (the command is stopping).
_state = {"pending": False, "raising": True, "raised": False}
_unraisable_hook: list[Callable[[Any], Any]] = []  # the hook ours passes other exceptions to


def install(raising: bool = True) -> None:
    """Ctrl-C is recorded from now on, and raised as KeyboardInterrupt where it is not lost
    while ``raising`` (else at the next :func:`check` once raising). A Ctrl-C recorded
    before stays recorded."""
    _state["raising"] = raising
    signal.signal(signal.SIGINT, _on_ctrl_c)
    if sys.unraisablehook is not _on_unraisable:
        _unraisable_hook[:] = [sys.unraisablehook]
        sys.unraisablehook = _on_unraisable


def _on_ctrl_c(signum: int, frame: FrameType | None) -> None:
    _state["pending"] = True
    # After the first KeyboardInterrupt the command is stopping: more Ctrl-C wait, so the
    # handler that prints its one line is not interrupted itself.
    if not _state["raising"] or _state["raised"]:
        return
    if _loses_exceptions(frame):
        _send_again_later()
        return
    check()


def _on_unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook``: our KeyboardInterrupt, dropped where it was raised (a weakref
    callback), is sent again; anything else goes to the hook before ours."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt) and _state["raised"]:
        _state.update(pending=True, raised=False)
        _send_again_later()
    else:
        _unraisable_hook[0](unraisable)


def _send_again_later() -> None:
    def send_again() -> None:
        if _state["pending"] and not _state["raised"]:
            os.kill(os.getpid(), signal.SIGINT)

    again = threading.Timer(AGAIN_AFTER_S, send_again)
    again.daemon = True
    again.start()


def _loses_exceptions(frame: FrameType | None) -> bool:
    """Whether an exception raised in ``frame`` would be lost: a frame below it is a gc
    callback or a ``__del__`` (printed and dropped), or a compiled module's initialization
    (turned into an ImportError)."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if code in callbacks or code.co_name == "__del__":
            return True
        if code.co_name in ("create_module", "exec_module") and isinstance(
            frame.f_locals.get("self"), importlib.machinery.ExtensionFileLoader
        ):
            return True
        frame = frame.f_back
    return False


def check() -> None:
    """Raises KeyboardInterrupt for a Ctrl-C recorded and not yet raised."""
    if _state["pending"]:
        _state.update(pending=False, raised=True)
        raise KeyboardInterrupt


@contextmanager
def raising(on: bool) -> Iterator[None]:
    """Inside, Ctrl-C raises at once (``on``; one recorded before is raised on entering) or
    waits for the next :func:`check` (while another program, such as Hydra making the run
    dir, must not be cut off half-way; the run then removes what it left)."""
    previous = _state["raising"]
    _state["raising"] = on
    try:
        if on:
            check()
        yield
    finally:
        _state["raising"] = previous


@contextmanager
def stopped_in_one_line(message: str) -> Iterator[None]:
    """Runs a command's block with :func:`install`'s handler: a Ctrl-C before it (recorded)
    or in it ends the process with ``message`` as one line on stderr and exit code 130, not a
    traceback. A handler inside (the run's own message) comes first."""
    install()
    try:
        check()
        yield
    except KeyboardInterrupt:
        print(message, file=sys.stderr)
        sys.exit(130)
