"""The lease's Lua scripts (client/lua/lease_*.lua) on paths `make mutate-lua` found no test for
(docs/TESTING.md, "Lua mutants"); each docstring names the mutants its test kills."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from client.lease import Lease, Renewal
from client.store import Keys, connect
from tests.integration.conftest import REDIS

pytestmark = pytest.mark.integration


@pytest.fixture
def lease_keys(services: None) -> Iterator[tuple[redis.Redis, Keys]]:
    r = connect(REDIS)
    keys = Keys(f"t{uuid.uuid4().hex[:10]}:")
    yield r, keys
    r.delete(keys.owner, keys.epoch, keys.owner_released)
    r.close()


def test_a_renewal_extends_the_lease(lease_keys: tuple[redis.Redis, Keys]) -> None:
    """lease_renew.lua:14 (the PEXPIRE dropped, or given another argument): the lease would lapse
    under a live owner, and a second supervisor take the cluster."""
    r, keys = lease_keys
    lease = Lease(r, keys, 30.0, ["T"])
    assert lease.try_acquire() is None
    r.pexpire(keys.owner, 2000)
    assert lease.renew() is Renewal.HELD
    assert 20_000 < r.pttl(keys.owner) <= 30_000


def test_a_lapsed_lease_another_epoch_took_since_is_lost_not_retaken(lease_keys: tuple[redis.Redis, Keys]) -> None:
    """lease_renew.lua:18 (its condition made false): the old owner would take the lease back from
    the generation that replaced it, and both run the cluster."""
    r, keys = lease_keys
    lease = Lease(r, keys, 30.0, ["T"])
    assert lease.try_acquire() is None and lease.epoch == 1
    r.delete(keys.owner)
    r.set(keys.epoch, "2")  # a newer supervisor took it, and its lease lapsed too
    assert lease.renew() is Renewal.LOST
    assert r.get(keys.owner) is None and r.get(keys.epoch) == "2"


def test_a_lease_retaken_after_redis_lost_its_data_restores_the_epoch(lease_keys: tuple[redis.Redis, Keys]) -> None:
    """lease_renew.lua:19-20 (a SET dropped): with the epoch gone, the next supervisor would take
    epoch 1 again, which the running children take for their own."""
    r, keys = lease_keys
    lease = Lease(r, keys, 30.0, ["T"])
    assert lease.try_acquire() is None
    assert lease.try_acquire() is not None  # held: a second taking is refused
    r.delete(keys.owner, keys.epoch)  # Redis restarted without its data
    assert lease.renew() is Renewal.RETAKEN
    assert r.get(keys.epoch) == "1" and 20_000 < r.pttl(keys.owner) <= 30_000


@pytest.mark.parametrize("junk", ["5", "true", '"text"', "null"])
def test_a_lease_value_that_is_json_but_no_object_is_not_ours(lease_keys: tuple[redis.Redis, Keys],
                                                             junk: str) -> None:
    """lease_renew.lua:8 (its condition made true, 'and' made 'or'): indexing a decoded number
    failed the script, and with it the supervisor's renewals."""
    r, keys = lease_keys
    lease = Lease(r, keys, 30.0, ["T"])
    assert lease.try_acquire() is None
    r.set(keys.owner, junk, px=30_000)
    assert lease.renew() is Renewal.LOST
    lease.release()
    assert r.get(keys.owner) == junk
