"""Argument checks shared by envs, agents and the config (a leaf module: it imports nothing)."""

from __future__ import annotations

from typing import Any


def is_positive_int(value: Any) -> bool:
    """An int ≥ 1 that is not a bool: the check behind every count-like argument."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
