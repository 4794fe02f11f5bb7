"""The cluster file, ``yadtq.yaml``: its schema, defaults and validation.

Every key, its type and its default is declared once, in the dataclasses below;
``load_config`` checks a file against them and names the first wrong key. The
README's configuration table mirrors these defaults.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from client.errors import ConfigError
from client.protocol import TaskOptions

Check = tuple[Callable[[Any], bool], str]


def _positive() -> dict[str, Check]:
    return {"check": (lambda v: v > 0, "a number > 0")}


def _at_least(n: int) -> dict[str, Check]:
    return {"check": (lambda v: v >= n, f"an integer >= {n}")}


def _name() -> dict[str, Check]:
    # Kafka topic names: letters, digits, '.', '_' and '-'; '|' is reserved by us.
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    return {"check": (lambda v: 0 < len(v) <= 200 and set(v) <= ok,
                      "a topic name of letters, digits, '.', '_' or '-'")}


@dataclass(frozen=True)
class KafkaConfig:
    """How to reach the Kafka cluster."""

    bootstrap_servers: list[str] = field(default_factory=lambda: ["localhost:9092"])
    client_id: str = "yadtq"


@dataclass(frozen=True)
class RedisConfig:
    """How to reach Redis, and the prefix put in front of every key YADTQ writes."""

    url: str = field(default="redis://localhost:6379/0", metadata={
        "check": (lambda v: v.split("://", 1)[0] in ("redis", "rediss", "unix"),
                  "a URL starting redis://, rediss:// or unix://")})
    key_prefix: str = ""


@dataclass(frozen=True)
class TopicsConfig:
    """Topic names. Worker i consumes ``f"{workers}{i}"`` (W1, W2, ...)."""

    tasks: str = field(default="TASKS", metadata=_name())
    status: str = field(default="status", metadata=_name())
    workers: str = field(default="W", metadata=_name())
    dead_letter: str = field(default="TASKS.dead-letter", metadata=_name())


@dataclass(frozen=True)
class WorkersConfig:
    """The worker processes and how their liveness is judged."""

    count: int = field(default=4, metadata=_at_least(1))
    heartbeat_interval: float = field(default=1.0, metadata=_positive())
    heartbeat_timeout: float = field(default=6.0, metadata=_positive())
    # Unfinished tasks the scheduler gives one worker at once (its prefetch):
    # more makes bigger batches and higher throughput for short tasks; fewer
    # keeps long tasks better balanced and a dead worker leaves less to move.
    max_pending: int = field(default=64, metadata=_at_least(1))
    shutdown_grace: float = field(default=10.0, metadata=_positive())


@dataclass(frozen=True)
class TasksConfig:
    """What tasks exist and the limits every task runs under by default."""

    modules: list[str] = field(default_factory=lambda: ["worker_pool.builtin_tasks"])
    time_limit: float = field(default=300.0, metadata=_positive())
    # Times a task may run again after it failed: it raised, or its worker died.
    max_retries: int = field(default=3, metadata=_at_least(0))
    # Seconds before the first retry of a task that raised; doubled for each
    # further retry, up to retry_backoff_max (a failing dependency gets room).
    retry_backoff: float = field(default=1.0, metadata={"check": (lambda v: v >= 0, "a number >= 0")})
    retry_backoff_max: float = field(default=60.0, metadata={"check": (lambda v: v >= 0, "a number >= 0")})
    result_ttl: int = field(default=86400, metadata=_at_least(1))
    # At most Kafka's default message size limit, so a refused task's dead letter still fits.
    max_message_bytes: int = field(default=1_000_000, metadata={
        "check": (lambda v: 64 <= v <= 1_000_000, "an integer from 64 to 1000000")})

    def retries_for(self, options: TaskOptions) -> int:
        """The retry limit of a task: its own ``options.max_retries``, else this default."""
        return self.max_retries if options.max_retries is None else options.max_retries

    def time_limit_for(self, options: TaskOptions) -> float:
        """The time limit of a task: its own ``options.timeout``, else this default."""
        return self.time_limit if options.timeout is None else options.timeout


@dataclass(frozen=True)
class SupervisorConfig:
    """How the supervisor reports and how it restarts crashed children."""

    status_interval: float = field(default=5.0, metadata=_positive())
    startup_timeout: float = field(default=30.0, metadata=_positive())
    max_restarts: int = field(default=5, metadata=_at_least(1))
    restart_window: float = field(default=60.0, metadata=_positive())
    max_backoff: float = field(default=30.0, metadata=_positive())


@dataclass(frozen=True)
class Config:
    """The whole cluster file. Build it with ``load_config`` or ``Config.from_dict``."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    source: str = field(default="<defaults>", compare=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Config:
        """Validate ``data`` (as parsed from YAML) and fill in the defaults."""
        if data is None:
            data = {}
        built: Config = _build(cls, data, source, "")
        w = built.workers
        if w.heartbeat_timeout <= 2 * w.heartbeat_interval:  # one late heartbeat must not kill a worker
            raise ConfigError(f"{source}: workers.heartbeat_timeout: expected more than twice "
                              f"workers.heartbeat_interval ({w.heartbeat_interval:g}), got {w.heartbeat_timeout:g}")
        return dataclasses.replace(built, source=source)

    def worker_ids(self) -> list[str]:
        """The worker ids, which are also their topic names: W1..Wn."""
        return [f"{self.topics.workers}{i}" for i in range(1, self.workers.count + 1)]


def load_config(path: str | Path) -> Config:
    """Read and validate a cluster file; raise ConfigError naming what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    return Config.from_dict(data, source=str(p))


def _build(cls: type, data: Any, source: str, path: str) -> Any:
    if not isinstance(data, dict):
        where = path.rstrip(".") or "top level"
        raise ConfigError(f"{source}: {where}: expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: {path}{unknown[0]}: unknown key "
                          f"(known keys here: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    values = {name: _value(hints[name], f, data[name], source, f"{path}{name}")
              for name, f in fields.items() if name in data}
    return cls(**values)


def _value(hint: Any, f: dataclasses.Field[Any], raw: Any, source: str, key: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, raw if raw is not None else {}, source, key + ".")
    value = _coerce(hint, raw, source, key)
    check = f.metadata.get("check")
    if check and not check[0](value):
        raise ConfigError(f"{source}: {key}: expected {check[1]}, got {_show(raw)}")
    return value


def _scalar_ok(hint: type, raw: Any) -> bool:
    if hint is bool:
        return isinstance(raw, bool)
    if isinstance(raw, bool):  # bool is an int in Python, but never a number here
        return False
    if hint is float:
        return isinstance(raw, (int, float))
    return isinstance(raw, hint)


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _coerce(hint: Any, raw: Any, source: str, key: str) -> Any:
    if hint in _EXPECTED:
        if not _scalar_ok(hint, raw):
            raise ConfigError(f"{source}: {key}: expected {_EXPECTED[hint]}, got {_show(raw)}")
        return float(raw) if hint is float else raw
    if typing.get_origin(hint) is list:
        # A comma-separated string is accepted too: "host1:9092,host2:9092".
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i.strip() for i in items):
            raise ConfigError(f"{source}: {key}: expected a non-empty list of strings, got {_show(raw)}")
        return [i.strip() for i in items]
    raise TypeError(f"unsupported config type {hint!r}")  # a bug in this module, not in the file


def _show(value: Any) -> str:
    kind = type(value).__name__ if value is not None else "nothing"
    return f"{value!r} ({kind})" if value is not None else "nothing"
