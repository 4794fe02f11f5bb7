"""A cluster behind Kafka SASL/PLAIN and Redis AUTH, on real services of its own.

The broker's SASL listener and Redis's password come from the private
services (tests/integration/private_services.py). What is shown: tasks run
end to end through the authenticated connections; no password ever reaches
the supervisor's output (its children's logs included) or the services' logs,
also while Redis is away and every error path prints; and a wrong password
stops the supervisor at once with an error that names the service and the
user, not the secret, and no traceback.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import TaskFailed
from tests.integration.conftest import ROOT, Cluster, cluster_config
from tests.integration.private_services import PrivateServices

pytestmark = pytest.mark.integration

KAFKA_PASSWORD_ENV = "YADTQ_TEST_KAFKA_PASSWORD"


def secure_config(tmp_path: Path, ps: PrivateServices, redis_password: str, count: int = 2) -> Path:
    """A cluster file for the SASL listener; the Kafka password is read from the
    environment (KAFKA_PASSWORD_ENV), the Redis one is in the file: both ways tested."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return cluster_config(
        tmp_path, count,
        kafka={"bootstrap_servers": ps.sasl_kafka, "security_protocol": "SASL_PLAINTEXT",
               "sasl_mechanism": "PLAIN", "sasl_username": ps.sasl_user, "sasl_password_env": KAFKA_PASSWORD_ENV},
        redis={"url": ps.redis_url, "password": redis_password})


def assert_no_secret(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, "a password appears in the output"


def test_a_cluster_runs_behind_sasl_and_redis_auth_without_showing_the_passwords(
        private_services: PrivateServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ps = private_services
    monkeypatch.setenv(KAFKA_PASSWORD_ENV, ps.sasl_password)
    path = secure_config(tmp_path, ps, ps.redis_password)
    assert ps.sasl_password not in path.read_text()
    cluster = Cluster(path)
    try:
        cluster.wait_line(r"cluster ready", timeout=90)
        cluster.wait_line(rf"kafka {re.escape(ps.sasl_kafka)} \(SASL_PLAINTEXT PLAIN as {ps.sasl_user}\) \| "
                          rf"redis {re.escape(ps.redis_url)} \(password\)")
        c = cluster.client
        handles = c.submit_many([("add", (i, i)) for i in range(20)])
        c.wait([h.id for h in handles], timeout=60)
        assert [h.result() for h in handles] == [2 * i for i in range(20)]
        # Any name that is not a registered task, however it looks, is refused.
        for name in ("os.system", "builtins.eval", "__import__"):
            with pytest.raises(TaskFailed, match=f"unknown task '{re.escape(name)}'"):
                c.submit(name, "touch /tmp/yadtq-pwned").result(timeout=60)

        # Take Redis away: the error paths print (status line, children's exit
        # lines), and none of them may show a password.
        mark = len(cluster.lines)
        ps.stop_redis()
        cluster.wait_line(r"redis unavailable", timeout=30, start=mark)
        ps.start_redis()
        mark = len(cluster.lines)
        cluster.wait_line(r"workers 2/2 live \| scheduler up", timeout=90, start=mark)
        assert c.submit("mul", 6, 7).result(timeout=60) == 42
    finally:
        cluster.stop()

    output = "\n".join(cluster.lines)
    assert "Traceback" not in output
    assert_no_secret(output, ps.sasl_password, ps.redis_password)
    logs = list(ps.state_dir.rglob("*.log"))
    assert logs
    for log in logs:
        assert_no_secret(log.read_text(errors="replace"), ps.sasl_password, ps.redis_password)


def run_supervisor(path: Path, timeout: float = 90) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "supervisor", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout)
    return out, time.monotonic() - started


def assert_refused_clearly(out: subprocess.CompletedProcess[str], message: str, *secrets: str) -> None:
    everything = out.stdout + out.stderr
    assert out.returncode == 2, everything
    assert message in out.stderr, everything
    assert "Traceback" not in everything
    assert "started" not in out.stdout  # refused before any child process
    assert_no_secret(everything, *secrets)


def test_a_wrong_redis_password_is_named_not_shown(private_services: PrivateServices, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ps = private_services
    monkeypatch.setenv(KAFKA_PASSWORD_ENV, ps.sasl_password)
    wrong = "wrong-" + secrets.token_hex(8)
    out, took = run_supervisor(secure_config(tmp_path, ps, wrong))
    assert_refused_clearly(out, f"[yadtq] error: Redis at {ps.redis_url} refused the login (user default): "
                                "invalid username-password pair", wrong, ps.redis_password, ps.sasl_password)
    assert took < 30


def test_a_wrong_kafka_password_is_named_not_shown(private_services: PrivateServices, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ps = private_services
    wrong = "wrong-" + secrets.token_hex(8)
    monkeypatch.setenv(KAFKA_PASSWORD_ENV, wrong)
    out, took = run_supervisor(secure_config(tmp_path, ps, ps.redis_password))
    assert_refused_clearly(out, f"[yadtq] error: Kafka at {ps.sasl_kafka} refused the login of user "
                                f"'{ps.sasl_user}' (SASL_PLAINTEXT, PLAIN): SaslAuthenticationFailedError: "
                                "Authentication failed: Invalid username or password",
                           wrong, ps.redis_password, ps.sasl_password)
    # kafka-python retries a refused login until its bootstrap timeout (10 s): bounded, not a hang.
    assert took < 40


def test_an_unset_password_variable_stops_the_supervisor_before_anything(
        private_services: PrivateServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KAFKA_PASSWORD_ENV, raising=False)
    out, _ = run_supervisor(secure_config(tmp_path, private_services, private_services.redis_password))
    assert_refused_clearly(out, f"kafka.sasl_password_env: the environment variable {KAFKA_PASSWORD_ENV} "
                                "is not set", private_services.redis_password)
