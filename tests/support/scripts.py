"""Running one of the store's lifecycle scripts by itself, for the Redis-level tests."""

from __future__ import annotations

from typing import Any

from client.store import TaskStore


def run(store: TaskStore, op: str, *args: Any, **kwargs: Any) -> Any:
    """Run one lifecycle script (``store.<op>``) now, in a pipeline of its own; its decoded answer."""
    pipe = store.pipeline()
    reply = getattr(store, op)(pipe, *args, **kwargs)
    store.execute(pipe)
    return reply.value
