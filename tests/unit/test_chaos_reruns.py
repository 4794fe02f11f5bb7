"""The chaos run's check, per task, that it ran at most 1 + the deaths that hit it while it ran."""

from __future__ import annotations

from scripts.chaos import rerun_check


def test_one_run_each_is_no_rerun() -> None:
    spans = ["S a 1 10.0", "E a 1 10.0 11.0", "S b 2 10.0", "E b 2 10.0 10.5"]
    assert rerun_check(spans, {}) == (0, 0)


def test_a_rerun_after_its_process_died_mid_task_is_explained_and_counted_mid_task() -> None:
    spans = ["S a 1 10.0", "S a 2 11.0", "E a 2 11.0 11.5"]
    assert rerun_check(spans, {1: 10.5}) == (0, 1)


def test_a_rerun_after_a_death_past_the_body_is_explained_but_not_mid_task() -> None:
    # Killed after the body's end entry, before the result was written: it runs again.
    spans = ["S a 1 10.0", "E a 1 10.0 10.2", "S a 2 11.0", "E a 2 11.0 11.5"]
    assert rerun_check(spans, {1: 10.5}) == (0, 0)


def test_a_rerun_whose_earlier_process_never_died_is_unexplained() -> None:
    spans = ["S a 1 10.0", "E a 1 10.0 10.2", "S a 2 11.0", "E a 2 11.0 11.5"]
    assert rerun_check(spans, {}) == (1, 0)


def test_one_death_explains_one_rerun_only() -> None:
    # Three runs, two on the same process: that process died once, so one run is too many.
    spans = ["S a 1 10.0", "E a 1 10.0 10.1", "S a 1 10.2", "S a 2 11.0", "E a 2 11.0 11.5"]
    assert rerun_check(spans, {1: 10.5}) == (1, 1)
    assert rerun_check(spans, {1: 10.5, 3: 9.0}) == (1, 1)  # another process's death does not count
