"""Kafka connections, built from the cluster file in one place.

Every producer here waits for the broker's acknowledgement from all in-sync
replicas (``acks='all'``, idempotent), since a task the client was told is
submitted must not be lost. Every kafka-python client YADTQ builds (producer,
consumer, admin) gets its address and security settings from ``client_options``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)
from kafka.structs import OffsetAndMetadata

from client.config import KafkaConfig
from client.errors import ServiceUnavailable

RECONNECT_BACKOFF_MAX_MS = 1000
log = logging.getLogger("yadtq.kafka")

BOOTSTRAP_TIMEOUT_MS = 10_000  # how long to look for a broker before saying it does not answer


def client_options(cfg: KafkaConfig) -> dict[str, Any]:
    """The kafka-python options every YADTQ client shares: address, id, SASL and TLS.

    Only what the config sets is passed, so kafka-python's defaults stay in
    force otherwise; the secrets are revealed here and nowhere else.
    """
    opts: dict[str, Any] = {"bootstrap_servers": cfg.bootstrap_servers, "client_id": cfg.client_id,
                            "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
                            # kafka-python backs off up to 30 s between reconnects; after a
                            # broker restart the cluster should be back within a second or so.
                            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
                            "security_protocol": cfg.security_protocol}
    if cfg.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        opts.update(sasl_mechanism=cfg.sasl_mechanism, sasl_plain_username=cfg.sasl_username,
                    sasl_plain_password=cfg.sasl_password.reveal())
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_check_hostname"] = cfg.ssl_check_hostname
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(cfg, key):
                opts[key] = getattr(cfg, key)
        if cfg.ssl_password:
            opts["ssl_password"] = cfg.ssl_password.reveal()
    return opts


class _LoginFailures(logging.Handler):
    """Remembers the last refused SASL login or failed TLS handshake kafka-python logged.

    kafka-python retries a refused login until its bootstrap timeout and then
    raises only "Unable to bootstrap"; the reason is in an ERROR record of its
    ``kafka.net`` loggers, as the exception object among the record's args.
    Those messages name the broker and the mechanism, never the password.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._mutex = threading.Lock()
        self._last: tuple[float, str, str] | None = None  # (monotonic time, kind, reason)

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, UnsupportedSaslMechanismError):
                kind = "mechanism"
            elif isinstance(arg, (SaslAuthenticationFailedError, IllegalSaslStateError)):
                kind = "login"
            elif isinstance(arg, KafkaConnectionError) and "Handshake failed" in str(arg):
                kind = "tls"
            else:
                continue
            reason = str(arg.args[0]) if arg.args else type(arg).__name__
            with self._mutex:
                self._last = (time.monotonic(), kind, reason)

    def since(self, t: float) -> tuple[str, str] | None:
        """The last failure recorded at or after monotonic time ``t``: (kind, reason)."""
        with self._mutex:
            last = self._last
        return (last[1], last[2]) if last is not None and last[0] >= t else None


_login_failures = _LoginFailures()
logging.getLogger("kafka.net").addHandler(_login_failures)

_SECRET_OPTIONS = frozenset({"sasl_plain_password", "ssl_password"})


class _RedactSecrets(logging.Filter):
    """kafka-python's admin client logs its whole configuration at DEBUG, passwords
    included; an application that turns DEBUG on for everything must not get them."""

    def filter(self, record: logging.LogRecord) -> bool:
        def redact(a: Any) -> Any:
            if isinstance(a, dict):
                return {k: "***" if k in _SECRET_OPTIONS and v else v for k, v in a.items()}
            return a
        if isinstance(record.args, dict):  # logging unwraps a lone mapping argument
            record.args = redact(record.args)
        elif isinstance(record.args, tuple):
            record.args = tuple(redact(a) for a in record.args)
        return True


logging.getLogger("kafka.admin.client").addFilter(_RedactSecrets())


def quiet_kafka_logs() -> None:
    """Silence kafka-python's own log lines.

    It logs every refused connection and coordinator move as a warning or
    error, even those it recovers from; YADTQ raises or reports the failures
    that matter itself, with the address and what to do. Its connection
    errors are still recorded (not printed), so a refused login can be named.
    """
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    net = logging.getLogger("kafka.net")
    net.setLevel(logging.ERROR)
    net.propagate = False


def close_producer(p: KafkaProducer, timeout: float = 5.0) -> bool:
    """Flush and close ``p``; False if the broker did not take everything in time.

    kafka-python's close() raises when its flush times out (broker away), and
    then neither stops its sender thread nor counts as closed, so its exit
    hook and destructor raise again later. Finish the close it gave up on.
    """
    try:
        p.close(timeout=timeout)
        return True
    except KafkaError:
        sender = getattr(p, "_sender", None)
        if sender is not None:
            sender.force_close()
        p._closed = True
        return False


def check_sent(futures: list[Any], what: str) -> None:
    """Raise ServiceUnavailable if any produce in ``futures`` (already flushed) failed."""
    for f in futures:
        if not f.succeeded():
            raise ServiceUnavailable(f"Kafka did not accept {what}: {f.exception or 'timed out'}")


def _reachable(servers: list[str]) -> bool:
    """Whether any of ``servers`` accepts a TCP connection at all."""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=2):
                return True
        except (OSError, ValueError):
            continue
    return False


def _unavailable(cfg: KafkaConfig, e: Exception, started: float) -> ServiceUnavailable:
    where = f"Kafka at {','.join(cfg.bootstrap_servers)}"
    login = f"the login of user {cfg.sasl_username!r} ({cfg.security_protocol}, {cfg.sasl_mechanism})"
    check = "check kafka.sasl_username and kafka.sasl_password (or kafka.sasl_password_env)"
    kind, reason = _login_failures.since(started) or ("", "")
    if kind == "login":
        return ServiceUnavailable(f"{where} refused {login}: {reason}; {check}")
    if kind == "mechanism":
        return ServiceUnavailable(f"{where} does not offer SASL mechanism {cfg.sasl_mechanism} on this "
                                  "listener; check kafka.sasl_mechanism")
    if kind == "tls":
        return ServiceUnavailable(f"{where}: TLS handshake failed: {reason.removeprefix('Handshake failed: ')} "
                                  f"(kafka.security_protocol is {cfg.security_protocol}; check it and the "
                                  "kafka.ssl_* keys)")
    if cfg.security_protocol != "PLAINTEXT" and _reachable(cfg.bootstrap_servers):
        # kafka-python drops a refusal that arrives together with the broker's
        # close of the connection (it aborts on the end of the stream before
        # handing over the bytes read with it), so a refused login can also
        # look like this: the broker answers, yet no connection was made.
        if cfg.security_protocol.startswith("SASL"):
            return ServiceUnavailable(f"{where} answers, but {login} did not succeed ({e}); check "
                                      "kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username and "
                                      "kafka.sasl_password (or kafka.sasl_password_env)")
        return ServiceUnavailable(f"{where} answers, but no TLS connection succeeded ({e}); check "
                                  "kafka.security_protocol and the kafka.ssl_* keys")
    return ServiceUnavailable(f"{where} does not answer: {e}")


def reachable(servers: list[str], timeout: float = 1.0) -> bool:
    """Does any of ``servers`` (host:port) accept a TCP connection?"""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def _build(cls: type[Any], cfg: KafkaConfig, **opts: Any) -> Any:
    """``cls(...)`` with the shared options; ServiceUnavailable, with the reason, if it cannot connect."""
    # Say so at once when nothing listens, rather than after the bootstrap
    # timeout; and kafka-python leaks the sockets and thread of a client whose
    # constructor fails, so better not to build one that cannot connect.
    if not reachable(cfg.bootstrap_servers):
        raise ServiceUnavailable(f"Kafka at {','.join(cfg.bootstrap_servers)} does not answer: "
                                 "no broker accepts connections")
    started = time.monotonic()
    try:
        return cls(**client_options(cfg), **opts)
    except KafkaError as e:
        raise _unavailable(cfg, e, started) from None


# kafka-python's own metrics (sensors updated on every request and record) are read by
# nothing here (YADTQ's metrics are its own, client/insight.py); without them a
# produce costs 5-10% less CPU (bench: 46 -> 42 us a message, 20 a flush).
_NO_METRICS: dict[str, Any] = {"metrics_enabled": False}


def producer(cfg: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """A producer for YADTQ messages; raise ServiceUnavailable if no broker answers."""
    opts: dict[str, Any] = {"acks": "all", "linger_ms": 2, "max_block_ms": 15000,
                            "request_timeout_ms": 15000, **_NO_METRICS, **overrides}
    p: KafkaProducer = _build(KafkaProducer, cfg, **opts)
    return p


def consumer(cfg: KafkaConfig, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer with manual commits; the caller assigns its partitions.

    The broker answers a fetch as soon as one record is there (fetch_min_bytes
    1), so fetch_max_wait_ms only bounds how long an idle fetch is held: a
    long wait costs no latency, and spares idle processes 20 fetches a second.
    """
    opts: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                            "fetch_max_wait_ms": 500, **_NO_METRICS, **overrides}
    c: KafkaConsumer = _build(KafkaConsumer, cfg, group_id=group_id, **opts)
    return c


def scheduler_group(tasks_topic: str) -> str:
    """The consumer group whose committed offsets say how far the scheduler has read ``tasks_topic``
    (and the status topic); only the scheduler commits them."""
    return f"yadtq-scheduler.{tasks_topic}"


def admin(cfg: KafkaConfig, **overrides: Any) -> KafkaAdminClient:
    """An admin client (topic creation); raise ServiceUnavailable if no broker answers."""
    a: KafkaAdminClient = _build(KafkaAdminClient, cfg, **overrides)
    return a


def partitions(c: KafkaConsumer, topic: str, timeout: float = 15.0) -> list[TopicPartition]:
    """All partitions of ``topic``; raise ServiceUnavailable if it cannot be found."""
    deadline = time.monotonic() + timeout
    while True:
        parts = c.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"Kafka topic {topic!r} was not found within {timeout:.0f}s "
                                     "(is the supervisor running? it creates the topics)")
        c.topics()  # forces a metadata refresh before the next look
        time.sleep(0.2)


# Seconds after which an offset is committed again even if it has not moved.
# Kafka forgets a group's offsets once none was committed for
# offsets.retention.minutes (7 days by default); a process restarted after that
# would start from the earliest record still kept and replay old tasks.
OFFSET_REFRESH = 60.0
# At most one commit per consumer per COMMIT_GAP seconds while busy. A commit
# costs 1.5 ms of CPU in kafka-python (0.3 ms in the caller, 1.2 ms on its IO
# thread, measured on the benchmark's machine), as much as a worker's whole
# batch of 5 no-op tasks; and it only says where a restarted reader starts: a
# crash then replays at most COMMIT_GAP seconds more, which every reader skips.
COMMIT_GAP = 0.2


def offsets_due(offsets: dict[TopicPartition, int], committed: dict[TopicPartition, tuple[int, float]],
                at: float, every: float = OFFSET_REFRESH) -> dict[TopicPartition, int]:
    """The offsets to commit at time ``at``: each one that moved, and each one last
    committed ``every`` seconds ago or more. ``committed`` maps a partition to
    (offset, when it was committed)."""
    return {tp: o for tp, o in offsets.items()
            if tp not in committed or committed[tp][0] != o or at - committed[tp][1] >= every}


class Committer:
    """Commits one consumer's offsets without waiting for the broker.

    A synchronous commit is a round trip to the group coordinator, which
    appends it to ``__consumer_offsets``: 3 ms on the benchmark's machine, and
    the scheduler made two per task, so a task submitted right after another
    waited 6 ms for the scheduler's loop to come back to its poll. Nothing
    needs that wait: a commit only says where a restarted reader starts, the
    offsets committed are only ever ones whose work is done (the caller's
    rule), and a later commit covers an earlier one. A commit lost with a crash
    means some messages are read again, which every reader already handles.

    One request at a time: while one is in flight, ``commit`` sends nothing
    and the offsets stay due (``committed`` holds only what the broker
    confirmed), so a later round sends the newest; commits cannot overtake
    each other. Nor is one sent within ``gap`` seconds of the last (the
    offsets stay due the same way), unless ``force``d. A failed commit is
    logged and sent again by a later round. ``wait=True`` commits
    synchronously (careful mode, whose quarantine bookkeeping needs the commit
    done).
    """

    def __init__(self, consumer: KafkaConsumer, every: float = OFFSET_REFRESH, gap: float = COMMIT_GAP) -> None:
        self.consumer = consumer
        self.every = every
        self.gap = gap
        self.committed: dict[TopicPartition, tuple[int, float]] = {}  # confirmed: offset, when sent
        self._inflight: tuple[Any, dict[TopicPartition, int], float] | None = None
        self._last_sent: float | None = None

    def ready(self, at: float) -> bool:
        """May a commit go now (at ``at``): none in flight, and ``gap`` seconds since the last?"""
        return not self.busy and (self._last_sent is None or at - self._last_sent >= self.gap)

    def commit(self, offsets: dict[TopicPartition, int], at: float, wait: bool = False,
               force: bool = False) -> dict[TopicPartition, int]:
        """Commit the ``offsets`` that are due at ``at`` (moved, or not committed for ``every``
        seconds); what was sent (empty while a request is in flight, within ``gap`` of the last
        unless ``force`` or ``wait``, or when nothing is due)."""
        self.settle()
        if not wait and (self._inflight is not None or not (force or self.ready(at))):
            return {}
        due = offsets_due(offsets, self.committed, at, self.every)
        if not due:
            return {}
        self._last_sent = at
        request = {tp: OffsetAndMetadata(o, "", -1) for tp, o in due.items()}
        if wait:
            self.drain()
            self.consumer.commit(request)
            self.committed.update({tp: (o, at) for tp, o in due.items()})
        else:
            self._inflight = (self.consumer.commit_async(request), due, at)
        return due

    @property
    def busy(self) -> bool:
        """Is a request still in flight (its answer not taken yet)?"""
        self.settle()
        return self._inflight is not None

    def settle(self) -> None:
        """Take the answer of the request in flight, if it came."""
        if self._inflight is None or not self._inflight[0].is_done:
            return
        future, due, at = self._inflight
        self._inflight = None
        if future.succeeded():
            self.committed.update({tp: (o, at) for tp, o in due.items()})
        else:
            log.warning("committing offsets %s failed (sent again later): %s",
                        {f"{tp.topic}:{tp.partition}": o for tp, o in due.items()}, future.exception)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout`` s) for the request in flight to be answered; before a
        synchronous commit, and at shutdown so that the last commit is not lost."""
        deadline = time.monotonic() + timeout
        while self._inflight is not None and not self._inflight[0].is_done and time.monotonic() < deadline:
            time.sleep(0.001)
        self.settle()


def positions(c: KafkaConsumer) -> dict[TopicPartition, int]:
    """The next offset ``c`` will read in each of its partitions (its committed
    offset, or where the reset policy puts it, until it reads further)."""
    return {tp: c.position(tp) for tp in c.assignment()}


def known_partitions(c: KafkaConsumer, topic: str) -> set[int]:
    """The partitions of ``topic`` in ``c``'s metadata cache (refreshed every metadata_max_age_ms),
    without a network call: ``KafkaConsumer.partitions_for_topic`` fetches on a miss (say after a
    LEADER_NOT_AVAILABLE dropped the topic), and in kafka-python 3.0.12 that wait has no timeout."""
    return set(c._cluster.partitions_for_topic(topic) or ())


def assign_all(c: KafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Assign every partition of ``topics`` to ``c`` (no group rebalancing: one owner each)."""
    tps = [tp for t in topics for tp in partitions(c, t)]
    c.assign(tps)
    return tps
