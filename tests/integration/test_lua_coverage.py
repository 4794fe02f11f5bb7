"""make test's Lua coverage on the real Redis: every script, instrumented, still loads, and runs
its probes (client/luacov.py)."""

from __future__ import annotations

import uuid

import pytest
import redis

from client import luacov
from client.store import _Script, lua_text
from tests.integration.conftest import REDIS
from tests.support.lua_coverage import texts

pytestmark = pytest.mark.integration


@pytest.fixture
def r(services: None) -> redis.Redis:
    return redis.Redis.from_url(REDIS, decode_responses=True)


def test_every_instrumented_script_loads_and_counts(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = f"t{uuid.uuid4().hex[:10]}:"
    key = f"{tag}lua-coverage"
    monkeypatch.setenv(luacov.ENV, key)
    needs = {"assign": ("died",), "claim": ("died",)}
    try:
        for name in sorted(n.removesuffix(".lua") for n in texts() if n not in ("common.lua", "died.lua")):
            text = lua_text(name) if name.startswith("lease_") else _Script(name, needs.get(name, ())).text
            assert key in text
            r.script_load(text)  # a probe in the wrong place is a syntax error here
        owners = _Script("owners")
        r.hset(f"{tag}x", mapping={"yadtq": "1"})
        assert owners([f"{tag}x", f"{tag}y"], [], r) == ["ours", "none"]
        counts = {k: int(v) for k, v in r.hgetall(key).items()}
        assert counts["owners.lua:5"] == 1 and counts["owners.lua:5:do"] == 2  # the loop's body ran twice
        assert counts["common.lua:15:then"] == 1 and counts["common.lua:16:then"] == 1
    finally:
        r.delete(key, f"{tag}x")
        r.close()
