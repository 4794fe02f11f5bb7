"""The test session's Lua coverage (docs/TESTING.md, "Coverage"): which lines of client/lua ran.

``make test`` sets ``YADTQ_LUA_COVERAGE=1``; ``start`` (when tests/conftest.py is imported,
before any script is read: this module imports nothing of ``client`` until the end) replaces it
with this session's key, ``t<10 hex>:lua-coverage`` on the test database: a test prefix, so the
session guard accepts it, and a key of its own, so sessions run side by side count apart.
Every process the tests start inherits it, so the scripts they load count there too
(``client.luacov``). A private Redis counts in its own database: ``harvest`` adds those counts
to the session's before it stops. ``summary`` prints a table per script and deletes the key.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from importlib import resources

import redis

ENV = "YADTQ_LUA_COVERAGE"  # client.luacov.ENV: not imported here, as importing client reads the scripts
REDIS = os.environ.get("YADTQ_TEST_REDIS", "redis://localhost:6379/15")


def key() -> str | None:
    """This session's coverage key, or None when Lua coverage is off."""
    value = os.environ.get(ENV)
    return value if value and value != "1" else None


def start() -> None:
    """Give the session its own key, if ``make test`` asked for Lua coverage (``YADTQ_LUA_COVERAGE=1``)."""
    if os.environ.get(ENV) == "1":
        os.environ[ENV] = f"t{uuid.uuid4().hex[:10]}:lua-coverage"


def harvest(client: redis.Redis) -> None:
    """Add the counts a private Redis holds to the session's, and delete them there."""
    k = key()
    if k is None:
        return
    with contextlib.suppress(redis.RedisError):
        counts = client.hgetall(k)
        if counts:
            shared = redis.Redis.from_url(REDIS)
            try:
                pipe = shared.pipeline(transaction=False)
                for label, n in counts.items():
                    pipe.hincrby(k, label, int(n))
                pipe.execute()
            finally:
                shared.close()
            client.delete(k)


def texts() -> dict[str, str]:
    """Every script's text as written, by file name."""
    folder = resources.files("client").joinpath("lua")
    return {f.name: f.read_text(encoding="utf-8") for f in folder.iterdir() if f.name.endswith(".lua")}


def summary() -> list[str]:
    """The report's lines (empty when Lua coverage is off); the key is deleted."""
    k = key()
    if k is None:
        return []
    r = redis.Redis.from_url(REDIS, decode_responses=True)
    try:
        counts = {str(label): int(n) for label, n in r.hgetall(k).items()}
        r.delete(k)
    except redis.RedisError as e:
        return [f"Lua coverage: no counts ({e})"]
    finally:
        r.close()
    from client import luacov

    reports = luacov.report(texts(), counts)
    out = [f"{'Lua script':<20} {'lines':>5} {'ran':>5} {'1-line ifs':>11} {'ran':>5} {'cover':>6}   never ran"]
    for f in reports:
        out.append(f"{f.name:<20} {f.lines:>5} {f.lines_run:>5} {f.branches:>11} {f.branches_run:>5} "
                   f"{f.percent:>5.0f}%   {', '.join(f.never) or '-'}")
    lines, run = sum(f.lines for f in reports), sum(f.lines_run for f in reports)
    branches, taken = sum(f.branches for f in reports), sum(f.branches_run for f in reports)
    out.append(f"{'TOTAL':<20} {lines:>5} {run:>5} {branches:>11} {taken:>5} "
               f"{100.0 * (run + taken) / max(1, lines + branches):>5.0f}%")
    return out
