"""The wire format: every message YADTQ puts on a Kafka topic, and its parsers.

All messages are UTF-8 JSON objects, never pickle. Messages YADTQ writes carry
``"v": PROTOCOL_VERSION`` so a later release can change them; a task written by
any other producer in the seed's format (no ``v``) is accepted as version 1.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from client.errors import InvalidMessage

PROTOCOL_VERSION = 1

# Task ids become Redis keys and channel names: printable, no spaces, bounded.
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}")
_RESERVED_PREFIX = "yadtq:"  # our own Redis keys live under this prefix


@dataclass(frozen=True)
class TaskOptions:
    """Per-task overrides of the cluster's defaults; None means 'use the default'."""

    timeout: float | None = None
    max_retries: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {k: v for k, v in (("timeout", self.timeout), ("max_retries", self.max_retries)) if v is not None}


@dataclass(frozen=True)
class Task:
    """A task as submitted: which registered function to call, with what."""

    task_id: str
    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: TaskOptions = field(default_factory=TaskOptions)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": PROTOCOL_VERSION, "task-id": self.task_id, "task": self.name, "args": self.args}
        if self.kwargs:
            out["kwargs"] = self.kwargs
        if opts := self.options.to_wire():
            out["options"] = opts
        return out


@dataclass(frozen=True)
class Assignment:
    """What the scheduler sends to a worker's topic: a task plus its attempt.

    ``attempt`` is a fencing token: the task's Redis record holds the current
    one, and a worker holding an older one must not run or write the task.
    """

    task: Task
    attempt: int
    worker: str


def encode(message: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the only encoding on the wire."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_task(task: Task) -> bytes:
    return encode(task.to_wire())


def encode_assignment(a: Assignment) -> bytes:
    return assignment_bytes(encode(a.task.to_wire()).decode(), a.attempt, a.worker)


def assignment_bytes(task_json: str, attempt: int, worker: str) -> bytes:
    """An assignment from a task already encoded (the scheduler's hot path).

    Appends the two fields to the task's JSON object instead of decoding and
    encoding it again; ``worker`` is a topic name, so it needs no escaping.
    """
    return (task_json[:-1] + f',"attempt":{attempt},"worker":"{worker}"}}').encode()


def check_task_id(task_id: Any) -> str:
    """Return ``task_id`` if it is a valid id, else raise InvalidMessage."""
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise InvalidMessage(
            f"'task-id' must be 1-200 characters of letters, digits and ._:@+=- "
            f"starting with a letter or digit, got {_short(task_id)}")
    if task_id.startswith(_RESERVED_PREFIX):
        raise InvalidMessage(f"'task-id' may not start with {_RESERVED_PREFIX!r}: {task_id!r}")
    return task_id


def parse_task(raw: bytes, *, max_bytes: int) -> Task:
    """Parse and check a task message from TASKS; raise InvalidMessage saying why.

    The error carries the task id whenever one could be read, so the caller can
    mark that task ``failed`` rather than only dead-lettering the bytes.
    """
    if len(raw) > max_bytes:
        raise InvalidMessage(f"message is {len(raw)} bytes, over the limit of {max_bytes}",
                             _sniff_task_id(raw[:4096]))
    obj = _json_object(raw)
    task_id = check_task_id(obj.get("task-id"))
    try:
        return _task_fields(obj, task_id)
    except InvalidMessage as e:
        raise InvalidMessage(e.reason, task_id) from None


def _task_fields(obj: dict[str, Any], task_id: str) -> Task:
    _check_version(obj)
    name = obj.get("task")
    if not isinstance(name, str) or not name:
        raise InvalidMessage(f"'task' must be a non-empty string naming a registered task, got {_short(name)}")
    args = obj.get("args", [])
    if not isinstance(args, list):
        raise InvalidMessage(f"'args' must be a list, got {_short(args)}")
    kwargs = obj.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise InvalidMessage(f"'kwargs' must be an object, got {_short(kwargs)}")
    return Task(task_id, name, args, kwargs, _options(obj.get("options", {})))


def _options(raw: Any) -> TaskOptions:
    if not isinstance(raw, dict):
        raise InvalidMessage(f"'options' must be an object, got {_short(raw)}")
    timeout, retries = raw.get("timeout"), raw.get("max_retries")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise InvalidMessage(f"'options.timeout' must be a number of seconds > 0, got {_short(timeout)}")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise InvalidMessage(f"'options.max_retries' must be an integer >= 0, got {_short(retries)}")
    return TaskOptions(float(timeout) if timeout is not None else None, retries)


def parse_assignment(raw: bytes) -> Assignment:
    """Parse a message from a worker's topic (written by the scheduler)."""
    obj = _json_object(raw)
    task = _task_fields(obj, check_task_id(obj.get("task-id")))
    attempt, worker = obj.get("attempt"), obj.get("worker")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1 or not isinstance(worker, str):
        raise InvalidMessage("assignment needs an integer 'attempt' >= 1 and a 'worker'", task.task_id)
    return Assignment(task, attempt, worker)


# --- Status events: the 'status' topic ------------------------------------

@dataclass(frozen=True)
class Heartbeat:
    """A process is alive. ``role`` is 'worker' or 'scheduler'; ``running`` is the task it runs."""

    sender: str
    role: str
    pid: int
    ts: float
    running: str | None = None


@dataclass(frozen=True)
class TasksFinished:
    """A worker is done with these assignments: ``tasks`` holds [task id, attempt,
    status] for each, where status is 'success' or 'failed' (it wrote that
    record), 'retry' (scheduled for a retry), or 'ended', 'fenced' (skipped).

    One event per batch of tasks, not per task: the status topic, and every
    reader of it, carry a fraction of the traffic.
    """

    worker: str
    tasks: list[list[Any]]

    def __post_init__(self) -> None:
        for item in self.tasks:
            if (not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str)
                    or isinstance(item[1], bool) or not isinstance(item[1], int) or not isinstance(item[2], str)):
                raise TypeError(f"each of 'tasks' must be [task id, attempt, status], got {_short(item)}")


@dataclass(frozen=True)
class WorkerDown:
    """The supervisor declared a worker dead: its unfinished tasks must move.

    ``pid`` is the dead process (0 if unknown): a task that a newer process of
    the same worker already runs is left with it.
    """

    worker: str
    reason: str
    ts: float
    pid: int = 0


Event = Heartbeat | TasksFinished | WorkerDown
_EVENT_TYPES: dict[str, type] = {"heartbeat": Heartbeat, "tasks-finished": TasksFinished, "worker-down": WorkerDown}
_EVENT_NAMES = {v: k for k, v in _EVENT_TYPES.items()}


def encode_event(event: Event) -> bytes:
    body = {k.replace("_", "-"): v for k, v in event.__dict__.items()}
    return encode({"v": PROTOCOL_VERSION, "type": _EVENT_NAMES[type(event)], **body})


def parse_event(raw: bytes) -> Event:
    """Parse a message from the status topic; raise InvalidMessage saying why."""
    obj = _json_object(raw)
    _check_version(obj)
    cls = _EVENT_TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise InvalidMessage(f"unknown status event type {_short(obj.get('type'))}")
    names = [f.name for f in dataclasses.fields(cls)]
    if cls is TasksFinished and not isinstance(obj.get("tasks"), list):
        raise InvalidMessage(f"bad tasks-finished event: 'tasks' must be a list, got {_short(obj.get('tasks'))}")
    try:
        return cls(**{n: obj[n.replace("_", "-")] for n in names if n.replace("_", "-") in obj})  # type: ignore[no-any-return]
    except TypeError as e:
        raise InvalidMessage(f"bad {obj['type']} event: {e}") from None


def now() -> float:
    """Wall-clock seconds; the timestamps in records and events."""
    return time.time()


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidMessage("message is not UTF-8 text") from None
    except ValueError as e:
        raise InvalidMessage(f"message is not valid JSON: {e}") from None
    except RecursionError:  # nesting deep enough to exhaust the parser's stack
        raise InvalidMessage("message is nested too deeply to parse") from None
    if not isinstance(obj, dict):
        raise InvalidMessage(f"message must be a JSON object, got {type(obj).__name__}")
    return obj


def _check_version(obj: dict[str, Any]) -> None:
    v = obj.get("v", PROTOCOL_VERSION)
    if v != PROTOCOL_VERSION:
        raise InvalidMessage(f"unsupported message version {_short(v)} (this release reads {PROTOCOL_VERSION})")


def _sniff_task_id(head: bytes) -> str | None:
    """Best effort: the task id of an oversized message, to fail its record."""
    m = re.search(rb'"task-id"\s*:\s*"([^"\\]{1,200})"', head)
    if not m:
        return None
    try:
        return check_task_id(m.group(1).decode("utf-8"))
    except (InvalidMessage, UnicodeDecodeError):
        return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
