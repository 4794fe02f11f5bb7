"""Security basics without services: the security keys, secrets kept out of sight,
the safe YAML loader, and no code path that unpickles or evals."""

from __future__ import annotations

import ast
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from client.config import Config, Secret, load_config, safe_url
from client.errors import ConfigError, UnknownTask
from client.kafka import client_options
from client.protocol import Assignment, Task
from client.store import connect
from worker_pool.registry import Registry
from worker_pool.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
SASL = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "app",
        "sasl_password": "kafka-pw-123"}


def test_defaults_are_plaintext_without_secrets() -> None:
    cfg = Config()
    assert cfg.kafka.security_protocol == "PLAINTEXT" and not cfg.kafka.sasl_password
    assert not cfg.redis.password and cfg.redis.username == ""
    assert client_options(cfg.kafka) == {"bootstrap_servers": ["localhost:9092"], "client_id": "yadtq",
                                         "bootstrap_timeout_ms": 10_000, "reconnect_backoff_max_ms": 1000,
                                         "security_protocol": "PLAINTEXT"}


def test_kafka_options_use_kafka_pythons_own_names(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    for f in (ca, cert, key):
        f.write_text("-")
    cfg = Config.from_dict({"kafka": {**SASL, "ssl_cafile": str(ca), "ssl_certfile": str(cert),
                                      "ssl_keyfile": str(key), "ssl_password": "key-pw-456",
                                      "ssl_check_hostname": False}})
    opts = client_options(cfg.kafka)
    assert opts["sasl_plain_username"] == "app" and opts["sasl_plain_password"] == "kafka-pw-123"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512" and opts["security_protocol"] == "SASL_SSL"
    assert opts["ssl_cafile"] == str(ca) and opts["ssl_password"] == "key-pw-456"
    assert opts["ssl_check_hostname"] is False
    # Every key must be one each kafka-python client accepts (it refuses unknown ones).
    for cls in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert set(opts) <= set(cls.DEFAULT_CONFIG), cls.__name__


def test_passwords_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PW", "from-env-1")
    monkeypatch.setenv("REDIS_PW", "from-env-2")
    kafka = {k: v for k, v in SASL.items() if k != "sasl_password"} | {"sasl_password_env": "KAFKA_PW"}
    cfg = Config.from_dict({"kafka": kafka, "redis": {"password_env": "REDIS_PW"}})
    assert cfg.kafka.sasl_password.reveal() == "from-env-1"
    assert cfg.redis.password.reveal() == "from-env-2"


def test_kafka_pythons_debug_log_of_its_configuration_hides_the_passwords(caplog: pytest.LogCaptureFixture) -> None:
    cfg = Config.from_dict({"kafka": {**SASL, "security_protocol": "SASL_PLAINTEXT"}})
    with caplog.at_level(logging.DEBUG, logger="kafka"):
        # What KafkaAdminClient.__init__ logs first thing (kafka-python 3.0.12).
        logging.getLogger("kafka.admin.client").debug("Starting KafkaAdminClient with configuration: %s",
                                                      client_options(cfg.kafka))
    assert "'sasl_plain_password': '***'" in caplog.text and "'sasl_plain_username': 'app'" in caplog.text
    assert "kafka-pw-123" not in caplog.text


def test_redis_connection_gets_user_and_password() -> None:
    cfg = Config.from_dict({"redis": {"url": "redis://h:1/2", "username": "app", "password": "redis-pw-789"}})
    kwargs = connect(cfg.redis).connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["host"], kwargs["db"]) == ("app", "redis-pw-789", "h", 2)


def test_redis_connection_gets_the_tls_files_and_bounded_timeouts() -> None:
    """The TLS files reach redis-py, and every command and connect is bounded (a stalled Redis
    must never hang a process: the lease's thread passes a short timeout)."""
    from client.config import RedisConfig

    cfg = RedisConfig(url="rediss://h:1/0", ssl_ca_certs="/ca.pem", ssl_certfile="/cert.pem", ssl_keyfile="/key.pem")
    kwargs = connect(cfg, timeout=2.0).connection_pool.connection_kwargs
    tls = (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"])
    assert tls == ("/ca.pem", "/cert.pem", "/key.pem")
    timeouts = (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["health_check_interval"])
    assert timeouts == (2.0, 2.0, 30)
    kwargs = connect("redis://h:1/0").connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (30.0, 5.0)
    assert "ssl_ca_certs" not in kwargs


@pytest.mark.parametrize(("kafka", "message"), [
    ({"security_protocol": "TLS"}, "kafka.security_protocol: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, "
                                   "SASL_SSL, got 'TLS'"),
    ({**SASL, "sasl_mechanism": "GSSAPI"}, "kafka.sasl_mechanism: expected one of '', PLAIN, SCRAM-SHA-256"),
    ({**SASL, "sasl_mechanism": ""}, "kafka.sasl_mechanism: required when kafka.security_protocol is SASL_SSL"),
    ({**SASL, "sasl_username": ""}, "kafka.sasl_username: required when kafka.security_protocol is SASL_SSL"),
    ({**SASL, "sasl_password": ""},
     "kafka.sasl_password: required (or kafka.sasl_password_env) when kafka.security_protocol is SASL_SSL"),
    ({"sasl_username": "app"}, "kafka.sasl_username: only used when kafka.security_protocol is SASL_PLAINTEXT "
                               "or SASL_SSL (it is PLAINTEXT)"),
    ({**SASL, "security_protocol": "SASL_PLAINTEXT", "ssl_cafile": "/etc/hostname"},
     "kafka.ssl_cafile: only used when kafka.security_protocol is SSL or SASL_SSL (it is SASL_PLAINTEXT)"),
    ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"},
     "kafka.ssl_cafile: no such file: '/no/such/ca.pem'"),
    ({"security_protocol": "SSL", "ssl_keyfile": "/etc/hostname"},
     "kafka.ssl_keyfile: needs kafka.ssl_certfile too"),
    ({**SASL, "sasl_password_env": "SOME_VAR"}, "kafka.sasl_password_env: give sasl_password or "
                                                "sasl_password_env, not both"),
    ({**SASL, "sasl_password": "", "sasl_password_env": "YADTQ_TEST_UNSET_VAR"},
     "kafka.sasl_password_env: the environment variable YADTQ_TEST_UNSET_VAR is not set"),
    ({"ssl_check_hostname": "no"}, "kafka.ssl_check_hostname: expected true or false, got 'no'"),
    ({"sasl_password_env": "YADTQ_TEST_UNSET_VAR"}, "kafka.sasl_password_env: only used when "
                                                    "kafka.security_protocol is SASL_PLAINTEXT or SASL_SSL"),
])
def test_wrong_kafka_security_keys_are_named(kafka: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"kafka": kafka}, source="y.yaml")
    assert str(e.value).startswith("y.yaml: ")
    assert message in str(e.value)
    assert "kafka-pw-123" not in str(e.value)


@pytest.mark.parametrize(("redis", "message"), [
    ({"url": "redis://:url-pw@h/0", "password": "redis-pw-789"},
     "redis.password: the URL holds a password already: give it in one place"),
    ({"url": "redis://h/0?password=url-pw", "password": "redis-pw-789"}, "redis.password: the URL holds a password"),
    ({"username": "app"}, "redis.username: needs a password (redis.password or redis.password_env)"),
    ({"ssl_ca_certs": "/etc/hostname"}, "redis.ssl_ca_certs: only used with a rediss:// URL (TLS)"),
    ({"url": "rediss://h/0", "ssl_ca_certs": "/no/such/ca.pem"}, "redis.ssl_ca_certs: no such file: '/no/such/ca.pem'"),
    ({"password": 123456789}, "redis.password: expected a string, got a value of type int (not shown: it is a secret)"),
    ({"url": "http://app:redis-pw-789@h/0"}, "redis.url: expected a URL starting redis://, rediss:// or unix://, "
                                             "got 'http://***@h/0'"),
])
def test_wrong_redis_security_keys_are_named(redis: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"redis": redis}, source="y.yaml")
    assert message in str(e.value)
    assert "redis-pw-789" not in str(e.value) and "123456789" not in str(e.value)


def test_secrets_do_not_show_in_repr_str_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PW", "redis-env-pw-321")
    cfg = Config.from_dict({"kafka": {**SASL, "security_protocol": "SASL_PLAINTEXT"},
                            "redis": {"password_env": "REDIS_PW"}})
    url_cfg = Config.from_dict({"redis": {"url": "redis://app:url-pw-654@h:1/0"}})
    shown = " ".join([repr(cfg), str(cfg), repr(url_cfg), str(url_cfg), cfg.kafka.describe(),
                      cfg.redis.describe(), url_cfg.redis.describe(), f"{cfg.kafka.sasl_password}"])
    for secret in ("kafka-pw-123", "redis-env-pw-321", "url-pw-654"):
        assert secret not in shown
    assert "Secret('***')" in repr(cfg) and "redis://***@h:1/0" in repr(url_cfg)
    assert cfg.kafka.describe() == "localhost:9092 (SASL_PLAINTEXT SCRAM-SHA-512 as app)"
    assert cfg.redis.describe() == "redis://localhost:6379/0 (password)"
    # The supervisor pickles its Config to the processes it starts: the secret must survive that.
    assert pickle.loads(pickle.dumps(cfg)).kafka.sasl_password.reveal() == "kafka-pw-123"


def test_a_secret_cannot_be_changed() -> None:
    s = Secret("x")
    with pytest.raises(AttributeError):
        s._value = "y"
    assert s == Secret("x") and s != Secret("y") and not Secret()


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://user:s3cret@host:6379/0", "redis://***@host:6379/0"),
    ("redis://:s3cret@host:6379/0", "redis://***@host:6379/0"),
    ("redis://host:6379/0?password=s3cret&db=1", "redis://host:6379/0?password=***&db=1"),
    ("unix://:s3cret@/run/redis.sock?db=0", "unix://***@/run/redis.sock?db=0"),
    ("rediss://host:6380/0", "rediss://host:6380/0"),
])
def test_safe_url_hides_the_password(url: str, shown: str) -> None:
    assert safe_url(url) == shown


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
])
def test_the_yaml_loader_builds_no_python_objects(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "ran"
    p = tmp_path / "y.yaml"
    p.write_text(f"workers:\n  count: {tag.format(marker=marker)}\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 2.*could not determine a constructor"):
        load_config(p)
    assert not marker.exists()


def test_a_worker_refuses_a_task_nobody_registered() -> None:
    # Also a message written straight to a worker's topic (past the scheduler's
    # check): a name is looked up among registered tasks, never imported.
    w = Worker(Config(), "W1", Registry())
    for name in ("os.system", "builtins.eval", "__import__", "subprocess.run"):
        status, fields = w.execute(Assignment(Task("t", name, ["touch /tmp/yadtq-pwned"]), 1, "W1"))
        assert status == "failed" and fields["error"].startswith(f"UnknownTask: unknown task {name!r}")
    with pytest.raises(UnknownTask):
        Registry().get("os.system")


_UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}
_UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
_SAFE_YAML = {"safe_load", "safe_dump", "YAMLError"}


def test_no_code_unpickles_evals_or_loads_yaml_unsafely() -> None:
    """A guard against regressions: the packages never call these on anything.

    (multiprocessing pickles the Config from the supervisor to its own
    children over a pipe; that is the standard library's, not data from Kafka
    or Redis, and is not in these files.)
    """
    found = []
    for path in sorted(p for pkg in ("client", "worker_pool", "supervisor") for p in (ROOT / pkg).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _UNSAFE_CALLS:
                found.append(f"{where} calls {node.func.id}")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{where} imports {n}" for n in names if n.split(".")[0] in _UNSAFE_MODULES]
                if isinstance(node, ast.ImportFrom) and node.module == "yaml":
                    found += [f"{where} imports yaml.{a.name}" for a in node.names if a.name not in _SAFE_YAML]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml"
                  and node.attr not in _SAFE_YAML):
                found.append(f"{where} uses yaml.{node.attr}")
    assert not found
