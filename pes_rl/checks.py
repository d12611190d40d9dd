"""Argument checks shared by envs, agents and the config (a leaf module: it imports no pes_rl)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def is_positive_int(value: Any) -> bool:
    """An int ≥ 1 that is not a bool: the check behind every count-like argument."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_number(value: Any) -> bool:
    """An int or a float that is not a bool (YAML's ``false`` is not 0): the check behind
    every number-valued argument."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_kwargs(
    kwargs: Mapping[str, Any],
    takers: Sequence[Callable],
    key: str,
    owner: str,
    skip: Collection[str] = (),
) -> None:
    """Raises a one-line ValueError naming ``{key}.{name}`` for a keyword nobody takes.

    ``takers`` is the chain the keywords travel down: each takes its named parameters and
    passes the rest on through ``**kwargs`` to the next. A last taker with ``**kwargs`` accepts
    anything (nothing can be checked). ``skip`` names parameters the caller fills itself.

    Examples:
      >>> def mlp(env, sizes=(32,)): ...
      >>> check_kwargs({"size": [8]}, [mlp], "policy.kwargs", "policy 'mlp'", {"env"})
      Traceback (most recent call last):
      ValueError: policy.kwargs.size is not a setting of policy 'mlp': it takes ['sizes']
    """
    if _takes_any_keyword(takers[-1]):
        return
    accepted = list(
        dict.fromkeys(
            p.name
            for taker in takers
            for p in inspect.signature(taker).parameters.values()
            if p.kind in _NAMED and p.name not in skip
        )
    )
    unknown = [name for name in kwargs if name not in accepted]
    if unknown:
        raise ValueError(f"{key}.{unknown[0]} is not a setting of {owner}: it takes {accepted}")


def init_chain(target: Callable) -> list[Callable]:
    """``target``; for a class whose ``__init__`` takes ``**kwargs``, also the ``__init__`` up
    its MRO they are passed on to (``super().__init__(..., **kwargs)``), and so on: the
    ``takers`` of :func:`check_kwargs` for keywords meant for ``target``."""
    chain = [target]
    if isinstance(target, type):
        for base in target.__mro__[1:]:
            if not _takes_any_keyword(chain[-1]):
                break
            if "__init__" in vars(base):
                chain.append(base)
    return chain


def _takes_any_keyword(target: Callable) -> bool:
    parameters = inspect.signature(target).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)\}")


class SettingError(ValueError):
    """A bad argument of a library function, in one line that names its parameters as
    ``{name}`` placeholders: called from Python they read as the parameters
    (``num_particles must be an int >= 1``); where the trainer built the call from a config,
    :meth:`as_config_error` names the config keys (``agent.num_particles must be ...``), the
    one place that maps parameters back to keys."""

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.naming(""))

    def naming(self, prefix: str) -> str:
        """The message with each parameter written as ``prefix + name``."""
        return _PLACEHOLDER.sub(lambda match: prefix + match.group(1), self.template)

    def as_config_error(self, prefix: str) -> ValueError:
        """The same error naming config keys under ``prefix`` (e.g. ``"agent."``)."""
        return ValueError(self.naming(prefix))
