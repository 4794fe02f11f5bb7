"""The operator CLI's pure parts (client/cli.py, client/events.py): submit-many's line checks,
the readable status events, wait's summary, and the ``yadtq`` console script's entry point."""

from __future__ import annotations

import importlib
import io
from collections import Counter

import pytest
from setuptools.config.setupcfg import read_configuration  # type: ignore[import-untyped]

from client.cli import _summary, main, read_task_lines, task_spec_line
from client.errors import InvalidMessage
from client.events import describe
from client.protocol import Heartbeat, TaskLimits, TasksFinished, WorkerDown, encode_event
from tests.support.harness import ROOT

LIMITS = TaskLimits()
AT = 1_795_000_000_123  # ms


def test_a_line_gives_a_spec_with_its_options_and_an_id() -> None:
    spec = task_spec_line('{"task": "add", "args": [1, 2], "kwargs": {"x": 1}, '
                          '"options": {"timeout": 5, "max_retries": 2}, "id": "job-1"}', LIMITS)
    assert (spec.name, list(spec.args), spec.kwargs, spec.task_id, spec.timeout, spec.max_retries) == \
        ("add", [1, 2], {"x": 1}, "job-1", 5.0, 2)
    fresh = task_spec_line('{"task": "add"}', LIMITS)
    assert fresh.task_id and fresh.task_id != task_spec_line('{"task": "add"}', LIMITS).task_id


@pytest.mark.parametrize(("line", "reason"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"task": "add", "arg": [1]}', "unknown key(s) 'arg'"),
    ('{"args": [1]}', "'task' must be a non-empty string"),
    ('{"task": "add", "args": {"a": 1}}', "'args' must be a list"),
    ('{"task": "add", "options": {"timeout": -1}}', "'options.timeout' must be a finite number"),
    ('{"task": "add", "args": [NaN]}', "cannot be sent as JSON"),
    ('{"task": "add", "id": "a b"}', "'id' is not a valid task id"),
])
def test_a_bad_line_says_what_is_wrong(line: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as e:
        task_spec_line(line, LIMITS)
    assert reason in e.value.reason


def test_a_file_is_checked_whole_and_a_bad_line_is_named_by_its_number() -> None:
    f = io.StringIO('{"task": "add", "args": [1, 2]}\n\n{"task": "add", "id": "x"}\n')
    f.name = "tasks.jsonl"
    specs, line_of = read_task_lines(f, LIMITS)
    assert len(specs) == 2 and line_of["x"] == 3
    bad = io.StringIO('{"task": "add"}\n{"task": "add", "id": "x"}\n{"task": "mul", "id": "x"}\n')
    bad.name = "tasks.jsonl"
    with pytest.raises(InvalidMessage, match=r"^tasks\.jsonl:3: task id 'x' is already on line 2; nothing was"):
        read_task_lines(bad, LIMITS)


def test_each_event_is_one_readable_line() -> None:
    stamp = "2026-11-18T11:06:40.123Z"
    assert describe(encode_event(Heartbeat("W1", "worker", 42, 1.0, "t-1")), AT, "s:0@1") == \
        f"{stamp} heartbeat W1 (worker, pid 42) running t-1"
    assert describe(encode_event(Heartbeat("scheduler", "scheduler", 7, 1.0)), AT, "s:0@1") == \
        f"{stamp} heartbeat scheduler (scheduler, pid 7) idle"
    batch = TasksFinished("W2", [["a", 1, "success"], ["b", 2, "failed"]] + [[f"c{i}", 1, "retry"] for i in range(5)])
    assert describe(encode_event(batch), AT, "s:0@1") == \
        f"{stamp} tasks-finished W2: a success, b failed (attempt 2), c0 retry, c1 retry, c2 retry and 2 more"
    assert describe(encode_event(WorkerDown("W3", "no heartbeat for 4.0s", 1.0, 99)), AT, "s:0@1") == \
        f"{stamp} worker-down W3 (pid 99): no heartbeat for 4.0s"


@pytest.mark.parametrize("raw", [b"", b"not json", b'{"v": 1, "type": "party"}', b'{"v":1,"type":"heartbeat"}',
                                 b"\xff\xfe", b"[" * 10000])
def test_an_invalid_message_is_shown_as_such_and_never_raises(raw: bytes) -> None:
    line = describe(raw, AT, "t.status:0@17")
    assert line.startswith("2026-11-18T11:06:40.123Z invalid event at t.status:0@17: ")


def test_the_summary_counts_each_status_and_what_did_not_end() -> None:
    assert _summary(3, Counter(success=2, failed=1), 0, None) == "3 task(s): 1 failed, 2 success"
    assert _summary(3, Counter(success=1), 2, 5.0) == "3 task(s): 1 success, 2 not ended after 5s"
    assert _summary(1, Counter(), 1, None) == "1 task(s): 1 not ended"


def test_the_yadtq_console_script_is_the_cli() -> None:
    """As setuptools reads setup.cfg when it installs the package (``make install``)."""
    options = read_configuration(ROOT / "setup.cfg")["options"]
    assert options["entry_points"]["console_scripts"] == ["yadtq = client.cli:main"]
    module, func = ["client.cli", "main"]
    assert getattr(importlib.import_module(module), func) is main
    assert any(r.startswith("rich") for r in options["install_requires"])  # the progress bar of `wait`
