"""The chaos run's check that no two runs of one task overlapped in time."""

from __future__ import annotations

from scripts.chaos import overlapping_runs


def test_runs_one_after_the_other_do_not_overlap() -> None:
    spans = ["S a 1 10.0", "E a 1 10.0 11.0", "S a 2 11.5", "E a 2 11.5 12.0", "S b 1 11.0", "E b 1 11.0 11.2"]
    assert overlapping_runs(spans, {}) == 0


def test_a_run_that_starts_before_another_ended_overlaps() -> None:
    spans = ["S a 1 10.0", "E a 1 10.0 12.0", "S a 2 11.0", "E a 2 11.0 11.5", "S a 3 11.8", "E a 3 11.8 13"]
    assert overlapping_runs(spans, {}) == 2


def test_a_run_cut_short_ends_when_its_process_is_seen_gone() -> None:
    spans = ["S a 1 10.0", "S a 2 11.0", "E a 2 11.0 11.5"]
    assert overlapping_runs(spans, {1: 10.5}) == 0
    assert overlapping_runs(spans, {1: 11.2}) == 1
    assert overlapping_runs(spans, {}) == 1  # never seen gone: it may still run


def test_a_run_cut_short_ended_before_its_process_ran_the_next_task() -> None:
    spans = ["S a 1 10.0", "S b 1 10.4", "E b 1 10.4 10.5", "S a 2 11.0", "E a 2 11.0 11.5"]
    assert overlapping_runs(spans, {}) == 0
