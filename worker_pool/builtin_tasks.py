"""Tasks that ship with YADTQ, so a new cluster can run something at once."""

from __future__ import annotations

import time
from typing import Any

from worker_pool.registry import task


@task
def add(a: float, b: float) -> float:
    """a + b"""
    return a + b


@task
def sub(a: float, b: float) -> float:
    """a - b"""
    return a - b


@task
def mul(a: float, b: float) -> float:
    """a * b"""
    return a * b


@task
def div(a: float, b: float) -> float:
    """a / b; dividing by zero fails the task with ZeroDivisionError."""
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
