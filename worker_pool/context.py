"""What a running task may know about itself: ``current_task()``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from client.config import Config
from client.errors import YadtqError


@dataclass(frozen=True)
class TaskContext:
    """The task being run: its id, name, attempt (the fencing token, 1 first),
    the worker running it and the cluster's config."""

    task_id: str
    name: str
    attempt: int
    worker: str
    config: Config


_current: ContextVar[TaskContext | None] = ContextVar("yadtq_current_task", default=None)


def current_task() -> TaskContext:
    """The context of the task running now; raise YadtqError outside a task.

        @task
        def report(day):
            log.info("task %s, attempt %d", current_task().task_id, current_task().attempt)
    """
    ctx = _current.get()
    if ctx is None:
        raise YadtqError("current_task() called outside a running task")
    return ctx


@contextmanager
def running(ctx: TaskContext) -> Iterator[None]:
    """Make ``ctx`` the current task inside the block (the worker's side)."""
    token = _current.set(ctx)
    try:
        yield
    finally:
        _current.reset(token)
