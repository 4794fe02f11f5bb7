"""The trace's arithmetic: from marks (client/trace.py) to a table of steps.

Pure functions, no services: ``by_task`` groups the marks of the traced round
trips, ``intervals`` turns each step (from one mark to the next) into a list of
milliseconds, ``step_rows`` gives p50/p90/p99/mean per step, and ``summary``
sets the sum of the steps' p50s against the round trip's p50, with the
difference as a row of its own, so that nothing is hidden.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from bench.common import percentile
from client.trace import Mark


class Step(NamedTuple):
    """One step of a task's way: from mark ``start`` to mark ``end``."""

    label: str
    start: str
    end: str


# The critical path of one round trip, in order: each step starts where the
# previous ended, so the steps of one task add up to its round trip exactly.
YADTQ_CHAIN = (
    Step("client: check ids (Redis), encode", "rt.start", "client.send"),
    Step("client produce (send -> ack)", "client.send", "client.ack"),
    Step("hop TASKS (ack -> scheduler's poll returns)", "client.ack", "sched.polled"),
    Step("scheduler: parse, ASSIGN (Redis)", "sched.polled", "sched.assigned"),
    Step("scheduler: ASSIGN answer -> send", "sched.assigned", "sched.send"),
    Step("produce to W<i> (send -> ack)", "sched.send", "sched.ack"),
    Step("hop W<i> (ack -> worker's poll returns)", "sched.ack", "worker.polled"),
    Step("worker: parse, CLAIM (Redis)", "worker.polled", "worker.claimed"),
    Step("run", "worker.claimed", "worker.ran"),
    Step("result write (FINISH + PUBLISH, Redis)", "worker.ran", "worker.finished"),
    Step("notification (FINISH -> client wakes)", "worker.finished", "client.woke"),
    Step("client: read the record", "client.woke", "rt.end"),
)

# Off the critical path (or overlapping it): where the time around it goes.
YADTQ_SIDE = (
    Step("client: ack -> flush returned, 'queued' written (Redis)", "client.ack", "client.queued"),
    Step("client: 'queued' -> subscribed (Redis)", "client.queued", "client.subscribed"),
    Step("client subscribed -> FINISH (< 0: subscribed late)", "client.subscribed", "worker.finished"),
    Step("scheduler: poll entered -> client ack (< 0: entered after)", "sched.polled.entered", "client.ack"),
    Step("scheduler: the poll that returned it (entered -> returned)", "sched.polled.entered", "sched.polled"),
    Step("scheduler: ack -> flush returned", "sched.ack", "sched.flushed"),
    Step("worker: poll entered -> scheduler's ack (< 0: entered after)", "worker.polled.entered", "sched.ack"),
    Step("worker: the poll that returned it (entered -> returned)", "worker.polled.entered", "worker.polled"),
    Step("hop TASKS incl. produce (client send -> scheduler's poll returns)", "client.send", "sched.polled"),
    Step("hop W<i> incl. produce (scheduler send -> worker's poll returns)", "sched.send", "worker.polled"),
)

# The floor: the same two hops with no YADTQ code (bench/trace_floor.py).
FLOOR_CHAIN = (
    Step("floor: client encode", "floor.start", "floor.send"),
    Step("floor: produce (send -> ack)", "floor.send", "floor.ack"),
    Step("floor: hop 1 (ack -> relay's poll returns)", "floor.ack", "floor.relay.polled"),
    Step("floor: relay poll returned -> send", "floor.relay.polled", "floor.relay.send"),
    Step("floor: relay produce (send -> ack)", "floor.relay.send", "floor.relay.ack"),
    Step("floor: hop 2 (ack -> sink's poll returns)", "floor.relay.ack", "floor.sink.polled"),
    Step("floor: sink HSET (Redis)", "floor.sink.polled", "floor.sink.written"),
    Step("floor: client sees it (polls Redis every 0.5 ms)", "floor.sink.written", "floor.end"),
)

FLOOR_SIDE = (
    Step("floor: hop 1 incl. produce (send -> relay's poll returns)", "floor.send", "floor.relay.polled"),
    Step("floor: hop 2 incl. produce (relay send -> sink's poll returns)", "floor.relay.send", "floor.sink.polled"),
)

# Each YADTQ hop against the floor's same hop, measured in the same run.
COMPARE = (
    ("produce, client to TASKS (send -> ack)", YADTQ_CHAIN[1], FLOOR_CHAIN[1]),
    ("hop TASKS (ack -> poll returns)", YADTQ_CHAIN[2], FLOOR_CHAIN[2]),
    ("produce to W<i> (send -> ack)", YADTQ_CHAIN[5], FLOOR_CHAIN[4]),
    ("hop W<i> (ack -> poll returns)", YADTQ_CHAIN[6], FLOOR_CHAIN[5]),
    ("hop 1 incl. produce", YADTQ_SIDE[8], FLOOR_SIDE[0]),
    ("hop 2 incl. produce", YADTQ_SIDE[9], FLOOR_SIDE[1]),
)


def by_task(marks: Iterable[Mark], prefix: str) -> dict[str, dict[str, float]]:
    """task id -> step -> time, for the tasks whose id starts with ``prefix``;
    a step marked twice for a task (a re-read, a second wake-up) keeps its first time."""
    out: dict[str, dict[str, float]] = {}
    for m in marks:
        if not m.task_id.startswith(prefix):
            continue
        steps = out.setdefault(m.task_id, {})
        if m.step not in steps or m.at < steps[m.step]:
            steps[m.step] = m.at
    return out


def complete(tasks: dict[str, dict[str, float]], chain: Sequence[Step]) -> tuple[list[str], dict[str, int]]:
    """The tasks that have every mark of ``chain`` (sorted), and for the others how
    often each mark was missing (a step that was never reached, or not traced)."""
    needed = {s.start for s in chain} | {s.end for s in chain}
    ok: list[str] = []
    missing: dict[str, int] = {}
    for task_id, steps in sorted(tasks.items()):
        absent = sorted(needed - steps.keys())
        if not absent:
            ok.append(task_id)
        for mark in absent:
            missing[mark] = missing.get(mark, 0) + 1
    return ok, missing


def intervals(tasks: dict[str, dict[str, float]], steps: Sequence[Step], ids: Iterable[str] | None = None
              ) -> dict[str, list[float]]:
    """label -> milliseconds, one per task (of ``ids``, default all) that has both marks of the step."""
    chosen = list(tasks) if ids is None else list(ids)
    out: dict[str, list[float]] = {}
    for s in steps:
        out[s.label] = [(tasks[t][s.end] - tasks[t][s.start]) * 1000 for t in chosen
                        if s.start in tasks[t] and s.end in tasks[t]]
    return out


def stats(ms: Sequence[float]) -> dict[str, float]:
    """n, p50, p90, p99 and mean of ``ms``, in milliseconds (empty: n 0 only)."""
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99),
            "mean": statistics.fmean(ms)}


def step_rows(values: dict[str, list[float]]) -> list[dict[str, Any]]:
    return [{"step": label, **stats(ms)} for label, ms in values.items()]


def round_trip(tasks: dict[str, dict[str, float]], chain: Sequence[Step], ids: Iterable[str]) -> list[float]:
    """Each task's whole time, first mark of ``chain`` to its last, in ms."""
    first, last = chain[0].start, chain[-1].end
    return [(tasks[t][last] - tasks[t][first]) * 1000 for t in ids]


def summary(rows: list[dict[str, Any]], rt_ms: Sequence[float], measured_ms: Sequence[float] = ()
            ) -> list[dict[str, Any]]:
    """The rows under the steps: the sums of their p50s and means, the round trip
    (from the marks, and as the bench timed it if given), and what the p50s leave unattributed."""
    rt = stats(rt_ms)
    p50s = sum(r.get("p50", 0.0) for r in rows)
    means = sum(r.get("mean", 0.0) for r in rows)
    out: list[dict[str, Any]] = [{"step": "sum of the steps", "p50": p50s, "mean": means},
                                 {"step": "round trip (first mark -> last)", **rt}]
    if measured_ms:
        out.append({"step": "round trip as the bench timed it", **stats(measured_ms)})
    if rt["n"]:
        out.append({"step": "unattributed (round trip p50 - sum of step p50s)", "p50": rt["p50"] - p50s,
                    "mean": rt["mean"] - means})
    return out


def analyse(tasks: dict[str, dict[str, float]], chain: Sequence[Step], side: Sequence[Step],
            measured_ms: Sequence[float] = ()) -> dict[str, Any]:
    """The table of one traced system: its steps, the summary, the side steps, and what was incomplete."""
    ok, missing = complete(tasks, chain)
    rows = step_rows(intervals(tasks, chain, ok))
    return {"tasks": len(tasks), "complete": len(ok), "missing_marks": missing, "steps": rows,
            "summary": summary(rows, round_trip(tasks, chain, ok) if ok else [], measured_ms),
            "side": step_rows(intervals(tasks, side, ok))}


def compare(yadtq: dict[str, dict[str, float]], floor: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Each YADTQ hop against the floor's, p50 and p99 of each and the p50 difference."""
    rows: list[dict[str, Any]] = []
    for label, ours, raw in COMPARE:
        a = stats(intervals(yadtq, [ours])[ours.label])
        b = stats(intervals(floor, [raw])[raw.label])
        row: dict[str, Any] = {"hop": label, "yadtq_p50": a.get("p50"), "yadtq_p99": a.get("p99"),
                               "floor_p50": b.get("p50"), "floor_p99": b.get("p99")}
        if a["n"] and b["n"]:
            row["extra_p50"] = a["p50"] - b["p50"]
        rows.append(row)
    return rows


def _ms(v: Any) -> str:
    return "" if v is None else f"{v:.3f}"


def _table(title: str, head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = [list(map(str, head))] + [[_ms(v) if not isinstance(v, str) else v for v in r] for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([title, *(fmt.format(*line) for line in lines)])


def format_system(title: str, a: dict[str, Any]) -> str:
    """The text table of ``analyse``'s result."""
    cols = ("p50", "p90", "p99", "mean")
    body = [[r["step"], *(r.get(c) for c in cols)] for r in a["steps"]]
    body.append(["-" * 8, "", "", "", ""])
    body += [[r["step"], *(r.get(c) for c in cols)] for r in a["summary"]]
    text = _table(f"{title}: {a['complete']} of {a['tasks']} traced round trips complete (ms)", ("step", *cols),
                  body)
    if a["missing_marks"]:
        text += "\nmissing marks: " + ", ".join(f"{k} x{v}" for k, v in sorted(a["missing_marks"].items()))
    side = [[r["step"], *(r.get(c) for c in cols)] for r in a["side"] if r["n"]]
    if side:
        text += "\n\n" + _table("around it, not added up (ms)", ("step", *cols), side)
    return text


def format_compare(rows: list[dict[str, Any]]) -> str:
    body = [[r["hop"], r["yadtq_p50"], r["floor_p50"], r.get("extra_p50"), r["yadtq_p99"], r["floor_p99"]]
            for r in rows]
    return _table("each hop against the raw floor, same run (ms)",
                  ("hop", "YADTQ p50", "floor p50", "extra p50", "YADTQ p99", "floor p99"), body)
