"""The supervisor's lines for its operator: a write that never raises.

``python -m supervisor yadtq.yaml | head -3``, or ``make run | tee run.log``
and then Ctrl-C (which ends tee too): stdout becomes a broken pipe. The
supervisor must go on supervising (or stop its cluster cleanly), so a line
that cannot be written goes to stderr instead, and to nowhere if that fails too.

Each line has an event kind (``emit(event, message, level, **fields)``),
shown only in the ``json`` log format (worker_pool/logs.py), where a line is
one JSON object. The kinds: ``services``, ``topics``, ``lease``, ``ready``,
``started``, ``live``, ``dead``, ``backoff``, ``service-down``,
``service-up``, ``announce-failed``, ``status``, ``stopping``, ``killed``,
``stopped``, ``error``, and ``message`` for any other line.

The status line is printed by the rule of ``StatusGate``.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from worker_pool.logs import json_line


class Output:
    """Callable: ``say(line)`` writes ``[yadtq] line`` to stdout, else stderr, else nowhere.

    ``log_format="json"`` writes each line as a JSON object instead (source ``supervisor``).
    """

    def __init__(self, streams: list[TextIO] | None = None, log_format: str = "text") -> None:
        self._streams = streams if streams is not None else [sys.stdout, sys.stderr]
        self.log_format = log_format

    def __call__(self, line: str) -> None:
        self.emit("message", line)

    def emit(self, event: str, message: str, level: str = "info", **fields: Any) -> None:
        """Write one line of kind ``event``; never raises."""
        try:
            text = json_line("supervisor", event, message, level, fields) if self.log_format == "json" else None
        except Exception:  # a field that cannot be shown must not cost the line, nor the supervision
            text = json_line("supervisor", event, message, level)
        self._write(text or f"[yadtq] {message}")

    def _write(self, text: str) -> None:
        while self._streams:
            stream = self._streams[0]
            try:
                print(text, file=stream, flush=True)
                return
            except (OSError, ValueError):  # a broken pipe, a closed terminal, a closed file object
                self._streams.pop(0)
                _silence(stream)
                if self._streams:
                    self.emit("message", f"{_name(stream)} failed; writing to {_name(self._streams[0])} from now on",
                              "warning")


@dataclass
class StatusGate:
    """When the supervisor prints its status line: on change, at most every ``interval``, at least every
    ``idle_interval`` seconds.

    The status is sampled every ``interval`` seconds (``supervisor.status_interval``).
    A sample is printed when it *changed*: when it differs from the last
    printed one in any field (workers live, scheduler up, each worker's load,
    done, failed, restarts, Redis reachable). An unchanged sample is printed
    only once ``idle_interval`` seconds (``supervisor.status_idle_interval``,
    a minute) have passed since the last printed line, so that a log shows the
    cluster is still there. A busy cluster thus gets a line every ``interval``,
    an idle one a line a minute. Time is passed in (a monotonic clock).
    """

    interval: float
    idle_interval: float
    _sampled_at: float = -math.inf
    _printed_at: float = -math.inf
    _printed: object = None

    def sample_due(self, at: float) -> bool:
        """Is it time to take a sample (``interval`` since the last one)?"""
        if at - self._sampled_at < self.interval:
            return False
        self._sampled_at = at
        return True

    def should_print(self, status: object, at: float) -> bool:
        """Print this sample? ``status`` compares equal to the last printed one when nothing changed."""
        if status == self._printed and at - self._printed_at < self.idle_interval:
            return False
        self._printed, self._printed_at = status, at
        return True


def _name(stream: TextIO) -> str:
    names = {id(sys.stdout): "stdout", id(sys.stderr): "stderr", id(sys.__stdout__): "stdout",
             id(sys.__stderr__): "stderr"}  # json mode puts wrappers in sys.stdout and sys.stderr
    return names.get(id(stream), "output")


def _silence(stream: TextIO) -> None:
    """Point the dead stream's file descriptor at /dev/null.

    Its buffer still holds the line that failed, and the interpreter flushes
    stdout and stderr as it exits: without this that flush fails again
    ("Exception ignored ... BrokenPipeError") and turns exit code 0 into 120.
    """
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
        stream.flush()
    except (OSError, ValueError):
        pass  # nothing more can be done for it; the lines go elsewhere
