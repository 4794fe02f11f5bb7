"""The two log formats of the cluster's processes: ``text`` (for people) and ``json`` (for log collectors).

``supervisor.log_format`` (or ``python -m supervisor --log-format json``)
chooses one for the supervisor and every child it starts. In ``json`` every
line any of them writes is one JSON object::

    {"ts": "2026-12-02T05:01:02.345Z", "level": "info", "source": "worker W1",
     "event": "log", "message": "worker W1 ready (pid 4242)", "fields": {"logger": "yadtq.worker", "pid": 4242}}

``source`` is the process (``supervisor``, ``scheduler``, ``worker W1``),
``event`` the kind of line: the supervisor's own kinds (supervisor/output.py),
``log`` for a Python log record, ``stdout`` / ``stderr`` for anything else
written there (a task's ``print``, a traceback), one object per line.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")


def iso_ts(at: float) -> str:
    """``at`` (seconds since the epoch) as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_line(source: str, event: str, message: str, level: str = "info",
              fields: dict[str, Any] | None = None, at: float | None = None) -> str:
    """One log line as a JSON object (without the newline). Never raises: an unserialisable field is shown as text."""
    return json.dumps({"ts": iso_ts(time.time() if at is None else at), "level": level, "source": source,
                       "event": event, "message": message, "fields": fields or {}}, default=str)


class JsonFormatter(logging.Formatter):
    """A ``logging`` record as one JSON line (event ``log``; a traceback goes into ``fields``)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name, "pid": record.process}
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        return json_line(self.source, "log", record.getMessage(), record.levelname.lower(), fields, record.created)


class JsonLines(io.TextIOBase):
    """A text stream that writes each line given to it as a JSON line (event ``stdout`` or ``stderr``) on ``raw``.

    Installed as sys.stdout and sys.stderr in json mode, so that what bypasses
    the logging (a task's print, a traceback printed by multiprocessing) is
    JSON too. A partial line waits for its newline, or for ``flush``.
    """

    def __init__(self, raw: TextIO, source: str, event: str, level: str) -> None:
        super().__init__()
        self.raw = raw
        self._source, self._event, self._level = source, event, level
        self._partial = ""

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]  # a writer may ask it; the real stream's
        return self.raw.encoding

    def fileno(self) -> int:
        return self.raw.fileno()

    def isatty(self) -> bool:
        return False  # what reads it expects JSON, not terminal codes

    def write(self, s: str) -> int:
        *lines, self._partial = (self._partial + s).split("\n")
        for line in lines:
            self.raw.write(json_line(self._source, self._event, line, self._level) + "\n")
        if lines:
            self.raw.flush()
        return len(s)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            self.raw.write(json_line(self._source, self._event, line, self._level) + "\n")
        self.raw.flush()


def setup_logging(source: str, log_format: str, level: int = logging.INFO) -> tuple[TextIO, TextIO]:
    """Configure this process's ``logging`` for ``log_format``; return its real (stdout, stderr).

    In ``text`` mode: ``%(asctime)s <source> <LEVEL> message`` on stderr, as
    always. In ``json`` mode the log records are JSON lines on stderr, and
    sys.stdout and sys.stderr become JsonLines wrappers; the real streams
    returned are where already-formatted lines go (the supervisor's Output).
    """
    out, err = sys.stdout, sys.stderr
    if log_format != "json":
        logging.basicConfig(level=level, format=f"%(asctime)s {source} %(levelname)s %(message)s")
        return out, err
    handler = logging.StreamHandler(err)
    handler.setFormatter(JsonFormatter(source))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    sys.stdout = JsonLines(out, source, "stdout", "info")
    sys.stderr = JsonLines(err, source, "stderr", "error")
    return out, err
