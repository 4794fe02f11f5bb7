"""The cluster file, ``yadtq.yaml``: its schema, defaults and validation.

Every key, its type and its default is declared once, in the dataclasses below;
``load_config`` checks a file against them and names the first wrong key. The
README's configuration table mirrors these defaults.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from client.errors import ConfigError
from client.protocol import DEFAULT_LIMITS, TaskLimits, TaskOptions

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


def _node() -> dict[str, Check]:
    # Part of topic names and consumer groups ('a.W1'), so no '.': that separates it from the worker.
    ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    return {"check": (lambda v: len(v) <= 64 and set(v) <= ok,
                      "'' (one node) or a name of at most 64 letters, digits, '_' or '-'")}


def _one_of(*choices: str) -> dict[str, Check]:
    return {"check": (lambda v: v in choices, "one of " + ", ".join(c or "''" for c in choices))}


class Secret:
    """A password from the cluster file or the environment.

    Its repr and str are ``***``, so a Config printed in a log line, an error
    or a traceback never shows it; ``reveal()`` is for the one place that
    hands it to a Kafka or Redis client. Immutable; empty means not set.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str = "") -> None:
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Secret cannot be changed")

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        # The supervisor hands its Config to the processes it starts (multiprocessing pickles it).
        return (Secret, (self._value,))

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return "***" if self._value else ""


NO_SECRET = Secret()


class _Invalid(Exception):
    """A key of a section is wrong in a way only the whole section shows; the
    loader adds the file and the section's name, as for every other error."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _from_env(section: Any, key: str) -> Secret:
    """The secret ``key`` of ``section``, or the one its ``key_env`` variable names.

    Both may not be given: which one wins would be a guess.
    """
    secret: Secret = getattr(section, key)
    env: str = getattr(section, key + "_env")
    if not env:
        return secret
    if secret:
        raise _Invalid(key + "_env", f"give {key} or {key}_env, not both")
    value = os.environ.get(env, "")
    if not value:
        raise _Invalid(key + "_env", f"the environment variable {env} is not set (or empty)")
    return Secret(value)


def _files_exist(section: Any, *keys: str) -> None:
    """Each named file must exist now, not on the first connection minutes later."""
    for key in keys:
        path = getattr(section, key)
        if path and not Path(path).is_file():
            raise _Invalid(key, f"no such file: {path!r}")


_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_TLS = ("SSL", "SASL_SSL")


@dataclass(frozen=True)
class KafkaConfig:
    """How to reach the Kafka cluster, and how to prove who we are to it.

    The ``*_password`` keys are Secrets; each may instead be read from the
    environment variable its ``*_password_env`` key names, when the file is
    loaded. kafka-python gets them all through ``client.kafka.client_options``.
    """

    bootstrap_servers: list[str] = field(default_factory=lambda: ["localhost:9092"])
    client_id: str = "yadtq"
    security_protocol: str = field(default="PLAINTEXT", metadata=_one_of("PLAINTEXT", "SSL", *_SASL))
    sasl_mechanism: str = field(default="", metadata=_one_of("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    sasl_username: str = ""
    sasl_password: Secret = NO_SECRET
    sasl_password_env: str = ""
    ssl_cafile: str = ""         # CA bundle to check the broker's certificate (default: the system's)
    ssl_certfile: str = ""       # client certificate, for brokers that require one
    ssl_keyfile: str = ""
    ssl_password: Secret = NO_SECRET  # of ssl_keyfile, if it is encrypted
    ssl_password_env: str = ""
    ssl_check_hostname: bool = True

    def checked(self) -> KafkaConfig:
        """Check the keys that depend on each other; read passwords from the environment."""
        protocol = self.security_protocol
        # A SASL or TLS key that the protocol ignores is a mistake to point out:
        # the connection would go out without the protection it was meant to have.
        for keys, used, needs in ((("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_env"),
                                   _SASL, "SASL_PLAINTEXT or SASL_SSL"),
                                  (("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_password_env"),
                                   _TLS, "SSL or SASL_SSL")):
            for key in keys:
                if getattr(self, key) and protocol not in used:
                    raise _Invalid(key, f"only used when kafka.security_protocol is {needs} (it is {protocol})")
        sasl_password = _from_env(self, "sasl_password")
        ssl_password = _from_env(self, "ssl_password")
        if protocol in _SASL:
            for key, value in (("sasl_mechanism", self.sasl_mechanism), ("sasl_username", self.sasl_username),
                               ("sasl_password", sasl_password)):
                if not value:
                    also = " (or kafka.sasl_password_env)" if key == "sasl_password" else ""
                    raise _Invalid(key, f"required{also} when kafka.security_protocol is {protocol}")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise _Invalid("ssl_keyfile", "needs kafka.ssl_certfile too (the certificate of that key)")
        _files_exist(self, "ssl_cafile", "ssl_certfile", "ssl_keyfile")
        return dataclasses.replace(self, sasl_password=sasl_password, ssl_password=ssl_password)

    def describe(self) -> str:
        """The brokers and how we log in, without secrets: for the supervisor's first line."""
        how = self.security_protocol
        if how in _SASL:
            how += f" {self.sasl_mechanism} as {self.sasl_username}"
        return f"{','.join(self.bootstrap_servers)} ({how})" if how != "PLAINTEXT" else ",".join(self.bootstrap_servers)


def _redis_url(v: str) -> bool:
    return v.split("://", 1)[0] in ("redis", "rediss", "unix")


def safe_url(url: str) -> str:
    """The URL without its user and password (``***``), fit for messages and logs.

    redis-py also reads a ``password`` query parameter; that is hidden too.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, q, query = rest.partition("?")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    if query:
        query = "&".join("password=***" if p.partition("=")[0].lower() == "password" else p
                         for p in query.split("&"))
    return f"{scheme}://{rest}{q}{query}"


@dataclass(frozen=True)
class RedisConfig:
    """How to reach Redis, and the prefix put in front of every key YADTQ writes.

    The password may be in the URL (``redis://:pw@host``), in ``password``, or
    in the environment variable ``password_env`` names: one of them.
    ``client.store.connect`` is the one place that uses these.
    """

    url: str = field(default="redis://localhost:6379/0", metadata={
        "check": (_redis_url, "a URL starting redis://, rediss:// or unix://"), "hide": safe_url})
    key_prefix: str = ""
    username: str = ""               # a Redis ACL user (default: the 'default' user)
    password: Secret = NO_SECRET
    password_env: str = ""
    ssl_ca_certs: str = ""           # rediss:// only: CA bundle to check the server (default: the system's)
    ssl_certfile: str = ""           # rediss:// only: client certificate, for servers that require one
    ssl_keyfile: str = ""

    def checked(self) -> RedisConfig:
        """Check the keys that depend on each other; read the password from the environment."""
        password = _from_env(self, "password")
        parts = urlsplit(self.url)
        in_url = bool(parts.password) or "password" in parse_qs(parts.query)
        if in_url and password:
            # redis-py would silently prefer the URL's: make the choice explicit.
            key = "password_env" if self.password_env else "password"
            raise _Invalid(key, "the URL holds a password already: give it in one place")
        if self.username and not (password or in_url):
            raise _Invalid("username", "needs a password (redis.password or redis.password_env)")
        for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, key) and parts.scheme != "rediss":
                raise _Invalid(key, "only used with a rediss:// URL (TLS)")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise _Invalid("ssl_keyfile", "needs redis.ssl_certfile too (the certificate of that key)")
        _files_exist(self, "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
        return dataclasses.replace(self, password=password)

    def describe(self) -> str:
        """The server and how we log in, without secrets: for the supervisor's first line."""
        login = f"user {self.username}, password" if self.username else "password" if self.password else ""
        return f"{safe_url(self.url)} ({login})" if login else safe_url(self.url)

    def __repr__(self) -> str:
        # The dataclass repr, but with the URL's password hidden (a Secret hides itself).
        shown = ", ".join(f"{f.name}={safe_url(self.url) if f.name == 'url' else getattr(self, f.name)!r}"
                          for f in dataclasses.fields(self))
        return f"RedisConfig({shown})"


_DAY = 86400.0


@dataclass(frozen=True)
class TopicsConfig:
    """Topic names, and the settings the supervisor creates the topics with.

    Worker i consumes ``f"{workers}{i}"`` (W1, W2, ...). The settings apply
    when a topic is created; a topic that exists already keeps its own.
    """

    tasks: str = field(default="TASKS", metadata=_name())
    status: str = field(default="status", metadata=_name())
    workers: str = field(default="W", metadata=_name())
    dead_letter: str = field(default="TASKS.dead-letter", metadata=_name())
    # 0: min(3, the number of brokers), and min(2, replication_factor).
    replication_factor: int = field(default=0, metadata=_at_least(0))
    min_insync_replicas: int = field(default=0, metadata=_at_least(0))
    # Seconds Kafka keeps a topic's messages (retention.ms).
    tasks_retention: float = field(default=7 * _DAY, metadata=_positive())
    workers_retention: float = field(default=7 * _DAY, metadata=_positive())
    dead_letter_retention: float = field(default=14 * _DAY, metadata=_positive())
    # Heartbeats are of no use after minutes; Kafka deletes whole segments
    # only, so status also gets short segments (segment.ms), or it would keep
    # a week of heartbeats whatever its retention says.
    status_retention: float = field(default=3600.0, metadata=_positive())
    status_segment: float = field(default=600.0, metadata=_positive())
    # Partitions of TASKS: a producer may pick any of them, and the scheduler
    # reads them all (in order within each). A TASKS with fewer is grown to
    # this many at start; Kafka cannot shrink one. The status topic and the
    # workers' topics keep one: each has one reader, and the scheduler's view
    # of a worker depends on the order of its events.
    tasks_partitions: int = field(default=1, metadata={
        "check": (lambda v: 1 <= v <= 1000, "an integer from 1 to 1000")})

    def checked(self) -> TopicsConfig:
        """Check the settings that depend on each other."""
        if self.replication_factor and self.min_insync_replicas > self.replication_factor:
            raise _Invalid("min_insync_replicas", f"expected at most topics.replication_factor "
                                                  f"({self.replication_factor}), got {self.min_insync_replicas}")
        if self.status_segment > self.status_retention:
            raise _Invalid("status_segment", f"expected at most topics.status_retention "
                                             f"({self.status_retention:g}), got {self.status_segment:g}")
        return self


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
    # The most a submitter may ask for in a task's options: options.timeout
    # and options.max_retries above these are refused with a clear error.
    max_timeout: float = field(default=DEFAULT_LIMITS.max_timeout, metadata=_positive())
    max_retries_cap: int = field(default=DEFAULT_LIMITS.max_retries, metadata=_at_least(0))
    # Map the key names other YADTQ clients use ('task_id', 'type', 'arguments', ...:
    # protocol.ALIASES) to the seed's. Off: such a message is refused with the
    # rename to make, as a guess about what a key means is no contract.
    accept_aliases: bool = False

    def checked(self) -> TasksConfig:
        """The defaults must be within the caps a task's own options are held to."""
        if self.time_limit > self.max_timeout:
            raise _Invalid("time_limit", f"expected at most tasks.max_timeout ({self.max_timeout:g}), "
                                         f"got {self.time_limit:g}")
        if self.max_retries > self.max_retries_cap:
            raise _Invalid("max_retries", f"expected at most tasks.max_retries_cap ({self.max_retries_cap}), "
                                          f"got {self.max_retries}")
        return self

    def limits(self) -> TaskLimits:
        """The bounds every parse of a task message is checked against."""
        return TaskLimits(self.max_message_bytes, self.max_timeout, self.max_retries_cap, self.accept_aliases)

    def retries_for(self, options: TaskOptions) -> int:
        """The retry limit of a task: its own ``options.max_retries``, else this default."""
        return self.max_retries if options.max_retries is None else options.max_retries

    def time_limit_for(self, options: TaskOptions) -> float:
        """The time limit of a task: its own ``options.timeout``, else this default."""
        return self.time_limit if options.timeout is None else options.timeout


@dataclass(frozen=True)
class SupervisorConfig:
    """How the supervisor reports and how it restarts crashed children."""

    status_interval: float = field(default=5.0, metadata=_positive())      # status sampled this often
    status_idle_interval: float = field(default=60.0, metadata=_positive())  # a line this often when nothing changes
    log_format: str = field(default="text", metadata=_one_of("text", "json"))
    startup_timeout: float = field(default=30.0, metadata=_positive())
    max_restarts: int = field(default=5, metadata=_at_least(1))
    restart_window: float = field(default=60.0, metadata=_positive())
    max_backoff: float = field(default=30.0, metadata=_positive())


def _listen(v: str) -> bool:
    """'' (off), or 'host:port' with a port from 0 (any free port) to 65535."""
    if v == "":
        return True
    host, sep, port = v.rpartition(":")
    return bool(sep) and port.isdigit() and port.isascii() and int(port) <= 65535 and bool(host.strip("[]"))


def split_listen(v: str) -> tuple[str, int]:
    """``http.listen`` as (host, port); an IPv6 host may be written in brackets."""
    host, _, port = v.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class HttpConfig:
    """The supervisor's HTTP endpoint: /metrics, /healthz and /api (see README, "Metrics and health").

    ``listen`` empty turns it off; port 0 takes any free port (the supervisor
    says which). Actions over HTTP need ``token`` (or the variable
    ``token_env`` names); with neither they are refused.
    """

    listen: str = field(default="127.0.0.1:9180", metadata={
        "check": (_listen, "'' (off) or 'host:port', a port from 0 to 65535")})
    token: Secret = NO_SECRET
    token_env: str = ""

    def checked(self) -> HttpConfig:
        """Read the token from the environment if ``token_env`` names it."""
        return dataclasses.replace(self, token=_from_env(self, "token"))


@dataclass(frozen=True)
class Config:
    """The whole cluster file. Build it with ``load_config`` or ``Config.from_dict``."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    # This host's name in a cluster of several (README, "Running on several hosts"):
    # its worker ids and topics carry it ('a.W1'); '' is the seed's single node.
    node: str = field(default="", metadata=_node())
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
        clash = built.topic_clash()
        if clash:
            raise ConfigError(f"{source}: {clash}")
        return dataclasses.replace(built, source=source)

    def topic_clash(self) -> str:
        """Why two of the cluster's topics would be one, or '' if all differ.

        ``dead_letter: TASKS`` would send every dead letter back into TASKS, for
        ever. Kafka also takes '.' and '_' for one character in topic names.
        """
        t = self.topics
        named = [("topics.tasks", t.tasks), ("topics.status", t.status), ("topics.dead_letter", t.dead_letter)]
        named += [(f"topics.workers (worker {w}'s topic)", w) for w in self.worker_ids()]
        seen: dict[str, tuple[str, str]] = {}
        for key, name in named:
            other_key, other = seen.setdefault(name.replace(".", "_"), (key, name))
            if other_key != key:
                return f"{key}: {name!r} is the same topic as {other_key} ({other!r}); every topic needs its own name"
        return ""

    def worker_ids(self) -> list[str]:
        """This node's worker ids, which are also their topic names: W1..Wn, or 'a.W1'.. on node 'a'."""
        return [f"{self._on_node()}{self.topics.workers}{i}" for i in range(1, self.workers.count + 1)]

    def scheduler_id(self) -> str:
        """The sender name of this node's scheduler in status events: 'scheduler', or 'a.scheduler' on node 'a'."""
        return f"{self._on_node()}scheduler"

    def canary_id(self) -> str:
        """The sender name of this node's supervisor's own heartbeats: 'supervisor', or 'a.supervisor'."""
        return f"{self._on_node()}supervisor"

    def _on_node(self) -> str:
        return f"{self.node}." if self.node else ""


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
    built = cls(**values)
    if hasattr(built, "checked"):  # a section whose keys depend on each other
        try:
            built = built.checked()
        except _Invalid as e:
            raise ConfigError(f"{source}: {path}{e.key}: {e.problem}") from None
    return built


def _value(hint: Any, f: dataclasses.Field[Any], raw: Any, source: str, key: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, raw if raw is not None else {}, source, key + ".")
    value = _coerce(hint, raw, source, key)
    check = f.metadata.get("check")
    if check and not check[0](value):
        hide = f.metadata.get("hide")  # a value that may hold a password is shown without it
        raise ConfigError(f"{source}: {key}: expected {check[1]}, got {_show(hide(raw) if hide else raw)}")
    return value


def _scalar_ok(hint: type, raw: Any) -> bool:
    if hint is bool:
        return isinstance(raw, bool)
    if isinstance(raw, bool):  # bool is an int in Python, but never a number here
        return False
    if hint is float:  # YAML's .nan and .inf are floats: never a valid setting
        return isinstance(raw, (int, float)) and math.isfinite(raw)
    return isinstance(raw, hint)


_EXPECTED = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def _coerce(hint: Any, raw: Any, source: str, key: str) -> Any:
    if hint is Secret:
        if not isinstance(raw, str):  # the error must not show it: it may be the real password
            raise ConfigError(f"{source}: {key}: expected a string, got a value of type {type(raw).__name__} "
                              "(not shown: it is a secret)")
        return Secret(raw)
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
