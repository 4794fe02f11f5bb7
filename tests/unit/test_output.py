"""The supervisor's output never raises (supervisor/output.py)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest

from client.config import Config
from client.errors import ConfigError
from supervisor.__main__ import _with_log_format
from supervisor.output import Output, StatusGate
from supervisor.supervisor import ClusterStatus
from worker_pool.logs import JsonFormatter, JsonLines


class Broken(io.StringIO):
    """A stream whose reader is gone, as stdout piped into `head` once head exits."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_stream_falls_back_to_the_next_and_then_to_nothing() -> None:
    second = io.StringIO()
    say = Output([Broken(), second])
    say("one")
    say("two")
    assert second.getvalue() == "[yadtq] output failed; writing to output from now on\n[yadtq] one\n[yadtq] two\n"

    silent = Output([Broken(), Broken()])
    silent("nobody hears this")  # and nothing is raised
    closed = io.StringIO()
    closed.close()
    Output([closed])("nor this")


# --- the json log format (worker_pool/logs.py) ---

def test_json_output_gives_one_object_per_line_with_kind_level_and_fields() -> None:
    out = io.StringIO()
    say = Output([out], log_format="json")
    say.emit("dead", "W1 is dead (exit code -9)", "warning", name="W1", pid=42)
    say("a plain line")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "dead" and first["level"] == "warning" and first["source"] == "supervisor"
    assert first["message"] == "W1 is dead (exit code -9)" and first["fields"] == {"name": "W1", "pid": 42}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["event"] == "message" and second["message"] == "a plain line" and second["fields"] == {}


def test_text_output_is_unchanged_by_the_event_kind() -> None:
    out = io.StringIO()
    Output([out]).emit("status", "workers 1/1 live", workers_live=1)
    assert out.getvalue() == "[yadtq] workers 1/1 live\n"


def test_json_lines_wraps_each_written_line_and_a_partial_one_on_flush() -> None:
    raw = io.StringIO()
    stream = JsonLines(raw, "worker W1", "stdout", "info")
    stream.write("one\ntw")
    stream.write("o\nthree")
    assert [json.loads(line)["message"] for line in raw.getvalue().splitlines()] == ["one", "two"]
    stream.flush()
    objs = [json.loads(line) for line in raw.getvalue().splitlines()]
    assert [o["message"] for o in objs] == ["one", "two", "three"]
    assert {(o["source"], o["event"], o["level"]) for o in objs} == {("worker W1", "stdout", "info")}


def test_a_log_record_with_a_traceback_is_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("yadtq.worker", logging.ERROR, __file__, 1, "task %s: %s", ("t1", "boom"),
                                   sys.exc_info())
    line = JsonFormatter("worker W2").format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["message"] == "task t1: boom" and obj["level"] == "error" and obj["event"] == "log"
    assert obj["fields"]["logger"] == "yadtq.worker" and "ValueError: boom" in obj["fields"]["traceback"]


# --- when the status line is printed (StatusGate) ---

def test_the_status_is_sampled_every_interval_and_printed_only_when_it_changed() -> None:
    gate = StatusGate(interval=5.0, idle_interval=60.0)
    printed = []
    for at in range(0, 200):  # one loop round a second; the status changes at 0, 12 and 13
        if gate.sample_due(float(at)):
            status = "a" if at < 12 else "b" if at < 13 else "c"
            if gate.should_print(status, float(at)):
                printed.append((at, status))
    # Sampled at 0, 5, 10, 15...: 'b' (12 only) is never seen; 'c' is printed at the next sample,
    # then the unchanged status once a minute after the last printed line.
    assert printed == [(0, "a"), (15, "c"), (75, "c"), (135, "c"), (195, "c")]


def test_a_busy_cluster_gets_a_line_each_interval_and_no_more() -> None:
    gate = StatusGate(interval=1.0, idle_interval=60.0)
    at, printed = 0.0, 0
    while at < 10:  # the loop runs every 0.2 s, the status changes every round
        if gate.sample_due(at) and gate.should_print(at, at):
            printed += 1
        at = round(at + 0.2, 1)
    assert printed == 10


def test_the_status_line_text_is_the_one_of_before() -> None:
    s = ClusterStatus(3, 4, True, (("W1", 0), ("W2", 2)), done=7, failed=1, restarts=2)
    assert s.text() == "workers 3/4 live | scheduler up | load W1=0 W2=2 | done 7 failed 1 | restarts 2"
    down = ClusterStatus(3, 4, False, redis_error="Connection refused", redis_up=False)
    assert down.text() == "workers 3/4 live | redis unavailable: Connection refused"
    # Another error text is no change; Redis coming back is.
    assert down == ClusterStatus(3, 4, False, redis_error="Timeout", redis_up=False)
    assert down != ClusterStatus(3, 4, False)
    assert json.loads(json.dumps(s.fields()))["load"] == {"W1": 0, "W2": 2}


class Unshowable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this")


def test_a_field_that_cannot_be_shown_costs_the_field_not_the_line() -> None:
    out = io.StringIO()
    Output([out], log_format="json").emit("dead", "W1 is dead", "warning", what=Unshowable())
    obj = json.loads(out.getvalue())
    assert obj["message"] == "W1 is dead" and obj["fields"] == {}


def test_the_log_format_is_text_or_json_and_the_flag_overrides_the_file() -> None:
    with pytest.raises(ConfigError, match=r"supervisor\.log_format.*one of text, json"):
        Config.from_dict({"supervisor": {"log_format": "xml"}})
    from_file = Config.from_dict({"supervisor": {"log_format": "json", "status_idle_interval": 30}})
    assert from_file.supervisor.status_idle_interval == 30.0
    assert _with_log_format(from_file, None).supervisor.log_format == "json"
    assert _with_log_format(from_file, "text").supervisor.log_format == "text"  # what the children are given
