"""The supervisor's decisions about its children, in-process (issue 12, supervisor.py's mutants).

What it does when a child exits or goes silent (kill, careful mode, the worker-down event, when to
start it again), how it starts, announces and stops children. The process boundary is stood in
for: a child's process, the Kafka producer and consumer, the lease and the probe. Time is passed
in, on the monotonic clock as in the supervisor. No services.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from client import kafka as kafka_io
from client.config import Config
from client.errors import LeaseLost, ServiceUnavailable
from client.lease import Renewal
from client.protocol import Heartbeat, TasksFinished, WorkerDown, encode_event, parse_event
from client.store import Keys
from supervisor import supervisor as supervisor_module
from supervisor.scheduler import run_scheduler
from supervisor.supervisor import Child, Supervisor
from worker_pool.process import EXIT_FENCED, EXIT_HARD_LIMIT, EXIT_SERVICE_LOST
from worker_pool.worker import run_worker


class Proc:
    """Stands in for a child's process: alive until it exits (or is killed, if ``killable``)."""

    def __init__(self, pid: int = 42, exitcode: int | None = None, killable: bool = True) -> None:
        self.pid, self.exitcode, self.killable = pid, exitcode, killable
        self.calls: list[Any] = []

    def is_alive(self) -> bool:
        return self.exitcode is None

    def kill(self) -> None:
        self.calls.append("kill")
        if self.killable:
            self.exitcode = -9

    def terminate(self) -> None:
        self.calls.append("terminate")
        if self.killable:
            self.exitcode = -15

    def join(self, timeout: float | None = None) -> None:
        self.calls.append(("join", timeout))

    def close(self) -> None:
        self.calls.append("close")


class Sent:
    def __init__(self, ok: bool) -> None:
        self.ok, self.exception = ok, None if ok else "refused"

    def succeeded(self) -> bool:
        return self.ok


class Producer:
    """Keeps what is sent; ``ok`` False: every send fails (Kafka away)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.ok = True

    def send(self, topic: str, value: bytes) -> Sent:
        self.sent.append((topic, value))
        return Sent(self.ok)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


class Lease:
    def __init__(self, found: Renewal) -> None:
        self.found = found

    def renew(self) -> Renewal:
        return self.found


class Redis:
    def ping(self) -> bool:
        return True


def supervisor(monkeypatch: pytest.MonkeyPatch, **supervisor_cfg: Any) -> tuple[Supervisor, list[str], Producer]:
    """A supervisor of 2 workers (max_restarts 2 in 60 s, backoff up to 8 s) whose probe finds
    both services up and whose children are started by recording them."""
    lines: list[str] = []
    cfg = Config.from_dict({"workers": {"count": 2},
                            "supervisor": {"max_restarts": 2, "restart_window": 60, "max_backoff": 8,
                                           **supervisor_cfg}})
    sup = Supervisor(cfg, say=lines.append)
    producer = Producer()
    sup._producer = producer  # type: ignore[assignment]
    sup.redis = Redis()  # type: ignore[assignment]
    monkeypatch.setattr(kafka_io, "reachable", lambda servers, timeout=1.0: True)
    return sup, lines, producer


def started(sup: Supervisor, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Record each child start (name, careful) instead of starting a process."""
    spawned: list[tuple[str, bool]] = []

    def spawn(c: Child) -> None:
        spawned.append((c.name, c.careful))
        c.process = Proc(pid=1000 + len(spawned))  # type: ignore[assignment]

    monkeypatch.setattr(sup, "_spawn", spawn)
    return spawned


def downs(producer: Producer) -> list[tuple[str, str, int]]:
    events = [parse_event(v) for _, v in producer.sent]
    return [(e.worker, e.reason, e.pid) for e in events if isinstance(e, WorkerDown)]


def test_a_crashed_worker_is_announced_down_with_its_pid_and_restarted_careful_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, producer = supervisor(monkeypatch)
    spawned = started(sup, monkeypatch)
    w1 = sup.children["W1"]
    proc = Proc(pid=42, exitcode=1)
    w1.process = proc  # type: ignore[assignment]
    sup._check(w1, 100.0)
    assert downs(producer) == [("W1", "exit code 1", 42)]
    assert [t for t, _ in producer.sent] == [sup.config.topics.status]
    assert proc.calls == ["close"] and w1.process is None
    assert (w1.careful, w1.due, w1.restarts) == (True, 100.0, [100.0])
    assert lines == ["W1 is dead (exit code 1)"]  # the first restart is at once: no backoff said
    sup._check(w1, 100.0)  # due now: started again, careful
    assert spawned == [("W1", True)]


@pytest.mark.parametrize(("exitcode", "reason"),
                         [(0, "exit code 0"), (EXIT_HARD_LIMIT, "exit code 70: hard time limit")])
def test_an_expected_exit_restarts_without_careful_mode(monkeypatch: pytest.MonkeyPatch, exitcode: int,
                                                        reason: str) -> None:
    sup, _, producer = supervisor(monkeypatch)
    w1 = sup.children["W1"]
    w1.careful = True  # an earlier crash's: this exit resets it
    w1.process = Proc(exitcode=exitcode)  # type: ignore[assignment]
    sup._check(w1, 100.0)
    assert not w1.careful and w1.process is None
    assert downs(producer) == [("W1", reason, 42)]


def test_a_silent_worker_is_killed_before_its_tasks_move(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, producer = supervisor(monkeypatch)  # heartbeat_timeout 6
    w1 = sup.children["W1"]
    proc = Proc(pid=42)
    w1.process = proc  # type: ignore[assignment]
    sup.liveness.watch("W1", 42, 90.0)
    sup._on_heartbeat(Heartbeat("W1", "worker", 42, 0.0), 100.0)
    sup._check(w1, 105.9)
    assert proc.calls == [] and w1.process is proc  # type: ignore[comparison-overlap]
    sup._check(w1, 107.0)
    assert proc.calls == ["kill", ("join", 5), "close"] and w1.process is None
    assert downs(producer) == [("W1", "no heartbeat for 7.0s", 42)]
    assert w1.careful  # it may have hung on a message: its replacement reads carefully


def test_a_worker_that_does_not_die_when_killed_keeps_its_tasks_until_it_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second process on its topic beside one still running would share its tasks: wait."""
    sup, lines, producer = supervisor(monkeypatch)
    spawned = started(sup, monkeypatch)
    w1 = sup.children["W1"]
    proc = Proc(pid=42, killable=False)
    w1.process = proc  # type: ignore[assignment]
    sup.liveness.watch("W1", 42, 90.0)
    sup._check(w1, 200.0)  # never beat: lapsed at the latest after startup_timeout (30 s)
    assert proc.calls == ["kill", ("join", 5)] and w1.process is proc  # type: ignore[comparison-overlap]
    assert producer.sent == [] and spawned == [] and w1.restarts == []
    assert lines == ["W1 (pid 42) has not died yet after SIGKILL; waiting"]
    proc.exitcode = -9
    sup._check(w1, 201.0)
    assert downs(producer) == [("W1", "exit code -9", 42)] and w1.process is None


def test_the_scheduler_is_restarted_without_a_worker_down_event(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, producer = supervisor(monkeypatch)
    sched = sup.children["scheduler"]
    sched.process = Proc(exitcode=1)  # type: ignore[assignment]
    sup._check(sched, 100.0)
    assert producer.sent == [] and sched.process is None and sched.due == 100.0 and sched.careful


def test_repeated_crashes_back_off_and_old_ones_leave_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch)  # max_restarts 2 within 60 s, backoff up to 8 s
    w1 = sup.children["W1"]
    dues = []
    for at in (100.0, 101.0, 102.0, 103.0):
        w1.process = Proc(exitcode=1)  # type: ignore[assignment]
        sup._check(w1, at)
        dues.append(w1.due - at)
    assert dues == [0.0, 0.0, 1.0, 2.0]
    assert "W1 is crashing repeatedly: next start in 2s" in lines
    w1.process = Proc(exitcode=1)  # type: ignore[assignment]
    sup._check(w1, 162.5)  # the crashes at 100 and 101 (and 102) are 60 s old or more
    assert w1.restarts == [103.0, 162.5] and w1.due == 162.5


def test_a_child_that_lost_a_service_waits_for_it_without_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, _ = supervisor(monkeypatch)
    spawned = started(sup, monkeypatch)
    kafka = {"up": False}
    monkeypatch.setattr(kafka_io, "reachable", lambda servers, timeout=1.0: kafka["up"])
    w1 = sup.children["W1"]
    w1.restarts = [99.0, 99.5]  # its restart budget is spent: a crash would back off
    w1.process = Proc(exitcode=EXIT_SERVICE_LOST)  # type: ignore[assignment]
    sup._check(w1, 100.0)
    assert sup.up["kafka"] is False and sup._last_probe == 100.0  # probed at once, not at the next interval
    assert w1.due == 100.0 and not w1.careful
    sup._check(w1, 101.0)
    assert spawned == []  # not while Kafka is away
    kafka["up"] = True
    sup._probe(102.0)
    sup._check(w1, 102.0)
    assert spawned == [("W1", False)]


def test_a_service_exit_while_both_services_answer_backs_off_like_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, _ = supervisor(monkeypatch)
    w1 = sup.children["W1"]
    w1.restarts = [99.0, 99.5]
    w1.process = Proc(exitcode=EXIT_SERVICE_LOST)  # type: ignore[assignment]
    sup._check(w1, 100.0)
    assert w1.due == 101.0


def test_a_fenced_child_makes_the_supervisor_check_its_lease_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, _ = supervisor(monkeypatch)
    w1 = sup.children["W1"]
    sup._lease = Lease(Renewal.HELD)  # type: ignore[assignment]
    w1.process = Proc(exitcode=EXIT_FENCED)  # type: ignore[assignment]
    sup._check(w1, 100.0)  # still ours: restarted as usual
    assert w1.process is None and w1.due == 100.0
    sup._lease = Lease(Renewal.LOST)  # type: ignore[assignment]
    w1.process = Proc(exitcode=EXIT_FENCED)  # type: ignore[assignment]
    with pytest.raises(LeaseLost):
        sup._check(w1, 101.0)
    w1.process = Proc(exitcode=1)  # type: ignore[assignment]
    sup._check(w1, 102.0)  # any other exit: the lease is not asked
    assert w1.process is None


def test_no_child_is_judged_or_started_while_stopping(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, producer = supervisor(monkeypatch)
    spawned = started(sup, monkeypatch)
    w1 = sup.children["W1"]
    w1.process = Proc(exitcode=1)  # type: ignore[assignment]
    sup.stop()
    sup._check(w1, 100.0)
    sup._check(sup.children["W2"], 100.0)
    assert producer.sent == [] and spawned == [] and w1.process is not None


def test_a_child_waits_for_its_due_time_and_for_both_services(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, _ = supervisor(monkeypatch)
    spawned = started(sup, monkeypatch)
    w1 = sup.children["W1"]
    w1.due = 110.0
    sup._check(w1, 109.9)
    assert spawned == []
    sup.up["redis"] = False
    sup._check(w1, 110.0)
    assert spawned == []
    sup.up["redis"] = True
    sup._check(w1, 110.0)
    assert spawned == [("W1", False)]


def test_worker_down_events_are_kept_while_kafka_refuses_them(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, producer = supervisor(monkeypatch)
    producer.ok = False
    sup._announce_down("W1", "exit code 1", 42)
    assert lines[-1].startswith("cannot tell the scheduler that W1 died (Kafka: ")
    sup._send_announcements()
    assert len(producer.sent) == 2  # sent again next round
    producer.ok = True
    sup._send_announcements()
    sup._send_announcements()
    assert [(e.worker, e.pid) for e in map(parse_event, (v for _, v in producer.sent))] == [("W1", 42)] * 3  # type: ignore[union-attr]
    assert sup._unannounced == []


def test_a_producer_that_raises_keeps_the_events_too(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, producer = supervisor(monkeypatch)

    def refuse(topic: str, value: bytes) -> Sent:
        raise ServiceUnavailable("away")

    monkeypatch.setattr(producer, "send", refuse)
    sup._announce_down("W1", "exit code 1", 42)
    assert [e.worker for e in sup._unannounced] == ["W1"]


class Rec:
    def __init__(self, value: bytes) -> None:
        self.value = value


class Consumer:
    def __init__(self, *batches: list[Rec]) -> None:
        self.batches = list(batches)

    def poll(self, timeout_ms: int) -> dict[str, list[Rec]]:
        return {"status-0": self.batches.pop(0)} if self.batches else {}


def test_only_valid_heartbeats_of_the_current_process_count(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch)
    w1, w2 = sup.children["W1"], sup.children["W2"]
    w1.process, w2.process = Proc(pid=42), Proc(pid=43)  # type: ignore[assignment]
    sup.liveness.watch("W1", 42, 490.0)
    sup.liveness.watch("W2", 43, 490.0)
    clock = iter([500.0, 600.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    sup._consumer = Consumer([  # type: ignore[assignment]
        Rec(encode_event(TasksFinished("W2", []))),
        Rec(b'{"type":"heartbeat","sender":"W2"}'),  # invalid: skipped
        Rec(encode_event(Heartbeat("W2", "worker", 7, 0.0))),  # an older process of W2: not W2's beat
        Rec(encode_event(Heartbeat("W1", "worker", 42, 0.0))),
        Rec(encode_event(Heartbeat("W9", "worker", 42, 0.0)))])  # not ours
    sup._read_heartbeats()
    assert w1.announced and not w2.announced
    assert lines == ["W1 live (pid 42)"]
    assert sup.liveness.lapsed("W1", 505.9) is None and sup.liveness.lapsed("W1", 506.5) is not None
    w1.restarts = [1.0]
    w1.announced = False
    sup._consumer = Consumer([Rec(encode_event(Heartbeat("W1", "worker", 42, 0.0)))])  # type: ignore[assignment]
    sup._read_heartbeats()
    assert lines[-1] == "W1 live again (pid 42)"
    assert sup.liveness.lapsed("W1", 605.9) is None  # judged from the arrival, not the sender's ts


@dataclass(frozen=True)
class Sample:
    """A status that differs at every instant, so the StatusGate prints every sample."""

    at: float

    def text(self) -> str:
        return f"status {self.at:g}"

    def fields(self) -> dict[str, Any]:
        return {}


def test_the_cluster_is_ready_once_every_child_said_live(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch, status_interval=20)
    sup._consumer = Consumer()  # type: ignore[assignment]
    monkeypatch.setattr(sup, "status", lambda at: Sample(at))
    for name, c in sup.children.items():
        c.process = Proc(pid=len(name))  # type: ignore[assignment]
        sup.liveness.watch(name, len(name), 99.0)
    sup.children["W1"].announced = sup.children["scheduler"].announced = True
    sup.loop(100.0)
    assert lines == ["status 100"]
    sup.children["W2"].announced = True
    sup.loop(100.5)
    sup.loop(101.0)
    assert lines == ["status 100", "cluster ready: 2 workers live"]  # said once; the status every 20 s
    for i in range(1, 19):  # rounds go on (a gap of seconds between two would be a stall of its own)
        sup.loop(101.0 + i)
    sup.loop(119.9)
    sup.loop(120.0)
    assert lines[2:] == ["status 120"]


def test_the_lease_thread_news_is_acted_on(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch)
    sup.epoch = 7
    for found in (Renewal.RETAKEN, Renewal.AWAY, Renewal.HELD):
        sup._on_renewal(found)
    assert lines == ["the cluster's lease had lapsed; taken again (epoch 7)",
                     "cannot renew the cluster's lease: Redis does not answer; trying every second",
                     "the cluster's lease is renewed again"]
    with pytest.raises(LeaseLost):
        sup._on_renewal(Renewal.LOST)


def stoppable(monkeypatch: pytest.MonkeyPatch, grace: float) -> tuple[Supervisor, list[str], dict[str, Proc]]:
    sup, lines, _ = supervisor(monkeypatch)
    sup.config.workers.__dict__["shutdown_grace"] = grace  # frozen dataclass: set for this test only
    procs = {name: Proc(pid=i + 10) for i, name in enumerate(sup.children)}
    for name, c in sup.children.items():
        c.process = procs[name]  # type: ignore[assignment]
    return sup, lines, procs


def test_shutdown_terminates_then_kills_what_outlives_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, procs = stoppable(monkeypatch, grace=0.2)
    procs["W2"].killable = False  # ignores SIGTERM ...
    original_kill: Callable[[], None] = procs["W2"].kill

    def kill() -> None:
        procs["W2"].killable = True  # ... but not SIGKILL
        original_kill()

    monkeypatch.setattr(procs["W2"], "kill", kill)
    sup.shutdown()
    assert procs["scheduler"].calls == procs["W1"].calls == ["terminate"]
    assert procs["W2"].calls == ["terminate", "kill", ("join", 5)]
    assert lines == ["stopping 3 process(es); grace 0.2s", "W2 did not stop in time: killing pid 12"]
    assert sup.stopping


def test_a_hurried_shutdown_kills_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, procs = stoppable(monkeypatch, grace=60)
    sup._hurry = True
    sup.epoch = 3
    sup.shutdown()
    assert all(p.calls == ["kill", ("join", 5)] for p in procs.values())
    assert lines[-1] == "stopped"


def test_shutdown_goes_on_when_a_step_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, procs = stoppable(monkeypatch, grace=0)

    def gone() -> None:
        raise ValueError("process object is closed")

    monkeypatch.setattr(procs["W1"], "kill", gone)
    monkeypatch.setattr(procs["W1"], "terminate", lambda: None)

    class Broken:
        def close(self) -> None:
            raise OSError("socket")

    sup._consumer = Broken()  # type: ignore[assignment]
    sup.shutdown()
    assert "W1: process object is closed" in lines
    assert "could not close the Kafka consumer: socket" in lines
    assert procs["W2"].calls[-1] != "kill"  # W2 stopped on SIGTERM
    assert "stopped" not in lines  # no lease was taken: nothing was running


def test_a_started_child_is_watched_from_its_start(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch)
    made: list[dict[str, Any]] = []

    class Process(Proc):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(pid=77)
            made.append(kwargs)

        def start(self) -> None:
            self.calls.append("start")

    monkeypatch.setattr(supervisor_module._spawn, "Process", Process)
    monkeypatch.setattr(time, "monotonic", lambda: 500.0)
    sup.epoch = 9
    w1 = sup.children["W1"]
    w1.announced = w1.careful = True
    sup._spawn(w1)
    [kwargs] = made
    assert kwargs == {"target": run_worker, "args": (sup.config, "W1", 9), "kwargs": {"careful": True},
                      "name": "yadtq-W1", "daemon": False}
    assert w1.process.calls == ["start"] and not w1.announced  # type: ignore[union-attr]
    assert lines == ["started W1 (pid 77) in careful mode"]
    assert sup.liveness.lapsed("W1", 529.9) is None and sup.liveness.lapsed("W1", 530.5) is not None
    assert not sup.liveness.beat("W1", 76, 501.0)  # only the new process's heartbeats count
    w1.careful = False
    sup._spawn(w1)
    assert made[1]["kwargs"] == {} and lines[-1] == "started W1 (pid 77)"


class Counters:
    """Stands in for the TaskStore the status line reads; ``error`` set: Redis is away."""

    error: Exception | None = None
    stats = {"success": 10, "failed": 2}
    made: list[tuple[Any, Any]] = []

    def __init__(self, redis: Any, keys: Any, ttl: int) -> None:
        Counters.made.append((redis, keys))

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        if Counters.error is not None:
            raise Counters.error
        return {"W1": 3}, dict(Counters.stats)


def test_the_status_line_counts_live_announced_workers_and_every_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    sup, _, _ = supervisor(monkeypatch)
    monkeypatch.setattr(supervisor_module, "TaskStore", Counters)
    w1, w2, sched = sup.children["W1"], sup.children["W2"], sup.children["scheduler"]
    w1.process, w2.process = Proc(pid=1), Proc(pid=2)  # type: ignore[assignment]
    w1.announced = True  # W2 runs, but has not said it is live yet
    w1.restarts, sched.restarts = [1.0, 2.0], [3.0]
    assert sup.status_line(100.0) == \
        "workers 1/2 live | scheduler down | load W1=3 W2=0 | done 10 failed 2 | restarts 3"
    assert Counters.made[-1] == (sup.redis, sup.keys)
    monkeypatch.setattr(Counters, "stats", {})  # nothing ended yet
    assert "| done 0 failed 0 |" in sup.status_line(100.0)
    sched.process = Proc(pid=3)  # type: ignore[assignment]
    w2.announced = True
    assert sup.status_line(100.0).startswith("workers 2/2 live | scheduler up |")
    monkeypatch.setattr(Counters, "error", redis.ConnectionError("refused"))
    assert sup.status_line(100.0) == "workers 2/2 live | redis unavailable: refused"


class Keeper:
    def __init__(self, *news: Renewal) -> None:
        import queue

        self.news: queue.SimpleQueue[Renewal] = queue.SimpleQueue()
        for found in news:
            self.news.put(found)


def test_every_news_of_the_lease_thread_is_acted_on_in_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch)
    sup._lease_news()  # no keeper (no lease taken): nothing to do
    sup._keeper = Keeper(Renewal.AWAY, Renewal.HELD, Renewal.LOST)  # type: ignore[assignment]
    with pytest.raises(LeaseLost):
        sup._lease_news()
    assert len(lines) == 2


def test_no_child_starts_before_the_fence_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """After an unreleased lease the previous generation's children get until ``_spawn_after`` to
    see the new epoch and exit: the wait must last until then (a lower bound, no upper one)."""
    sup, _, _ = supervisor(monkeypatch)
    sup._keeper = Keeper(Renewal.RETAKEN)  # type: ignore[assignment]
    start = time.monotonic()
    sup._spawn_after = start + 0.3
    sup._await_fence()
    assert time.monotonic() >= start + 0.3
    assert sup._keeper.news.empty()  # type: ignore[union-attr]
    sup._spawn_after = time.monotonic() + 60
    sup.stop()  # Ctrl-C meanwhile: no need to wait
    sup._await_fence()


def test_a_lost_lease_stops_at_once_and_leaves_the_lease_to_its_new_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    handlers: dict[int, Any] = {}
    monkeypatch.setattr(signal, "signal", lambda signum, handler: handlers.__setitem__(signum, handler))
    sup, lines, _ = supervisor(monkeypatch)
    stopped: list[str] = []

    class Keeper:
        def stop(self) -> None:
            stopped.append("keeper")

    sup._keeper = Keeper()  # type: ignore[assignment]
    monkeypatch.setattr(sup, "start", lambda: None)
    monkeypatch.setattr(sup, "shutdown", lambda: stopped.append("shutdown"))
    rounds: list[float] = []

    def loop(at: float) -> None:
        rounds.append(at)
        raise LeaseLost("taken")

    monkeypatch.setattr(sup, "loop", loop)
    with pytest.raises(LeaseLost):
        sup.run()
    assert sorted(handlers) == [signal.SIGINT, signal.SIGTERM] and len(set(handlers.values())) == 1
    assert rounds[0] > 0  # the monotonic clock
    assert lines == ["error: taken"] and sup._hurry and sup._keeper is None
    assert stopped == ["keeper", "shutdown"]
    handlers[signal.SIGTERM](signal.SIGTERM, None)
    assert sup.stopping


def test_each_child_runs_its_role_with_the_config_and_no_fence_is_waited_for_at_first() -> None:
    sup = Supervisor(Config.from_dict({"workers": {"count": 2}, "redis": {"key_prefix": "p1:"}}), say=lambda line: None)
    assert sup.keys == Keys("p1:")  # the cluster's own keys: its lease, its misplaced-key check, its counters
    assert [(n, c.target, c.args) for n, c in sup.children.items()] == [
        ("scheduler", run_scheduler, (sup.config,)), ("W1", run_worker, (sup.config, "W1")),
        ("W2", run_worker, (sup.config, "W2"))]
    sup._await_fence()  # a lease released before (or never held): no wait
    lines: list[str] = []
    sup.say = lines.append
    sup.shutdown()  # refused at the start (nothing made): nothing to stop, close or say
    assert lines == []


class FailingRedis:
    def ping(self) -> bool:
        import redis

        raise redis.ConnectionError("refused")


def test_the_probe_says_when_redis_goes_and_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch)
    asked: list[list[str]] = []

    def reachable(servers: list[str], timeout: float = 1.0) -> bool:
        asked.append(servers)
        return True

    monkeypatch.setattr(kafka_io, "reachable", reachable)
    sup.redis = FailingRedis()  # type: ignore[assignment]
    sup._probe(100.0)
    assert asked == [sup.config.kafka.bootstrap_servers]
    assert sup.up == {"kafka": True, "redis": False} and sup._last_probe == 100.0
    assert lines == ["redis at redis://localhost:6379/0 does not answer: tasks are kept, and the cluster resumes "
                     "by itself once it is back"]
    sup.redis = Redis()  # type: ignore[assignment]
    sup._probe(101.0)
    assert sup.up["redis"] and lines[1:] == ["redis at redis://localhost:6379/0 answers again: resuming"]
    monkeypatch.setattr(kafka_io, "reachable", lambda servers, timeout=1.0: False)
    sup._probe(102.0)
    assert lines[2:] == ["kafka at localhost:9092 does not answer: tasks are kept, and the cluster resumes by "
                         "itself once it is back"]


def test_the_loop_probes_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, _ = supervisor(monkeypatch)
    sup._consumer = Consumer()  # type: ignore[assignment]
    probes: list[float] = []

    def probe(at: float) -> None:
        probes.append(at)
        sup._last_probe = at  # as the probe does

    monkeypatch.setattr(sup, "_probe", probe)
    monkeypatch.setattr(sup, "_check", lambda c, at: None)
    monkeypatch.setattr(sup, "status", lambda at: Sample(at))
    for at in (100.0, 100.5, 101.0, 101.9, 102.0):
        sup.loop(at)
    assert probes == [100.0, 101.0, 102.0]  # PROBE_INTERVAL 1 s


def test_shutdown_waits_the_grace_for_children_that_stop_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that takes a moment to stop after SIGTERM is not killed while the grace period runs."""
    sup, lines, _ = stoppable(monkeypatch, grace=30)

    class Slow(Proc):
        def terminate(self) -> None:
            self.calls.append("terminate")
            self.stops_at = time.monotonic() + 0.2

        def is_alive(self) -> bool:
            return not hasattr(self, "stops_at") or time.monotonic() < self.stops_at

    slow = Slow(pid=99)
    sup.children["W1"].process = slow  # type: ignore[assignment]
    sup.shutdown()
    assert slow.calls == ["terminate"]  # stopped within the grace: never killed
    assert not any("killing" in line for line in lines)


def test_shutdown_closes_the_producer_and_releases_the_lease_whatever_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, producer = supervisor(monkeypatch)
    closed: list[str] = []

    class Keeper:
        def release(self) -> None:
            closed.append("lease")

    monkeypatch.setattr(producer, "close", lambda timeout=None: closed.append("producer"))
    sup._keeper = Keeper()  # type: ignore[assignment]
    sup.shutdown()
    assert closed == ["producer", "lease"]

    def fail(timeout: float | None = None) -> None:
        raise OSError("gone")

    monkeypatch.setattr(producer, "close", fail)
    monkeypatch.setattr(Keeper, "release", fail)
    sup.shutdown()
    assert lines == ["could not close the Kafka producer: gone", "could not close the cluster's lease: gone"]
