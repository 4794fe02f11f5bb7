"""What every child process of the supervisor shares: signals, logging, exit codes."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import redis
from kafka.errors import KafkaError

from client import kafka as kafka_io
from client.errors import ServiceUnavailable

log = logging.getLogger("yadtq")

EXIT_SERVICE_LOST = 3   # a child's exit code when Kafka or Redis stopped answering
EXIT_HARD_LIMIT = 70    # a worker's exit code when the hard time limit ended it


def process_setup(name: str) -> None:
    """Logging and signals for a child process of the supervisor."""
    # Ctrl-C reaches the whole process group; the supervisor alone decides
    # how its children stop, so they ignore SIGINT and obey its SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    kafka_io.quiet_kafka_logs()


@contextlib.contextmanager
def exit_on_service_loss(name: str) -> Iterator[None]:
    """Turn a lost Kafka or Redis into one clear log line and exit code 3.

    Nothing is lost by exiting: offsets are committed only after the work they
    cover is recorded, so the supervisor's restart picks up where this left.
    """
    try:
        yield
    except (ServiceUnavailable, redis.RedisError, KafkaError) as e:
        what = str(e) if str(e).startswith(type(e).__name__) else f"{type(e).__name__}: {e}"
        log.error("%s: %s; exiting, the supervisor will restart it", name, what)
        sys.exit(EXIT_SERVICE_LOST)
