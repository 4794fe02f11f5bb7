"""Several nodes (issue 11) in Redis: each node's lease and epoch are its own, the scheduler's
lease is one for the cluster and fences its writes alone, and workers are registered per node."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from client.errors import Fenced
from client.lease import Holder, Lease, Renewal
from client.store import Assign, Batch, Claim, Keys, TaskStore, connect
from tests.integration.conftest import REDIS
from tests.support.harness import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(services: None) -> Iterator[tuple[redis.Redis, str]]:
    r = connect(REDIS)
    p = f"t{uuid.uuid4().hex[:10]}:"
    yield r, p
    keys = list(r.scan_iter(match=f"{p}*"))
    if keys:
        r.delete(*keys)
    r.close()


def test_each_node_has_its_own_lease_and_epoch_and_the_seeds_single_node_keeps_its_keys(
        prefix: tuple[redis.Redis, str]) -> None:
    r, p = prefix
    a, b, single = Keys(p, "a"), Keys(p, "b"), Keys(p)
    assert (single.owner, single.epoch) == (f"{p}yadtq:owner", f"{p}yadtq:epoch")  # as before nodes
    assert Lease(r, a, 30.0, ["T"]).try_acquire() is None
    assert Lease(r, b, 30.0, ["T"]).try_acquire() is None  # node a's lease does not stop node b's supervisor
    assert Lease(r, a, 30.0, ["T"]).try_acquire() is not None  # but a second supervisor of node a is refused
    assert (r.get(a.epoch), r.get(b.epoch)) == ("1", "1")
    store = TaskStore(r, b, 60)
    assert not store.fence_lost_node("a") and r.get(a.epoch) == "1"  # held: its supervisor handles its workers
    r.set(Keys(p, "c").epoch, "text")  # written by hand: counts as 0, as lease_acquire.lua does
    assert store.fence_lost_node("c") and r.get(Keys(p, "c").epoch) == "1"  # lapsed: lost, and fenced
    assert store.fence_lost_node("c") and r.get(Keys(p, "c").epoch) == "2"


def test_one_scheduler_lease_for_the_whole_cluster_whatever_the_node(prefix: tuple[redis.Redis, str]) -> None:
    r, p = prefix
    first = Lease(r, Keys(p, "a"), 30.0, ["T"], scheduler=True)
    assert first.try_acquire() is None and first.valid(1.0)
    holder = Lease(r, Keys(p, "b"), 30.0, ["T"], scheduler=True).try_acquire()
    assert holder is not None and holder.node == "a" and "node a" in holder.describe()
    assert r.get(Keys(p).owner) is None  # no node's lease was touched


def test_a_scheduler_lease_that_lapsed_is_no_longer_valid_by_its_holders_own_clock(
        prefix: tuple[redis.Redis, str]) -> None:
    r, p = prefix
    lease = Lease(r, Keys(p, "a"), 0.3, ["T"], scheduler=True)
    assert lease.try_acquire() is None and lease.valid()
    # As a process stopped past its TTL: by its own clock the lease is no longer surely its own
    # by the time Redis has let it lapse.
    wait_until(lambda: r.exists(Keys(p).scheduler_lease) == 0, "the 0.3 s lease lapses", timeout=5, every=0.01)
    assert not lease.valid()
    assert Lease(r, Keys(p, "b"), 30.0, ["T"], scheduler=True).try_acquire() is None  # the standby takes over
    assert lease.renew() is Renewal.LOST and not lease.valid()


def test_the_schedulers_writes_are_fenced_by_the_scheduler_epoch_and_a_workers_by_its_nodes(
        prefix: tuple[redis.Redis, str]) -> None:
    r, p = prefix
    keys = Keys(p, "a")
    old = TaskStore(r, keys, 60, epoch=1, fence=keys.scheduler_epoch)
    r.set(keys.scheduler_epoch, "2")  # another scheduler became active
    r.set(keys.epoch, "1")  # node a's own generation is unchanged
    batch = old.pipeline()
    reply = old.assign(batch, "t1", "add", "a.W1", '{"task-id": "t1", "task": "add", "args": [1, 2]}',
                       1.0, 3, "new", 0)
    old.execute(batch)
    assert reply.value.kind is Assign.STALE_EPOCH and r.exists(keys.task("t1")) == 0
    current = TaskStore(r, keys, 60, epoch=2, fence=keys.scheduler_epoch)
    batch = current.pipeline()
    reply = current.assign(batch, "t1", "add", "a.W1", '{"task-id": "t1", "task": "add", "args": [1, 2]}',
                           1.0, 3, "new", 0)
    current.execute(batch)
    assert reply.value.kind is Assign.ASSIGNED


def test_a_node_registers_its_workers_and_drops_those_it_no_longer_runs(prefix: tuple[redis.Redis, str]) -> None:
    r, p = prefix
    store = TaskStore(r, Keys(p), 60)
    store.register_workers("a", ["a.W1", "a.W2", "a.W3"], 1)
    store.register_workers("b", ["b.W1"], 4)
    store.register_workers("a", ["a.W1"], 2)  # node a restarted with one worker
    assert store.registered_workers() == {"a.W1": "a", "b.W1": "b"}
    assert json.loads(r.hget(Keys(p).workers, "a.W1") or "") == {"node": "a", "epoch": 2}
    r.hset(Keys(p).workers, "junk", "not json")  # written by hand: skipped, never a worker
    assert store.registered_workers() == {"a.W1": "a", "b.W1": "b"}
    r.delete(Keys(p).workers)
    r.set(Keys(p).workers, "a string")
    assert store.registered_workers() == {}
    store.register_workers("a", ["a.W1"], 3)  # refused quietly: the supervisor's start check names it
    assert r.get(Keys(p).workers) == "a string"


def test_a_node_that_came_back_fences_its_old_generation_and_no_other_nodes(prefix: tuple[redis.Redis, str]) -> None:
    r, p = prefix
    a, b = Keys(p, "a"), Keys(p, "b")
    sched = TaskStore(r, a, 60, epoch=1, fence=a.scheduler_epoch)
    batch = sched.pipeline()
    for t, w in (("ta", "a.W1"), ("tb", "b.W1")):
        sched.assign(batch, t, "add", w, f'{{"task-id": "{t}", "task": "add", "args": [1, 2]}}', 1.0, 3, "new", 0)
    sched.execute(batch)
    r.set(a.epoch, "1")
    r.set(b.epoch, "1")
    old_a = TaskStore(r, a, 60, epoch=1)
    assert Lease(r, a, 30.0, ["T"]).try_acquire() is None  # node a's supervisor came back: epoch 2
    assert r.get(a.epoch) == "2" and r.get(b.epoch) == "1"
    batch = old_a.pipeline()
    refused = old_a.claim(batch, "ta", 1, "a.W1", 2.0, 11, 3)
    old_a.execute(batch)
    assert refused.value is Claim.STALE_EPOCH and r.hget(a.task("ta"), "status") == "queued"
    b_store = TaskStore(r, b, 60, epoch=1)  # node b's processes are not its generation's: they go on
    batch = b_store.pipeline()
    runs = b_store.claim(batch, "tb", 1, "b.W1", 2.0, 12, 3)
    b_store.execute(batch)
    assert runs.value is Claim.RUN


def test_the_schedulers_plain_table_writes_are_fenced_too(prefix: tuple[redis.Redis, str]) -> None:
    r, p = prefix
    keys = Keys(p)
    r.set(keys.scheduler_epoch, "2")  # another scheduler became active
    r.hset(keys.assignments, mapping={"t1": "x", "t2": "y"})
    r.zadd(keys.retries, {"t3": 1.0})
    r.hset(keys.retry_payloads, "t3", "{}")
    old = TaskStore(r, keys, 60, epoch=1, fence=keys.scheduler_epoch)
    before = {k: r.dump(k) for k in (keys.assignments, keys.orphans, keys.retries, keys.retry_payloads, keys.load)}
    writes: list[Callable[[Batch], None]] = [lambda b: old.drop_placements(b, ["t1"]),
                                             lambda b: old.mark_orphans(b, [("t2", 7)]),
                                             lambda b: old.drop_retry(b, "t3")]
    for write in writes:
        batch = old.pipeline()
        write(batch)
        with pytest.raises(Fenced):
            old.execute(batch)
    with pytest.raises(Fenced):
        old.write_load({"W1": 3})
    assert {k: r.dump(k) for k in before} == before  # nothing written
    current = TaskStore(r, keys, 60, epoch=2, fence=keys.scheduler_epoch)
    batch = current.pipeline()
    current.drop_placements(batch, ["t1"])
    current.mark_orphans(batch, [("t2", 7)])
    current.drop_retry(batch, "t3")
    current.execute(batch)
    current.write_load({"W1": 3, "W2": 0})
    assert r.hgetall(keys.assignments) == {"t2": "y"} and r.hgetall(keys.orphans) == {"t2": "7"}
    assert r.zcard(keys.retries) == 0 and r.hlen(keys.retry_payloads) == 0
    assert r.hgetall(keys.load) == {"W1": "3", "W2": "0"}


def test_the_lease_of_a_holder_known_dead_is_taken_over_at_once_and_only_that_holders(
        prefix: tuple[redis.Redis, str]) -> None:
    r, p = prefix
    keys = Keys(p, "a")
    first = Lease(r, keys, 30.0, ["T"], scheduler=True)
    assert first.try_acquire() is None
    second = Lease(r, keys, 30.0, ["T"], scheduler=True)
    held = second.try_acquire()
    assert held is not None and held.raw == r.get(keys.scheduler_lease)
    first.renew()  # the same holder, renewed: still exactly its value
    stale = Holder.parse(held.raw.replace('"pid":', '"pid":1'))  # a value it does not hold
    assert stale.raw != held.raw
    assert second.try_acquire(replacing=stale) is not None
    assert second.try_acquire(replacing=held) is None  # taken over without waiting out the 30 s
    assert second.epoch == 2 and not second.released_before  # its holder may have left writes on the wire
    assert first.renew() is Renewal.LOST
