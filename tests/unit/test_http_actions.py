"""The HTTP actions' bodies: which client/ops.py function each calls, with what; bad bodies refused."""

from __future__ import annotations

from typing import Any

import pytest

from client import ops
from client.errors import YadtqError
from supervisor import http
from supervisor.http import ACTIONS, PAGE_HEADERS, STATIC, outcomes, static_file


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Replace the ops functions by recorders: each call is appended, and answers one outcome."""
    seen: list[tuple[Any, ...]] = []

    def recorder(name: str) -> Any:
        def call(client: Any, *args: Any) -> list[ops.Outcome]:
            seen.append((name, *args))
            return [ops.Outcome("x", "reopened")]
        return call
    for name in ("cancel", "retry", "retry_failed", "replay", "purge"):
        monkeypatch.setattr(ops, name, recorder(name))  # supervisor.http calls them as ops.NAME
    return seen


def test_each_action_calls_its_operation(calls: list[tuple[Any, ...]]) -> None:
    ACTIONS["cancel"](None, {"ids": ["a", "b"]}, "me")  # type: ignore[arg-type]
    ACTIONS["retry"](None, {"ids": ["a"]}, "me")  # type: ignore[arg-type]
    ACTIONS["retry"](None, {"failed": True}, "me")  # type: ignore[arg-type]
    ACTIONS["retry"](None, {"failed": True, "task": "add", "since": "1h30m"}, "me")  # type: ignore[arg-type]
    ACTIONS["dead-letters/replay"](None, {"ids": ["0:3"]}, "me")  # type: ignore[arg-type]
    ACTIONS["dead-letters/replay"](None, {"all": True}, "me")  # type: ignore[arg-type]
    ACTIONS["purge"](None, {"all": True}, "me")  # type: ignore[arg-type]
    ACTIONS["purge"](None, {"ids": ["a"]}, "me")  # type: ignore[arg-type]
    assert calls == [("cancel", ["a", "b"], "me"), ("retry", ["a"], "me"), ("retry_failed", None, None, "me"),
                     ("retry_failed", "add", 5400.0, "me"), ("replay", ["0:3"]), ("replay", None),
                     ("purge", "me"), ("purge", "me", ["a"])]


@pytest.mark.parametrize(("action", "body", "why"), [
    ("cancel", {}, "ids: expected a non-empty list"),
    ("cancel", {"ids": []}, "ids: expected a non-empty list"),
    ("cancel", {"ids": "a"}, "ids: expected a list of up to"),
    ("retry", {"ids": [1]}, "ids: expected a list of up to"),
    ("retry", {"failed": True, "ids": ["a"]}, "either ids or failed"),
    ("retry", {"failed": True, "task": 3}, "task: expected a string"),
    ("retry", {"failed": "yes"}, "ids: expected a non-empty list"),  # only true means all the failed ones
    ("dead-letters/replay", {}, "ids: expected a non-empty list"),  # nothing replays all by accident
    ("purge", {}, "ids: expected a non-empty list"),                # nor purges all
    ("purge", {"all": 1}, "ids: expected a non-empty list"),
])
def test_a_bad_body_is_refused_before_any_operation(calls: list[tuple[Any, ...]], action: str, body: dict[str, Any],
                                                     why: str) -> None:
    with pytest.raises(http._BadRequest, match=why):
        ACTIONS[action](None, body, "me")  # type: ignore[arg-type]
    assert calls == []


def test_a_bad_duration_is_the_ops_error(calls: list[tuple[Any, ...]]) -> None:
    with pytest.raises(YadtqError, match="not a duration"):
        ACTIONS["retry"](None, {"failed": True, "since": "soon"}, "me")  # type: ignore[arg-type]


def test_the_answer_counts_what_was_done() -> None:
    assert outcomes([ops.Outcome("a", "reopened"), ops.Outcome("b", "refused", "it is success")]) == {
        "done": 1, "count": 2, "outcomes": [{"id": "a", "result": "reopened", "detail": "", "done": True},
                                            {"id": "b", "result": "refused", "detail": "it is success",
                                             "done": False}]}


def test_the_dashboard_is_package_data_with_no_inline_script_and_nothing_from_elsewhere() -> None:
    page = static_file("index.html").decode()
    assert '<script src="dashboard.js"' in page and "<script>" not in page and "style=" not in page
    for name, _ in STATIC.values():
        text = static_file(name).decode()
        assert "http://" not in text and "https://" not in text  # offline: no CDN
    script = static_file("dashboard.js").decode()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script
    assert "script-src 'self'" in PAGE_HEADERS["Content-Security-Policy"]
