"""Turn the raw runs into the table (median and min-max), the ratios, the targets,
the JSON file, the plot and docs/BENCHMARKS.md.

The results are one dict (what the JSON file holds):
``{"params": ..., "machine": ..., "cases": [{"system", "workers", "runs": [{"metrics": {...}} | {"error": "..."}]}]}``.
Everything here but ``plot`` is plain arithmetic and text (unit-tested without services).
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Results = dict[str, Any]
Case = dict[str, Any]
Stat = dict[str, float]

SYSTEMS = ("limit", "yadtq", "yadtq-raw", "yadtq-nodes", "celery", "huey")
# "yadtq-raw": the same cluster, with tasks produced by plain kafka-python in the
# seed's format and results read with plain redis-py (--submit raw).
# "yadtq-nodes": the same W workers spread over several supervisors (--nodes N), one
# active scheduler and the others standing by (README, "Running on several hosts").
YADTQ = ("yadtq", "yadtq-raw", "yadtq-nodes")
LABELS = {"limit": "kafka-python (limit)", "yadtq": "YADTQ", "yadtq-raw": "YADTQ, raw submit",
          "yadtq-nodes": "YADTQ, several nodes", "celery": "Celery", "huey": "Huey"}
HEADLINE_W = 4  # the targets' worker count


# --- arithmetic -----------------------------------------------------------
def stat(values: Sequence[float]) -> Stat:
    """Median, min, max and count of one metric over the runs."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(case: Case) -> dict[str, Stat]:
    """Each metric of a case over its successful runs."""
    per_metric: dict[str, list[float]] = {}
    for run in case["runs"]:
        for name, value in run.get("metrics", {}).items():
            per_metric.setdefault(name, []).append(value)
    return {name: stat(values) for name, values in per_metric.items()}


def errors(case: Case) -> list[str]:
    return [run["error"] for run in case["runs"] if "error" in run]


def find(results: Results, system: str, workers: int | None = None) -> Case | None:
    cases: list[Case] = results["cases"]
    for case in cases:
        if case["system"] == system and (workers is None or case["workers"] == workers):
            return case
    return None


def median(results: Results, system: str, metric: str, workers: int | None = None) -> float | None:
    """The median of ``metric`` for that system (and worker count), or None if not measured."""
    case = find(results, system, workers)
    if case is None:
        return None
    s = summarize(case).get(metric)
    return s["median"] if s else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def yadtq_workers(results: Results, system: str = "yadtq") -> list[int]:
    return sorted(c["workers"] for c in results["cases"] if c["system"] == system)


def ratio_rows(results: Results) -> list[dict[str, Any]]:
    """Per YADTQ submit mode and worker count: throughput against the limit and the anchors,
    and the round trip's p50 against the anchors' (above 1: YADTQ is slower)."""
    rows = []
    for system, w in [(name, w) for name in YADTQ for w in yadtq_workers(results, name)]:
        thr = median(results, system, "throughput", w)
        p50 = median(results, system, "rt_p50_ms", w)
        rows.append({
            "system": system,
            "workers": w,
            "throughput_vs_limit": ratio(thr, median(results, "limit", "throughput")),
            "throughput_vs_celery": ratio(thr, median(results, "celery", "throughput")),
            "throughput_vs_huey": ratio(thr, median(results, "huey", "throughput")),
            "rt_p50_vs_celery": ratio(p50, median(results, "celery", "rt_p50_ms")),
            "rt_p50_vs_huey": ratio(p50, median(results, "huey", "rt_p50_ms")),
        })
    return rows


def _target(name: str, measured: float | None, ok: Callable[[float], bool], shown: str) -> dict[str, Any]:
    return {"target": name, "measured": measured, "shown": shown if measured is not None else "not measured",
            "status": "n/a" if measured is None else ("PASS" if ok(measured) else "FAIL")}


def _yadtq_stats(results: Results, metric: str, system: str) -> list[Stat]:
    """``metric`` of every worker count of ``system`` that measured it."""
    return [st[metric] for c in results["cases"] if c["system"] == system if metric in (st := summarize(c))]


def _largest(stats: list[Stat], key: str) -> float | None:
    return max(s[key] for s in stats) if stats else None


def _non_decreasing(results: Results, system: str) -> tuple[float | None, str]:
    points = [(w, median(results, system, "throughput", w)) for w in yadtq_workers(results, system)]
    known = [(w, v) for w, v in points if v is not None]
    if len(known) < 2:
        return None, ""
    shown = ", ".join(f"W={w}: {v:,.0f}/s" for w, v in known)
    falls = sum(1 for (_, a), (_, b) in itertools.pairwise(known) if b < a)
    return float(falls), shown


def target_rows(results: Results) -> list[dict[str, Any]]:
    """Issue 10's targets, for each submit mode measured, and issue 11's for several nodes;
    each PASS, FAIL or n/a (not measured in this run)."""
    rows = [row for system in YADTQ if find(results, system) is not None
            for row in _targets_of(results, system)] or _targets_of(results, "yadtq")
    if find(results, "yadtq-nodes") is not None:
        w = HEADLINE_W
        nodes = ratio(median(results, "yadtq-nodes", "throughput", w), median(results, "yadtq", "throughput", w))
        rows.append(_target(f"throughput W={w} on several nodes >= on one node", nodes, lambda x: x >= 1.0,
                            f"{nodes or 0:.2f}x"))
    return rows


def _targets_of(results: Results, system: str) -> list[dict[str, Any]]:
    w, tag = HEADLINE_W, "" if system == "yadtq" else f" [{LABELS[system]}]"
    thr = median(results, system, "throughput", w)
    vs_celery = ratio(thr, median(results, "celery", "throughput"))
    vs_huey = ratio(thr, median(results, "huey", "throughput"))
    vs_limit = ratio(thr, median(results, "limit", "throughput"))
    p50 = _largest(_yadtq_stats(results, "rt_p50_ms", system), "median")
    p99 = _largest(_yadtq_stats(results, "rt_p99_ms", system), "median")
    rss = _largest(_yadtq_stats(results, "rss_worker_mb", system), "max")
    falls, shown = _non_decreasing(results, system)
    rows = [
        _target(f"throughput W={w} >= 5x Celery", vs_celery, lambda x: x >= 5.0, f"{vs_celery or 0:.2f}x"),
        _target(f"throughput W={w} >= 1.5x Huey", vs_huey, lambda x: x >= 1.5, f"{vs_huey or 0:.2f}x"),
        _target(f"throughput W={w} >= 20% of the kafka-python one-hop rate", vs_limit,
                lambda x: x >= 0.20, f"{(vs_limit or 0) * 100:.1f}%"),
        _target("idle round trip p50 <= 4 ms (slowest W)", p50, lambda x: x <= 4.0, f"{p50 or 0:.2f} ms"),
        _target("idle round trip p99 <= 10 ms (slowest W)", p99, lambda x: x <= 10.0, f"{p99 or 0:.2f} ms"),
        _target("throughput does not fall as W grows", falls, lambda x: x == 0, shown),
        _target("worker RSS < 60 MB (largest peak, any W)", rss, lambda x: x < 60.0, f"{rss or 0:.1f} MB"),
    ]
    return [{**r, "target": r["target"] + tag} for r in rows]


# --- the table ------------------------------------------------------------
def fmt(value: float, kind: str) -> str:
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ms":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:.1f}"


def cell(stats: dict[str, Stat], metric: str, kind: str) -> str:
    s = stats.get(metric)
    if s is None:
        return "-"
    if s["n"] == 1:
        return fmt(s["median"], kind)
    return f"{fmt(s['median'], kind)} ({fmt(s['min'], kind)}-{fmt(s['max'], kind)})"


COLUMNS = ("system", "W", "runs ok", "throughput /s", "enqueue /s", "RT p50 ms", "RT p99 ms",
           "RSS sched/main MB", "RSS worker MB")


def case_row(case: Case) -> list[str]:
    s = summarize(case)
    errs = errors(case)
    runs = f"{len(case['runs']) - len(errs)}/{len(case['runs'])}"
    w = "-" if case["workers"] is None else str(case["workers"])
    system = str(case["system"])
    label = LABELS.get(system, system)
    if not s:
        first = f"error: {errs[0].splitlines()[0][:90]}" if errs else "not run"
        return [label, w, runs, first, "", "", "", "", ""]
    main = cell(s, "rss_scheduler_mb", "mb") if "rss_scheduler_mb" in s else cell(s, "rss_main_mb", "mb")
    return [label, w, runs, cell(s, "throughput", "rate"), cell(s, "enqueue_rate", "rate"),
            cell(s, "rt_p50_ms", "ms"), cell(s, "rt_p99_ms", "ms"), main, cell(s, "rss_worker_mb", "mb")]


def table(results: Results) -> tuple[list[str], list[list[str]]]:
    order = {name: i for i, name in enumerate(SYSTEMS)}
    cases = sorted(results["cases"], key=lambda c: (order.get(c["system"], 99), c["workers"] or 0))
    return list(COLUMNS), [case_row(c) for c in cases]


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def ratio_table(results: Results) -> tuple[list[str], list[list[str]]]:
    header = ["YADTQ", "W", "thr / limit", "thr / Celery", "thr / Huey", "p50 / Celery p50", "p50 / Huey p50"]
    rows = [[LABELS[r["system"]], str(r["workers"]), _x(r["throughput_vs_limit"]), _x(r["throughput_vs_celery"]),
             _x(r["throughput_vs_huey"]), _x(r["rt_p50_vs_celery"]), _x(r["rt_p50_vs_huey"])]
            for r in ratio_rows(results)]
    return header, rows


def target_table(results: Results) -> tuple[list[str], list[list[str]]]:
    return ["target", "measured", "status"], [[t["target"], t["shown"], t["status"]] for t in target_rows(results)]


def render_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def render_markdown(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def text_report(results: Results) -> str:
    p = results["params"]
    head = (f"N={p['n']} tasks, {p['round_trips']} round trips, {p['runs']} run(s): "
            f"median (min-max) of the runs")
    parts = [head, render_text(*table(results))]
    if ratio_rows(results):
        parts += ["Ratios (medians)", render_text(*ratio_table(results))]
    parts += ["Targets", render_text(*target_table(results))]
    return "\n\n".join(parts)


# --- files ----------------------------------------------------------------
def write_json(results: Results, path: Path) -> None:
    derived = ("summary", "ratios", "targets")  # recomputed here, also when remade from an earlier file
    results = {k: v for k, v in results.items() if k not in derived}
    out = {**results, "summary": [{"system": c["system"], "workers": c["workers"], "metrics": summarize(c),
                                   "errors": errors(c)} for c in results["cases"]],
           "ratios": ratio_rows(results), "targets": target_rows(results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


def _anchor_line(ax: Any, results: Results, system: str, style: dict[str, Any]) -> None:
    case = find(results, system)
    s = summarize(case).get("throughput") if case else None
    if s is None:
        return
    w = case["workers"] if case and case["workers"] else None
    label = "kafka-python, one hop (limit)" if system == "limit" else LABELS[system] + f" ({w} processes)"
    ax.axhline(s["median"], label=f"{label}: {s['median']:,.0f}/s", **style)
    ax.axhspan(s["min"], s["max"], alpha=0.12, color=style["color"])
    if w is not None:
        ax.plot([w], [s["median"]], marker="s", color=style["color"])


def _yadtq_line(ax: Any, results: Results, system: str, color: str) -> None:
    """One submit mode's throughput against W, bars from min to max."""
    points = [(w, summarize(c)["throughput"]) for w in yadtq_workers(results, system)
              if (c := find(results, system, w)) and "throughput" in summarize(c)]
    if not points:
        return
    xs, st = [p[0] for p in points], [p[1] for p in points]
    med = [s["median"] for s in st]
    ax.errorbar(xs, med, yerr=[[m - s["min"] for m, s in zip(med, st, strict=True)],
                               [s["max"] - m for m, s in zip(med, st, strict=True)]],
                marker="o", linewidth=2, capsize=4, color=color, label=f"{LABELS[system]} (W workers)")


def plot(results: Results, path: Path) -> None:
    """Throughput against worker count: YADTQ as a line (bars: min-max), the anchors and
    the limit as horizontal lines (bands: min-max; a square at the anchors' process count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for system, color in (("yadtq", "tab:blue"), ("yadtq-raw", "tab:purple"), ("yadtq-nodes", "tab:red")):
        _yadtq_line(ax, results, system, color)
    _anchor_line(ax, results, "limit", {"color": "tab:gray", "linestyle": ":"})
    _anchor_line(ax, results, "celery", {"color": "tab:green", "linestyle": "--"})
    _anchor_line(ax, results, "huey", {"color": "tab:orange", "linestyle": "--"})
    ax.set_yscale("log")
    ax.set_xscale("log", base=2)
    ws = {w for system in YADTQ for w in yadtq_workers(results, system)}
    ticks = sorted(ws | {int(results["params"]["anchor_concurrency"])})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("worker processes (W)")
    ax.set_ylabel("end-to-end throughput, tasks/s (log scale)")
    m, p = results["machine"], results["params"]
    ax.set_title(f"N={p['n']} no-op tasks, median of {p['runs']} run(s)\n"
                 f"{m['cpu']}, {m['cores_logical']} cores", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
