"""The client checks every task before it sends any (defect 13); no services needed.

Redis is not reached (redis-py connects on first use) and Kafka is replaced by
a recording producer: an invalid spec must stop the call before either is used.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client import Client, Config, TaskSpec
from client.cli import main
from client.errors import InvalidMessage
from tests.support.harness import run_own_group, unreachable_services


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, topic: str, value: bytes) -> Any:
        self.sent.append(value)
        raise AssertionError("nothing may be sent when a spec is invalid")


@pytest.fixture
def client() -> Client:
    c = Client(Config.from_dict({"tasks": {"max_timeout": 600, "max_retries_cap": 5}}))
    c._producer = RecordingProducer()
    return c


@pytest.mark.parametrize(("bad", "reason"), [
    (TaskSpec("echo", ("\ud800",)), "cannot be sent as JSON"),                    # a lone surrogate
    (TaskSpec("echo", (float("nan"),)), "cannot be sent as JSON"),
    (TaskSpec("echo", ({1, 2},)), "cannot be sent as JSON"),
    (TaskSpec("echo", (), timeout=1e9), "options.timeout 1e+09 is over this cluster's limit (tasks.max_timeout = 600)"),
    (TaskSpec("echo", (), timeout=float("inf")), "cannot be sent as JSON"),
    (TaskSpec("echo", (), max_retries=6), "(tasks.max_retries_cap = 5)"),
    (TaskSpec("echo", (), task_id="b:yadtq:assignments"), "may not start with or contain 'yadtq:'"),
    (TaskSpec("echo", (), task_id=""), "'task-id' must be"),
    (TaskSpec("echo", (), kwargs=[1]), "kwargs must be a dict, got list"),  # type: ignore[arg-type]
    (TaskSpec("echo", "abc"), "args must be a list or tuple, got str"),
    (TaskSpec("", ()), "'task' must be a non-empty string"),
    (("echo", (), {}, None, None, None, "extra"), "not a task spec"),
])
def test_a_bad_spec_in_the_middle_stops_the_call_before_anything_is_sent(
        client: Client, bad: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage) as e:
        client.submit_many([TaskSpec("add", (1, 2)), bad, TaskSpec("add", (3, 4))])
    assert e.value.reason.startswith("task 2 of 3 is invalid, so none was submitted: ")
    assert reason in e.value.reason
    assert client._producer.sent == []


@pytest.fixture
def config_path(tmp_path: Path) -> Iterator[Path]:
    """A cluster file with Kafka and Redis on closed ports: a check that regressed fails the test
    at once rather than submitting to the shared services' default topics."""
    with unreachable_services() as lines:
        path = tmp_path / "y.yaml"
        path.write_text(lines)
        yield path


def cli(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str]:
    try:
        code = main(["--config", str(config), *argv])
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["submit", "echo", "--kwargs", "[1]"], "argument --kwargs: expected a JSON object like"),
    (["submit", "echo", "--kwargs", "{bad"], "argument --kwargs: not valid JSON"),
    (["submit", "echo", '"\\ud800"'], "error: task 1 of 1 is invalid, so none was submitted"),
    (["submit", "add", "NaN", "1"], "cannot be sent as JSON"),
    (["submit", "add", "1", "2", "--time-limit", "1e9"], "tasks.max_timeout = 86400"),
    (["submit", "add", "1", "2", "--time-limit", "nan"], "cannot be sent as JSON"),
    (["submit", "add", "1", "2", "--retries", "1000"], "tasks.max_retries_cap = 100"),
    (["submit", "add", "1", "2", "--id", "x:yadtq:load"], "'yadtq:'"),
])
def test_the_cli_says_what_is_wrong_and_exits_2(capsys: pytest.CaptureFixture[str], config_path: Path,
                                                  argv: list[str], message: str) -> None:
    code, err = cli(capsys, config_path, *argv)
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_kwargs_that_are_not_an_object_exit_2_without_a_traceback(config_path: Path) -> None:
    out = run_own_group([sys.executable, "-m", "client", "--config", str(config_path), "submit", "echo",
                         "--kwargs", "[1]"], timeout=60)
    assert out.returncode == 2, out.stderr
    assert "expected a JSON object" in out.stderr and "Traceback" not in out.stderr
