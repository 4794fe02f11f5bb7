"""One owner per cluster (DESIGN §4.7, §4.8): the lease, children that never
outlive their supervisor, a supervisor whose output fails, and the shutdown
hand-back that must beat the grace period's SIGKILL."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from client import Client, TaskSpec, load_config
from client.errors import ClusterOwned
from client.lease import Lease, Renewal
from client.store import Keys, TaskStore, connect
from tests.integration.conftest import REDIS, ROOT, cluster_config
from tests.support.harness import kill_group, remove_cluster_data, run_own_group, wait_until
from tests.tasks import open_gate, spans_key

pytestmark = pytest.mark.integration

READY_WITHIN = 90.0  # seconds for a supervisor to say "cluster ready" on a loaded machine



def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def gone(p: psutil.Process) -> bool:
    """Has ``p`` exited? A zombie counts: its parent may be stopped, and cannot reap it."""
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_all_gone(procs: list[psutil.Process], within: float) -> None:
    _, alive = psutil.wait_procs(procs, timeout=within)
    assert not alive, f"still running {within}s later: {[p.pid for p in alive]}"


def runs_overlap(client: Client, prefix: str, task_id: str, killed_at: float) -> bool:
    """Did two runs of ``task_id`` overlap? A run with no end was killed by ``killed_at``."""
    spans: dict[int, list[float]] = {}
    for entry in client.redis.lrange(spans_key(prefix, task_id), 0, -1):  # type: ignore[union-attr]
        _, at, pid = entry.split()
        spans.setdefault(int(pid), []).append(float(at))
    runs = sorted((s[0], s[1] if len(s) > 1 else killed_at) for s in spans.values())
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(runs))


def test_a_second_supervisor_on_the_same_cluster_is_refused(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    started = time.monotonic()
    second = run_own_group([sys.executable, "-m", "supervisor", str(cluster.config_path)], timeout=30)
    assert second.returncode == 2
    assert time.monotonic() - started < 15
    assert f"pid {cluster.proc.pid}" in second.stderr and "already has a supervisor" in second.stderr
    assert "host " in second.stderr and "since " in second.stderr
    assert "started" not in second.stdout  # it created and started nothing
    assert cluster.client.submit("add", 2, 3).result(timeout=30) == 5  # the first one keeps working
    assert cluster.proc.poll() is None


def test_after_sigkill_of_the_supervisor_no_child_survives_and_a_restart_resumes(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    cfg, c = cluster.config, cluster.client
    handles = c.submit_many([TaskSpec("span", (0.4,), max_retries=5) for _ in range(40)])
    wait_until(lambda: int(c.redis.hget(c.keys.stats, "success") or 0) >= 4, "some tasks ended")
    children = descendants(cluster.proc.pid)
    assert len(children) >= 3  # the scheduler and two workers

    os.kill(cluster.proc.pid, signal.SIGKILL)  # the supervisor alone, as an OOM kill does
    cluster.proc.wait(5)
    assert_all_gone(children, within=cfg.workers.heartbeat_timeout)
    killed_at = time.time()

    again = start_cluster(again=cluster)  # as systemd does: waits out the dead one's lease
    assert any("waiting" in line and "lease to lapse" in line for line in again.lines)
    assert any("did not release the lease" in line for line in again.lines)  # its children may be alive: fenced
    again.client.wait([h.id for h in handles], timeout=120)
    assert [h.status() for h in handles] == ["success"] * len(handles)
    prefix = cfg.redis.key_prefix
    assert not [h.id for h in handles if runs_overlap(again.client, prefix, h.id, killed_at)]


@pytest.fixture
def piped(services: None, tmp_path: Path) -> Iterator[Callable[[Any], subprocess.Popen[str]]]:
    """Factory: ``piped(stderr)`` runs ``python -m supervisor FILE`` with its stdout a pipe the test
    may close, and returns it once it said 'cluster ready'."""
    path = cluster_config(tmp_path, count=1)
    procs: list[subprocess.Popen[str]] = []

    def start(stderr: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "supervisor", str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=stderr, text=True, start_new_session=True)
        procs.append(proc)
        assert proc.stdout is not None
        # Reading a pipe has no timeout of its own: past the deadline the group is killed, which
        # closes the pipe and ends the loop below.
        deadline = threading.Timer(READY_WITHIN, kill_group, [proc.pid])
        deadline.start()
        try:
            for line in proc.stdout:  # as `| head`: read until ready
                if "cluster ready" in line:
                    return proc
        finally:
            deadline.cancel()
        raise AssertionError(f"the cluster never became ready (within {READY_WITHIN}s)")

    yield start
    for proc in procs:
        kill_group(proc.pid)  # alive or not: its children may have outlived it
        proc.wait(10)
    remove_cluster_data(load_config(path))


def test_the_supervisor_survives_its_stdout_closing(piped: Any, tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as err:
        proc = piped(err)
    children = descendants(proc.pid)
    proc.stdout.close()  # the reader is gone: each line now is a broken pipe
    client = Client(load_config(proc.args[-1]))
    try:
        assert client.submit("add", 1, 2).result(timeout=30) == 3
        # It still supervises: a killed child is replaced (and said so, somewhere).
        roles = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
        roles[-1].kill()
        wait_until(lambda: len({p.pid for p in descendants(proc.pid)} - {p.pid for p in children}) == 1,
                   "the killed child replaced")
        children = descendants(proc.pid)
        assert client.submit("add", 2, 2).result(timeout=30) == 4
    finally:
        client.close()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    assert proc.wait(30) == 0
    assert_all_gone(children, within=5)
    assert "stdout failed; writing to stderr" in (tmp_path / "stderr").read_text()


def test_sigint_after_stdout_and_stderr_close_stops_every_child(piped: Any) -> None:
    proc = piped(subprocess.STDOUT)
    children = descendants(proc.pid)
    proc.stdout.close()  # as `make run | tee run.log` and Ctrl-C, which ends tee first
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(30) == 0
    assert_all_gone(children, within=5)


def test_the_shutdown_hand_back_beats_the_grace_period_kill(start_cluster: Any) -> None:
    # A heartbeat interval close to the grace period: a watchdog that looked
    # only at each beat would hand back too late, and the task be charged a
    # death. Three workers, so three independent chances to lose that race.
    cluster = start_cluster(count=3, workers={"heartbeat_interval": 2.9, "heartbeat_timeout": 7.0,
                                              "shutdown_grace": 2.0})
    c = cluster.client
    # Tasks that outlive the grace period: they last until the gate opens, after the restart.
    handles = c.submit_many([TaskSpec("gated_span", (60,), max_retries=0) for _ in range(3)])
    wait_until(lambda: all(h.status() == "processing" for h in handles), "the three tasks started")

    cluster.proc.send_signal(signal.SIGTERM)
    assert cluster.proc.wait(20) == 0
    assert not any("did not stop in time" in line for line in cluster.lines)
    for h in handles:
        record = h.record()
        assert record["status"] == "queued" and record.get("worker_deaths", "0") == "0", record

    again = start_cluster(again=cluster)
    assert not any("did not release the lease" in line for line in again.lines)  # a clean stop: no fence wait
    open_gate(c.redis, cluster.config.redis.key_prefix)
    again.client.wait([h.id for h in handles], timeout=90)
    for h in handles:
        record = h.record()
        assert record["status"] == "success" and "worker_deaths" not in record, record


@pytest.fixture
def lease_keys(services: None) -> Iterator[tuple[redis.Redis, Keys]]:
    r = connect(REDIS)
    keys = Keys(f"t{uuid.uuid4().hex[:10]}:")
    yield r, keys
    r.delete(keys.owner, keys.epoch, keys.owner_released)
    r.close()


def test_the_lease_has_one_holder_and_a_new_epoch_per_taking(lease_keys: Any) -> None:
    r, keys = lease_keys
    first, second = Lease(r, keys, 5.0, ["T"]), Lease(r, keys, 5.0, ["T"])
    assert first.try_acquire() is None and first.epoch == 1
    holder = second.try_acquire()
    assert holder is not None and (holder.pid, holder.epoch, holder.topics) == (os.getpid(), 1, ["T"])
    assert 0 < holder.ms_left <= 5000
    with pytest.raises(ClusterOwned, match=rf"already has a supervisor: host \S+, pid {os.getpid()}, since "):
        second.acquire(wait_for_dead=5.0, say=print)  # the holder (this process) is alive: no wait
    assert first.renew() is Renewal.HELD

    r.delete(keys.owner)  # lapsed (Redis was away, or the owner stalled) and nobody took it
    assert first.renew() is Renewal.RETAKEN and r.get(keys.epoch) == "1"
    second.release()  # not its lease: nothing happens
    assert first.renew() is Renewal.HELD
    first.release()
    assert second.try_acquire() is None and second.epoch == 2
    assert first.renew() is Renewal.LOST  # someone else holds it now: the old owner must stop


def test_a_lease_value_that_is_not_yadtqs_is_refused_not_a_crash(lease_keys: Any) -> None:
    """The lease key is a Redis value read back: a hand-written one must not crash a supervisor."""
    r, keys = lease_keys
    lease = Lease(r, keys, 5.0, ["T"])
    for junk in ("not json", "[1, 2]", '{"host": ["h"], "pid": "x"}', "\"text\""):
        r.set(keys.owner, junk, px=5000)
        with pytest.raises(ClusterOwned, match="a lease value that is not YADTQ's"):
            lease.acquire(wait_for_dead=1.0, say=print)
    r.delete(keys.owner)
    assert lease.try_acquire() is None
    r.set(keys.owner, "not json", px=5000)  # overwritten while held: not ours any more, and no Lua error
    assert lease.renew() is Renewal.LOST
    lease.release()
    assert r.get(keys.owner) == "not json"
    r.delete(keys.owner)
    r.set(keys.epoch, "junk")  # an epoch that is not a number counts as 0
    assert lease.try_acquire() is None and lease.epoch == 1


def test_a_dead_holder_on_this_host_is_waited_out(lease_keys: Any) -> None:
    r, keys = lease_keys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = Lease(r, keys, 1.5, ["T"])
    gone._value["pid"] = int(dead.stdout)  # a supervisor killed without releasing its lease
    assert gone.try_acquire() is None
    lines: list[str] = []
    started = time.monotonic()
    assert Lease(r, keys, 1.5, ["T"]).acquire(wait_for_dead=2.5, say=lines.append) == 2
    assert time.monotonic() - started < 2.5
    assert len(lines) == 1 and "waiting" in lines[0] and f"pid {int(dead.stdout)}" in lines[0]


def test_a_clean_release_is_recorded_so_that_the_next_owner_need_not_wait(lease_keys: Any) -> None:
    r, keys = lease_keys

    def take() -> Lease:
        lease = Lease(r, keys, 5.0, ["T"])
        assert lease.try_acquire() is None
        return lease

    first = take()
    assert (first.epoch, first.released_before) == (1, True)  # a new cluster: no one before it
    first.release()
    assert r.get(keys.owner_released) == "1"
    second = take()
    assert (second.epoch, second.released_before) == (2, True)
    r.delete(keys.owner)  # lapsed, not released: its supervisor stalled, or was killed
    third = take()
    assert (third.epoch, third.released_before) == (3, False)  # its processes may still run
    second.release()  # not its lease any more: records nothing
    assert r.get(keys.owner_released) == "1"
    third.release()
    assert take().released_before
    r.delete(keys.owner)
    r.set(keys.owner_released, "junk")  # a marker it cannot read proves no release
    assert not take().released_before


def test_the_owner_epoch_read_by_the_children_is_total(lease_keys: Any) -> None:
    r, keys = lease_keys
    store = TaskStore(r, keys, 60, 1)
    assert store.owner_epoch() is None  # no lease
    lease = Lease(r, keys, 5.0, ["T"])
    assert lease.try_acquire() is None
    assert store.owner_epoch() == lease.epoch == 1
    for junk in ("not json", "[1, 2]", '{"epoch": "2"}', '{"epoch": 2.5}', '{"epoch": true}', '"text"'):
        r.set(keys.owner, junk, px=5000)
        assert store.owner_epoch() is None, junk
    r.delete(keys.owner)
    r.hset(keys.owner, "epoch", "2")  # a key of another type
    assert store.owner_epoch() is None
    r.delete(keys.owner)


def test_a_retaken_lease_still_names_its_epoch_for_the_children(lease_keys: Any) -> None:
    """A renewal that retakes a lapsed lease writes its value again: that value must carry the
    epoch, or the children (which read it with each heartbeat) could fence no older generation."""
    r, keys = lease_keys
    store = TaskStore(r, keys, 60, 1)
    lease = Lease(r, keys, 5.0, ["T"])
    assert lease.try_acquire() is None and store.owner_epoch() == 1
    r.delete(keys.owner)  # lapsed while Redis was away, or while its supervisor stalled
    assert lease.renew() is Renewal.RETAKEN
    assert store.owner_epoch() == 1


def test_a_supervisor_that_lost_its_lease_stops_its_cluster_at_once(start_cluster: Any) -> None:
    """A supervisor stalled past its lease's TTL (a paused VM, a long GC; here SIGSTOP) while its
    children run tasks: they must all be gone before the new owner's processes run any task."""
    first = start_cluster(count=2)
    c = first.client
    r, owner, prefix = c.redis, c.keys.owner, first.config.redis.key_prefix
    # Tasks that last until the gate opens, after the new owner is ready: the stalled
    # supervisor's workers are still running theirs when the new ones start.
    handles = c.submit_many([TaskSpec("gated_span", (90,), max_retries=5) for _ in range(4)])
    wait_until(lambda: sum(h.status() == "processing" for h in handles) == 2, "both workers run a task")
    children = descendants(first.proc.pid)
    roles = [p for p in children if "spawn_main" in " ".join(p.cmdline())]  # not multiprocessing's helper
    assert len(roles) == 3  # the scheduler and two workers, running tasks
    os.kill(first.proc.pid, signal.SIGSTOP)  # the supervisor alone: its children run on
    try:
        wait_until(lambda: not r.exists(owner), "the stalled supervisor's lease lapsed", timeout=15)
        second = start_cluster(again=first, ready=False)  # takes the lapsed lease: epoch 2
        wait_until(lambda: all(gone(p) for p in roles), "the stalled supervisor's processes exited", timeout=15)
        killed_at = time.time()
        second.wait_line(r"cluster ready", timeout=90)
        ended = int(r.hget(c.keys.stats, "success") or 0)
        open_gate(r, prefix)
        wait_until(lambda: int(r.hget(c.keys.stats, "success") or 0) > ended, "the new owner ran a task",
                   timeout=60)
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    assert first.proc.wait(15) == 2
    first.wait_line(r"error: another supervisor took this cluster's lease", timeout=5)
    assert_all_gone(children, within=5)
    second.wait_line(r"the previous supervisor did not release the lease", timeout=5)
    assert second.client.submit("add", 3, 4).result(timeout=30) == 7
    second.client.wait([h.id for h in handles], timeout=120)
    assert [h.status() for h in handles] == ["success"] * len(handles)
    assert not [h.id for h in handles if runs_overlap(second.client, prefix, h.id, killed_at)]
    assert second.proc.poll() is None
