"""Several nodes (issue 11), the pure parts: node names in the config, the scheduler's set
of workers over all nodes, lost nodes, the scheduler lease's own clock, and a
supervisor that sees its own stall. Fakes for Kafka and Redis; time passed in.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from client.config import Config
from client.errors import ConfigError, Fenced
from client.lease import Keeper, Renewal
from client.protocol import Heartbeat, encode_event, parse_event
from client.store import Placement
from supervisor.policy import SchedulerState
from supervisor.scheduler import WORKERS_REFRESH_INTERVAL, Scheduler
from tests.unit.test_scheduler_clock import STATUS, Consumer, Producer, Store, record
from tests.unit.test_supervisor_children import Proc, started, supervisor
from tests.unit.test_supervisor_children import Producer as SupProducer
from worker_pool.process import EXIT_DEPOSED

# --- the config ---


def test_a_node_name_prefixes_its_worker_ids_and_its_schedulers_sender() -> None:
    cfg = Config.from_dict({"node": "host-1", "workers": {"count": 2}})
    assert cfg.worker_ids() == ["host-1.W1", "host-1.W2"]
    assert cfg.scheduler_id() == "host-1.scheduler"
    plain = Config.from_dict({"workers": {"count": 2}})
    assert (plain.worker_ids(), plain.scheduler_id()) == (["W1", "W2"], "scheduler")  # the seed's


@pytest.mark.parametrize("bad", ["a.b", "a b", "é", "x" * 65, 7])
def test_a_node_name_that_cannot_be_part_of_a_topic_is_refused_naming_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^f\.yaml: node: expected"):
        Config.from_dict({"node": bad}, source="f.yaml")


# --- the scheduler's workers, over every node ---


def test_the_scheduler_state_learns_and_forgets_workers_and_hands_back_the_tasks_of_one_gone() -> None:
    state = SchedulerState(["W1"], max_pending=2, heartbeat_timeout=6.0)
    assert state.add_worker("b.W1") and not state.add_worker("b.W1")
    assert state.choose(10.0) is None  # known, but not live before its first heartbeat
    state.heartbeat("b.W1", 10.0)
    assert state.choose(10.0) == "b.W1"
    state.place("t1", Placement("b.W1", 1, "{}"))
    assert [t for t, _ in state.remove_worker("b.W1")] == ["t1"]
    assert state.workers == ["W1"] and "b.W1" not in state.load and state.tasks == {}
    assert state.remove_worker("b.W1") == []


class NodeStore(Store):
    """The fake store, with registered workers and node leases."""

    def __init__(self, registered: dict[str, str], held: dict[str, bool]) -> None:
        self.registered, self.held = registered, held
        self.reads = 0
        self.fenced: list[str] = []

    def registered_workers(self) -> dict[str, str]:
        self.reads += 1
        return dict(self.registered)

    def fence_lost_node(self, node: str) -> bool:
        self.fenced.append(node)
        return not self.held[node]


def scheduler_of(node: str, store: NodeStore, at: float = 100.0) -> tuple[Scheduler, Consumer]:
    """Node ``node``'s scheduler (1 worker, heartbeat_timeout 6), active since ``at``."""
    s = Scheduler(Config.from_dict({"node": node, "workers": {"count": 1, "heartbeat_interval": 1.0,
                                                                "heartbeat_timeout": 6.0}}))
    status = Consumer(STATUS)
    s._tasks_in, s._status_in = Consumer(STATUS), status  # type: ignore[assignment]
    s._producer = Producer()  # type: ignore[assignment]
    s.store = store  # type: ignore[assignment]
    s._active_since = at
    s._refresh_workers(at)
    return s, status


def beat(status: Consumer, worker: str, offset: int = 0) -> None:
    status.queue.append([record(offset, encode_event(Heartbeat(worker, "worker", 7, 1.0)))])


def test_workers_registered_by_other_nodes_join_and_those_no_node_runs_leave_with_their_tasks() -> None:
    store = NodeStore({"a.W1": "a", "b.W1": "b"}, {})
    s, _ = scheduler_of("a", store)
    assert s.state.workers == ["a.W1", "b.W1"]
    s.state.place("t1", Placement("b.W1", 1, '{"task-id": "t1"}'))
    del store.registered["b.W1"]  # node b now runs fewer workers
    s._refresh_workers(100.0 + WORKERS_REFRESH_INTERVAL)
    assert s.state.workers == ["a.W1"]
    assert [(p.raw, p.mode) for p in s.waiting] == [(b'{"task-id": "t1"}', "move")]


def test_the_first_heartbeat_of_an_unknown_worker_reads_the_registrations_again() -> None:
    store = NodeStore({}, {})
    s, status = scheduler_of("a", store)
    store.registered["b.W1"] = "b"  # node b started after this scheduler became active
    beat(status, "b.W1")
    s.loop(1000.0, 101.5)
    assert s.state.choose(101.5) in ("a.W1", "b.W1") and s.state.is_live("b.W1", 101.5)
    beat(status, "zz.W9", 1)  # not registered by anyone (a stray message): never a worker
    s.loop(1000.0, 103.0)
    assert "zz.W9" not in s.state.load


def test_the_silent_workers_of_a_node_whose_lease_lapsed_are_declared_dead_once() -> None:
    store = NodeStore({"a.W1": "a", "b.W1": "b", "c.W1": "c"}, {"b": False, "c": True})
    s, _ = scheduler_of("a", store)
    for w in ("b.W1", "c.W1"):
        s.state.place(f"t-{w}", Placement(w, 1, f'{{"task-id": "t-{w}"}}'))
    s._find_lost_nodes(105.9)  # not yet a heartbeat timeout since it became active
    assert not s.waiting
    s._find_lost_nodes(106.0)
    # b's lease lapsed: its worker's task moves; c's supervisor lives, and handles its own.
    assert [p.raw for p in s.waiting] == [b'{"task-id": "t-b.W1"}'] and s._lost == {"b.W1"}
    assert store.fenced == ["b", "c"]  # each asked once: the lapse is found and the node fenced in one step
    s._find_lost_nodes(107.0)
    assert len(s.waiting) == 1 and store.fenced == ["b", "c", "c"]  # b once; c's silent worker is asked about
    s.state.heartbeat("b.W1", 107.5)
    s._lost.discard("b.W1")  # as _on_event does on its heartbeat
    assert s.state.is_live("b.W1", 108.0)


def test_its_own_nodes_silent_workers_are_left_to_its_own_supervisor() -> None:
    store = NodeStore({"a.W1": "a"}, {"a": False})
    s, _ = scheduler_of("a", store)
    s.state.place("t", Placement("a.W1", 1, "{}"))
    s._find_lost_nodes(200.0)
    assert not s.waiting and "t" in s.state.tasks and store.fenced == []


# --- the scheduler lease's own clock ---


class FakeLease:
    def __init__(self, valid: bool) -> None:
        self.epoch, self.is_valid = 3, valid

    def valid(self, margin: float = 0.0) -> bool:
        return self.is_valid


class FakeKeeper:
    def __init__(self, valid: bool, renewal: Renewal) -> None:
        self.lease = FakeLease(valid)
        self.news: queue.SimpleQueue[Renewal] = queue.SimpleQueue()
        self.renewal, self.renewals = renewal, 0

    def renew_now(self) -> Renewal:
        self.renewals += 1
        if self.renewal is Renewal.HELD:
            self.lease.is_valid = True
        return self.renewal


class CountingStore(NodeStore):
    def __init__(self) -> None:
        super().__init__({}, {})
        self.writes = 0

    def write_load(self, load: dict[str, int]) -> None:
        self.writes += 1


def active_scheduler(keeper: FakeKeeper) -> tuple[Scheduler, CountingStore]:
    store = CountingStore()
    s, _ = scheduler_of("a", store)
    s.keeper = keeper  # type: ignore[assignment]
    return s, store


def test_a_scheduler_whose_lease_ran_out_on_its_own_clock_and_was_taken_stands_down_before_any_write() -> None:
    keeper = FakeKeeper(valid=False, renewal=Renewal.LOST)
    s, store = active_scheduler(keeper)
    with pytest.raises(Fenced, match="could not be renewed"):
        s.loop(1000.0, 200.0)
    assert keeper.renewals == 1 and store.writes == 0 and s._producer.sent == []  # type: ignore[union-attr]


def test_a_scheduler_whose_lease_ran_out_but_was_not_taken_renews_it_and_goes_on() -> None:
    keeper = FakeKeeper(valid=False, renewal=Renewal.HELD)
    s, store = active_scheduler(keeper)
    s.loop(1000.0, 200.0)
    assert keeper.renewals == 1 and store.writes == 1


def test_the_lease_threads_news_of_a_lost_lease_stands_the_scheduler_down() -> None:
    keeper = FakeKeeper(valid=True, renewal=Renewal.HELD)
    keeper.news.put(Renewal.LOST)
    s, store = active_scheduler(keeper)
    with pytest.raises(Fenced, match="another scheduler became active"):
        s.loop(1000.0, 200.0)
    assert store.writes == 0


# --- the supervisor ---


def test_a_node_supervisor_counts_its_own_schedulers_heartbeats_only(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, _, _ = supervisor(monkeypatch)
    sup.config = Config.from_dict({"node": "a", "workers": {"count": 2}})
    sup.__init__(sup.config, say=lambda line: None)  # type: ignore[misc]
    sched = sup.children["scheduler"]
    sched.process = Proc(pid=42)  # type: ignore[assignment]
    sup.liveness.watch("scheduler", 42, 90.0)
    sup._on_heartbeat(Heartbeat("b.scheduler", "scheduler", 42, 0.0), 100.0)  # another node's: same pid
    assert not sup.liveness.has_beaten("scheduler")
    sup._on_heartbeat(Heartbeat("a.scheduler", "scheduler", 42, 0.0), 100.0)
    assert sup.liveness.has_beaten("scheduler") and sched.announced


def test_a_deposed_scheduler_stands_by_again_at_once_however_often(monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch)  # max_restarts 2 within 60 s
    spawned = started(sup, monkeypatch)
    sched = sup.children["scheduler"]
    for i in range(4):
        sched.process = Proc(exitcode=EXIT_DEPOSED)  # type: ignore[assignment]
        sup._check(sched, 100.0 + i)
        assert sched.due == 100.0 + i and not sched.careful
        sup._check(sched, 100.0 + i)
    assert len(spawned) == 4 and not any("backoff" in line or "crashing" in line for line in lines)


def test_a_supervisor_that_stalled_does_not_kill_workers_whose_heartbeats_it_has_not_read_yet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, _ = supervisor(monkeypatch)  # heartbeat_timeout 6
    monkeypatch.setattr(sup, "_read_heartbeats", lambda: None)
    monkeypatch.setattr(sup, "_send_canary", lambda at: None)  # heartbeats flow (its own would come back)
    monkeypatch.setattr(sup, "_probe", lambda at: None)
    monkeypatch.setattr(sup._status_gate, "sample_due", lambda at: False)
    procs: dict[str, Any] = {}
    for name, c in sup.children.items():
        c.process = procs[name] = Proc(pid=len(procs) + 40)  # type: ignore[assignment]
        sup.liveness.watch(name, c.pid, 90.0)
        sup._on_heartbeat(Heartbeat(name, "worker", c.pid or 0, 0.0), 100.0)
    sup.loop(100.2)
    sup.loop(130.0)  # stopped for 30 s (SIGSTOP): the heartbeats of that time are not read yet
    assert all(p.calls == [] for p in procs.values()), lines
    assert any("did not run for 29.8s" in line for line in lines)
    for i in range(1, 14):  # and silence after the stall is judged as ever
        sup.loop(130.0 + i / 2)
    assert all("kill" in p.calls for p in procs.values())


class CutLease:
    """A lease whose renewals succeed or not, and whose validity by its owner's clock is set."""

    def __init__(self, *answers: Renewal) -> None:
        self.answers, self.is_valid = list(answers), True

    def renew(self) -> Renewal:
        found = self.answers.pop(0)
        self.is_valid = found in (Renewal.HELD, Renewal.RETAKEN)  # as Lease.renew extends it
        return found

    def valid(self, margin: float = 0.0) -> bool:
        return self.is_valid or margin == 0  # not valid: within the margin of its end, not past it


def test_on_expiry_is_called_once_while_the_lease_is_about_to_lapse_and_again_after_a_renewal() -> None:
    lease = CutLease(Renewal.HELD, Renewal.AWAY, Renewal.AWAY, Renewal.HELD, Renewal.AWAY, Renewal.HELD)
    calls: list[bool] = []
    keeper = Keeper(lease, 0.0, lambda: calls.append(keeper.expiring))  # type: ignore[arg-type]
    seen = []
    for _ in range(6):
        keeper._renew()
        keeper._watch_expiry()
        seen.append(keeper.expiring)
    assert seen == [False, True, True, False, True, False]
    assert calls == [True, True]  # once per expiry, and again after a renewal in between


class StuckLease:
    """A lease whose renewal hangs (a connection lost mid-request) and whose time runs out meanwhile."""

    def __init__(self) -> None:
        self.is_valid, self.lapsed, self.release = True, False, threading.Event()
        self.hanging = threading.Event()

    def renew(self) -> Renewal:
        self.hanging.set()
        self.release.wait(10)
        return Renewal.AWAY

    def valid(self, margin: float = 0.0) -> bool:
        return self.is_valid or (margin == 0 and not self.lapsed)


class StalledLease(CutLease):
    """A lease that lapsed while its process was stopped; a renewal answers ``found``."""

    def __init__(self, found: Renewal) -> None:
        super().__init__(found)
        self.is_valid = False

    def valid(self, margin: float = 0.0) -> bool:
        return self.is_valid  # lapsed: not valid for any margin, not even 0


@pytest.mark.parametrize(("found", "stops"), [(Renewal.RETAKEN, False), (Renewal.HELD, False),
                                              (Renewal.AWAY, True), (Renewal.LOST, True)])
def test_after_a_stall_past_the_lease_the_workers_stop_only_if_it_cannot_be_renewed_unchanged(
        found: Renewal, stops: bool) -> None:
    """Retaken with its epoch: no node fenced it, so its workers were not declared lost."""
    calls: list[int] = []
    keeper = Keeper(StalledLease(found), 1.0, lambda: calls.append(1))  # type: ignore[arg-type]
    keeper._watch_expiry()
    assert (calls == [1]) is stops and keeper.expiring is stops


def test_on_expiry_is_called_in_time_even_while_a_renewal_hangs() -> None:
    lease = StuckLease()
    called = threading.Event()
    keeper = Keeper(lease, 0.01, called.set)  # type: ignore[arg-type]
    keeper.start()
    try:
        assert lease.hanging.wait(5)  # the renewal hangs by now
        lease.is_valid = False
        assert called.wait(1.0)  # the expiry watch does not wait for the renewal
        called.clear()
        keeper.expiring = False
        lease.lapsed = True  # and, past the lease's end (this process starved), does not wait for it either
        assert called.wait(1.0)
    finally:
        lease.release.set()
        keeper.stop()


def node_supervisor(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str], Any]:
    sup, lines, _ = supervisor(monkeypatch)
    sup.config = Config.from_dict({"node": "a", "workers": {"count": 2},
                                   "supervisor": {"max_restarts": 2, "restart_window": 60, "max_backoff": 8}})
    sup.__init__(sup.config, say=lines.append)  # type: ignore[misc]
    sup.redis = type("R", (), {"ping": lambda self: True})()  # type: ignore[assignment]
    sup._producer = SupProducer()  # type: ignore[assignment]
    sup._lease_ttl = 6.0
    keeper = Keeper(CutLease(), 1.0)  # type: ignore[arg-type]
    sup._keeper = keeper
    for name, c in sup.children.items():
        c.process = Proc(pid=50 + len(name))  # type: ignore[assignment]
    return sup, lines, keeper


def test_a_node_that_cannot_renew_its_lease_in_time_stops_its_workers_until_it_can(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sup, lines, keeper = node_supervisor(monkeypatch)
    spawned = started(sup, monkeypatch)
    keeper.expiring = True
    sup._stop_cut_off_workers()  # from the lease's thread, whatever the loop is blocked on
    workers = [c for n, c in sup.children.items() if n != "scheduler"]
    assert all(c.process.calls == ["kill"] for c in workers)  # type: ignore[union-attr]
    assert sup.children["scheduler"].process.calls == []  # type: ignore[union-attr]  # it stands down itself
    sup._check_cut_off()
    assert any("could not renew its lease for 5s" in line for line in lines)
    for c in workers:
        sup._check(c, 101.5)  # dead: said, announced, and not started again while cut off
        sup._check(c, 200.0)
    assert spawned == []
    keeper.expiring = False  # renewed: Redis answers again
    sup._check_cut_off()
    assert not sup._cut_off and any("renews its lease again" in line for line in lines)
    for c in workers:
        sup._check(c, 200.0)
    assert sorted(n for n, _ in spawned) == sorted(c.name for c in workers)


def test_only_a_node_of_several_stops_its_workers_when_its_lease_is_about_to_lapse(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A single node keeps them while Redis is away (nobody else can take their tasks), as before nodes."""
    sup, _, _ = supervisor(monkeypatch)
    monkeypatch.setattr(sup, "_emit", lambda *a, **k: None)
    client = type("R", (), {"register_script": lambda self, text: None})()
    sup.redis = client  # type: ignore[assignment]
    monkeypatch.setattr("supervisor.supervisor.connect", lambda cfg, timeout=0: client)
    monkeypatch.setattr("supervisor.supervisor.Lease.acquire", lambda self, wait_for_dead, say: 1)
    monkeypatch.setattr("supervisor.supervisor.Keeper.start", lambda self: None)
    sup._take_lease()
    assert sup._keeper is not None and sup._keeper.on_expiry is None
    sup.config = Config.from_dict({"node": "a"})
    sup._take_lease()
    assert sup._keeper.on_expiry == sup._stop_cut_off_workers


def test_no_process_is_judged_dead_while_the_supervisors_own_heartbeats_are_held_up_in_kafka(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker's loss holds every acks=all write, heartbeats too, until it is fenced: the
    processes are not silent, their heartbeats are late. Seen from its own, read back."""
    sup, lines, producer = supervisor(monkeypatch)  # heartbeat interval 1, timeout 6
    monkeypatch.setattr(sup, "_read_heartbeats", lambda: None)
    monkeypatch.setattr(sup, "_probe", lambda at: None)
    monkeypatch.setattr(sup._status_gate, "sample_due", lambda at: False)
    clock = [1000.0]
    monkeypatch.setattr("supervisor.supervisor.now", lambda: clock[0])
    w1 = sup.children["W1"]
    w1.process = proc = Proc(pid=42)  # type: ignore[assignment]
    sup.liveness.watch("W1", 42, 90.0)
    sup._on_heartbeat(Heartbeat("W1", "worker", 42, 0.0), 100.0)
    monkeypatch.setattr(sup, "_check", lambda c, at: sup.__class__._check(sup, c, at) if c is w1 else None)
    for i in range(1, 31):  # 15 s in which nothing comes back: its canaries are held up too
        clock[0] = 1000.0 + i / 2
        sup.loop(100.0 + i / 2)
    assert proc.calls == [] and any("held up in Kafka" in line for line in lines)
    canaries = [c for _, v in producer.sent if isinstance(c := parse_event(v), Heartbeat)]
    assert canaries and len(canaries) == len(producer.sent) and {c.role for c in canaries} == {"supervisor"}
    sup._read_heartbeats = lambda: None  # type: ignore[method-assign]
    sup._on_canary(canaries[-1], 115.2)  # all of them arrive now: heartbeats flow again
    assert any("flow again" in line for line in lines)
    sup._on_heartbeat(Heartbeat("W1", "worker", 41, 0.0), 115.2)  # another process's: W1 stays silent
    for i in range(1, 14):
        clock[0] = 1015.0 + i / 2
        sup._canaries.clear()  # each read back in time from now on
        sup.loop(115.2 + i / 2)
    assert "kill" in proc.calls  # silent for 6 s since heartbeats flowed again: judged as ever


def test_after_a_stall_the_check_waits_briefly_for_the_renewal_that_resumed_with_it() -> None:
    """SIGCONT wakes the renewal thread and the expiry watch at once: the watch must not take the
    renewal in progress for Redis not answering (it did, and stopped a paused node's healthy workers)."""
    lease = StalledLease(Renewal.RETAKEN)
    calls: list[int] = []
    keeper = Keeper(lease, 1.0, lambda: calls.append(1))  # type: ignore[arg-type]
    keeper._lock.acquire()  # the renewal thread's, in progress
    threading.Timer(0.2, keeper._lock.release).start()
    keeper._watch_expiry()
    assert calls == [] and not keeper.expiring
