"""The task registry, and how a worker runs one task (no services needed)."""

from __future__ import annotations

import re
import sys
import time

import pytest

from client.config import Config
from client.errors import ConfigError, InvalidMessage, UnknownTask
from client.protocol import Assignment, Heartbeat, Task, TaskOptions
from supervisor.supervisor import Supervisor, restart_delay
from worker_pool.registry import Registry
from worker_pool.worker import Worker


def registry() -> Registry:
    r = Registry()

    def add(a: int, b: int) -> int:
        return a + b

    def boom() -> None:
        raise ValueError("bad value")

    def slow(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def unjsonable() -> object:
        return object()

    def deep() -> object:  # deep enough that json.dumps runs out of stack
        value: list[object] = []
        for _ in range(100_000):
            value = [value]
        return value

    def file_name() -> str:  # what os.listdir gives for a name that is not UTF-8
        return b"caf\xe9.txt".decode("utf-8", "surrogateescape")

    def raise_surrogate() -> None:
        raise ValueError("bad name caf\udce9")

    for f in (add, boom, slow, unjsonable, deep, file_name, raise_surrogate, exits, interrupted, unprintable,
              mapping_raises, mapping_exits):
        r.register(f)
    return r


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


class _BadMapping(dict):  # type: ignore[type-arg]
    def items(self):  # type: ignore[no-untyped-def]
        raise LookupError("items() refused")


class _ExitingMapping(dict):  # type: ignore[type-arg]
    def items(self):  # type: ignore[no-untyped-def]
        raise SystemExit(3)


def exits(code: int) -> None:
    sys.exit(code)


def interrupted(kind: str) -> None:
    raise KeyboardInterrupt() if kind == "keyboard" else GeneratorExit("closed")


def unprintable() -> None:
    raise _Unprintable()


def mapping_raises() -> object:
    return _BadMapping(a=1)


def mapping_exits() -> object:
    return [_ExitingMapping(a=1)]


def run(task: Task) -> tuple[str, dict[str, str]]:
    w = Worker(Config(), "W1", registry())
    return w.execute(Assignment(task, 1, "W1"))


def test_unknown_task_lists_what_is_registered() -> None:
    with pytest.raises(UnknownTask, match=r"unknown task 'nope'.*registered: add, boom"):
        registry().get("nope")


def test_arguments_are_checked_against_the_signature() -> None:
    r = registry()
    assert r.check_call("add", [1], {"b": 2}).name == "add"
    expected = "wrong arguments for task 'add': too many positional arguments (it takes (a, b))"
    with pytest.raises(InvalidMessage, match=re.escape(expected)):
        r.check_call("add", [1, 2, 3], {})


def test_the_fit_of_an_argument_shape_is_remembered_per_task_and_names() -> None:
    r = registry()
    for _ in range(2):  # the second time from what is remembered, with the same answers
        assert r.check_call("add", [1], {"b": 2}).name == "add"
        assert r.check_call("add", ["any", "values"], {}).name == "add"
        with pytest.raises(InvalidMessage, match=r"unexpected keyword argument 'c'"):
            r.check_call("add", [1, 2], {"c": 3})
        with pytest.raises(InvalidMessage, match=r"missing a required argument: 'b'"):
            r.check_call("add", [1], {"c": 2})  # the names count, not only how many
        with pytest.raises(InvalidMessage, match=r"'boom'.*(too many|takes)"):
            r.check_call("boom", [1, 2], {})  # the same shape as add's call above, another task


def test_only_small_argument_shapes_are_remembered() -> None:
    r = registry()
    r.register(lambda **kw: None, "anything")
    many = {f"name{i}": i for i in range(17)}
    long = {"x" * 300: 1}
    for kwargs in (many, long):  # each checked, neither kept: a message may hold a megabyte of names
        assert r.check_call("anything", [], kwargs).name == "anything"
        with pytest.raises(InvalidMessage, match="too many positional arguments"):
            r.check_call("anything", [1], kwargs)
    assert r._fits == {}
    r.check_call("anything", [], {"a": 1})
    assert list(r._fits) == [("anything", 0, ("a",))]


def test_one_name_cannot_mean_two_functions() -> None:
    r = registry()
    with pytest.raises(ConfigError, match="registered twice"):
        r.register(lambda: None, "add")


def test_a_task_module_that_does_not_import_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.modules: cannot import 'no\.such\.module'"):
        Registry().load_modules(["no.such.module"])


def test_builtin_tasks_register() -> None:
    r = Registry()
    import worker_pool.builtin_tasks  # noqa: F401  (registers in the default registry)
    from worker_pool.registry import default_registry

    r.load_modules(["worker_pool.builtin_tasks"])
    assert {"add", "sub", "mul", "div", "sleep", "echo", "fail"} <= set(default_registry.names())


def test_success_stores_json() -> None:
    assert run(Task("t", "add", [1, 2])) == ("success", {"result": "3"})


def test_an_exception_is_recorded_with_its_traceback_and_may_be_retried() -> None:
    status, fields = run(Task("t", "boom"))
    assert status == "raised"
    assert fields["error"] == "ValueError: bad value"
    assert "Traceback" in fields["traceback"] and "boom" in fields["traceback"]


def test_a_result_that_is_not_json_fails_the_task() -> None:
    status, fields = run(Task("t", "unjsonable"))
    assert status == "failed" and fields["error"] == ("InvalidResult: the task's return value cannot be stored as "
                                                      "JSON: Object of type object is not JSON serializable")


@pytest.mark.parametrize(("name", "error"), [
    ("deep", "InvalidResult: the task's return value is nested too deeply to store as JSON"),
    ("file_name", "InvalidResult: the task's return value cannot be stored as JSON: 'utf-8' codec can't encode "
                  "character '\\udce9'"),
])
def test_a_result_that_cannot_be_stored_fails_the_task_once(name: str, error: str) -> None:
    # Defect 8: these raised out of execute (RecursionError, UnicodeEncodeError) and killed the worker.
    status, fields = run(Task("t", name))
    assert status == "failed" and fields["error"].startswith(error), fields
    assert all(v.encode("utf-8") for v in fields.values())


def test_a_task_error_with_a_lone_surrogate_can_be_stored() -> None:
    status, fields = run(Task("t", "raise_surrogate"))
    assert status == "raised" and fields["error"] == "ValueError: bad name caf\\udce9"
    assert all(v.encode("utf-8") for v in fields.values())


@pytest.mark.parametrize(("task", "error"), [
    (Task("t", "exits", [3]), "SystemExit: 3"),
    (Task("t", "exits", [0]), "SystemExit: 0"),
    (Task("t", "interrupted", ["keyboard"]), "KeyboardInterrupt: "),
    (Task("t", "interrupted", ["generator"]), "GeneratorExit: closed"),
    (Task("t", "unprintable"), "_Unprintable: <unprintable _Unprintable object>"),
])
def test_whatever_a_task_raises_is_its_error_and_may_be_retried(task: Task, error: str) -> None:
    # DESIGN 4.6: sys.exit, KeyboardInterrupt, GeneratorExit or an exception whose __str__ raises
    # escaped execute and ended the worker (SystemExit(3) even looked like "service lost").
    status, fields = run(task)
    assert status == "raised" and fields["error"] == error, fields
    assert "Traceback" in fields["traceback"]


@pytest.mark.parametrize(("name", "error"), [
    ("mapping_raises", "LookupError raised while encoding it: items() refused"),
    ("mapping_exits", "SystemExit: 3"),
])
def test_a_result_whose_own_code_raises_while_stored_fails_the_task(name: str, error: str) -> None:
    status, fields = run(Task("t", name))
    assert status == "failed" and fields["error"].startswith("InvalidResult: "), fields
    assert error in fields["error"], fields


def test_wrong_arguments_fail_without_a_retry() -> None:
    status, fields = run(Task("t", "add", [1]))
    assert status == "failed" and fields["error"].startswith("InvalidMessage: wrong arguments for task 'add'")


def test_the_time_limit_stops_a_long_task() -> None:
    started = time.monotonic()
    status, fields = run(Task("t", "slow", [10], options=TaskOptions(timeout=0.2)))
    assert status == "failed"
    assert fields["error"] == "TaskTimeLimitExceeded: task ran past its time limit of 0.2s"
    assert time.monotonic() - started < 5


def test_restart_delay_backs_off_after_the_budget() -> None:
    def delay(n: int) -> float:
        return restart_delay([100.0] * n, 110.0, max_restarts=3, window=60, max_backoff=8)

    assert [delay(n) for n in range(7)] == [0, 0, 0, 1, 2, 4, 8]
    assert restart_delay([0.0] * 10, 1000.0, 3, 60, 8) == 0  # old restarts fall out of the window


class _Alive:
    """Stands in for a running child process."""

    pid = 42
    exitcode = None

    def is_alive(self) -> bool:
        return True


def test_heartbeat_silence_counts_only_once_heartbeats_flow_after_kafka_returns() -> None:
    sup = Supervisor(Config(), say=lambda line: None)  # heartbeat_timeout 6, startup_timeout 30
    w1 = sup.children["W1"]
    w1.process = _Alive()  # type: ignore[assignment]
    sup.liveness.watch("W1", 42, 90.0)
    sup._on_heartbeat(Heartbeat("W1", "worker", 42, 0.0), 100.0)  # times are arrivals, on the monotonic clock
    assert sup._death(w1, 107.0) == "no heartbeat for 7.0s"

    sup.liveness.pause()  # Kafka went away: silence says nothing
    assert sup._death(w1, 200.0) is None
    sup.liveness.resume(200.0)  # back at 200: judged again at the latest after startup_timeout
    assert sup._death(w1, 229.0) is None
    assert sup._death(w1, 231.0) == "no heartbeat for 31.0s"

    sup.liveness.pause()
    sup.liveness.resume(200.0)
    sup._on_heartbeat(Heartbeat("W1", "worker", 42, 0.0), 205.0)  # ... or as soon as one arrives
    assert sup._death(w1, 210.0) is None
    assert sup._death(w1, 211.5) == "no heartbeat for 6.5s"


@pytest.mark.parametrize("call", [("mul", "x", 10**10), ("mul", [0], 10**9), ("add", "a", "b"), ("div", True, 1),
                                  ("sub", None, 1)])
def test_the_builtin_arithmetic_takes_numbers_only(call: tuple[object, ...]) -> None:
    """mul("x", 10**10) held the GIL building ten gigabytes: its worker's heartbeats
    stopped and the supervisor killed it, again and again (found by make fuzz)."""
    from worker_pool import builtin_tasks

    name, *args = call
    with pytest.raises(TypeError, match=f"{name} takes numbers"):
        getattr(builtin_tasks, str(name))(*args)
