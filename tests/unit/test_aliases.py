"""Issue 13: other YADTQ clients' key names, refused with the rename or mapped
(tasks.accept_aliases); TASKS with several partitions (no services needed)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from client.config import Config
from client.errors import ConfigError, InvalidMessage
from client.insight import parse_stats
from client.protocol import ALIASES, TaskLimits, alias_kinds, near_misses, parse_task, read_task, sniff_task_id
from supervisor.http import metric_families
from supervisor.scheduler import AliasLog
from supervisor.topics import partition_count

MAPPED = TaskLimits(accept_aliases=True)


def raw(**fields: Any) -> bytes:
    return json.dumps({k.replace("_dash_", "-"): v for k, v in fields.items()}).encode()


# Every alias of every seed key, with the rest of the message in the seed's format.
ALL = [(alias, key) for key, aliases in ALIASES.items() for alias in aliases]


def seed_message(without: str, alias: str, value: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"task-id": "t1", "task": "add", "args": [1, 2]}
    del msg[without]
    msg[alias] = value
    return msg


@pytest.mark.parametrize(("alias", "key"), ALL)
def test_each_near_miss_is_refused_with_the_rename_and_no_guess(alias: str, key: str) -> None:
    value = {"task-id": "t1", "task": "add", "args": [1, 2]}[key]
    with pytest.raises(InvalidMessage) as e:
        parse_task(json.dumps(seed_message(key, alias, value)).encode())
    assert f"rename '{alias}' to '{key}'" in e.value.reason
    assert "tasks.accept_aliases: true" in e.value.reason
    # The record of the id it names says so, with the task it names.
    assert (e.value.task_id, e.value.task_name) == ("t1", "add")


@pytest.mark.parametrize(("alias", "key"), ALL)
def test_each_near_miss_is_mapped_with_accept_aliases(alias: str, key: str) -> None:
    value = {"task-id": "t1", "task": "add", "args": [1, 2]}[key]
    task, mapped = read_task(json.dumps(seed_message(key, alias, value)).encode(), MAPPED)
    assert (task.task_id, task.name, task.args, task.kwargs) == ("t1", "add", [1, 2], {})
    assert mapped == (f"{alias}->{key}",)


@pytest.mark.parametrize("alias", ["args", "arguments", "params"])
def test_named_arguments_in_an_object_go_to_kwargs(alias: str) -> None:
    body = json.dumps({"task-id": "t1", "task": "add", alias: {"a": 1, "b": 2}}).encode()
    with pytest.raises(InvalidMessage, match=f"rename '{alias}' to 'kwargs'"):
        parse_task(body)
    task, mapped = read_task(body, MAPPED)
    assert (task.args, task.kwargs, mapped) == ([], {"a": 1, "b": 2}, (f"{alias}->kwargs",))


def test_an_alias_beside_its_seed_key_is_an_unknown_field_and_ignored() -> None:
    body = raw(task_dash_id="t1", task="add", args=[1, 2], id="other", type="label", name="n", params=[9],
               arguments={"x": 1})
    assert near_misses(json.loads(body)) == []
    for limits in (None, MAPPED):
        assert read_task(body, limits) == (parse_task(body), ())
        assert parse_task(body, limits).args == [1, 2]


def test_two_aliases_of_one_key_are_refused_in_either_mode() -> None:
    body = raw(id="a1", task_id="a2", task="add", args=[1, 2])
    with pytest.raises(InvalidMessage, match="rename one of 'task_id' or 'id' to 'task-id'") as e:
        parse_task(body)
    assert e.value.task_id is None  # which id? none is guessed: a dead letter
    with pytest.raises(InvalidMessage, match="'task_id' and 'id' could each be 'task-id'"):
        parse_task(body, MAPPED)
    # An object in 'args' beside 'kwargs' is no near miss: which one holds the named arguments?
    with pytest.raises(InvalidMessage, match=r"^'args' must be a list, got \{'a': 1\}$") as e:
        parse_task(raw(task_dash_id="t1", task="add", args={"a": 1}, kwargs={"b": 2}), MAPPED)
    assert e.value.task_id == "t1"


def test_an_unreadable_alias_id_is_a_dead_letter_naming_the_rename() -> None:
    with pytest.raises(InvalidMessage, match="rename 'id' to 'task-id'") as e:
        parse_task(raw(id=42, task="add", args=[1, 2]))
    assert e.value.task_id is None


def test_a_mapped_message_still_meets_every_check_and_says_what_was_mapped() -> None:
    with pytest.raises(InvalidMessage) as e:
        parse_task(raw(task_id="t1", type=7, args=[1]), MAPPED)
    assert e.value.reason.startswith("'task' must be a non-empty string")
    assert e.value.reason.endswith("(tasks.accept_aliases read 'task_id' as 'task-id', 'type' as 'task')")
    assert e.value.task_id == "t1"
    with pytest.raises(InvalidMessage, match=r"'task-id' must be .* \(tasks.accept_aliases read 'id' as 'task-id'\)"):
        parse_task(raw(id="", task="add"), MAPPED)


def test_a_refused_message_gives_its_task_name_cut_and_safe_for_its_record() -> None:
    with pytest.raises(InvalidMessage) as e:
        parse_task(raw(task_dash_id="t1", name="n" * 500))
    assert e.value.task_name == "n" * 200
    with pytest.raises(InvalidMessage) as e:
        parse_task(b'{"task-id": "t1", "task": "\\ud800x", "args": 5}')
    assert e.value.task_name == "\\ud800x"
    with pytest.raises(InvalidMessage) as e:
        parse_task(raw(task_dash_id="t1", task=5))
    assert e.value.task_name is None


def test_accept_aliases_and_tasks_partitions_in_the_config() -> None:
    assert Config().tasks.limits().accept_aliases is False
    assert Config.from_dict({"tasks": {"accept_aliases": True}}).tasks.limits().accept_aliases is True
    with pytest.raises(ConfigError, match=re.escape("tasks.accept_aliases: expected true or false")):
        Config.from_dict({"tasks": {"accept_aliases": "yes"}})
    cfg = Config.from_dict({"topics": {"tasks_partitions": 3}})
    assert [partition_count(cfg, t) for t in (cfg.topics.tasks, cfg.topics.status, "W1")] == [3, 1, 1]
    for bad in (0, 1001, 2.5):
        with pytest.raises(ConfigError, match=re.escape("topics.tasks_partitions: expected")):
            Config.from_dict({"topics": {"tasks_partitions": bad}})


def test_mapped_messages_are_logged_once_a_minute_per_kind_and_all_counted(caplog: pytest.LogCaptureFixture) -> None:
    log = AliasLog(interval=60)
    caplog.set_level(logging.WARNING, "yadtq.scheduler")
    log.seen(("id->task-id", "type->task"), "a", 100.0)
    log.seen(("id->task-id",), "b", 130.0)
    log.seen(("id->task-id",), "c", 159.0)
    assert [r.getMessage() for r in caplog.records] == [
        "tasks.accept_aliases: read 'id' as 'task-id' in 1 message(s) since the last such line (e.g. task a); "
        "the sender should write 'task-id'",
        "tasks.accept_aliases: read 'type' as 'task' in 1 message(s) since the last such line (e.g. task a); "
        "the sender should write 'task'"]
    log.seen(("id->task-id",), "d", 160.0)  # a minute after the last line of its kind
    assert caplog.records[-1].getMessage().startswith("tasks.accept_aliases: read 'id' as 'task-id' in 3 message")
    assert log.take() == {"id->task-id": 4, "type->task": 1}
    assert log.take() == {}


def test_the_counts_become_a_metric() -> None:
    from supervisor.http import MetricsView
    counters = parse_stats({"aliased|id->task-id": "4", "aliased|args->kwargs": "1", "success": "9"})
    assert counters.aliased == {"id->task-id": 4, "args->kwargs": 1}
    [family] = [f for f in metric_families(MetricsView(True, True, counters)) if f.name == "yadtq_messages_aliased"]
    assert {s.labels["alias"]: s.value for s in family.samples} == {"id->task-id": 4, "args->kwargs": 1}


def test_alias_kinds_says_what_would_be_mapped_whatever_else_is_wrong() -> None:
    assert alias_kinds(raw(task_id="t1", type="no_such_task", options=5)) == ("task_id->task-id", "type->task")
    assert alias_kinds(raw(id="a", task_id="b", task="add")) == ()  # ambiguous: nothing is mapped
    assert alias_kinds(b"[1]") == alias_kinds(b"not json") == ()


def test_a_message_too_big_to_parse_names_its_aliased_id_only_with_accept_aliases() -> None:
    big = json.dumps({"args": [{"id": "inner"}], "task_id": "t1", "task": "echo", "pad": "x" * 100}).encode()
    assert sniff_task_id(big) is None
    assert sniff_task_id(big, aliases=True) == "t1"  # the top-level key, not the 'id' in its arguments
    with pytest.raises(InvalidMessage) as e:
        parse_task(big, TaskLimits(max_bytes=100, accept_aliases=True))
    assert e.value.task_id == "t1"
    assert sniff_task_id(raw(id="a", task_id="b"), aliases=True) is None  # which one? neither
    assert sniff_task_id(b'{"task-id": 5, "id": "x"}', aliases=True) is None  # 'task-id' is there, and no id


@pytest.mark.parametrize(("body", "hint"), [
    (b'{"task-id": 5, "task": "add"}', "got 5: send it as a string, \"5\""),
    (b'{"task-id": "t1", "task": "add", "args": "[1, 2]"}', "got '[1, 2]': this is JSON text; send the list itself"),
    (b'{"task-id": "t1", "task": "add", "kwargs": " {\\"a\\": 1}"}',
     "this is JSON text; send the object itself"),
])
def test_what_other_clients_often_get_wrong_is_refused_with_the_fix(body: bytes, hint: str) -> None:
    with pytest.raises(InvalidMessage) as e:
        parse_task(body)
    assert e.value.reason.endswith(hint)
