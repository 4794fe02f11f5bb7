"""Tasks that ship with YADTQ, so a new cluster can run something at once."""

from __future__ import annotations

import time
from typing import Any

from worker_pool.registry import task


def _numbers(name: str, *values: Any) -> None:
    """Raise TypeError unless every value is a number.

    A registered task is an API open to anyone who can write TASKS: without
    this, ``mul("x", 10**10)`` would build a string of ten gigabytes in one
    C call that holds the GIL, starving the worker's heartbeats until the
    supervisor kills it (found by ``make fuzz``).
    """
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} takes numbers, got {type(v).__name__}")


@task
def add(a: float, b: float) -> float:
    """a + b (numbers only)"""
    _numbers("add", a, b)
    return a + b


@task
def sub(a: float, b: float) -> float:
    """a - b (numbers only)"""
    _numbers("sub", a, b)
    return a - b


@task
def mul(a: float, b: float) -> float:
    """a * b (numbers only)"""
    _numbers("mul", a, b)
    return a * b


@task
def div(a: float, b: float) -> float:
    """a / b (numbers only); dividing by zero fails the task with ZeroDivisionError."""
    _numbers("div", a, b)
    return a / b


@task
def sleep(seconds: float) -> float:
    """Sleep, then return the seconds slept: a stand-in for slow work."""
    time.sleep(seconds)
    return seconds


@task
def echo(*args: Any, **kwargs: Any) -> Any:
    """Return the arguments as given: one argument as is, several as a list."""
    if kwargs:
        return {"args": list(args), "kwargs": kwargs}
    return args[0] if len(args) == 1 else list(args)


@task
def fail(message: str = "this task always fails") -> None:
    """Always raise RuntimeError(message): for trying out failure handling."""
    raise RuntimeError(message)
