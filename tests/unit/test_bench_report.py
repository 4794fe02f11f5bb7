"""The benchmark report's arithmetic: medians over runs, ratios, targets, the table.

No timing is asserted here; only what bench/report.py computes from given numbers.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import docs, report
from bench.common import latency_metrics, percentile


def run(**metrics: float) -> dict[str, Any]:
    return {"metrics": metrics}


def results(*cases: dict[str, Any]) -> dict[str, Any]:
    return {"params": {"n": 100, "round_trips": 300, "runs": 3, "workers": [1, 4], "anchor_concurrency": 2},
            "machine": {"date": "2026-01-01T00:00:00+00:00", "cpu": "cpu", "cores_logical": 2,
                        "cores_physical": 1, "ram_gb": 1.0, "os": "os", "python": "CPython 3.11",
                        "kafka": "4.1.1", "redis": "7", "libraries": {"yadtq": "0.1.0"},
                        "yadtq_commit": "abc", "load_average_at_start": [0.1, 0.2, 0.3]},
            "duration_s": 60.0, "cases": list(cases)}


def case(system: str, workers: int | None, *runs: dict[str, Any]) -> dict[str, Any]:
    return {"system": system, "workers": workers, "runs": list(runs)}


def sample() -> dict[str, Any]:
    return results(
        case("limit", None, run(throughput=10_000.0, rt_p50_ms=1.0, rt_p99_ms=2.0)),
        case("yadtq", 1, run(throughput=900.0, rt_p50_ms=4.0, rt_p99_ms=20.0, rss_worker_mb=40.0),
             run(throughput=1000.0, rt_p50_ms=5.0, rt_p99_ms=22.0, rss_worker_mb=41.0),
             {"error": "BenchError: boom"}),
        case("yadtq", 4, run(throughput=3000.0, rt_p50_ms=3.0, rt_p99_ms=10.0, rss_worker_mb=70.0)),
        case("yadtq-raw", 4, run(throughput=2000.0, rt_p50_ms=3.5, rt_p99_ms=12.0, rss_worker_mb=50.0)),
        case("celery", 2, run(throughput=1000.0, rt_p50_ms=2.0)),
        case("huey", 2, {"error": "BenchError: huey did not start\nlast lines"}),
    )


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 50) == pytest.approx(50.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == pytest.approx(3.97)
    assert percentile([7.0], 99) == 7.0
    assert latency_metrics([0.001, 0.003]) == {"rt_p50_ms": pytest.approx(2.0), "rt_p99_ms": pytest.approx(2.98)}


def test_summary_is_median_min_max_over_the_runs_that_finished() -> None:
    s = report.summarize(sample()["cases"][1])
    assert s["throughput"] == {"median": 950.0, "min": 900.0, "max": 1000.0, "n": 2}
    assert report.errors(sample()["cases"][1]) == ["BenchError: boom"]
    assert report.stat([5.0, 1.0, 3.0]) == {"median": 3.0, "min": 1.0, "max": 5.0, "n": 3}


def test_ratios_are_of_medians_and_missing_systems_give_none() -> None:
    rows = {r["workers"]: r for r in report.ratio_rows(sample()) if r["system"] == "yadtq"}
    raw = {r["workers"]: r for r in report.ratio_rows(sample()) if r["system"] == "yadtq-raw"}
    assert raw[4]["throughput_vs_celery"] == pytest.approx(2.0)  # each submit mode against the same anchors
    assert list(raw) == [4]
    assert rows[4]["throughput_vs_limit"] == pytest.approx(0.3)
    assert rows[4]["throughput_vs_celery"] == pytest.approx(3.0)
    assert rows[4]["throughput_vs_huey"] is None  # every Huey run failed
    assert rows[1]["rt_p50_vs_celery"] == pytest.approx(2.25)


def test_targets() -> None:
    t = {row["target"]: row for row in report.target_rows(sample())}
    assert t["throughput W=4 >= 5x Celery"]["status"] == "FAIL"
    assert t["throughput W=4 >= 5x Celery"]["measured"] == pytest.approx(3.0)
    assert t["throughput W=4 >= 1.5x Huey"]["status"] == "n/a"
    assert t["throughput W=4 >= 20% of the kafka-python one-hop rate"]["status"] == "PASS"
    assert t["idle round trip p50 <= 4 ms (slowest W)"]["measured"] == pytest.approx(4.5)
    assert t["idle round trip p50 <= 4 ms (slowest W)"]["status"] == "FAIL"
    assert t["idle round trip p99 <= 10 ms (slowest W)"]["measured"] == pytest.approx(21.0)
    assert t["throughput does not fall as W grows"]["status"] == "PASS"
    assert t["worker RSS < 60 MB (largest peak, any W)"]["status"] == "FAIL"
    # The same targets for tasks produced by plain kafka-python, from that mode's runs only.
    raw = " [YADTQ, raw submit]"
    assert t["throughput W=4 >= 5x Celery" + raw]["measured"] == pytest.approx(2.0)
    assert t["idle round trip p50 <= 4 ms (slowest W)" + raw]["status"] == "PASS"
    assert t["idle round trip p99 <= 10 ms (slowest W)" + raw]["status"] == "FAIL"
    assert t["worker RSS < 60 MB (largest peak, any W)" + raw]["status"] == "PASS"
    assert t["throughput does not fall as W grows" + raw]["status"] == "n/a"  # one W measured


def test_throughput_that_falls_with_more_workers_fails_its_target() -> None:
    r = results(case("yadtq", 1, run(throughput=1000.0)), case("yadtq", 2, run(throughput=1100.0)),
                case("yadtq", 4, run(throughput=900.0)))
    t = {row["target"]: row for row in report.target_rows(r)}
    assert t["throughput does not fall as W grows"]["status"] == "FAIL"
    assert "W=4: 900/s" in t["throughput does not fall as W grows"]["shown"]


def test_table_shows_median_with_range_and_errors() -> None:
    header, rows = report.table(sample())
    by_system = {(r[0], r[1]): r for r in rows}
    assert header[3] == "throughput /s"
    assert by_system[("YADTQ", "1")][2] == "2/3"
    assert by_system[("YADTQ", "1")][3] == "950 (900-1,000)"
    assert by_system[("YADTQ", "4")][3] == "3,000"
    assert by_system[("Huey", "2")][3] == "error: BenchError: huey did not start"
    assert [r[0] for r in rows] == ["kafka-python (limit)", "YADTQ", "YADTQ", "YADTQ, raw submit", "Celery", "Huey"]


def test_text_and_markdown_render() -> None:
    text = report.text_report(sample())
    assert "Targets" in text and "Ratios" in text
    assert report.render_markdown(["a|b"], [["x|y"]]).splitlines()[-1] == "| x\\|y |"
    md = docs.render(sample(), "benchmarks.png", "benchmarks.json")
    assert "![throughput against worker count](benchmarks.png)" in md
    assert "| YADTQ | 4 | 1/1 | 3,000 |" in md


def test_docs_say_when_a_run_is_small_or_the_machine_busy() -> None:
    full = sample()
    full["params"].update(n=10_000, runs=3, workers=[1, 2, 4, 8], systems=["limit", "yadtq", "celery", "huey"])
    assert docs.caveats(full) == []
    small = sample()
    small["machine"]["load_average_at_start"] = [3.0, 1.0, 1.0]
    notes = docs.caveats(small)
    assert "n=100" in notes[0] and "runs" not in notes[0]
    assert "busy" in notes[1]


def test_each_submit_mode_is_a_yadtq_case_of_its_own_for_every_worker_count() -> None:
    from bench.__main__ import parse_args, plan

    both = parse_args(["--systems", "yadtq,huey", "--workers", "4,1"])
    assert both.submit == ["client", "raw"]  # side by side unless told otherwise
    assert plan(both) == [("yadtq", 1), ("yadtq", 4), ("yadtq-raw", 1), ("yadtq-raw", 4), ("huey", 2)]
    assert plan(parse_args(["--systems", "yadtq", "--workers", "2", "--submit", "raw"])) == [("yadtq-raw", 2)]
    with pytest.raises(SystemExit):
        parse_args(["--submit", "kafka"])


def test_several_nodes_are_a_case_of_their_own_with_a_target_against_one_node() -> None:
    from bench.__main__ import parse_args, plan
    from bench.yadtq_run import node_sizes

    ns = parse_args(["--systems", "yadtq", "--workers", "1,4", "--submit", "client", "--nodes", "2"])
    assert plan(ns) == [("yadtq", 1), ("yadtq", 4), ("yadtq-nodes", 4)]  # W=1 cannot be split over 2 nodes
    assert plan(parse_args(["--systems", "yadtq", "--workers", "4", "--submit", "client"])) == [("yadtq", 4)]
    assert (node_sizes(4, 2), node_sizes(5, 2), node_sizes(1, 2)) == ([2, 2], [3, 2], [1])
    with pytest.raises(SystemExit):
        parse_args(["--nodes", "0"])
    r = results(case("yadtq", 4, run(throughput=1000.0)), case("yadtq-nodes", 4, run(throughput=990.0)))
    t = {row["target"]: row for row in report.target_rows(r)}
    row = t["throughput W=4 on several nodes >= on one node"]
    assert (row["status"], row["shown"]) == ("FAIL", "0.99x")
    assert "throughput W=4 >= 5x Celery [YADTQ, several nodes]" in t
    assert "throughput W=4 on several nodes >= on one node" not in {
        r["target"] for r in report.target_rows(results(case("yadtq", 4, run(throughput=1000.0))))}
