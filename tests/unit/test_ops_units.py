"""The pure parts of the operator's actions: durations, outcomes, and the interrupt that stops a
running task (worker_pool/worker.py's _time_limit) without touching any other."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import Client, cli, ops
from client.errors import InvalidMessage, TaskStopped, YadtqError
from tests.support.harness import unreachable_services
from worker_pool.worker import _time_limit


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400),
                                               ("1w", 604800), ("1h30m", 5400), ("1.5h", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert ops.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "10x", "-5m", "1 h", "5m!"])
def test_what_is_not_a_duration_is_refused_with_examples(text: str) -> None:
    with pytest.raises(YadtqError, match=r"not a duration: .* \(expected e\.g\. 90, 30s"):
        ops.parse_duration(text)


def test_an_outcome_is_done_only_when_the_action_was() -> None:
    assert ops.Outcome("t", "cancelled").done and ops.Outcome("t", "reopened").done
    assert not ops.Outcome("t", "ended", "already ended: success").done


def later(seconds: float, act: object) -> threading.Thread:
    t = threading.Timer(seconds, act)  # type: ignore[arg-type]
    t.start()
    return t


def test_an_interrupt_stops_the_run_it_names() -> None:
    token = object()
    started = time.monotonic()
    t = later(0.1, lambda: _time_limit.interrupt(token, "cancelled by an operator"))
    with pytest.raises(TaskStopped, match="task stopped: cancelled by an operator"), _time_limit(10, token):
        time.sleep(5)
    t.join()
    assert time.monotonic() - started < 2


def test_an_interrupt_for_another_run_or_after_the_block_does_nothing() -> None:
    mine, other = object(), object()
    t = later(0.05, lambda: _time_limit.interrupt(other, "old"))
    with _time_limit(10, mine):
        time.sleep(0.3)
    t.join()
    with _time_limit(10, mine):
        pass
    _time_limit.interrupt(mine, "too late")  # the run has left the block
    time.sleep(0.1)  # the signal is handled here, and must not raise


@pytest.fixture
def config_file(tmp_path: Path) -> Iterator[Path]:
    """A cluster file whose Kafka and Redis are closed ports: what is refused before any call."""
    with unreachable_services() as text:
        path = tmp_path / "yadtq.yaml"
        path.write_text(text)
        yield path


@pytest.mark.parametrize(("argv", "why"), [
    (["retry"], "retry takes task IDs, or --failed"),
    (["retry", "t1", "--failed"], "retry takes task IDs, or --failed"),
    (["retry", "--task", "add"], "retry takes task IDs, or --failed"),
    (["dead-letters", "replay"], "takes IDs (partition:offset) or --all"),
    (["dead-letters", "replay", "0:1", "--all"], "takes IDs (partition:offset) or --all"),
])
def test_the_cli_refuses_an_action_asked_wrongly(config_file: Path, argv: list[str], why: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", str(config_file), *argv]) == 2
    assert why in capsys.readouterr().err


def test_the_cli_refuses_a_duration_it_cannot_read(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["-c", str(config_file), "retry", "--failed", "--since", "soon"])
    assert e.value.code == 2 and "not a duration: 'soon'" in capsys.readouterr().err


def test_a_cancel_of_an_id_that_cannot_be_a_task_is_refused_before_redis(config_file: Path) -> None:
    with Client.from_config(config_file) as c:
        with pytest.raises(InvalidMessage, match="'task-id' must be"):
            c.cancel("not an id!")
        # each bad id gets its own outcome, and none valid means no Redis call (the port is closed)
        assert [(o.id, o.result) for o in ops.cancel(c, ["bad id", ""], by="x")] == [("bad id", "invalid"),
                                                                                  ("", "invalid")]
        assert [o.result for o in ops.retry(c, ["yadtq:load"])] == ["invalid"]
