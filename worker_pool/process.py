"""What every child process of the supervisor shares: signals, logging, exit codes."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator

import redis
from kafka.errors import KafkaError

from client import kafka as kafka_io
from client.errors import Fenced, ServiceUnavailable
from client.store import TaskStore
from worker_pool.logs import setup_logging

log = logging.getLogger("yadtq")

EXIT_SERVICE_LOST = 3   # a child's exit code when Kafka or Redis stopped answering
EXIT_FENCED = 4         # a child of an older generation: a newer supervisor took the cluster's lease
EXIT_ORPHANED = 5       # a child whose supervisor is gone (nobody reads this: it is for the logs)
EXIT_DEPOSED = 6        # a scheduler that another one replaced as the cluster's active scheduler: it stands by again
EXIT_HARD_LIMIT = 70    # a worker's exit code when the hard time limit ended it

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_parent_pid = 0  # the supervisor's pid, set by process_setup


def process_setup(name: str, log_format: str = "text") -> None:
    """Logging (in the cluster's ``supervisor.log_format``) and signals for a child process of the supervisor."""
    # Ctrl-C reaches the whole process group; the supervisor alone decides
    # how its children stop, so they ignore SIGINT and obey its SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(name, log_format)
    kafka_io.quiet_kafka_logs()
    _die_with_parent(name)


def _die_with_parent(name: str) -> None:
    """Never outlive the supervisor: the kernel kills this process when it dies.

    A child that went on without its supervisor would run a second copy of
    its role beside the next supervisor's, on the same topics. Linux sends
    SIGKILL on the parent's death (PR_SET_PDEATHSIG); if the parent died before
    that was set, its pid is no longer our parent's, and we leave now. The
    heartbeats check the parent too (``check_parent``), where prctl is missing.
    """
    global _parent_pid
    parent = multiprocessing.parent_process()
    _parent_pid = parent.pid if parent is not None and parent.pid else os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                log.warning("%s: prctl(PR_SET_PDEATHSIG) failed (errno %d); the parent is checked with each "
                            "heartbeat instead", name, ctypes.get_errno())
        except (OSError, AttributeError) as e:
            log.warning("%s: no parent-death signal (%s); the parent is checked with each heartbeat", name, e)
    check_parent(name)


def check_parent(name: str) -> None:
    """Exit at once if the supervisor that started this process is gone."""
    if _parent_pid and os.getppid() != _parent_pid:
        log.error("%s: its supervisor (pid %d) is gone; exiting", name, _parent_pid)
        os._exit(EXIT_ORPHANED)


def check_owner(name: str, store: TaskStore, epoch: int) -> None:
    """Exit at once (EXIT_FENCED) if the cluster's lease names another epoch than this process's.

    Called with each heartbeat. A supervisor that stalls (SIGSTOP, a paused
    VM) loses its lease without knowing it, and its children would go on
    beside the new owner's, running the same tasks; the new owner waits two
    heartbeats before it starts its own (client/lease.py). A lease that is
    absent (lapsed, or lost with Redis's data) or unreadable names no one, and
    Redis not answering is no reason either: beat on, the writes stay fenced.
    ``epoch`` 0 (a role run bare, without a lease) is never fenced.
    """
    if not epoch:
        return
    try:
        owner = store.owner_epoch()
    except redis.RedisError:
        return
    if owner is not None and owner != epoch:
        log.error("%s: the cluster's lease is held by epoch %d, not this process's %d (a newer supervisor owns the "
                  "cluster); exiting", name, owner, epoch)
        os._exit(EXIT_FENCED)


# Redis errors that say the server cannot serve now (it is away, loading,
# out of memory, read-only after a failover...), whatever the command: the
# supervisor waits for it. Every other RedisError is a command Redis refused
# (a script error, a wrong type): it may come from one message's data, so it
# is a crash, never "service lost" (see ``service_lost``).
_REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.InvalidResponse,
               redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError, redis.exceptions.TryAgainError,
               redis.exceptions.ClusterDownError)
_REDIS_AWAY_CODES = ("MISCONF", "BUSY ", "NOREPLICAS", "MASTERDOWN", "LOADING", "OOM", "READONLY")


def service_lost(e: BaseException) -> bool:
    """Does ``e`` mean Kafka or Redis is away (exit 3), rather than an error in what was read?

    Only this may end a process with EXIT_SERVICE_LOST: the supervisor and the
    quarantine take that exit as saying nothing about the message in hand, so
    an error some record's value causes must not look like it, or its reader
    restarts onto the same message for ever (DESIGN §4.6).
    """
    if isinstance(e, (ServiceUnavailable, KafkaError, *_REDIS_AWAY)):
        return True
    return isinstance(e, redis.ResponseError) and str(e).startswith(_REDIS_AWAY_CODES)


@contextlib.contextmanager
def exit_on_service_loss(name: str) -> Iterator[None]:
    """Turn a lost Kafka or Redis into one clear log line and exit code 3, and
    a write fenced by a newer epoch into exit code 4.

    Nothing is lost by exiting: offsets are committed only after the work they
    cover is recorded, so the supervisor's restart picks up where this left.
    A fenced process belongs to a generation that no longer owns the cluster:
    it must not go on, and its supervisor learns from the code that it lost
    its lease. Any other Redis error (a command or script Redis refused) is a
    crash: logged, then raised, so the process ends with code 1 and its
    replacement starts careful, which dead-letters a message that keeps
    causing it (worker_pool/quarantine.py).
    """
    try:
        yield
    except Fenced as e:
        log.error("%s: %s; exiting", name, e)
        sys.exit(EXIT_FENCED)
    except (ServiceUnavailable, redis.RedisError, KafkaError) as e:
        what = str(e) if str(e).startswith(type(e).__name__) else f"{type(e).__name__}: {e}"
        if not service_lost(e):
            log.error("%s: Redis refused a command (%s): a bug or damaged data; crashing, so that the "
                      "supervisor restarts it in careful mode", name, what)
            raise
        log.error("%s: %s; exiting, the supervisor will restart it", name, what)
        sys.exit(EXIT_SERVICE_LOST)
