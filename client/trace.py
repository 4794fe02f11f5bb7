"""Trace mode: timestamps of each step of a task's way, for ``python -m bench --trace``.

Set ``YADTQ_TRACE`` to a directory before the processes start (the
supervisor's children inherit it): each process then appends one line per
step to ``DIR/trace-PID.tsv``::

    TASK_ID <tab> STEP <tab> time.time() (6 decimals) <tab> PID

Unset, ``TRACING`` is False and every trace point in the code is a plain
``if TRACING:`` on a name bound at import: no call, no I/O, no Redis or Kafka
traffic. Set, a line costs one ``write`` system call (``O_APPEND``, so lines
from a producer's network thread and the main thread never interleave).

All processes run on one host, so their ``time.time()`` are comparable.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from client.protocol import sniff_task_id

ENV = "YADTQ_TRACE"
DIRECTORY = os.environ.get(ENV, "")
TRACING = bool(DIRECTORY)

_lock = threading.Lock()
_fd = -1
_pid = 0


class Mark(NamedTuple):
    """One line of a trace file."""

    task_id: str
    step: str
    at: float  # time.time()
    pid: int


def format_mark(task_id: str, step: str, at: float, pid: int) -> str:
    return f"{task_id}\t{step}\t{at:.6f}\t{pid}\n"


def parse_mark(line: str) -> Mark | None:
    """The mark on ``line``, or None if it is not one (a torn or foreign line)."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 4 or not parts[0] or not parts[1]:
        return None
    try:
        return Mark(parts[0], parts[1], float(parts[2]), int(parts[3]))
    except ValueError:
        return None


def _open() -> int:
    """This process's trace file (opened again in a forked child, which has another pid)."""
    global _fd, _pid
    pid = os.getpid()
    if _fd < 0 or _pid != pid:
        Path(DIRECTORY).mkdir(parents=True, exist_ok=True)
        _fd = os.open(os.path.join(DIRECTORY, f"trace-{pid}.tsv"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _pid = pid
    return _fd


def mark(task_id: str, step: str, at: float | None = None) -> None:
    """Record that ``task_id`` reached ``step`` now (or at ``at``); nothing if tracing is off."""
    if not TRACING:
        return
    line = format_mark(task_id, step, time.time() if at is None else at, os.getpid()).encode()
    with _lock:
        os.write(_open(), line)


def mark_all(task_ids: Iterable[str], step: str) -> None:
    """The same step, at the same moment, for several tasks."""
    at = time.time()
    for t in task_ids:
        mark(t, step, at)


def on_ack(futures: Iterable[Any], task_ids: Iterable[str], step: str) -> None:
    """Mark ``step`` when each produce future completes: in the producer's network
    thread, as it reads the broker's answer (register right after ``send``)."""
    for f, t in zip(futures, task_ids, strict=True):
        cb = _acked(t, step)
        f.add_callback(cb)
        f.add_errback(cb)


def _acked(task_id: str, step: str) -> Callable[[Any], None]:
    def done(_: Any) -> None:
        mark(task_id, step)
    return done


def polled(batches: Mapping[Any, list[Any]], step: str, entered: float) -> None:
    """For each record a consumer's poll returned: ``step`` now, and ``step``.entered
    at ``entered`` (when that poll was called: was the record waited for, or waiting?)."""
    at = time.time()
    for records in batches.values():
        for r in records:
            task_id = sniff_task_id(r.value)
            if task_id is not None:
                mark(task_id, step + ".entered", entered)
                mark(task_id, step, at)


def read(directory: Path) -> list[Mark]:
    """Every mark in the trace files under ``directory``, in file order."""
    marks: list[Mark] = []
    for path in sorted(directory.glob("trace-*.tsv")):
        with path.open(encoding="utf-8", errors="replace") as f:
            marks += [m for line in f if (m := parse_mark(line)) is not None]
    return marks
