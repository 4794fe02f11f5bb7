"""Every answer of every lifecycle script has a named result (client/lua/*.lua)."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from enum import StrEnum
from importlib import resources
from typing import Any

import pytest

from client import store
from client.store import (
    TERMINAL,
    Assign,
    AssignResult,
    Cancel,
    CancelResult,
    Claim,
    Finish,
    Queued,
    Reject,
    Release,
    Reopen,
    ReopenResult,
    Retry,
    RetryResult,
    Status,
    Unreadable,
    UnreadableResult,
)

# script -> (its decoder, the named results it may answer)
SCRIPTS: dict[str, tuple[Callable[[Any], Any], type[StrEnum]]] = {
    "assign": (store.decode_assign, Assign), "claim": (store.decode_claim, Claim),
    "finish": (store.decode_finish, Finish), "retry": (store.decode_retry, Retry),
    "reject": (store.decode_reject, Reject), "release": (store.decode_release, Release),
    "queued": (store.decode_queued, Queued), "unreadable": (store.decode_unreadable, Unreadable),
    "cancel": (store.decode_cancel, Cancel), "reopen": (store.decode_reopen, Reopen),
}
# What follows the tag in the answers that carry something (as Redis returns them).
CARRIED: dict[str, list[object]] = {
    "assigned": [3], "placed": ["3", "W1", '{"task-id":"t"}'], "scheduled": ["12.5"], "exhausted": [2],
    "not_ours": ["string"]}


def lua(name: str) -> str:
    return resources.files("client").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def answers(name: str) -> list[str]:
    """The tags of every ``return`` of the script's own text (helpers are not answers)."""
    code = "\n".join(line.split("--")[0] for line in lua(name).splitlines())
    returns = re.findall(r"\breturn\b([^\n]*)", code)
    tags = [re.match(r"\s*\{'([a-z_]+)'", r) for r in returns]
    assert all(tags), f"{name}.lua: a return that is not a tagged answer: {returns}"
    return [t.group(1) for t in tags if t]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_answer_of_every_script_decodes_to_a_named_result(name: str) -> None:
    decode, results = SCRIPTS[name]
    tags = answers(name)
    assert set(tags) == {r.value for r in results}, "a named result no answer gives, or an answer with no name"
    for tag in tags:
        decoded = decode([tag, *CARRIED.get(tag, [])])
        kind = decoded.kind if isinstance(decoded, (AssignResult, RetryResult, UnreadableResult, CancelResult,
                                                    ReopenResult)) else decoded
        assert kind is results(tag)


def test_what_the_answers_carry_is_decoded() -> None:
    assert store.decode_assign(["placed", "3", "W1", "{}"]) == AssignResult(Assign.PLACED, 3, "W1", "{}")
    assert store.decode_assign(["placed", "3", "W1", None]) == AssignResult(Assign.PLACED, 3, "W1", None)
    assert store.decode_assign(["not_ours", "zset"]) == AssignResult(Assign.NOT_OURS, key_type="zset")
    assert store.decode_retry(["scheduled", "12.5"]) == RetryResult(Retry.SCHEDULED, due=12.5)
    assert store.decode_retry(["exhausted", 2]) == RetryResult(Retry.EXHAUSTED, used=2)
    assert store.decode_unreadable(["failed", "4"]) == UnreadableResult(Unreadable.FAILED, 4)
    assert store.decode_cancel(["cancelled", "queued"]) == CancelResult(Cancel.CANCELLED, "queued")
    assert store.decode_cancel(["ended", "success"]) == CancelResult(Cancel.ENDED, "success")
    assert store.decode_reopen(["refused", "success"]) == ReopenResult(Reopen.REFUSED, "success")
    assert store.decode_reopen(["reopened"]) == ReopenResult(Reopen.REOPENED)
    with pytest.raises(ValueError):
        store.decode_claim(1)  # the numeric answers of old are no answer at all


def test_every_script_loads_with_the_shared_checks_first() -> None:
    for name in (*SCRIPTS, "owners"):
        text = store._SCRIPTS[name].text
        # lua_text: the files as written, or with their coverage probes under make test (client/luacov.py)
        assert text.startswith(store.lua_text("common")) and text.endswith(store.lua_text(name))
        assert ("local function died" in text) == (name in ("assign", "claim"))


def test_the_terminal_statuses() -> None:
    assert {Status.SUCCESS, Status.FAILED, Status.CANCELLED} == TERMINAL
    assert "success" in TERMINAL and "queued" not in TERMINAL and Status("failed") is Status.FAILED


def test_a_stored_payload_is_checked_like_a_tasks_message_and_re_encoded() -> None:
    from client.errors import InvalidMessage
    from client.protocol import TaskLimits

    assert store.stored_task("t1", ' {"task-id": "t1", "task": "add", "args": [1]} \n') == \
        '{"v":1,"task-id":"t1","task":"add","args":[1]}'
    for text, why in (("not json", "not valid JSON"), ('{"task-id":"t2","task":"add"}', "another task, 't2'"),
                      ('{"task-id":"t1"}', "'task' must be"),
                      ('{"task-id":"t1","task":"add","options":{"max_retries":99}}', "over this cluster's limit")):
        with pytest.raises(InvalidMessage, match=re.escape(why)):
            store.stored_task("t1", text, TaskLimits(max_retries=5))


def test_no_script_counts_with_a_command_that_fails_on_a_damaged_field() -> None:
    # DESIGN 4.6: HINCRBY (or INCR) on a field someone set to "x" is a Redis error, and every read of
    # that task's message failed with it; count(), bump() and tally() in common.lua read counts totally,
    # and add() runs HINCRBY under redis.pcall, whose error is a value (then the field starts again).
    for path in resources.files("client").joinpath("lua").iterdir():
        code = [line.split("--")[0] for line in path.read_text(encoding="utf-8").splitlines()]
        assert not [c for c in code if re.search(r"'(HINCRBY|INCR|INCRBY|HINCRBYFLOAT)'", c, re.I)
                    and "redis.pcall(" not in c], path.name


def test_a_stored_payload_holding_a_lone_surrogate_is_an_invalid_message_not_a_crash() -> None:
    """A payload text holding a lone surrogate (which UTF-8 cannot encode) is refused like any
    unreadable payload, never a UnicodeEncodeError out of the reader."""
    from client.errors import InvalidMessage

    with pytest.raises(InvalidMessage):
        store.stored_task("t1", '{"task-id": "t1", "task": "add\udcff", "args": []}')


def test_the_failure_fields_hold_the_whole_traceback() -> None:
    import traceback

    try:
        raise ValueError("boom")
    except ValueError as e:
        fields = store.failure_fields(e)
        expected = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    assert fields == {"error": "ValueError: boom", "traceback": expected}
    assert expected.startswith("Traceback (most recent call last):") and expected.endswith("ValueError: boom\n")


def test_a_traceback_that_cannot_be_formatted_is_named_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> list[str]:
        raise RecursionError("too deep")

    monkeypatch.setattr(traceback, "format_exception", broken)  # the module client.store calls it on
    fields = store.failure_fields(ValueError("boom"))
    assert fields == {"error": "ValueError: boom", "traceback": "<unprintable traceback of ValueError>"}


def test_what_a_placed_answer_lacks_is_empty_not_invented() -> None:
    assert store.decode_assign(["placed", 2]) == AssignResult(Assign.PLACED, 2, "", None)
    assert store.decode_assign(["placed", 2, "W1", 7]) == AssignResult(Assign.PLACED, 2, "W1", None)  # not a payload
    assert store.decode_unreadable(["ended"]) == UnreadableResult(Unreadable.ENDED, 0)


def test_a_reply_cannot_be_read_before_its_batch_ran() -> None:
    reply: store.Reply[int] = store.Reply()
    with pytest.raises(RuntimeError, match="has not run yet"):
        _ = reply.value
