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

import json
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import TaskFailed
from tests.integration.conftest import Cluster, cluster_config
from tests.integration.private_services import PrivateServices
from tests.support.harness import run_own_group

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
        with ps.stopped("redis"):
            cluster.wait_line(r"redis unavailable", timeout=30, start=mark)
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
    out = run_own_group([sys.executable, "-m", "supervisor", str(path)], timeout=timeout)
    return out, time.monotonic() - started


def assert_refused_clearly(out: subprocess.CompletedProcess[str], message: str, *secrets: str) -> None:
    everything = out.stdout + out.stderr
    assert out.returncode == 2, everything
    assert message in out.stderr, everything
    assert "Traceback" not in everything
    assert "started" not in out.stdout  # refused before any child process
    assert_no_secret(everything, *secrets)


def assert_login_refused(message: str, ps: PrivateServices) -> None:
    """The error names the broker, the user, and what to check.

    Mostly it also quotes the broker's reason ("refused ...: Authentication
    failed: Invalid username or password"), but kafka-python sometimes loses
    that reply (see client.kafka._unavailable), and then it says the broker
    answers but the login did not succeed: either is a clear error.
    """
    login = f"the login of user '{ps.sasl_user}' (SASL_PLAINTEXT, PLAIN)"
    refused = f"Kafka at {ps.sasl_kafka} refused {login}: SaslAuthenticationFailedError: Authentication failed: " \
              "Invalid username or password"
    unanswered = f"Kafka at {ps.sasl_kafka} answers, but {login} did not succeed"
    assert refused in message or unanswered in message, message
    assert "kafka.sasl_username and kafka.sasl_password (or kafka.sasl_password_env)" in message


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
    assert_refused_clearly(out, f"[yadtq] error: Kafka at {ps.sasl_kafka} ", wrong, ps.redis_password,
                           ps.sasl_password)
    assert_login_refused(out.stderr, ps)
    # kafka-python retries a refused login until its bootstrap timeout (10 s): bounded, not a hang.
    assert took < 40


def test_an_unset_password_variable_stops_the_supervisor_before_anything(
        private_services: PrivateServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KAFKA_PASSWORD_ENV, raising=False)
    out, _ = run_supervisor(secure_config(tmp_path, private_services, private_services.redis_password))
    assert_refused_clearly(out, f"kafka.sasl_password_env: the environment variable {KAFKA_PASSWORD_ENV} "
                                "is not set", private_services.redis_password)


# Runs in its own process: kafka-python 3.0.12 leaves the IO thread and sockets
# of a client whose constructor failed open until the process ends.
_SUBMIT_WITH_EACH_CONFIG = """
import json, sys
from client import Client, Config, ServiceUnavailable
from client import kafka as kafka_io
kafka_io.quiet_kafka_logs()
kafka_io.BOOTSTRAP_TIMEOUT_MS = 2000  # kafka-python retries a refused login until then
out = {}
for name, data in json.loads(sys.argv[1]).items():
    try:
        with Client(Config.from_dict(data)) as client:
            out[name] = client.submit("add", 1, 2).id and "accepted"
    except ServiceUnavailable as e:
        out[name] = str(e)
print(json.dumps(out))
"""


def test_the_client_library_says_why_kafka_refused_it(private_services: PrivateServices) -> None:
    """A wrong password, a mechanism the listener does not offer, TLS to a plain
    listener: each named, none showing a password; the right password works."""
    ps = private_services
    wrong = "wrong-" + secrets.token_hex(8)
    redis = {"url": ps.redis_url, "password": ps.redis_password, "key_prefix": "probe:"}
    sasl = {"bootstrap_servers": ps.sasl_kafka, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
            "sasl_username": ps.sasl_user, "sasl_password": ps.sasl_password}
    configs = {"right": {"kafka": sasl, "redis": redis, "topics": {"tasks": "probe.TASKS"}},
               "wrong": {"kafka": {**sasl, "sasl_password": wrong}, "redis": redis},
               "scram": {"kafka": {**sasl, "sasl_mechanism": "SCRAM-SHA-256"}, "redis": redis},
               "tls": {"kafka": {"bootstrap_servers": ps.kafka, "security_protocol": "SSL"}, "redis": redis}}
    out = run_own_group([sys.executable, "-c", _SUBMIT_WITH_EACH_CONFIG, json.dumps(configs)], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_no_secret(out.stdout + out.stderr, wrong, ps.sasl_password, ps.redis_password)
    said = json.loads(out.stdout)
    assert said["right"] == "accepted"
    assert_login_refused(said["wrong"], ps)
    assert (f"Kafka at {ps.sasl_kafka} does not offer SASL mechanism SCRAM-SHA-256 on this listener; "
            "check kafka.sasl_mechanism" in said["scram"]
            or ("(SASL_PLAINTEXT, SCRAM-SHA-256) did not succeed" in said["scram"]
                and "kafka.sasl_mechanism" in said["scram"])), said["scram"]
    assert re.fullmatch(rf"Kafka at {re.escape(ps.kafka)}: TLS handshake failed: .* \(kafka.security_protocol "
                        r"is SSL; check it and the kafka.ssl_\* keys\)", said["tls"]), said["tls"]
