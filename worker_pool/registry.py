"""The task registry: which names may run, and the functions behind them.

Only functions registered with ``@task`` in a module listed under
``tasks.modules`` in yadtq.yaml can run; a message naming anything else fails.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from client.errors import ConfigError, InvalidMessage, UnknownTask

F = TypeVar("F", bound=Callable[..., Any])
_SHAPES_KEPT = 1024  # argument shapes whose fit Registry.check_call remembers
_SHAPE_NAMES, _SHAPE_NAMES_CHARS = 16, 256  # remembered only for at most so many keyword names, so long in all


@dataclass(frozen=True)
class TaskDef:
    """A registered task: its name, function and signature."""

    name: str
    fn: Callable[..., Any]
    signature: inspect.Signature


class Registry:
    """Maps task names to functions. The ``@task`` decorator fills the default one."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDef] = {}
        # Whether arguments fit a signature depends only on their shape (how many
        # positional ones, which names), never on their values: the answer for a
        # shape is kept, since Signature.bind is a few percent of a no-op task's CPU.
        self._fits: dict[tuple[str, int, tuple[str, ...]], str | None] = {}

    def register(self, fn: Callable[..., Any], name: str | None = None) -> None:
        name = name or fn.__name__
        existing = self._tasks.get(name)
        if existing is not None and existing.fn is not fn:
            raise ConfigError(f"task name {name!r} is registered twice "
                              f"({existing.fn.__module__} and {fn.__module__})")
        self._tasks[name] = TaskDef(name, fn, inspect.signature(fn))

    def get(self, name: str) -> TaskDef:
        """The task called ``name``; raise UnknownTask if none is registered."""
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTask(f"unknown task {name!r}: no module in tasks.modules registers it "
                              f"(registered: {', '.join(sorted(self._tasks)) or 'none'})") from None

    def check_call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> TaskDef:
        """The task, if these arguments fit its signature; else raise InvalidMessage."""
        d = self.get(name)
        if len(kwargs) > _SHAPE_NAMES or sum(map(len, kwargs)) > _SHAPE_NAMES_CHARS:
            error = _misfit(d.signature, args, kwargs)  # too big to keep: a message may hold a megabyte of names
        else:
            shape = (name, len(args), tuple(kwargs))
            if shape not in self._fits:
                if len(self._fits) >= _SHAPES_KEPT:  # bounded: shapes come from messages
                    self._fits.clear()
                self._fits[shape] = _misfit(d.signature, args, kwargs)
            error = self._fits[shape]
        if error is not None:
            raise InvalidMessage(f"wrong arguments for task {name!r}: {error} (it takes {_params(d.signature)})")
        return d

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def load_modules(self, modules: list[str]) -> None:
        """Import the task modules named in the config; their ``@task``s register here."""
        for m in modules:
            try:
                importlib.import_module(m)
            except Exception as e:  # any failure to import is a config problem to report
                raise ConfigError(f"tasks.modules: cannot import {m!r}: {type(e).__name__}: {e}") from None


def _misfit(sig: inspect.Signature, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Why these arguments do not fit ``sig`` (TypeError's text), or None if they do."""
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        return str(e)
    return None


def _params(sig: inspect.Signature) -> str:
    return "(" + ", ".join(str(p.replace(annotation=p.empty)) for p in sig.parameters.values()) + ")"


default_registry = Registry()


@overload
def task(fn: F) -> F: ...
@overload
def task(*, name: str | None = None) -> Callable[[F], F]: ...


def task(fn: Any = None, *, name: str | None = None) -> Any:
    """Register a function as a task, under its own name or ``name``.

        @task
        def add(a, b):
            return a + b
    """
    def wrap(f: F) -> F:
        default_registry.register(f, name)
        return f
    return wrap(fn) if fn is not None else wrap
