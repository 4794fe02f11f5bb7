"""The supervisor's lines for its operator: a write that never raises.

``python -m supervisor yadtq.yaml | head -3``, or ``make run | tee run.log``
and then Ctrl-C (which ends tee too): stdout becomes a broken pipe. The
supervisor must go on supervising (or stop its cluster cleanly), so a line
that cannot be written goes to stderr instead, and to nowhere if that fails too.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


class Output:
    """Callable: ``say(line)`` writes ``[yadtq] line`` to stdout, else stderr, else nowhere."""

    def __init__(self, streams: list[TextIO] | None = None) -> None:
        self._streams = streams if streams is not None else [sys.stdout, sys.stderr]

    def __call__(self, line: str) -> None:
        while self._streams:
            stream = self._streams[0]
            try:
                print(f"[yadtq] {line}", file=stream, flush=True)
                return
            except (OSError, ValueError):  # a broken pipe, a closed terminal, a closed file object
                self._streams.pop(0)
                _silence(stream)
                if self._streams:
                    self(f"{_name(stream)} failed; writing to {_name(self._streams[0])} from now on")


def _name(stream: TextIO) -> str:
    return {id(sys.stdout): "stdout", id(sys.stderr): "stderr"}.get(id(stream), "output")


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
