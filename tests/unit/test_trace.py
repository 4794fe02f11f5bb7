"""The trace mode (client/trace.py) and its arithmetic (bench/trace_table.py, bench/trace.py).

No cluster: the marks are made up, or written by the tracer itself into a
temporary directory. No timing is asserted.
"""

from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kafka.future import Future

from bench import trace as trace_cli
from bench import trace_table as tt
from client import trace
from client.trace import Mark

ROOT = Path(__file__).resolve().parents[2]


# --- the tracer ---------------------------------------------------------------
def test_a_mark_line_reads_back() -> None:
    line = trace.format_mark("t-1", "sched.polled", 1764658800.123456, 42)
    assert line == "t-1\tsched.polled\t1764658800.123456\t42\n"
    assert trace.parse_mark(line) == Mark("t-1", "sched.polled", 1764658800.123456, 42)


@pytest.mark.parametrize("line", ["", "\n", "t\tstep\t1.0\n", "t\tstep\tx\t1\n", "t\tstep\t1.0\tpid\n",
                                  "\tstep\t1.0\t1\n", "t\t\t1.0\t1\n", "t\tstep\t1.0\t1\textra\n"])
def test_a_torn_or_foreign_line_is_skipped(line: str) -> None:
    assert trace.parse_mark(line) is None


def _fresh(monkeypatch: pytest.MonkeyPatch, value: str | None) -> ModuleType:
    """client.trace imported again with YADTQ_TRACE set to ``value`` (or unset); the original is put back after."""
    if value is None:
        monkeypatch.delenv(trace.ENV, raising=False)
    else:
        monkeypatch.setenv(trace.ENV, value)
    monkeypatch.setattr(trace, "_fd", -1)
    return importlib.reload(trace)


@pytest.fixture
def restore_trace(monkeypatch: pytest.MonkeyPatch) -> Any:
    yield
    monkeypatch.delenv(trace.ENV, raising=False)
    if trace._fd >= 0:
        os.close(trace._fd)
    importlib.reload(trace)


class _Future:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_callback(self, f: Any) -> None:
        self.callbacks.append(f)

    def add_errback(self, f: Any) -> None:
        self.callbacks.append(f)


class _Record:
    def __init__(self, value: bytes) -> None:
        self.value = value


def test_unset_the_tracer_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         restore_trace: None) -> None:
    monkeypatch.chdir(tmp_path)
    t = _fresh(monkeypatch, None)
    assert t.TRACING is False
    t.mark("a", "step")
    t.mark_all(["a", "b"], "step")
    fut = _Future()
    t.on_ack([fut], ["a"], "ack")
    for cb in fut.callbacks:
        cb(None)
    t.polled({"tp": [_Record(b'{"task-id": "a"}')]}, "polled", 0.0)
    assert list(tmp_path.iterdir()) == []
    assert t._fd == -1  # not even opened


def test_the_processes_bind_the_switch_at_import() -> None:
    """Unset when the test run started: every trace point's ``if`` reads False."""
    code = ("import client.api, supervisor.scheduler, worker_pool.worker; "
            "print(client.api.TRACING, supervisor.scheduler.TRACING, worker_pool.worker.TRACING)")
    env = {k: v for k, v in os.environ.items() if k != trace.ENV} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_set_each_step_is_a_line_of_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 restore_trace: None) -> None:
    t = _fresh(monkeypatch, str(tmp_path / "marks"))
    assert t.TRACING is True
    t.mark("a", "one", 10.5)
    t.mark_all(["a", "b"], "two")
    fut = _Future()
    t.on_ack([fut], ["b"], "acked")
    t.polled({"tp": [_Record(b'{"task-id": "c", "task": "add"}'), _Record(b"not json")]}, "polled", 9.0)
    fut.callbacks[0]("metadata")  # the producer's network thread, on the broker's answer
    files = list((tmp_path / "marks").iterdir())
    assert [f.name for f in files] == [f"trace-{os.getpid()}.tsv"]
    marks = t.read(tmp_path / "marks")
    assert [(m.task_id, m.step) for m in marks] == [("a", "one"), ("a", "two"), ("b", "two"),
                                                     ("c", "polled.entered"), ("c", "polled"), ("b", "acked")]
    assert marks[0].at == 10.5 and marks[3].at == 9.0
    assert {m.pid for m in marks} == {os.getpid()}


# --- the arithmetic -------------------------------------------------------------
def _marks(task: str, times: dict[str, float]) -> list[Mark]:
    return [Mark(task, step, at, 1) for step, at in times.items()]


CHAIN = (tt.Step("a->b", "a", "b"), tt.Step("b->c", "b", "c"))


def test_by_task_keeps_the_prefix_and_the_first_time_of_a_repeated_step() -> None:
    marks = [*_marks("trace-1", {"a": 1.0, "b": 2.0}), Mark("trace-1", "b", 1.5, 2), Mark("trace-1", "b", 3.0, 2),
             *_marks("warm-1", {"a": 0.0})]
    assert tt.by_task(marks, "trace-") == {"trace-1": {"a": 1.0, "b": 1.5}}


def test_complete_counts_the_missing_marks() -> None:
    tasks = {"t2": {"a": 0.0, "b": 1.0, "c": 2.0}, "t1": {"a": 0.0}, "t3": {"a": 0.0, "c": 1.0}}
    ok, missing = tt.complete(tasks, CHAIN)
    assert ok == ["t2"]
    assert missing == {"b": 2, "c": 1}


def test_intervals_are_milliseconds_per_task_and_may_be_negative() -> None:
    tasks = {"t1": {"a": 10.0, "b": 10.002, "c": 10.001}, "t2": {"a": 20.0, "b": 20.004}}
    got = tt.intervals(tasks, CHAIN)
    assert got["a->b"] == pytest.approx([2.0, 4.0])
    assert got["b->c"] == pytest.approx([-1.0])  # t2 has no c; t1's c came first (another process's clock read)
    assert tt.intervals(tasks, CHAIN, ["t2"])["a->b"] == pytest.approx([4.0])


def test_stats() -> None:
    assert tt.stats([]) == {"n": 0}
    s = tt.stats([1.0, 2.0, 3.0, 4.0, 10.0])
    assert s["n"] == 5 and s["p50"] == 3.0 and s["mean"] == 4.0
    assert s["p90"] == pytest.approx(7.6) and s["p99"] == pytest.approx(9.76)


def test_analyse_adds_up_the_chain_and_shows_what_the_p50s_leave_out() -> None:
    # a->b is 1 ms, 1 ms, 5 ms; b->c 5 ms, 1 ms, 1 ms: each p50 is 1, each round trip 6, 2, 6.
    tasks = {"t1": {"a": 0.0, "b": 0.001, "c": 0.006}, "t2": {"a": 1.0, "b": 1.001, "c": 1.002},
             "t3": {"a": 2.0, "b": 2.005, "c": 2.006}, "t4": {"a": 3.0}}
    a = tt.analyse(tasks, CHAIN, (tt.Step("a->c", "a", "c"),), measured_ms=[7.0, 7.0, 7.0])
    assert (a["tasks"], a["complete"], a["missing_marks"]) == (4, 3, {"b": 1, "c": 1})
    assert [r["p50"] for r in a["steps"]] == pytest.approx([1.0, 1.0])
    rows = {r["step"]: r for r in a["summary"]}
    assert rows["sum of the steps"]["p50"] == pytest.approx(2.0)
    assert rows["round trip (first mark -> last)"]["p50"] == pytest.approx(6.0)
    assert rows["round trip as the bench timed it"]["p50"] == pytest.approx(7.0)
    unattributed = rows["unattributed (round trip p50 - sum of step p50s)"]
    assert unattributed["p50"] == pytest.approx(4.0)
    assert unattributed["mean"] == pytest.approx(0.0)  # the means do add up: nothing lost between steps
    assert [r["step"] for r in a["side"]] == ["a->c"]
    assert a["side"][0]["mean"] == pytest.approx(14 / 3)
    text = tt.format_system("X", a)
    assert "3 of 4 traced round trips complete" in text and "missing marks: b x1, c x1" in text
    assert "unattributed" in text and "a->c" in text


def test_analyse_of_nothing_complete() -> None:
    a = tt.analyse({"t1": {"a": 0.0}}, CHAIN, ())
    assert a["complete"] == 0 and [r["n"] for r in a["steps"]] == [0, 0]
    assert [r["step"] for r in a["summary"]] == ["sum of the steps", "round trip (first mark -> last)"]
    tt.format_system("X", a)  # renders


def test_the_chains_are_unbroken() -> None:
    """Each step starts where the one before ended, so a task's steps add up to its round trip."""
    for chain in (tt.YADTQ_CHAIN, tt.FLOOR_CHAIN):
        assert all(x.end == y.start for x, y in itertools.pairwise(chain))
        assert len({s.label for s in chain}) == len(chain)


def _run(base: float, steps: tuple[tt.Step, ...], gap_ms: float) -> dict[str, float]:
    names = [steps[0].start, *(s.end for s in steps)]
    return {name: base + i * gap_ms / 1000 for i, name in enumerate(names)}


def test_compare_sets_each_hop_against_the_floor() -> None:
    yadtq = {"trace-1": _run(0.0, tt.YADTQ_CHAIN, 2.0) | {"sched.polled.entered": 0.0, "worker.polled.entered": 0.0}}
    floor = {"floor-1": _run(0.0, tt.FLOOR_CHAIN, 1.0)}
    rows = {r["hop"]: r for r in tt.compare(yadtq, floor)}
    assert rows["hop TASKS (ack -> poll returns)"]["extra_p50"] == pytest.approx(1.0)
    assert rows["hop 1 incl. produce"]["yadtq_p50"] == pytest.approx(4.0)
    assert rows["hop 1 incl. produce"]["floor_p50"] == pytest.approx(2.0)
    assert "extra p50" in tt.format_compare(list(rows.values()))
    assert "extra_p50" not in tt.compare(yadtq, {})[0]


def test_the_tables_of_a_run_from_its_marks() -> None:
    marks = [*_marks("trace-1", _run(0.0, tt.YADTQ_CHAIN, 1.0)), *_marks("floor-1", _run(5.0, tt.FLOOR_CHAIN, 0.5)),
             *_marks("warm-x", {"rt.start": 0.0})]
    result = trace_cli.tables(marks, {"yadtq": [12.5]})
    assert result["yadtq"]["complete"] == 1 and result["floor"]["complete"] == 1
    rows = {r["step"]: r for r in result["yadtq"]["summary"]}
    assert rows["round trip (first mark -> last)"]["p50"] == pytest.approx(12.0)
    assert rows["round trip as the bench timed it"]["p50"] == 12.5
    text = trace_cli.report(result)
    assert "YADTQ" in text and "raw floor" in text and "against the raw floor" in text
    assert "floor" not in trace_cli.tables(marks[:13])


def test_from_dir_remakes_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "trace-x"
    d.mkdir()
    (d / "trace-1.tsv").write_text("".join(trace.format_mark(m.task_id, m.step, m.at, 1)
                                           for m in _marks("trace-1", _run(0.0, tt.YADTQ_CHAIN, 1.0))))
    assert trace_cli.main(["--from-dir", str(d)]) == 0
    assert "1 of 1 traced round trips complete" in capsys.readouterr().out
    assert (tmp_path / "trace-x.json").exists()


@pytest.mark.parametrize(("given", "expected"), [
    (["--trace"], []),
    (["--trace", "50", "--workers", "2"], ["--n", "50", "--workers", "2"]),
    (["--trace=30"], ["--n", "30"]),
    (["--trace", "--submit", "raw"], ["--submit", "raw"]),
    (["--n", "5"], ["--n", "5"]),
    (["--trace", "10", "--floor", "yadtq"], ["--n", "10", "--floor", "yadtq"]),
])
def test_bench_trace_n_becomes_the_trace_tools_arguments(given: list[str], expected: list[str]) -> None:
    assert trace_cli.own_args(given) == expected
    ns = trace_cli.parse_args(expected)
    assert ns.submit in ("client", "raw")


# --- the scheduler's trace points, switched on (fakes: no Kafka, no Redis) -------
class _Sent(_Future):
    """A produce future: done at once, answered when the test says (the broker's ack)."""

    def succeeded(self) -> bool:
        return True


def test_the_schedulers_trace_points_mark_one_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   restore_trace: None) -> None:
    import supervisor.scheduler as sched
    import worker_pool.builtin_tasks  # noqa: F401  (registers add)
    from client.protocol import Heartbeat, encode_event
    from client.store import Assign, AssignResult, Reply
    from tests.unit.test_scheduler_clock import Producer, Store, record, scheduler

    t = _fresh(monkeypatch, str(tmp_path))
    monkeypatch.setattr(sched, "TRACING", True)
    monkeypatch.setattr(sched, "trace", t)

    class Assigning(Store):
        def assign(self, pipe: list[Any], *args: Any) -> Reply[AssignResult]:
            pipe.append(args)
            reply: Reply[AssignResult] = Reply()
            reply._set(AssignResult(Assign.ASSIGNED, attempt=1))
            return reply

        def execute(self, pipe: Any) -> list[Any]:
            return []

    futures: list[_Sent] = []

    class Futures(Producer):
        def send(self, topic: str, value: bytes, headers: Any = None) -> Any:
            super().send(topic, value, headers)
            futures.append(_Sent())
            return futures[-1]

    s, status, _ = scheduler()
    s.store = Assigning()  # type: ignore[assignment]
    s._producer = Futures()  # type: ignore[assignment]
    status.queue.append([record(0, encode_event(Heartbeat("W1", "worker", 42, ts=1.0)))])
    s.loop(1000.0, 100.0)  # W1 is live
    tasks = s._tasks_in
    assert tasks is not None
    tasks.queue.append([record(0, b'{"task-id": "trace-1", "task": "add", "args": [1, 2]}')])  # type: ignore[attr-defined]
    s.loop(1000.1, 100.1)
    assignments = [i for i, (topic, _) in enumerate(s._producer.sent) if topic == "W1"]  # type: ignore[attr-defined]
    assert len(assignments) == 1
    for cb in futures[assignments[0]].callbacks[:1]:
        cb("metadata")  # the broker's ack, on the producer's network thread
    steps = [m.step for m in t.read(tmp_path) if m.task_id == "trace-1"]
    assert steps == ["sched.polled.entered", "sched.polled", "sched.assigned", "sched.send", "sched.flushed",
                     "sched.ack"]


def test_the_workers_trace_points_mark_one_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                restore_trace: None) -> None:
    import worker_pool.worker as worker
    from client.config import Config
    from client.protocol import Task, assignment_bytes, encode
    from client.store import Claim, Finish, Reply
    from tests.unit.test_registry_and_worker import registry
    from tests.unit.test_scheduler_clock import Producer, record

    t = _fresh(monkeypatch, str(tmp_path))
    monkeypatch.setattr(worker, "TRACING", True)

    def answer(value: Any) -> Reply[Any]:
        reply: Reply[Any] = Reply()
        reply._set(value)
        return reply

    class Store:
        def pipeline(self) -> list[Any]:
            return []

        def claim(self, pipe: list[Any], *args: Any) -> Reply[Claim]:
            pipe.append("claim")
            return answer(Claim.RUN)

        def finish(self, pipe: list[Any], *args: Any) -> Reply[Finish]:
            pipe.append("finish")
            return answer(Finish.WRITTEN)

        def execute(self, pipe: list[Any]) -> list[Any]:
            return []

    class Consumer:
        def __init__(self, value: bytes) -> None:
            self.batches = [{"W1": [record(0, value)]}]

        def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[str, list[Any]]:
            return self.batches.pop(0) if self.batches else {}

        def commit(self, offsets: Any) -> None:
            pass

        def commit_async(self, offsets: Any) -> Future:
            """As a broker that answers at once: the commit is done when it returns."""
            self.commit(offsets)
            return Future().success(None)

    w = worker.Worker(Config(), "W1", registry())
    payload = encode(Task("trace-2", "add", [1, 2]).to_wire()).decode()
    w._consumer = Consumer(assignment_bytes(payload, 1, "W1"))  # type: ignore[assignment]
    w.store = Store()  # type: ignore[assignment]
    w._producer = Producer()  # type: ignore[assignment]
    w.loop()
    steps = [m.step for m in t.read(tmp_path) if m.task_id == "trace-2"]
    assert steps == ["worker.polled.entered", "worker.polled", "worker.claimed", "worker.ran", "worker.finished"]


def test_the_clients_submit_marks_send_ack_and_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      restore_trace: None) -> None:
    import client.api as api
    from client.config import Config

    t = _fresh(monkeypatch, str(tmp_path))
    monkeypatch.setattr(api, "TRACING", True)
    futures: list[_Sent] = []

    class Producer:
        def send(self, topic: str, value: bytes) -> _Sent:
            futures.append(_Sent())
            return futures[-1]

        def flush(self, timeout: float | None = None) -> None:
            for f in futures:
                f.callbacks[0]("metadata")  # the broker's acks, before flush returns

    c = api.Client(Config.from_dict({"redis": {"url": "redis://127.0.0.1:1/0"}}))  # never connected: no command runs
    monkeypatch.setattr(c.store, "foreign_ids", lambda ids: {})
    monkeypatch.setattr(c.store, "execute", lambda batch: [])
    c._producer = Producer()
    c.submit_many([api.TaskSpec("add", (1, 2), task_id="trace-3")])
    steps = [m.step for m in t.read(tmp_path) if m.task_id == "trace-3"]
    assert steps == ["client.send", "client.ack", "client.queued"]
