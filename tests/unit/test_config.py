"""yadtq.yaml: defaults, and one clear error naming the wrong key."""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import config as config_module
from client.config import Config, load_config
from client.errors import ConfigError
from client.protocol import TaskLimits
from tests.support.harness import run_own_group, unreachable_services

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_file_is_valid_and_matches_the_defaults() -> None:
    shipped = load_config(ROOT / "yadtq.yaml")
    assert shipped == Config()
    assert shipped.worker_ids() == ["W1", "W2", "W3", "W4"]


def test_empty_file_means_all_defaults(tmp_path: Path) -> None:
    p = tmp_path / "y.yaml"
    p.write_text("")
    assert load_config(p) == Config()


def test_bootstrap_servers_accepts_a_comma_separated_string() -> None:
    cfg = Config.from_dict({"kafka": {"bootstrap_servers": "a:1, b:2"}})
    assert cfg.kafka.bootstrap_servers == ["a:1", "b:2"]


def test_an_int_is_accepted_where_a_number_is_expected() -> None:
    assert Config.from_dict({"workers": {"heartbeat_timeout": 3}}).workers.heartbeat_timeout == 3.0


@pytest.mark.parametrize(("data", "message"), [
    ({"workers": {"count": 0}}, "workers.count: expected an integer >= 1, got 0"),
    ({"workers": {"count": "4"}}, "workers.count: expected an integer, got '4'"),
    ({"workers": {"count": True}}, "workers.count: expected an integer, got True"),
    ({"workers": {"heartbeat_timeout": -1}}, "workers.heartbeat_timeout: expected a number > 0"),
    ({"workers": {"cuont": 4}}, "workers.cuont: unknown key (known keys here: count,"),
    ({"kafak": {}}, "kafak: unknown key"),
    ({"redis": "localhost"}, "redis: expected a mapping, got 'localhost'"),
    ({"tasks": {"modules": []}}, "tasks.modules: expected a non-empty list of strings"),
    ({"topics": {"tasks": "has space"}}, "topics.tasks: expected a topic name"),
    ({"redis": {"url": "http://x"}}, "redis.url: expected a URL starting redis://, rediss:// or unix://"),
    ({"workers": {"heartbeat_interval": 2, "heartbeat_timeout": 3}},
     "workers.heartbeat_timeout: expected more than twice workers.heartbeat_interval (2), got 3"),
    ({"tasks": {"max_message_bytes": 2_000_000}}, "tasks.max_message_bytes: expected an integer from 64 to 1000000"),
    ([1, 2], "top level: expected a mapping"),
])
def test_wrong_values_name_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config.from_dict(data, source="y.yaml")
    assert str(e.value).startswith("y.yaml: ")
    assert message in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml_says_where(tmp_path: Path) -> None:
    p = tmp_path / "y.yaml"
    p.write_text("workers:\n  count: [4\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3, column 1: expected ',' or ']'"):
        load_config(p)


@pytest.fixture
def unreachable() -> Iterator[str]:
    """The cluster file's first lines: Kafka and Redis on closed ports, topics and key prefix of its
    own, so that a supervisor let past the check under test can never start a cluster on the shared services."""
    with unreachable_services() as lines:
        yield lines


UNREACHABLE_LINES = 3  # the lines of ``unreachable``, which come first in the file


@pytest.mark.parametrize(("text", "message"), [
    ("workers:\n  count: 0\n", "workers.count: expected an integer >= 1, got 0 (int)"),
    ("workers:\n  count: four\n", "workers.count: expected an integer, got 'four' (str)"),
    ("workers:\n  count: 4\n  colour: blue\n", "workers.colour: unknown key (known keys here: count,"),
    ("workers: [count: 4\n", f"not valid YAML at line {2 + UNREACHABLE_LINES}, column 1"),
    ("tasks:\n  modules: [worker_pool.builtin_tasks, no_such_module]\n",
     "tasks.modules: cannot import 'no_such_module': ModuleNotFoundError"),
])
def test_supervisor_refuses_a_bad_file_before_starting_anything(tmp_path: Path, unreachable: str, text: str,
                                                                 message: str) -> None:
    p = tmp_path / "y.yaml"
    p.write_text(unreachable + text)
    out = run_own_group([sys.executable, "-m", "supervisor", str(p)], timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "started" not in out.stdout


def test_supervisor_refuses_a_missing_file(tmp_path: Path) -> None:
    out = run_own_group([sys.executable, "-m", "supervisor", str(tmp_path / "nope.yaml")], timeout=60)
    assert out.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: config file not found" in out.stderr
    assert "Traceback" not in out.stderr


# --- Bounds: finite numbers, distinct topics, caps on what a task may ask ---

FLOAT_KEYS = [(f.name, key.name) for f in dataclasses.fields(Config)
              if dataclasses.is_dataclass(section := getattr(config_module, str(f.type), None))
              for key in dataclasses.fields(section) if key.type in ("float", float)]


def test_every_float_key_is_covered() -> None:
    assert ("workers", "heartbeat_interval") in FLOAT_KEYS and ("topics", "status_retention") in FLOAT_KEYS


@pytest.mark.parametrize(("section", "key"), FLOAT_KEYS)
@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf"])
def test_yaml_nan_and_infinity_are_refused_for_every_number(tmp_path: Path, section: str, key: str,
                                                             text: str) -> None:
    p = tmp_path / "y.yaml"
    p.write_text(f"{section}:\n  {key}: {text}\n")
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: expected a finite number, got -?(nan|inf)"):
        load_config(p)


@pytest.mark.parametrize(("topics", "count", "message"), [
    ({"dead_letter": "TASKS"}, 4, "topics.dead_letter: 'TASKS' is the same topic as topics.tasks ('TASKS')"),
    ({"status": "TASKS"}, 4, "topics.status: 'TASKS' is the same topic as topics.tasks"),
    ({"dead_letter": "status"}, 4, "topics.dead_letter: 'status' is the same topic as topics.status"),
    ({"tasks": "W3"}, 4, "topics.workers (worker W3's topic): 'W3' is the same topic as topics.tasks ('W3')"),
    ({"workers": "TASKS"}, 1, "topics.workers (worker TASKS1's topic)"),  # only with TASKS1 as another name
    ({"status": "TASKS_dead-letter"}, 4, "topics.dead_letter: 'TASKS.dead-letter' is the same topic as "
                                         "topics.status ('TASKS_dead-letter')"),  # Kafka: '.' and '_' collide
])
def test_two_roles_may_not_share_a_topic(topics: dict[str, str], count: int, message: str) -> None:
    data = {"topics": topics, "workers": {"count": count}}
    if topics.get("workers") == "TASKS":
        data["topics"] = {**topics, "status": "TASKS1"}
    with pytest.raises(ConfigError) as e:
        Config.from_dict(data, source="y.yaml")
    assert message in str(e.value) and "every topic needs its own name" in str(e.value)


def test_worker_topics_may_share_a_prefix_with_other_topics() -> None:
    cfg = Config.from_dict({"topics": {"tasks": "W", "workers": "W"}})  # W and W1..W4 differ
    assert cfg.worker_ids()[0] == "W1"


@pytest.mark.parametrize(("data", "message"), [
    ({"tasks": {"max_timeout": 0}}, "tasks.max_timeout: expected a number > 0"),
    ({"tasks": {"max_retries_cap": -1}}, "tasks.max_retries_cap: expected an integer >= 0"),
    ({"tasks": {"time_limit": 100, "max_timeout": 50}}, "tasks.time_limit: expected at most tasks.max_timeout (50)"),
    ({"tasks": {"max_retries": 5, "max_retries_cap": 4}},
     "tasks.max_retries: expected at most tasks.max_retries_cap (4), got 5"),
    ({"topics": {"replication_factor": -1}}, "topics.replication_factor: expected an integer >= 0"),
    ({"topics": {"replication_factor": 2, "min_insync_replicas": 3}},
     "topics.min_insync_replicas: expected at most topics.replication_factor (2), got 3"),
    ({"topics": {"status_retention": 60}}, "topics.status_segment: expected at most topics.status_retention (60)"),
    ({"topics": {"tasks_retention": 0}}, "topics.tasks_retention: expected a number > 0"),
])
def test_caps_and_topic_settings_are_checked(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_dict(data, source="y.yaml")


def test_the_task_limits_come_from_the_config() -> None:
    cfg = Config.from_dict({"tasks": {"max_timeout": 600, "max_retries_cap": 7, "max_message_bytes": 5000}})
    assert cfg.tasks.limits() == TaskLimits(max_bytes=5000, max_timeout=600.0, max_retries=7)
    assert Config().tasks.limits() == TaskLimits()
