"""A private Kafka and Redis for tests that stop, restart or lock down their services.

The shared services (`make services`) must stay up for every other test, so a
test that takes Kafka or Redis away, or needs a SASL listener or a Redis
password, gets its own pair instead: started through scripts/services.sh on
free ports with its state in a temporary directory, and stopped at teardown
even when the test failed.

    # the fixture is registered in tests/integration/conftest.py
    def test_x(private_services: PrivateServices) -> None:
        private_services.kafka          # "127.0.0.1:<port>", PLAINTEXT, no login
        private_services.sasl_kafka     # "127.0.0.1:<port>", SASL_PLAINTEXT + PLAIN:
        private_services.sasl_user, private_services.sasl_password
        private_services.redis_url, private_services.redis_password
        private_services.stop_kafka(); private_services.start_kafka()   # data kept
        private_services.stop_redis(); private_services.start_redis()   # data kept (AOF)

The services are module-scoped: the tests of one module share one pair (about
2-3 s to start). A test that stops a service should use ``with ps.stopped("kafka"):``,
which starts it again however the block ends; and before each test the fixture
starts again whatever an earlier test left down, so one failure stays one.
Without java or redis-server the tests are skipped, or fail under CI=true, as
with the shared `services` fixture.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from client.kafka import reachable
from tests.support import lua_coverage

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts" / "services.sh"
# A small heap and the client JIT only: a test broker carries little load, and
# these (with the class-data-sharing archive) take about a second off each start.
JAVA_OPTS = "-Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
START_TIMEOUT = 90.0  # seconds; a loaded 2-core machine can be slow
STOP_TIMEOUT = 45.0   # services.sh waits 30 s for SIGTERM before SIGKILL


def answers(port: int) -> bool:
    """Does something accept connections on this local port?"""
    return reachable([f"127.0.0.1:{port}"])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_block(n: int) -> int:
    """The first of ``n`` consecutive free ports, below the kernel's ephemeral range
    (where outgoing connections take theirs), chosen at random so that parallel
    runs rarely even try the same ones."""
    for _ in range(200):
        base = random.randrange(20000, 32000 - n)
        if all(_bindable(p) for p in range(base, base + n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports found between 20000 and 32000")


def missing_tools() -> list[str]:
    """What this machine lacks to run a private Kafka and Redis."""
    missing = [t for t in ("java", "redis-server") if shutil.which(t) is None]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yadtq"
    have_jars = os.environ.get("KAFKA_HOME") or any(cache.glob("kafka-*/.complete"))
    if not have_jars and shutil.which("mvn") is None:
        missing.append("the Kafka jars (run `make services` once) or mvn")
    return missing


@dataclass
class PrivateServices:
    """A Kafka broker and a Redis server of one's own; see the module's docstring."""

    state_dir: Path
    kafka_port: int      # PLAINTEXT listener; the KRaft controller has kafka_port + 1
    sasl_port: int       # SASL_PLAINTEXT listener, mechanism PLAIN
    redis_port: int
    sasl_user: str = "yadtq-test"
    sasl_password: str = field(default_factory=lambda: "kafka-" + secrets.token_hex(12))
    redis_password: str = field(default_factory=lambda: "redis-" + secrets.token_hex(12))
    cluster_id: str | None = None  # YADTQ_KAFKA_CLUSTER_ID for a fresh broker; None: services.sh makes one
    timings: dict[str, list[float]] = field(default_factory=dict)  # seconds each start/stop took

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def sasl_kafka(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def redis_url(self) -> str:
        """Without the password: give ``redis_password`` separately (redis.password)."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, password=self.redis_password, decode_responses=True,
                                    socket_connect_timeout=5, socket_timeout=10)

    # --- starting and stopping -------------------------------------------
    def start_kafka(self) -> None:
        """Start the broker (again) and return once it serves metadata on both listeners."""
        with self._timing("kafka-start"):
            self._script("kafka-up", 2 * START_TIMEOUT + 30)  # format, then start: each bounded by the script
            self._wait_kafka_up()

    def stop_kafka(self) -> None:
        """Stop the broker gracefully (SIGTERM) and return once its ports are closed."""
        with self._timing("kafka-stop"):
            self._script("kafka-down", STOP_TIMEOUT)
            self._wait_closed("kafka", self.kafka_port, self.sasl_port)

    def start_redis(self) -> None:
        """Start Redis (again, with the data of its AOF) and return once it answers PING."""
        with self._timing("redis-start"):
            self._script("redis-up", START_TIMEOUT)
            self._wait_redis_up()

    def stop_redis(self) -> None:
        """Stop Redis gracefully (SIGTERM: the AOF is written out) and return once its port is closed."""
        with self._timing("redis-stop"):
            self._script("redis-down", STOP_TIMEOUT)
            self._wait_closed("redis", self.redis_port)

    @contextlib.contextmanager
    def stopped(self, service: str) -> Iterator[None]:
        """``with ps.stopped("redis"):`` (or ``"kafka"``): the service is down inside the block and
        up again after it, however the block ends: a failing assertion inside may not leave the
        next test of the module without it."""
        stop, start = {"kafka": (self.stop_kafka, self.start_kafka),
                       "redis": (self.stop_redis, self.start_redis)}[service]
        stop()
        try:
            yield
        finally:
            start()

    def ensure_up(self) -> list[str]:
        """Start again whichever service is down (data kept); the names of those that were."""
        down = [name for name, ports in (("redis", [self.redis_port]), ("kafka", [self.kafka_port, self.sasl_port]))
                if not all(answers(p) for p in ports)]
        if "redis" in down:
            self.start_redis()
        if "kafka" in down:
            self.start_kafka()
        return down

    def stop_all(self) -> None:
        """Stop both, whatever state they are in (teardown)."""
        with contextlib.suppress(Exception):
            self._script("down", STOP_TIMEOUT * 2)
        # services.sh escalates to SIGKILL itself; this is the last resort if even it failed.
        for pidfile in (self.state_dir / "kafka" / "kafka.pid", self.state_dir / "redis" / "redis.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), 9)

    # --- internals ---------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment that points scripts/services.sh at these instances."""
        own = {"YADTQ_KAFKA_CLUSTER_ID": self.cluster_id} if self.cluster_id else {}
        return {**os.environ, **own,
                "YADTQ_SERVICES_DIR": str(self.state_dir),
                "YADTQ_KAFKA": self.kafka, "YADTQ_REDIS": f"127.0.0.1:{self.redis_port}",
                "YADTQ_KAFKA_SASL_PORT": str(self.sasl_port),
                "YADTQ_KAFKA_SASL_USERS": f"{self.sasl_user}:{self.sasl_password}",
                "YADTQ_REDIS_PASSWORD": self.redis_password,
                "YADTQ_KAFKA_JAVA_OPTS": JAVA_OPTS, "YADTQ_KAFKA_CDS": "1",
                "YADTQ_SERVICE_TIMEOUT": str(int(START_TIMEOUT))}

    def _script(self, command: str, timeout: float) -> None:
        out = subprocess.run([str(SERVICES), command], env=self.env(), capture_output=True, text=True,
                             timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"scripts/services.sh {command} failed ({out.returncode}):\n{out.stdout}{out.stderr}"
                               + _logs_named(out.stderr))

    @contextlib.contextmanager
    def _timing(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.timings.setdefault(what, []).append(round(time.monotonic() - started, 2))

    def _wait_closed(self, name: str, *ports: int) -> None:
        deadline = time.monotonic() + 10
        while any(answers(p) for p in ports):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} still answers on {ports} 10 s after it was stopped")
            time.sleep(0.05)

    def _wait_redis_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        r = self.redis_client()
        try:
            while True:
                try:
                    r.ping()
                    return
                except redis.BusyLoadingError:  # still reading its AOF
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Redis on port {self.redis_port} not ready within {START_TIMEOUT:.0f}s")
                time.sleep(0.05)
        finally:
            r.close()

    def _wait_kafka_up(self) -> None:
        """Up means: both listeners serve metadata and every partition has a leader."""
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                plain = KafkaAdminClient(bootstrap_servers=self.kafka, bootstrap_timeout_ms=5000,
                                         request_timeout_ms=5000)
                try:
                    topics = plain.list_topics()
                    described = plain.describe_topics(topics) if topics else []
                finally:
                    plain.close()
                leaderless = [t["name"] for t in described if t["error_code"] or not t["partitions"]
                              or any(p["error_code"] or p["leader_id"] < 0 for p in t["partitions"])]
                if leaderless:
                    raise RuntimeError(f"partitions without a leader yet: {leaderless}")
                sasl = KafkaAdminClient(bootstrap_servers=self.sasl_kafka, bootstrap_timeout_ms=5000,
                                        request_timeout_ms=5000, security_protocol="SASL_PLAINTEXT",
                                        sasl_mechanism="PLAIN", sasl_plain_username=self.sasl_user,
                                        sasl_plain_password=self.sasl_password)
                sasl.close()
                return
            except (KafkaError, RuntimeError) as e:
                last = e
                time.sleep(0.1)
        raise TimeoutError(f"Kafka on port {self.kafka_port} not ready within {START_TIMEOUT:.0f}s: {last}")


def _logs_named(message: str) -> str:
    """The end of each log file that services.sh's error names ("see X.log"), so that a
    fixture error says why, not only that, a service failed to start."""
    tails = []
    for name in re.findall(r"see (/\S+\.log)", message):
        with contextlib.suppress(OSError):
            tails.append(f"--- last lines of {name}:\n" + "\n".join(Path(name).read_text().splitlines()[-20:]))
    return "\n".join(tails)


def _harvest(ps: PrivateServices) -> None:
    """The Lua coverage counted in this Redis, added to the session's before it stops (if up)."""
    with contextlib.suppress(Exception):
        client = ps.redis_client()
        try:
            lua_coverage.harvest(client)
        finally:
            client.close()


@contextlib.contextmanager
def running_private_services(state_dir: Path, cluster_id: str | None = None) -> Iterator[PrivateServices]:
    """Start a private Kafka and Redis with their state in ``state_dir``; stop them on exit.
    ``cluster_id``: the KRaft cluster id a fresh broker is formatted with (default: a new one)."""
    base = free_port_block(4)
    ps = PrivateServices(state_dir, kafka_port=base, sasl_port=base + 2, redis_port=base + 3,
                         cluster_id=cluster_id)
    try:
        ps.start_redis()
        ps.start_kafka()
        yield ps
    finally:
        _harvest(ps)
        ps.stop_all()


@pytest.fixture
def private_services(module_private_services: PrivateServices) -> PrivateServices:
    """A Kafka (PLAINTEXT + SASL/PLAIN) and a Redis (with a password) of this module's own, both
    up: one an earlier test stopped and did not start again (it failed in between) is restarted."""
    module_private_services.ensure_up()
    return module_private_services


@pytest.fixture(scope="module")
def module_private_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServices]:
    """The services ``private_services`` hands to each test of a module (started once per module)."""
    missing = missing_tools()
    if missing:
        msg = f"private Kafka and Redis need {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with running_private_services(tmp_path_factory.mktemp("services")) as ps:
        yield ps


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServices]:
    """A Redis (with a password) of this test's own, without a Kafka: for a cluster that must
    run without a key prefix, which may never run on the shared test database."""
    if shutil.which("redis-server") is None:
        msg = "a private Redis needs redis-server"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    ps = PrivateServices(tmp_path_factory.mktemp("redis"), kafka_port=0, sasl_port=0, redis_port=free_port_block(1))
    try:
        ps.start_redis()
        yield ps
    finally:
        _harvest(ps)
        with contextlib.suppress(Exception):
            ps.stop_redis()
        with contextlib.suppress(OSError, ValueError):  # the last resort, as in stop_all
            os.kill(int((ps.state_dir / "redis" / "redis.pid").read_text()), 9)
