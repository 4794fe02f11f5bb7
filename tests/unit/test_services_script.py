"""scripts/services.sh's KRaft cluster ids, without starting anything: every id it
makes is one that Kafka's own tools take, and a given one is checked first."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"
# Kafka's Uuid.toString: 16 bytes in URL-safe base64 without padding; the last of the
# 22 characters carries 2 bits. Uuid.randomUuid never makes one that begins with '-'.
MADE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{20}[AQgw]")
RUNS = 300  # the old generator began with '-' once in 64: (63/64)**300 < 1% to miss it


def cluster_id(env: dict[str, str] | None = None, runs: int = 1) -> subprocess.CompletedProcess[str]:
    """`scripts/services.sh cluster-id`, ``runs`` times in one shell."""
    loop = f'for _ in $(seq {runs}); do "$0" cluster-id || exit; done'
    return subprocess.run(["bash", "-c", loop, str(SERVICES)], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def test_made_ids_are_valid_and_never_begin_with_a_dash() -> None:
    out = cluster_id({"YADTQ_KAFKA_CLUSTER_ID": ""}, runs=RUNS)
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert len(ids) == RUNS
    assert [i for i in ids if not MADE.fullmatch(i)] == []
    assert len(set(ids)) == RUNS


@pytest.mark.parametrize("given", ["-bcdefghijklmnopqrstuA", "MkU3OEVBNTcwNTJENDM2Qg", "_" * 21 + "w"])
def test_a_given_valid_id_is_used(given: str) -> None:
    out = cluster_id({"YADTQ_KAFKA_CLUSTER_ID": given})
    assert (out.returncode, out.stdout.strip()) == (0, given), out.stderr


@pytest.mark.parametrize("given", [
    "abc",                       # too short
    "abcdefghijklmnopqrstuvA",   # 23 characters
    "abcdefghijklmnopqrstuB",    # the last character carries bits beyond 16 bytes
    "abcdefghijklmnopqrst+A",    # standard base64, not URL-safe
    "abcdefghijklmnopqrst=A",
    "AAAAAAAAAAAAAAAAAAAAAA",    # reserved: Uuid.ZERO_UUID
    "AAAAAAAAAAAAAAAAAAAAAQ",    # reserved: the metadata topic's id
    "-t",
    "abcdefghij klmnopqrstA",
])
def test_an_invalid_given_id_is_refused(given: str) -> None:
    out = cluster_id({"YADTQ_KAFKA_CLUSTER_ID": given})
    assert out.returncode == 1 and out.stdout == ""
    assert "YADTQ_KAFKA_CLUSTER_ID" in out.stderr and "22 characters" in out.stderr
