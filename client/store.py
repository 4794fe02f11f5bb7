"""The result backend: every Redis key YADTQ uses, and the scripts that change them.

A task's record is the hash at ``{prefix}{task_id}`` (DESIGN §3). The task
lifecycle lives here: the state changes that must be atomic (assign, claim,
finish, retry, release, reject) are the Lua scripts in ``client/lua/``, so a
terminal status can never be overwritten, a fenced attempt or an older
generation of the cluster can never write, and no script writes a key that is
not a YADTQ record (a hash with the ``yadtq`` marker field). Each script's
answer is decoded once, here, into a named result; every other command on
YADTQ's keys is a ``TaskStore`` method too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import traceback as tb
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any, Generic, TypeVar

import redis

from client.config import RedisConfig
from client.config import safe_url as safe_url  # re-exported: it lived here first
from client.errors import Fenced, InvalidMessage, ServiceUnavailable
from client.protocol import TaskLimits, encode, now, parse_task

log = logging.getLogger("yadtq.store")

T = TypeVar("T")

# How many entries a task's history keeps, the newest (HISTORY_MAX in client/lua/common.lua).
HISTORY_MAX = 50


class Status(StrEnum):
    """A task record's ``status`` field (DESIGN §3)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"  # set only by an operator's cancel


TERMINAL = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELLED})  # final: no script changes them


# Each script's answers, decoded once here (``_decode_*``): the values are the
# tags the Lua scripts in client/lua/ return as their answer's first element.

class Assign(StrEnum):
    """ASSIGN's answer (``TaskStore.assign``)."""

    ASSIGNED = "assigned"        # placed on the worker asked for: send it (``attempt``)
    PLACED = "placed"            # placed or running already (``attempt``, ``worker``, ``payload``): send nothing
    ENDED = "ended"              # it has a terminal status
    FAILED_NOW = "failed_now"    # its dead worker used up its retries: failed just now
    NOT_NOW = "not_now"          # waits on the retry schedule, or that retry was taken already
    STALE_EPOCH = "stale_epoch"  # the caller belongs to an older generation of the cluster
    NOT_OURS = "not_ours"        # the id names a Redis key YADTQ does not own (``key_type``)


class Claim(StrEnum):
    """CLAIM's answer (``TaskStore.claim``): may a worker run (task, attempt)?"""

    RUN = "run"
    ENDED = "ended"              # it has a terminal status
    FENCED = "fenced"            # another attempt replaced it, or there is no record
    FAILED_NOW = "failed_now"    # a death was counted and its retries are used up: failed just now
    STALE_EPOCH = "stale_epoch"
    NOT_OURS = "not_ours"


class Finish(StrEnum):
    """FINISH's answer (``TaskStore.finish``)."""

    WRITTEN = "written"
    ENDED = "ended"              # it was terminal already: nothing written
    FENCED = "fenced"            # another attempt replaced this one: nothing written
    STALE_EPOCH = "stale_epoch"
    NOT_OURS = "not_ours"


class Retry(StrEnum):
    """RETRY's answer (``TaskStore.retry``)."""

    SCHEDULED = "scheduled"      # on the retry schedule, due at ``RetryResult.due``
    EXHAUSTED = "exhausted"      # no retry left after ``RetryResult.used`` failures: fail it
    FENCED = "fenced"
    ENDED = "ended"
    STALE_EPOCH = "stale_epoch"
    NOT_OURS = "not_ours"


class Reject(StrEnum):
    """REJECT's answer (``TaskStore.reject``)."""

    FAILED = "failed"            # the record now says failed, with the reason
    ENDED = "ended"              # terminal already: left alone
    ACCEPTED = "accepted"        # the id belongs to a task that was accepted: left alone
    STALE_EPOCH = "stale_epoch"
    NOT_OURS = "not_ours"


class Unreadable(StrEnum):
    """UNREADABLE's answer (``TaskStore.fail_unreadable``): a task whose payload cannot be read."""

    FAILED = "failed"            # the record now says failed, with the reason (``attempt``: its attempt)
    ENDED = "ended"              # terminal already: left alone (its stored entry is gone)
    CHANGED = "changed"          # the stored entry changed since it was read: left alone, read it again
    ELSEWHERE = "elsewhere"      # (a worker's) the record is not placed on that worker: left alone
    STALE_EPOCH = "stale_epoch"
    NOT_OURS = "not_ours"        # the id names a key YADTQ does not own: left alone (its stored entry is gone)


@dataclass(frozen=True)
class UnreadableResult:
    kind: Unreadable
    attempt: int = 0  # FAILED: the attempt the record held


class Release(StrEnum):
    """RELEASE's answer (``TaskStore.release``)."""

    RELEASED = "released"
    NOT_HELD = "not_held"        # not this process's claim any more: left alone
    STALE_EPOCH = "stale_epoch"
    NOT_OURS = "not_ours"


class Cancel(StrEnum):
    """CANCEL's answer (``TaskStore.cancel``): an operator's cancel."""

    CANCELLED = "cancelled"      # the record now says cancelled (``CancelResult.status``: what it said before)
    ENDED = "ended"              # it had ended (``status``): left unchanged
    STARTED = "started"          # (purge) it is not waiting to start any more (``status``): left alone
    NOT_OURS = "not_ours"        # the id names a Redis key YADTQ does not own (``status``: its type)


@dataclass(frozen=True)
class CancelResult:
    kind: Cancel
    status: str = ""  # CANCELLED: the status before ('' no record yet); ENDED, STARTED: the status now


class Reopen(StrEnum):
    """REOPEN's answer (``TaskStore.reopen``): an operator's retry of an ended task."""

    REOPENED = "reopened"        # queued again, due now on the retry schedule
    REFUSED = "refused"          # not failed or cancelled (``ReopenResult.status``): left alone
    NO_PAYLOAD = "no_payload"    # it never reached a worker (an invalid message): there is nothing to run
    UNKNOWN = "unknown"          # no record (never submitted, or expired)
    NOT_OURS = "not_ours"


@dataclass(frozen=True)
class ReopenResult:
    kind: Reopen
    status: str = ""  # REFUSED: its status; NOT_OURS: the key's type


class Queued(StrEnum):
    """QUEUED's answer (``TaskStore.mark_queued``)."""

    CREATED = "created"
    KEPT = "kept"                # a record was there already: only missing fields filled in
    NOT_OURS = "not_ours"


@dataclass(frozen=True)
class AssignResult:
    """ASSIGN's answer with what it carries; the payload of a PLACED task is the
    stored one (None if Redis had no readable entry), never the message's."""

    kind: Assign
    attempt: int = 0
    worker: str = ""
    payload: str | None = None
    key_type: str = ""  # NOT_OURS: the type of the key the id names


@dataclass(frozen=True)
class RetryResult:
    kind: Retry
    due: float = 0.0  # SCHEDULED: when it runs again (epoch seconds)
    used: int = 0     # EXHAUSTED: failed runs so far


@dataclass(frozen=True)
class Placement:
    """Where a task is: its worker, the attempt (fencing token) and its wire payload."""

    worker: str
    attempt: int
    payload: str


def encode_placement(p: Placement) -> str:
    """The Redis form of a placement: 'worker|attempt|payload' (written by assign.lua)."""
    return f"{p.worker}|{p.attempt}|{p.payload}"


def parse_placement(text: object) -> Placement | None:
    """A table entry read back from Redis, or None if it is not 'worker|attempt|payload'."""
    parts = text.split("|", 2) if isinstance(text, str) else []
    if len(parts) != 3 or not parts[1].isdigit() or not parts[1].isascii():
        return None
    return Placement(parts[0], int(parts[1]), parts[2])


def stored_task(task_id: str, text: str, limits: TaskLimits | None = None) -> str:
    """A task payload read back from Redis under ``task_id``, checked as a message
    from TASKS is (``parse_task``) and re-encoded, ready to send; raise
    InvalidMessage if it cannot be read or is another task's."""
    task = parse_task(text.encode("utf-8", "surrogatepass"), limits)
    if task.task_id != task_id:
        raise InvalidMessage(f"it is the payload of another task, {task.task_id!r}")
    return encode(task.to_wire()).decode()


def parse_history(lines: object) -> list[dict[str, Any]]:
    """A task's history as read (``Keys.history``: one JSON object a line, oldest first), each
    entry a dict with at least a number 'at' and a string 'event'. A damaged line (not JSON, not
    such an object: someone wrote the key by hand) is skipped; a key of another type reads as
    no history (the pipeline's error, or anything but a list of lines, is that)."""
    if not isinstance(lines, list):
        return []
    out: list[dict[str, Any]] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except (TypeError, ValueError, RecursionError):
            continue
        if _entry_ok(entry):
            out.append(entry)
    return out


def _entry_ok(entry: object) -> bool:
    """Is it a history entry: an object with a string 'event' and a number 'at' (not a bool)?"""
    return (isinstance(entry, dict) and isinstance(entry.get("event"), str)
            and type(entry.get("at")) in (int, float) and math.isfinite(entry["at"]))


def parse_owner_epoch(text: object) -> int | None:
    """The epoch a lease value (``Keys.owner``, JSON written by client/lua/lease_*.lua) names;
    None for anything else: absent, not JSON, not an object, an epoch that is not a whole number."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        return None
    epoch = value.get("epoch") if isinstance(value, dict) else None
    return epoch if type(epoch) is int else None  # not bool, not float


def _registered_node(text: object) -> str | None:
    """The node a worker registration (JSON {node, epoch}) names; None if it is not one."""
    try:
        value = json.loads(str(text))
    except ValueError:
        return None
    node = value.get("node") if isinstance(value, dict) else None
    return node if isinstance(node, str) else None


def _int(text: object, default: int = 0) -> int:
    """A count read back from Redis; ``default`` if it is not a decimal integer."""
    try:
        return int(str(text), 10)
    except ValueError:
        return default


@dataclass(frozen=True)
class Keys:
    """One home for every Redis key name; ``prefix`` isolates clusters and tests."""

    prefix: str = ""
    node: str = ""  # the node whose lease, epoch and snapshot these are ('': the single node)

    def task(self, task_id: str) -> str:
        return f"{self.prefix}{task_id}"

    def history(self, task_id: str) -> str:
        """List of the task's events, one JSON object each ('at', 'event', 'attempt', details),
        the newest HISTORY_MAX: written by the lifecycle scripts, expiring with the record."""
        return f"{self.prefix}yadtq:history:{task_id}"

    def done_channel(self, task_id: str) -> str:
        """Pub/sub channel told when the task reaches a terminal status."""
        return f"{self.prefix}yadtq:done:{task_id}"

    @property
    def assignments(self) -> str:
        """Hash task_id -> 'worker|attempt|task json': the scheduler's table."""
        return f"{self.prefix}yadtq:assignments"

    @property
    def orphans(self) -> str:
        """Hash task_id -> pid of the dead process it must be moved away from."""
        return f"{self.prefix}yadtq:orphans"

    @property
    def retries(self) -> str:
        """Sorted set task_id -> when (epoch seconds) a task that raised runs again."""
        return f"{self.prefix}yadtq:retries"

    @property
    def retry_payloads(self) -> str:
        """Hash task_id -> task json, for the tasks in ``retries``."""
        return f"{self.prefix}yadtq:retry-payloads"

    @property
    def load(self) -> str:
        """Hash worker -> number of unfinished tasks, written by the scheduler."""
        return f"{self.prefix}yadtq:load"

    @property
    def stats(self) -> str:
        """Hash status -> count of tasks that ended so (success, failed), and the
        per-name counters 'what|name' (client/insight.py's ``parse_stats``)."""
        return f"{self.prefix}yadtq:stats"

    @property
    def timings(self) -> str:
        """Hash of the queue-wait and run-time histograms' bucket counts and sums,
        per task name (written by CLAIM and FINISH; read by client/insight.py)."""
        return f"{self.prefix}yadtq:timings"

    @property
    def recent(self) -> str:
        """Sorted set task_id -> when it was first placed: the newest tasks (ASSIGN adds them,
        the supervisor keeps the last RECENT_MAX of client/insight.py), for listing tasks without a scan."""
        return f"{self.prefix}yadtq:recent"

    @property
    def snapshot(self) -> str:
        """String (JSON) with a TTL: this node's supervisor's view of its processes (pid, up,
        heartbeat age, restarts), written every second for readers in other processes."""
        return f"{self.prefix}yadtq:snapshot{self._node}"

    @property
    def epoch(self) -> str:
        """This node's fencing epoch, an integer string: bumped by each supervisor that takes its lease."""
        return self.epoch_of(self.node)

    @property
    def owner(self) -> str:
        """This node's supervisor's lease: who runs it now (see client/lease.py)."""
        return self.owner_of(self.node)

    @property
    def owner_released(self) -> str:
        """The epoch whose supervisor last released the lease on a clean stop (an integer string):
        a new owner need not wait for that generation's processes to notice it (see client/lease.py)."""
        return f"{self.owner}:released"

    @property
    def scheduler_lease(self) -> str:
        """The lease of the one active scheduler of the whole cluster, whatever its node (client/lease.py)."""
        return f"{self.prefix}yadtq:scheduler"

    @property
    def scheduler_epoch(self) -> str:
        """The active scheduler's fencing epoch: bumped by each scheduler that becomes active."""
        return f"{self.prefix}yadtq:scheduler:epoch"

    @property
    def scheduler_released(self) -> str:
        return f"{self.scheduler_lease}:released"

    @property
    def workers(self) -> str:
        """Hash worker id -> JSON {node, epoch}: the workers every node's supervisor registered,
        from which the active scheduler learns the cluster's workers."""
        return f"{self.prefix}yadtq:workers"

    def owner_of(self, node: str) -> str:
        """The lease key of ``node`` ('' the single node's)."""
        return f"{self.prefix}yadtq:owner{':' + node if node else ''}"

    def epoch_of(self, node: str) -> str:
        """The epoch key of ``node`` ('' the single node's)."""
        return f"{self.prefix}yadtq:epoch{':' + node if node else ''}"

    @property
    def _node(self) -> str:
        return f":{self.node}" if self.node else ""

    @property
    def quarantine(self) -> str:
        """Hash 'group|topic|partition' -> 'offset:tries' of careful processes (worker_pool/quarantine.py)."""
        return f"{self.prefix}yadtq:quarantine"


def connect(cfg: RedisConfig | str, timeout: float = 30.0) -> redis.Redis:
    """A Redis client for the configured server that returns str, with bounded timeouts.

    The one place that turns ``redis.*`` keys into a connection, password and
    TLS included. A plain URL (tests, tools) means those keys' defaults.
    ``timeout`` bounds each command (seconds): shorter for a thread that must
    never stall on Redis, as the lease's renewals and the children's lease checks.
    """
    if isinstance(cfg, str):
        cfg = RedisConfig(url=cfg)
    opts: dict[str, Any] = {}
    if cfg.username:
        opts["username"] = cfg.username
    if cfg.password:
        opts["password"] = cfg.password.reveal()
    # Only a rediss:// URL takes TLS options (the config refuses them otherwise).
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if getattr(cfg, key):
            opts[key] = getattr(cfg, key)
    # encoding_errors: a value that is not UTF-8 (written by another program)
    # is read with U+FFFD in place of the bad bytes, never a UnicodeDecodeError
    # that would end the process reading it; every value then meets its parse step.
    return redis.Redis.from_url(cfg.url, decode_responses=True, encoding_errors="replace",
                                socket_connect_timeout=min(5.0, timeout), socket_timeout=timeout,
                                health_check_interval=30, **opts)


def ping(client: redis.Redis, cfg: RedisConfig) -> None:
    """Raise ServiceUnavailable, naming the server (never the password), unless Redis answers."""
    try:
        client.ping()
    except redis.AuthenticationError as e:
        # redis-py's message says which (WRONGPASS, NOAUTH) and never holds the password.
        raise ServiceUnavailable(f"Redis at {safe_url(cfg.url)} refused the login (user "
                                 f"{cfg.username or 'default'}): {str(e).rstrip('.')}; check redis.password or "
                                 "redis.password_env") from None
    except redis.RedisError as e:
        raise ServiceUnavailable(f"Redis at {safe_url(cfg.url)} does not answer: {e}") from None


def failure_fields(exc: BaseException) -> dict[str, str]:
    """The record fields for a task that raised: type, message and traceback.

    Total: the exception is the task's, and its ``__str__`` (or a chained
    one's, which the traceback prints) may itself raise; then its type stands
    in for what cannot be printed.
    """
    name = _type_name(exc)
    try:
        error = f"{name}: {exc}"
    except Exception:
        error = f"{name}: <unprintable {name} object>"
    try:
        trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:
        trace = f"<unprintable traceback of {name}>"
    return {"error": error, "traceback": trace}


def _type_name(exc: BaseException) -> str:
    """The exception's class name (a metaclass could make even that raise)."""
    try:
        return str(type(exc).__name__)
    except Exception:
        return "BaseException"


def lua_text(name: str) -> str:
    """The text of ``client/lua/<name>.lua``, shipped with the package.

    Under the tests (``YADTQ_LUA_COVERAGE`` names a Redis key) it comes with
    probes that count which of its lines run (``client.luacov``); unset, as
    in production, the text is the file's and nothing else is loaded.
    """
    text = resources.files("client").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    key = os.environ.get("YADTQ_LUA_COVERAGE")
    if key:
        from client import luacov  # only under the tests

        text = luacov.instrument(f"{name}.lua", text, key)[0]
    return text


class _Script:
    """A Lua script run by its SHA1 (EVALSHA), directly or queued on a pipeline.

    Its text is ``common.lua``, then the helpers it ``needs`` (e.g. ``died``),
    then ``client/lua/<name>.lua``. redis-py's own Script makes every pipeline
    that holds one first ask SCRIPT EXISTS: a round trip per task on the hot
    path. Here the scripts are loaded only when Redis says it lacks them
    (NOSCRIPT, after a restart); ``TaskStore.execute`` does that and runs the
    pipeline again.
    """

    def __init__(self, name: str, needs: tuple[str, ...] = ()) -> None:
        self.name = name
        self.text = "\n".join(lua_text(part) for part in ("common", *needs, name))
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()

    def __call__(self, keys: list[Any], args: list[Any], client: Any) -> Any:
        return client.evalsha(self.sha, len(keys), *keys, *args)


_SCRIPTS = {s.name: s for s in (_Script("assign", ("died",)), _Script("claim", ("died",)), _Script("finish"),
                                 _Script("reject"), _Script("release"), _Script("retry"), _Script("queued"),
                                 _Script("owners"), _Script("unreadable"), _Script("cancel"), _Script("reopen"),
                                 _Script("tables"), _Script("fence_node"))}
_TABLE_CHUNK = 500  # fields (or pairs) per TABLES call: far under Lua's limit on unpack()


def _tag(answer: object) -> tuple[str, list[Any]]:
    """A script's answer: its tag (first element) and what follows."""
    if isinstance(answer, list) and answer and isinstance(answer[0], str):
        return answer[0], answer[1:]
    raise ValueError(f"a YADTQ script answered {answer!r}, which is not a tagged answer")


def decode_assign(answer: object) -> AssignResult:
    tag, rest = _tag(answer)
    kind = Assign(tag)
    if kind is Assign.ASSIGNED:
        return AssignResult(kind, _int(rest[0]))
    if kind is Assign.PLACED:
        rest += [None] * (3 - len(rest))
        payload = rest[2] if isinstance(rest[2], str) else None
        return AssignResult(kind, _int(rest[0]), str(rest[1] or ""), payload)
    if kind is Assign.NOT_OURS:
        return AssignResult(kind, key_type=str(rest[0]))
    return AssignResult(kind)


def decode_retry(answer: object) -> RetryResult:
    tag, rest = _tag(answer)
    kind = Retry(tag)
    if kind is Retry.SCHEDULED:
        return RetryResult(kind, due=float(rest[0]))
    if kind is Retry.EXHAUSTED:
        return RetryResult(kind, used=_int(rest[0]))
    return RetryResult(kind)


def decode_unreadable(answer: object) -> UnreadableResult:
    tag, rest = _tag(answer)
    kind = Unreadable(tag)
    return UnreadableResult(kind, _int(rest[0]) if kind is Unreadable.FAILED and rest else 0)


def decode_cancel(answer: object) -> CancelResult:
    tag, rest = _tag(answer)
    return CancelResult(Cancel(tag), str(rest[0]) if rest else "")


def decode_reopen(answer: object) -> ReopenResult:
    tag, rest = _tag(answer)
    return ReopenResult(Reopen(tag), str(rest[0]) if rest else "")


def decode_claim(answer: object) -> Claim:
    return Claim(_tag(answer)[0])


def decode_finish(answer: object) -> Finish:
    return Finish(_tag(answer)[0])


def decode_reject(answer: object) -> Reject:
    return Reject(_tag(answer)[0])


def decode_release(answer: object) -> Release:
    return Release(_tag(answer)[0])


def decode_queued(answer: object) -> Queued:
    return Queued(_tag(answer)[0])


class Reply(Generic[T]):
    """The decoded answer of one command queued on a Batch, set when the batch runs."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._done = False

    @property
    def value(self) -> T:
        if not self._done:
            raise RuntimeError("the batch holding this command has not run yet")
        return self._value  # type: ignore[return-value]

    def _set(self, value: T) -> None:
        self._value, self._done = value, True


class Batch:
    """Commands queued for one round trip (a pipeline without MULTI); run it with ``TaskStore.execute``."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._replies: list[tuple[int, Reply[Any], Callable[[Any], Any]]] = []
        self.fenced: list[Reply[bool]] = []  # table writes (TaskStore._table): True if refused as stale

    def __len__(self) -> int:
        return len(self.pipe.command_stack)

    def expect(self, decode: Callable[[Any], T]) -> Reply[T]:
        """The reply of the command queued last, decoded with ``decode``."""
        reply: Reply[T] = Reply()
        self._replies.append((len(self.pipe.command_stack) - 1, reply, decode))
        return reply

    def _decode(self, answers: list[Any]) -> None:
        for i, reply, decode in self._replies:
            reply._set(decode(answers[i]))


class TaskStore:
    """The task lifecycle in Redis: reads and atomic changes of task records and
    of the cluster's tables. Cheap to create; wraps one client.

    ``epoch`` is the caller's generation (0: no lease): every lifecycle script
    answers STALE_EPOCH, touching nothing, when it is lower than the one at
    ``fence``: ``Keys.epoch`` (its node's, for a worker) unless named, which
    for the scheduler is ``Keys.scheduler_epoch``.
    """

    def __init__(self, client: redis.Redis, keys: Keys, result_ttl: int, epoch: int = 0,
                 fence: str | None = None) -> None:
        self.redis = client
        self.keys = keys
        self.ttl = result_ttl
        self.epoch = epoch
        self.fence = fence or keys.epoch

    def pipeline(self) -> Batch:
        """A batch to queue the write methods below on; run it with ``execute``."""
        return Batch(self.redis.pipeline(transaction=False))

    def execute(self, batch: Batch) -> list[Any]:
        """Run ``batch``, set its replies, and return the raw answers.

        Scripts Redis did not know (NOSCRIPT, after a restart) run again once
        loaded, and only those: without MULTI, others in the same pipeline may
        have run (Redis serves other clients between chunks of a long
        pipeline, and any of them may load the scripts meanwhile), and running
        those twice is not harmless.
        """
        pipe = batch.pipe
        stack = list(pipe.command_stack)
        answers: list[Any] = pipe.execute(raise_on_error=False)
        missing = [i for i, a in enumerate(answers) if isinstance(a, redis.exceptions.NoScriptError)]
        if missing:
            for script in _SCRIPTS.values():
                self.redis.script_load(script.text)
            again: Any = self.redis.pipeline(transaction=False)
            for i in missing:
                args, options = stack[i]
                again.execute_command(*args, **options)
            for i, answer in zip(missing, again.execute(raise_on_error=False), strict=True):
                answers[i] = answer
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        batch._decode(answers)
        if any(reply.value for reply in batch.fenced):
            raise Fenced(f"epoch {self.epoch}: a newer generation owns the cluster; its table writes were refused")
        return answers

    def _now(self, queue: Callable[[Batch], Reply[T]]) -> T:
        """Run one queued command now (one round trip) and return its decoded answer."""
        batch = self.pipeline()
        reply = queue(batch)
        self.execute(batch)
        return reply.value

    # --- reads ---
    def record(self, task_id: str) -> dict[str, str]:
        """The task's record as stored; empty if unknown, expired, or if the id
        names a key that is not a YADTQ record (another type, or a hash without
        the marker): that is never shown as a task."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.task(task_id))
        [record] = pipe.execute(raise_on_error=False)
        return record if isinstance(record, dict) and "yadtq" in record else {}

    def history(self, task_id: str) -> list[dict[str, Any]]:
        """The task's history (``Keys.history``), oldest first, a damaged entry skipped (``parse_history``)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(self.keys.history(task_id), 0, -1)
        [lines] = pipe.execute(raise_on_error=False)  # a key of another type (WRONGTYPE) reads as no history
        return parse_history(lines)

    def statuses(self, task_ids: list[str]) -> list[str | None]:
        """Each task's status; None if it has no YADTQ record (see ``record``)."""
        pipe = self.redis.pipeline(transaction=False)
        for t in task_ids:
            pipe.hmget(self.keys.task(t), "status", "yadtq")
        return [a[0] if isinstance(a, list) and a[1] is not None else None
                for a in pipe.execute(raise_on_error=False)]

    def foreign_ids(self, task_ids: list[str]) -> dict[str, str]:
        """The ids among ``task_ids`` that name a Redis key YADTQ does not own, with
        that key's type ('string', 'hash', ...). One round trip; touches nothing."""
        if not task_ids:
            return {}
        owners = self._now(lambda b: self._owners(b, task_ids))
        return {t: o for t, o in zip(task_ids, owners, strict=True) if o not in ("ours", "none")}

    def _owners(self, batch: Batch, task_ids: list[str]) -> Reply[list[str]]:
        _SCRIPTS["owners"]([self.keys.task(t) for t in task_ids], [], batch.pipe)
        return batch.expect(lambda a: [str(x) for x in a])

    # --- the lifecycle scripts (each queued on a batch, to share round trips) ---
    def mark_queued(self, batch: Batch, task_id: str, name: str, at: float) -> Reply[Queued]:
        """Create the record of a newly submitted task, leaving an existing one alone."""
        _SCRIPTS["queued"]([self.keys.task(task_id)], [name, repr(at)], batch.pipe)
        return batch.expect(decode_queued)

    def assign(self, batch: Batch, task_id: str, name: str, worker: str, payload: str, at: float,
               max_retries: int, mode: str = "new", dead_pid: int = 0) -> Reply[AssignResult]:
        """Queue ASSIGN: mode 'new' (from TASKS), 'move' (away from the dead
        process ``dead_pid``; 0 unknown) or 'retry' (from the retry schedule)."""
        k = self.keys
        _SCRIPTS["assign"]([k.task(task_id), k.stats, k.done_channel(task_id), k.assignments, k.orphans,
                            k.retries, k.retry_payloads, self.fence, k.recent, k.history(task_id)],
                           [task_id, worker, payload, repr(at), max_retries, self.ttl, name, mode, dead_pid,
                            self.epoch], batch.pipe)
        return batch.expect(decode_assign)

    def claim(self, batch: Batch, task_id: str, attempt: int, worker: str, at: float, pid: int,
              max_retries: int) -> Reply[Claim]:
        """Queue CLAIM: may this worker process run (task, attempt) now?"""
        k = self.keys
        _SCRIPTS["claim"]([k.task(task_id), k.stats, k.done_channel(task_id), self.fence, k.timings,
                           k.history(task_id)],
                          [attempt, worker, repr(at), pid, max_retries, self.ttl, self.epoch], batch.pipe)
        return batch.expect(decode_claim)

    def finish(self, batch: Batch, task_id: str, attempt: int, status: Status, at: float,
               fields: dict[str, str]) -> Reply[Finish]:
        """Write a terminal record unless it is already terminal or the attempt is fenced."""
        k = self.keys
        flat = [x for kv in fields.items() for x in kv]
        _SCRIPTS["finish"]([k.task(task_id), k.stats, k.done_channel(task_id), self.fence, k.timings,
                            k.history(task_id)],
                           [attempt, str(status), repr(at), self.ttl, self.epoch, *flat], batch.pipe)
        return batch.expect(decode_finish)

    def reject(self, batch: Batch, task_id: str, at: float, error: str, mode: str = "new",
               name: str | None = None) -> Reply[Reject]:
        """Fail a task the scheduler refused: mode 'new' (a message from TASKS)
        unless that id was ever accepted or has ended; mode 'retry' (its retry,
        taken off the schedule, cannot run) unless it ended or is placed; mode
        'move' (the task of a dead worker cannot run) unless it ended, and its
        placement and orphan mark go. A record made here gets ``name`` (the
        task the message named, if any) as its 'task', and ``at`` as its 'submitted_at'."""
        k = self.keys
        _SCRIPTS["reject"]([k.task(task_id), k.stats, k.done_channel(task_id), k.assignments, k.retries, self.fence,
                            k.orphans, k.history(task_id)],
                           [task_id, repr(at), self.ttl, error, self.epoch, mode, name or ""], batch.pipe)
        return batch.expect(decode_reject)

    def release(self, task_id: str, attempt: int, pid: int) -> Release:
        """Hand back a task this process claimed but will not finish (graceful stop)."""
        def queue(batch: Batch) -> Reply[Release]:
            k = self.keys
            _SCRIPTS["release"]([k.task(task_id), self.fence, k.history(task_id)],
                                [attempt, pid, self.epoch, repr(now())], batch.pipe)
            return batch.expect(decode_release)
        return self._now(queue)

    def retry(self, task_id: str, attempt: int, at: float, backoff: tuple[float, float], max_retries: int,
              fields: dict[str, str], payload: str) -> RetryResult:
        """Schedule a task that raised to run again, if it has retries left.

        ``backoff`` is (first delay, longest delay) in seconds.
        """
        def queue(batch: Batch) -> Reply[RetryResult]:
            k = self.keys
            _SCRIPTS["retry"]([k.task(task_id), k.retries, k.retry_payloads, k.assignments, self.fence, k.stats,
                               k.history(task_id)],
                              [task_id, attempt, repr(at), repr(backoff[0]), max_retries, fields.get("error", ""),
                               fields.get("traceback", ""), payload, repr(backoff[1]), self.epoch], batch.pipe)
            return batch.expect(decode_retry)
        return self._now(queue)

    # --- an operator's actions (client/ops.py): no epoch, they belong to no generation ---
    def cancel(self, batch: Batch, task_id: str, at: float, by: str, unstarted: bool = False) -> Reply[CancelResult]:
        """Queue CANCEL: make the task ``cancelled`` unless it has ended (``unstarted``: only if it
        is still waiting to start, for a purge). Its running attempt, if any, is stopped by its worker."""
        k = self.keys
        _SCRIPTS["cancel"]([k.task(task_id), k.stats, k.done_channel(task_id), k.retries, k.retry_payloads,
                            k.history(task_id)],
                           [task_id, repr(at), self.ttl, by, "unstarted" if unstarted else "any"], batch.pipe)
        return batch.expect(decode_cancel)

    def reopen(self, batch: Batch, task_id: str, at: float, by: str) -> Reply[ReopenResult]:
        """Queue REOPEN: run a failed or cancelled task again (an operator's explicit retry)."""
        k = self.keys
        _SCRIPTS["reopen"]([k.task(task_id), k.stats, k.retries, k.retry_payloads, k.history(task_id)],
                           [task_id, repr(at), by], batch.pipe)
        return batch.expect(decode_reopen)

    def running_state(self, task_id: str) -> tuple[str | None, int]:
        """(status, attempt) of a task's record, for a worker watching the task it runs;
        (None, 0) if it has no YADTQ record."""
        status, attempt, marker = self.redis.hmget(self.keys.task(task_id), "status", "attempt", "yadtq")  # type: ignore[misc]
        return (str(status), _int(attempt)) if marker is not None and status is not None else (None, 0)

    def records_by_status(self, statuses: frozenset[str], count: int = 1000) -> Iterable[tuple[str, dict[str, str]]]:
        """Every YADTQ record whose status is in ``statuses``, as (task id, record).

        A SCAN of the key prefix: for an operator's rare bulk actions (purge,
        retry --failed), never for the cluster's own work.
        """
        prefix = self.keys.prefix
        batch: list[str] = []
        for key in self.redis.scan_iter(match=f"{prefix}*", count=count, _type="hash"):
            batch.append(key)
            if len(batch) >= count:
                yield from self._matching(batch, statuses)
                batch = []
        yield from self._matching(batch, statuses)

    def _matching(self, keys: list[str], statuses: frozenset[str]) -> Iterable[tuple[str, dict[str, str]]]:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "status", "yadtq")
        answers = [a if isinstance(a, list) else [None, None] for a in pipe.execute(raise_on_error=False)]
        picked = [key for key, (st, marker) in zip(keys, answers, strict=True) if marker is not None and st in statuses]
        if not picked:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in picked:
            pipe.hgetall(key)
        for key, rec in zip(picked, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(rec, dict) and rec.get("status") in statuses:
                yield key.removeprefix(self.keys.prefix), rec

    # --- the scheduler's tables ---
    def placements(self, limits: TaskLimits | None = None) -> tuple[dict[str, Placement], dict[str, int]]:
        """The scheduler's table (task -> placement) and the orphan marks (task ->
        dead pid, 0 unknown).

        Each entry is checked as a message from TASKS is (``stored_task`` with
        the cluster's ``limits``), and its payload comes back re-encoded, ready
        to send. An entry that fails is never returned: its task is failed
        with the reason and the entry removed (``fail_unreadable``).
        """
        table: dict[str, str] = self.redis.hgetall(self.keys.assignments)  # type: ignore[assignment]
        orphans: dict[str, str] = self.redis.hgetall(self.keys.orphans)  # type: ignore[assignment]
        placed: dict[str, Placement] = {}
        bad: list[tuple[str, str | None, str]] = []
        for task_id, text in table.items():
            p = parse_placement(text)
            try:
                if p is None or p.attempt < 1:
                    raise InvalidMessage("it is not 'worker|attempt|payload' with an attempt >= 1")
                placed[task_id] = Placement(p.worker, p.attempt, stored_task(task_id, p.payload, limits))
            except InvalidMessage as e:
                bad.append((task_id, text, e.reason))
        self._fail_unreadable_all(bad, "assignments")
        gone = {t for t, _, _ in bad}  # their marks went with them
        return placed, {t: self._pid(t, pid) for t, pid in orphans.items() if t not in gone}

    @staticmethod
    def _pid(task_id: str, text: str) -> int:
        pid = _int(text, -1)
        if pid < 0:
            log.error("orphan mark of task %r is not a pid: %.50r; moving it as from an unknown process",
                      task_id, text)
            return 0
        return pid

    # --- the scheduler's plain table writes: fenced by its epoch too (client/lua/tables.lua);
    # ``execute`` raises Fenced if one was refused ---
    def drop_placements(self, batch: Batch, task_ids: list[str]) -> None:
        """Take ended tasks off the scheduler's table."""
        for i in range(0, len(task_ids), _TABLE_CHUNK):
            self._table(batch, "hdel", [self.keys.assignments], task_ids[i:i + _TABLE_CHUNK])

    def mark_orphans(self, batch: Batch, orphans: Iterable[tuple[str, int]]) -> None:
        """Mark tasks taken from a dead process (task, its pid), for a restarted scheduler."""
        pairs = [str(x) for task_id, pid in dict(orphans).items() for x in (task_id, pid)]
        for i in range(0, len(pairs), 2 * _TABLE_CHUNK):
            self._table(batch, "hset", [self.keys.orphans], pairs[i:i + 2 * _TABLE_CHUNK])

    def _table(self, batch: Batch, op: str, keys: list[str], args: list[str]) -> None:
        _SCRIPTS["tables"]([self.fence, *keys], [self.epoch, op, *args], batch.pipe)
        batch.fenced.append(batch.expect(lambda a: str(a) == "stale_epoch"))

    def count_aliases(self, batch: Batch, counts: dict[str, int]) -> None:
        """Add the messages whose key names tasks.accept_aliases mapped, per kind ('task_id->task-id'),
        to the stats hash (fields 'aliased|KIND')."""
        for kind, n in sorted(counts.items()):  # a few kinds at most (protocol.ALIASES)
            self._table(batch, "count", [self.keys.stats], [f"aliased|{kind}", str(n)])

    def placed(self, task_ids: list[str]) -> list[bool]:
        """For each task, whether the scheduler's table in Redis holds it."""
        return [p is not None for p in self.redis.hmget(self.keys.assignments, task_ids)]  # type: ignore[union-attr]

    def drop_retry(self, batch: Batch, task_id: str) -> None:
        """Take a task off the retry schedule (its retry cannot run)."""
        self._table(batch, "unretry", [self.keys.retries, self.keys.retry_payloads], [task_id])

    def due_retries(self, at: float, limit: int, limits: TaskLimits | None = None) -> list[tuple[str, str]]:
        """Up to ``limit`` (task id, task json) whose retry time has come.

        Each payload is checked as a message from TASKS is (``stored_task``)
        and comes back re-encoded. A missing or unreadable payload, or one of
        another task, is never returned: the task is failed with the reason
        and taken off the schedule (``fail_unreadable``).
        """
        ids: list[str] = self.redis.zrangebyscore(self.keys.retries, "-inf", at, start=0, num=limit)  # type: ignore[assignment]
        if not ids:
            return []
        payloads: list[str | None] = self.redis.hmget(self.keys.retry_payloads, ids)  # type: ignore[assignment]
        due: list[tuple[str, str]] = []
        bad: list[tuple[str, str | None, str]] = []
        for task_id, text in zip(ids, payloads, strict=True):
            try:
                if text is None:  # RETRY writes both, so this is damage
                    raise InvalidMessage("it is missing")
                due.append((task_id, stored_task(task_id, text, limits)))
            except InvalidMessage as e:
                bad.append((task_id, text, e.reason))
        self._fail_unreadable_all(bad, "retries")
        return due

    def _fail_unreadable_all(self, bad: list[tuple[str, str | None, str]], table: str) -> None:
        """Fail each (task, stored text, reason) whose stored payload in ``table`` cannot be read."""
        if not bad:
            return
        name = self.keys.assignments if table == "assignments" else self.keys.retry_payloads
        batch = self.pipeline()
        replies = [self.fail_unreadable(batch, t, now(), f"InvalidMessage: its stored payload in "
                                        f"{name.removeprefix(self.keys.prefix)} cannot be read: {reason}",
                                        table, text) for t, text, reason in bad]
        self.execute(batch)
        for (task_id, text, reason), reply in zip(bad, replies, strict=True):
            kind = reply.value.kind
            if kind is Unreadable.STALE_EPOCH:
                raise Fenced(f"epoch {self.epoch}: a newer generation owns the cluster")
            log.error("task %r: its stored payload in %s cannot be read (%s): %.200r; %s", task_id, name, reason,
                      text, _UNREADABLE_DONE[kind])

    def fail_unreadable(self, batch: Batch, task_id: str, at: float, error: str, where: str,
                        text: str | None = None, worker: str = "", attempt: int = 0) -> Reply[UnreadableResult]:
        """Queue UNREADABLE: fail a task whose payload cannot be read, so it never hangs.

        ``where`` 'assignments' or 'retries': its stored entry ``text`` (None:
        absent), unless changed since, is removed and the record failed unless
        it ended or is not YADTQ's. ``where`` 'worker': ``worker`` read an
        assignment of it (``attempt``) that it cannot parse; failed only if
        the record holds that attempt placed on that worker (and has not ended).
        """
        k = self.keys
        args = [worker, str(attempt)] if where == "worker" else [text or "", "1" if text is not None else "0"]
        _SCRIPTS["unreadable"]([k.task(task_id), k.stats, k.done_channel(task_id), k.assignments, k.orphans,
                                k.retries, k.retry_payloads, self.fence, k.history(task_id)],
                               [task_id, repr(at), self.ttl, error, self.epoch, where, *args], batch.pipe)
        return batch.expect(decode_unreadable)

    def write_load(self, load: dict[str, int]) -> None:
        """Publish each worker's number of unfinished tasks (the supervisor's status line reads it)."""
        pairs = [str(x) for w, n in load.items() for x in (w, n)]
        batch = self.pipeline()
        for i in range(0, len(pairs), 2 * _TABLE_CHUNK):
            self._table(batch, "hset", [self.keys.load], pairs[i:i + 2 * _TABLE_CHUNK])
        if len(batch):
            self.execute(batch)

    def owner_epoch(self) -> int | None:
        """The epoch of the cluster's lease holder now; None if no one holds it (lapsed, or Redis
        lost it) or its value is not YADTQ's. A child of another epoch must stop (worker_pool/process.py)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.owner)
        [text] = pipe.execute(raise_on_error=False)  # a key of another type (WRONGTYPE) is junk too
        return parse_owner_epoch(text)

    def register_workers(self, node: str, workers: list[str], epoch: int) -> None:
        """Record ``workers`` as ``node``'s (its supervisor's generation ``epoch``), and drop
        the node's earlier entries that it no longer runs (a smaller ``workers.count``)."""
        k = self.keys.workers
        if self.redis.type(k) not in ("hash", "none"):  # the supervisor refuses to start on it; never crash here
            return
        found: dict[str, str] = self.redis.hgetall(k)  # type: ignore[assignment]
        gone = [w for w, v in found.items() if _registered_node(v) == node and w not in workers]
        pipe = self.redis.pipeline(transaction=False)
        if gone:
            pipe.hdel(k, *gone)
        value = json.dumps({"node": node, "epoch": epoch})
        pipe.hset(k, mapping={w: value for w in workers})
        pipe.execute()

    def registered_workers(self) -> dict[str, str]:
        """Every registered worker and its node (see ``register_workers``); an entry that
        is not YADTQ's JSON is skipped, and a key of another type reads as none."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.workers)
        [found] = pipe.execute(raise_on_error=False)
        if not isinstance(found, dict):
            return {}
        nodes = {w: _registered_node(v) for w, v in found.items()}
        return {w: n for w, n in nodes.items() if n is not None}

    def fence_lost_node(self, node: str) -> bool:
        """If ``node``'s lease has lapsed (its supervisor is gone or cut off), bump its epoch and
        return True: the node is lost, and its generation can write nothing more. False while
        its supervisor holds the lease."""
        batch = self.pipeline()
        _SCRIPTS["fence_node"]([self.keys.owner_of(node), self.keys.epoch_of(node)], [], batch.pipe)
        fenced = batch.expect(lambda answer: int(answer) == 1)
        self.execute(batch)  # loads the script if Redis lacks it
        return fenced.value

    def misplaced_keys(self) -> list[str]:
        """YADTQ's own keys that hold another type than YADTQ writes there, each
        as 'key (a TYPE, not a WANTED)'. Nothing YADTQ does makes one (task ids
        cannot reach them), so another program or a person wrote it; every
        script that touches it would fail, so the supervisor refuses to start."""
        k = self.keys
        wanted = {k.assignments: "hash", k.orphans: "hash", k.retries: "zset", k.retry_payloads: "hash",
                  k.load: "hash", k.stats: "hash", k.epoch: "string", k.owner: "string",
                  k.owner_released: "string", k.scheduler_lease: "string", k.scheduler_epoch: "string",
                  k.scheduler_released: "string", k.workers: "hash", k.quarantine: "hash", k.timings: "hash",
                  k.recent: "zset", k.snapshot: "string"}
        pipe = self.redis.pipeline(transaction=False)
        for key in wanted:
            pipe.type(key)
        found = pipe.execute()
        return [f"{key} (a {kind}, not a {wanted[key]})" for key, kind in zip(wanted, found, strict=True)
                if kind not in ("none", wanted[key])]

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        """(each worker's load, how many tasks ended per status), as last written
        (the per-name counts of the stats hash are client/insight.py's to read)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.load)
        pipe.hgetall(self.keys.stats)
        load, stats = pipe.execute()
        return ({k: _int(v) for k, v in load.items()}, {k: _int(v) for k, v in stats.items() if "|" not in k})

    def count_event(self, what: str, name: str) -> None:
        """Add one to the stats counter 'what|name' (the supervisor's deaths and restarts
        of its processes: rare, so a plain command). A stats key of another type is skipped."""
        if self.redis.type(self.keys.stats) in ("hash", "none"):
            self.redis.hincrby(self.keys.stats, f"{what}|{name}", 1)

    def trim_recent(self, keep: int) -> None:
        """Keep the newest ``keep`` tasks of the index of recent tasks (ASSIGN adds each new one)."""
        if self.redis.type(self.keys.recent) == "zset":
            self.redis.zremrangebyrank(self.keys.recent, 0, -(keep + 1))

    def write_snapshot(self, text: str, ttl: float) -> None:
        """Publish the supervisor's view of its processes (JSON), gone ``ttl`` seconds after the last write."""
        self.redis.set(self.keys.snapshot, text, px=max(1, int(ttl * 1000)))

    def delete_all(self) -> int:
        """Delete every key under the key prefix (throw-away clusters: tests,
        the chaos run, the benchmark); refused without a prefix, as the keys
        could then be anyone's. Returns how many were deleted."""
        if not self.keys.prefix:
            raise ValueError("delete_all needs a key prefix: without one the keys could be anyone's")
        keys = list(self.redis.scan_iter(match=f"{self.keys.prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            self.redis.delete(*keys[i:i + 1000])
        return len(keys)

    # --- the quarantine (worker_pool/quarantine.py): a careful process's marks ---
    def quarantine_mark(self, field: str) -> str | None:
        """The 'offset:tries' a careful process recorded for ``field``, if any."""
        return self.redis.hget(self.keys.quarantine, field)  # type: ignore[return-value]

    def set_quarantine_mark(self, field: str, mark: str) -> None:
        self.redis.hset(self.keys.quarantine, field, mark)

    def clear_quarantine_marks(self, fields: list[str]) -> None:
        self.redis.hdel(self.keys.quarantine, *fields)

    def fail_quarantined(self, task_id: str, at: float, error: str) -> bool:
        """Fail the record of a quarantined task unless it ended; False if it had, if the id
        names a key YADTQ does not own, or if this process's epoch is stale.

        Whatever its state (queued, placed, running): the message that carries
        it kills its reader, so no attempt of it can end otherwise. WATCH/MULTI
        rather than a script: it runs at most once per quarantined message, and
        again when the scheduler changed the record meanwhile (it moves the task
        of each dead reader).
        """
        for _ in range(10):
            try:
                return self._fail_quarantined(task_id, at, error)
            except redis.WatchError:
                continue
        return False

    def _fail_quarantined(self, task_id: str, at: float, error: str) -> bool:
        key = self.keys.task(task_id)
        with self.redis.pipeline() as pipe:
            pipe.watch(key, self.fence)  # type: ignore[no-untyped-call]
            kind = pipe.type(key)
            if (kind not in ("hash", "none") or (kind == "hash" and not pipe.hexists(key, "yadtq"))
                    or pipe.hget(key, "status") in TERMINAL or self.epoch < _int(pipe.get(self.fence))):
                return False
            # A damaged counter is reset, and a stats key of another type skipped, rather than failing
            # the whole write (as tally() in client/lua/common.lua does).
            stats = pipe.type(self.keys.stats)
            name: str | None = pipe.hget(key, "task")  # type: ignore[assignment]  # counted per task too, as tally() does
            history = self.keys.history(task_id)
            # A history written by hand as another type is skipped, as note() in common.lua does.
            noted = pipe.type(history) in ("list", "none")
            attempt = _int(pipe.hget(key, "attempt"))
            damaged = stats == "hash" and not 0 <= _int(pipe.hget(self.keys.stats, "failed") or "0", -1) < 2 ** 62
            pipe.multi()  # the record's marker 'yadtq' is FORMAT of client/lua/common.lua
            pipe.hset(key, mapping={"yadtq": "1", "status": Status.FAILED.value, "finished_at": repr(at),
                                    "error": error})
            pipe.hsetnx(key, "task", "")  # as stamp() in client/lua/common.lua: every record has them
            pipe.hsetnx(key, "submitted_at", repr(at))
            pipe.expire(key, self.ttl)
            if damaged:
                pipe.hset(self.keys.stats, Status.FAILED.value, 1)
            elif stats in ("hash", "none"):
                pipe.hincrby(self.keys.stats, Status.FAILED.value, 1)
            if name and stats in ("hash", "none"):
                pipe.hincrby(self.keys.stats, f"finished|{Status.FAILED.value}|{name}", 1)
            pipe.hdel(self.keys.assignments, task_id)
            if noted:  # the entry note() in client/lua/common.lua would write, expiring with the record
                pipe.rpush(history, json.dumps({"at": at, "event": "quarantined", "attempt": attempt,
                                                "error": error.split("\n", 1)[0][:200]}))
                pipe.ltrim(history, -HISTORY_MAX, -1)
                pipe.expire(history, self.ttl)
            pipe.publish(self.keys.done_channel(task_id), Status.FAILED.value)
            pipe.execute()
        return True


# What became of a task whose stored payload cannot be read (UNREADABLE's answers), for the log.
_UNREADABLE_DONE = {Unreadable.FAILED: "its record is failed and the entry removed",
                    Unreadable.ENDED: "it had ended; the entry is removed",
                    Unreadable.NOT_OURS: "its id names a key YADTQ does not own, left alone; the entry is removed",
                    Unreadable.CHANGED: "the entry changed meanwhile; left for the next read",
                    Unreadable.ELSEWHERE: "left alone"}
