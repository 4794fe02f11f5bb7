"""The wire format: every message YADTQ puts on a Kafka topic, and its parsers.

All messages are UTF-8 JSON objects, never pickle. Messages YADTQ writes carry
``"v": PROTOCOL_VERSION`` so a later release can change them; a task written by
any other producer in the seed's format (no ``v``) is accepted as version 1.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from client.errors import InvalidMessage, InvalidResult

PROTOCOL_VERSION = 1

# Task ids become Redis keys and channel names: printable, no spaces, bounded.
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}")
# Our own Redis keys are "<key prefix>yadtq:...". Refused anywhere in an id, not
# only at its start: clusters sharing a database with different key prefixes
# must not reach each other's internal keys ("b:yadtq:assignments").
_RESERVED = "yadtq:"
# Worker ids and other senders of status events: Kafka topic names.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
MAX_NAME_CHARS = 200  # a task's registered name
# Deepest nesting of lists and objects in a message. What json.loads accepts
# (up to ~1000 levels) can still exhaust the stack when encoded again from a
# deeper call, in the scheduler or in redis-py: so far less, and checked here.
MAX_DEPTH = 100
# Largest return value a record takes (JSON bytes): far below Redis's 512 MB,
# whose error on FINISH would look like a lost Redis and restart the worker.
MAX_RESULT_BYTES = 64 * 1024 * 1024
# "supervisor": its own heartbeat, read back to see that heartbeats flow (supervisor/supervisor.py).
ROLES = ("worker", "scheduler", "supervisor")
# What a worker reports for each assignment it is done with (see TasksFinished).
REPORT_STATUSES = ("success", "failed", "retry", "ended", "fenced")
# A JSON escape of a UTF-16 surrogate: the only way a lone surrogate, which is
# not encodable as UTF-8, gets into text decoded from valid UTF-8 bytes.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class TaskLimits:
    """The cluster's bounds on a task message, from ``tasks.*`` in the config.

    Every parse of a task takes them, so the scheduler, the worker and the
    client refuse exactly the same tasks.
    """

    max_bytes: int = 1_000_000      # tasks.max_message_bytes
    max_timeout: float = 86400.0    # tasks.max_timeout: the most an options.timeout may ask
    max_retries: int = 100          # tasks.max_retries_cap: the most an options.max_retries may ask
    accept_aliases: bool = False    # tasks.accept_aliases: map other clients' key names (ALIASES)


DEFAULT_LIMITS = TaskLimits()


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
    """Compact UTF-8 JSON, the only encoding on the wire (NaN and Infinity are not JSON)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


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
            f"starting with a letter or digit, got {_short(task_id)}{_as_text_hint(task_id)}")
    if _RESERVED in task_id:
        raise InvalidMessage(f"'task-id' may not start with or contain {_RESERVED!r} (YADTQ's own keys use it): "
                             f"{task_id!r}")
    return task_id


def parse_task(raw: bytes, limits: TaskLimits | None = None, *, max_bytes: int | None = None) -> Task:
    """Parse and check a task message from TASKS; raise InvalidMessage saying why.

    ``limits`` are the cluster's (``TasksConfig.limits()``); ``max_bytes``, if
    given, replaces its size limit. A Task returned here can be encoded, stored
    and run: every text encodes as UTF-8, every number is finite, the options
    are in range. The error carries the task id whenever one could be read, so
    the caller can mark that task ``failed`` rather than only dead-lettering it.
    """
    return read_task(raw, limits, max_bytes=max_bytes)[0]


def read_task(raw: bytes, limits: TaskLimits | None = None, *,
              max_bytes: int | None = None) -> tuple[Task, tuple[str, ...]]:
    """``parse_task``, and which of other clients' key names it mapped (``'task_id->task-id'``...).

    The one parse step of a message from TASKS. A message naming a key as
    another YADTQ client does (ALIASES) is refused with the rename to make,
    unless ``limits.accept_aliases``: then those keys are mapped first.
    """
    limits = limits or DEFAULT_LIMITS
    size = limits.max_bytes if max_bytes is None else max_bytes
    if len(raw) > size:
        raise InvalidMessage(f"message is {len(raw)} bytes, over the limit of {size}",
                             sniff_task_id(raw, limits.accept_aliases))
    obj = _json_object(raw)
    misses = near_misses(obj)
    if misses and not limits.accept_aliases:
        raise InvalidMessage(_rename_reason(misses), _readable_id(obj, misses), _name_of(obj, misses))
    mapped = _map_aliases(obj, misses) if misses else obj
    try:
        task_id = check_task_id(mapped.get("task-id"))
    except InvalidMessage as e:
        raise InvalidMessage(e.reason + _mapped_note(misses)) from None
    try:
        _check_whole(obj, raw)
        return _task_fields(mapped, task_id, limits), tuple(f"{a}->{k}" for a, k in misses) if misses else ()
    except InvalidMessage as e:
        raise InvalidMessage(e.reason + _mapped_note(misses), task_id, _name_of(mapped, [])) from None


# --- other clients' key names ------------------------------------------------

# The seed's key, and what other YADTQ clients call it. A message that lacks
# the seed's key and has one of these is refused with the rename to make (or,
# with tasks.accept_aliases, mapped): never guessed at silently.
ALIASES: dict[str, tuple[str, ...]] = {
    "task-id": ("task_id", "id", "taskId"),
    "task": ("task_type", "type", "name"),
    "args": ("arguments", "params"),
}


def near_misses(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(key found, the seed's key it stands for) for each of ``obj``'s near misses.

    A near miss is an alias present where its seed key is absent, or an object
    where a list of arguments belongs (``args``, or an alias of it: named
    arguments, which go in ``kwargs``). An alias beside its seed key is an
    unknown field like any other, and ignored.
    """
    args = obj.get("args")
    if "task-id" in obj and "task" in obj and args is not None and not isinstance(args, dict):
        return []  # the seed's keys, as nearly every message has them: nothing to look for
    found = []
    for key, aliases in ALIASES.items():
        for alias in (a for a in aliases if a in obj and key not in obj):
            target = "kwargs" if key == "args" and isinstance(obj[alias], dict) else key
            if target not in obj:
                found.append((alias, target))
    if isinstance(args, dict) and "kwargs" not in obj:
        found.append(("args", "kwargs"))
    return found


def _by_target(misses: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alias, key in misses:
        out.setdefault(key, []).append(alias)
    return out


def alias_kinds(raw: bytes) -> tuple[str, ...]:
    """What tasks.accept_aliases maps in ``raw`` ('task_id->task-id', ...), whatever else is wrong
    with it: () if it is no JSON object, or if it is ambiguous (nothing is mapped then)."""
    try:
        misses = near_misses(_json_object(raw))
    except InvalidMessage:
        return ()
    if any(len(a) > 1 for a in _by_target(misses).values()):
        return ()
    return tuple(f"{a}->{k}" for a, k in misses)


def _rename_reason(misses: list[tuple[str, str]]) -> str:
    if misses == [("args", "kwargs")]:
        return ("'args' must be a list; this one is an object of named arguments: rename 'args' to 'kwargs' "
                "(or set tasks.accept_aliases: true to map it)")
    renames = ", ".join(f"{repr(a[0]) if len(a) == 1 else 'one of ' + ' or '.join(map(repr, a))} to '{k}'"
                        for k, a in _by_target(misses).items())
    hint = " (a list goes in 'args', named arguments in 'kwargs')" if any(k == "kwargs" for _, k in misses) else ""
    return (f"this message names its keys as another YADTQ client does: rename {renames}{hint}; "
            f"YADTQ reads the seed's format {{\"task-id\", \"task\", \"args\", \"kwargs\"}} "
            f"(or set tasks.accept_aliases: true to map these names)")


def _map_aliases(obj: dict[str, Any], misses: list[tuple[str, str]]) -> dict[str, Any]:
    """A copy of ``obj`` with each near miss under its seed key; InvalidMessage if that is ambiguous."""
    out = dict(obj)
    for key, aliases in _by_target(misses).items():
        if len(aliases) > 1:
            raise InvalidMessage(f"{' and '.join(map(repr, aliases))} could each be {key!r}: send one {key!r} key",
                                 _readable_id(obj, misses), _name_of(obj, misses))
        out[key] = out.pop(aliases[0])
    return out


def _readable_id(obj: dict[str, Any], misses: list[tuple[str, str]]) -> str | None:
    """The id a refused message names, to fail its record: 'task-id', else its one alias, if valid."""
    candidates = [obj["task-id"]] if "task-id" in obj else [obj[a] for a, k in misses if k == "task-id"]
    if len(candidates) != 1:
        return None
    try:
        return check_task_id(candidates[0])
    except InvalidMessage:
        return None


def _name_of(obj: dict[str, Any], misses: list[tuple[str, str]]) -> str | None:
    """The task name a refused message gives, for its record: 'task', else its one alias, if a string
    (cut to MAX_NAME_CHARS, and safe to store)."""
    names = [obj["task"]] if "task" in obj else [obj[a] for a, k in misses if k == "task"]
    if len(names) != 1 or not isinstance(names[0], str):
        return None
    return safe_text(names[0][:MAX_NAME_CHARS])


def _mapped_note(misses: list[tuple[str, str]]) -> str:
    """Said after an error in a message whose keys tasks.accept_aliases mapped: the key the sender wrote."""
    if not misses:
        return ""
    return f" (tasks.accept_aliases read {', '.join(f'{a!r} as {k!r}' for a, k in misses)})"


def check_task(task: Task, limits: TaskLimits | None = None) -> bytes:
    """Encode a task built in Python and check it exactly as the scheduler will.

    Returns the bytes to send; raises InvalidMessage (with the task id) for any
    task the scheduler would refuse: a value JSON cannot hold (NaN, a set, a
    lone surrogate), an option out of range, a message over the size limit.
    """
    try:
        raw = encode_task(task)
    except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError
        raise InvalidMessage(f"the task cannot be sent as JSON: {_reason(e)}", task.task_id) from None
    except RecursionError:
        raise InvalidMessage("the task's arguments are nested too deeply", task.task_id) from None
    parse_task(raw, limits)
    return raw


def _task_fields(obj: dict[str, Any], task_id: str, limits: TaskLimits) -> Task:
    _check_version(obj)
    name = obj.get("task")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise InvalidMessage(f"'task' must be a non-empty string naming a registered task, got {_short(name)}")
    args = obj.get("args", [])
    if not isinstance(args, list):
        raise InvalidMessage(f"'args' must be a list, got {_short(args)}{_json_text_hint(args, '[', 'list')}")
    kwargs = obj.get("kwargs", {})
    if not isinstance(kwargs, dict):
        hint = _json_text_hint(kwargs, "{", "object")
        raise InvalidMessage(f"'kwargs' must be an object, got {_short(kwargs)}{hint}")
    return Task(task_id, name, args, kwargs, _options(obj.get("options", {}), limits))


def _as_text_hint(task_id: Any) -> str:
    """Said of a task id that is a number (other clients' ids often are): the fix."""
    return f": send it as a string, \"{task_id}\"" if _is_int(task_id) and task_id >= 0 else ""


def _json_text_hint(value: Any, opener: str, kind: str) -> str:
    """Said of arguments sent as JSON text inside the JSON (encoded twice): the fix."""
    return f": this is JSON text; send the {kind} itself" if isinstance(value, str) and \
        value.lstrip().startswith(opener) else ""


def _options(raw: Any, limits: TaskLimits) -> TaskOptions:
    if not isinstance(raw, dict):
        raise InvalidMessage(f"'options' must be an object, got {_short(raw)}")
    timeout, retries = raw.get("timeout"), raw.get("max_retries")
    if timeout is not None:
        if not _is_number(timeout) or not timeout > 0:
            raise InvalidMessage(f"'options.timeout' must be a finite number of seconds > 0, got {_short(timeout)}")
        if timeout > limits.max_timeout:
            raise InvalidMessage(f"options.timeout {timeout:g} is over this cluster's limit "
                                 f"(tasks.max_timeout = {limits.max_timeout:g})")
    if retries is not None:
        if not _is_int(retries) or retries < 0:
            raise InvalidMessage(f"'options.max_retries' must be an integer >= 0, got {_short(retries)}")
        if retries > limits.max_retries:
            raise InvalidMessage(f"options.max_retries {retries} is over this cluster's limit "
                                 f"(tasks.max_retries_cap = {limits.max_retries})")
    return TaskOptions(float(timeout) if timeout is not None else None, retries)


def parse_assignment(raw: bytes, limits: TaskLimits | None = None) -> Assignment:
    """Parse a message from a worker's topic (written by the scheduler).

    ``limits`` should be the cluster's, as the scheduler checked the task with
    them; the size limit is not applied (an assignment is a task plus a few bytes).
    """
    limits = limits or DEFAULT_LIMITS
    obj = _json_object(raw)
    task_id = check_task_id(obj.get("task-id"))
    try:  # the error carries the task id once it is read, as parse_task's does
        _check_whole(obj, raw)
        task = _task_fields(obj, task_id, limits)
    except InvalidMessage as e:
        raise InvalidMessage(e.reason, task_id) from None
    attempt, worker = obj.get("attempt"), obj.get("worker")
    if not _is_int(attempt) or attempt < 1 or not _is_name(worker):
        raise InvalidMessage("assignment needs an integer 'attempt' >= 1 and a 'worker' (a topic name)",
                             task.task_id)
    return Assignment(task, attempt, worker)


def encode_result(value: Any, max_bytes: int | None = MAX_RESULT_BYTES) -> str:
    """A task's return value as the JSON text stored in its record.

    Raises InvalidResult for a value that cannot be stored: not JSON (a set,
    NaN), text that is not UTF-8 (a lone surrogate, e.g. an undecodable file
    name from ``os.listdir``), nesting too deep, or more than ``max_bytes``.
    The same value would fail again, so such a task fails without a retry.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError) as e:
        raise InvalidResult(f"the task's return value cannot be stored as JSON: {_reason(e)}") from None
    except RecursionError:
        raise InvalidResult("the task's return value is nested too deeply to store as JSON") from None
    except Exception as e:  # raised by the value's own code (a mapping's items(), a __float__): still the value's
        raise InvalidResult(f"the task's return value cannot be stored as JSON: {type(e).__name__} raised while "
                            f"encoding it: {_reason(e)}") from None
    if max_bytes is not None and size > max_bytes:
        raise InvalidResult(f"the task's return value is {size} bytes as JSON, over the limit of {max_bytes}")
    return text


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
_EVENT_NAMES: dict[type, str] = {Heartbeat: "heartbeat", TasksFinished: "tasks-finished", WorkerDown: "worker-down"}


def encode_event(event: Event) -> bytes:
    body = {k.replace("_", "-"): v for k, v in event.__dict__.items()}
    return encode({"v": PROTOCOL_VERSION, "type": _EVENT_NAMES[type(event)], **body})


def parse_event(raw: bytes) -> Event:
    """Parse a message from the status topic; raise InvalidMessage saying why.

    Every field is checked for its type and range, so an event returned here
    cannot make its reader raise: names are topic names, pids and attempts
    integers, timestamps finite, task ids valid.
    """
    obj = _json_object(raw)
    _check_whole(obj, raw)
    _check_version(obj)
    kind = obj.get("type")
    parse = _EVENT_PARSERS.get(kind) if isinstance(kind, str) else None
    if parse is None:
        raise InvalidMessage(f"unknown status event type {_short(kind)}")
    try:
        return parse(obj)
    except InvalidMessage as e:
        raise InvalidMessage(f"bad {kind} event: {e.reason}") from None


def _heartbeat(obj: dict[str, Any]) -> Heartbeat:
    role = obj.get("role")
    if role not in ROLES:
        raise InvalidMessage(f"'role' must be one of {', '.join(ROLES)}, got {_short(role)}")
    running = obj.get("running")
    if running is not None:
        running = _field(obj, "running", check_task_id)
    return Heartbeat(_name(obj, "sender"), role, _pid(obj, minimum=1), _ts(obj), running)


def _tasks_finished(obj: dict[str, Any]) -> TasksFinished:
    items = obj.get("tasks")
    if not isinstance(items, list):
        raise InvalidMessage(f"'tasks' must be a list, got {_short(items)}")
    for item in items:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and _TASK_ID.fullmatch(item[0])
                and _is_int(item[1]) and item[1] >= 1 and item[2] in REPORT_STATUSES):
            raise InvalidMessage(f"each of 'tasks' must be [task id, attempt, status], got {_short(item)}")
    return TasksFinished(_name(obj, "worker"), items)


def _worker_down(obj: dict[str, Any]) -> WorkerDown:
    reason = _field(obj, "reason", _text)
    return WorkerDown(_name(obj, "worker"), reason, _ts(obj), _pid(obj, minimum=0, default=0))


_EVENT_PARSERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "heartbeat": _heartbeat, "tasks-finished": _tasks_finished, "worker-down": _worker_down}


def _field(obj: dict[str, Any], key: str, check: Any) -> Any:
    """``check(obj[key])``, with the key named in the error."""
    try:
        return check(obj.get(key))
    except InvalidMessage as e:
        raise InvalidMessage(f"'{key}': {e.reason}") from None


def _name(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not _is_name(value):
        raise InvalidMessage(f"'{key}' must be a topic-like name (letters, digits, '.', '_', '-'), "
                             f"got {_short(value)}")
    return str(value)


def _pid(obj: dict[str, Any], minimum: int, default: int | None = None) -> int:
    value = obj.get("pid", default)
    if not _is_int(value) or not minimum <= value < 2**32:
        raise InvalidMessage(f"'pid' must be an integer >= {minimum}, got {_short(value)}")
    return int(value)


def _ts(obj: dict[str, Any]) -> float:
    value = obj.get("ts")
    if not _is_number(value):
        raise InvalidMessage(f"'ts' must be a finite number (seconds since the epoch), got {_short(value)}")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidMessage(f"expected a string, got {_short(value)}")
    return value


def _is_name(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    """A finite int or float, not a bool (True is an int in Python, never a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_pid(text: str | None) -> int:
    """A process id read back from Redis (e.g. the orphans table); 0 (unknown)
    for anything that is not one, such as a value an older release stored
    from a bad event."""
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) < 10 else 0


def now() -> float:
    """Wall-clock seconds; the timestamps in records and events."""
    return time.time()


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):  # as json.loads refuses it (the decoder alone would not)
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        obj = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise InvalidMessage("message is not UTF-8 text") from None
    except ValueError as e:  # also a too long integer (Python's int_max_str_digits)
        raise InvalidMessage(f"message is not valid JSON: {_reason(e)}") from None
    except RecursionError:  # nesting deep enough to exhaust the parser's stack
        raise InvalidMessage("message is nested too deeply to parse") from None
    if not isinstance(obj, dict):
        raise InvalidMessage(f"message must be a JSON object, got {type(obj).__name__}")
    return obj


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value``: without recursion, so any depth is safe."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e400
        raise ValueError(f"number {text[:20]} is out of range")
    return value


# One decoder for every message: json.loads with these hooks builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def _check_whole(obj: dict[str, Any], raw: bytes) -> None:
    """``obj``, parsed from ``raw``, must be fit to encode again anywhere: at most
    MAX_DEPTH deep, and every text in it encodable as UTF-8 (a lone surrogate,
    from a JSON escape like \\ud800, would make every later encode raise)."""
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(obj) > MAX_DEPTH:  # cheap test first
        raise InvalidMessage(f"message is nested too deeply (more than {MAX_DEPTH} levels of lists and objects)")
    if not _SURROGATE_ESCAPE.search(raw):  # the common case: no full check needed
        return
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage("message holds text that is not valid Unicode "
                             "(a lone surrogate such as \\ud800)") from None


def _check_version(obj: dict[str, Any]) -> None:
    v = obj.get("v", PROTOCOL_VERSION)
    if v != PROTOCOL_VERSION:
        raise InvalidMessage(f"unsupported message version {_short(v)} (this release reads {PROTOCOL_VERSION})")


def sniff_task_id(raw: bytes, aliases: bool = False) -> str | None:
    """Best effort: the task id of a message that cannot be parsed (e.g. oversized),
    found in its first 4 KiB without parsing it, to fail its record.

    ``aliases`` (tasks.accept_aliases): a message with no 'task-id' may name
    its id as another client does; then it is parsed after all, as only a
    top-level key is its id (an 'id' may be anywhere in its arguments).
    """
    m = re.search(rb'"task-id"\s*:\s*"([^"\\]{1,200})"', raw[:4096])
    if not m:
        return _aliased_id(raw) if aliases and b'"task-id"' not in raw else None
    try:
        return check_task_id(m.group(1).decode("utf-8"))
    except (InvalidMessage, UnicodeDecodeError):
        return None


def _aliased_id(raw: bytes) -> str | None:
    try:
        obj = _json_object(raw)
    except InvalidMessage:
        return None
    return _readable_id(obj, [(a, k) for a, k in near_misses(obj) if k == "task-id"])


def sniff_attempt(raw: bytes) -> int | None:
    """Best effort: the attempt of an assignment that cannot be parsed, found
    without parsing it where the scheduler writes it, at its end (``assignment_bytes``)."""
    m = re.search(rb'"attempt"\s*:\s*([1-9][0-9]{0,17})\s*,\s*"worker"\s*:\s*"[^"\\]*"\s*}\s*$', raw[-512:])
    return int(m.group(1)) if m else None


def _reason(e: Exception) -> str:
    """An exception's message, safe to store and log (no lone surrogate in it).

    Total: the exception may be a task's, whose ``__str__`` raises.
    """
    try:
        return safe_text(str(e))
    except Exception:
        return f"<unprintable {type(e).__name__}>"


def safe_text(text: str) -> str:
    """``text`` with anything not encodable as UTF-8 escaped (``\\udcff``).

    For text from outside (an exception message, a task's error) that goes
    into a record or a log line, where a lone surrogate would raise.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _short(value: Any) -> str:
    text = repr(value)  # repr escapes lone surrogates
    return text if len(text) <= 60 else text[:57] + "..."
