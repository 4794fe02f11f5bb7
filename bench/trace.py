"""python -m bench.trace (or python -m bench --trace N, or make trace): where one idle round trip's time goes.

    python -m bench.trace --n 200 --workers 1 [--submit client|raw] [--no-floor | --floor two_hops|yadtq]
    python -m bench.trace --from-dir bench/results/trace-STAMP   # the tables again, from the marks

Starts a cluster as bench/yadtq_run.py does, with YADTQ_TRACE set so that the
client (this process), the scheduler and the workers mark each step of each
task (client/trace.py), runs N round trips one at a time (submit one ``add``,
wait for its result), then the same N through the raw two-hop floor
(bench/trace_floor.py) in the same run, and prints per step p50/p90/p99/mean
with the sum of the p50s against the round trip's p50 (the difference as a row
of its own). The marks stay in bench/results/trace-STAMP/, the tables go to
bench/results/trace-STAMP.json.

``--submit raw``: each task is produced by a plain kafka-python producer in
the seed's format (``{"task-id", "task", "args"}``), not by Client.submit; its
result is still waited for through the client's pub/sub wait.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import trace_table
from bench.common import IDLE_PAUSE, ROOT, WARM_UP, BenchError, Child, Deadline, Options, check_sum

DEFAULT_N = 200


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"traced round trips (default {DEFAULT_N})")
    p.add_argument("--workers", type=int, default=1, help="YADTQ workers (default 1)")
    p.add_argument("--submit", choices=("client", "raw"), default="client",
                   help="client: Client.submit; raw: a plain kafka-python producer, the seed's format")
    p.add_argument("--gap", type=float, default=0.0,
                   help="ms of pause between round trips (default 0: back to back, as make bench times them)")
    p.add_argument("--no-floor", action="store_true", help="skip the raw two-hop floor")
    p.add_argument("--floor", choices=("two_hops", "yadtq"), default="two_hops",
                   help="two_hops: the relay of two_hops.py; yadtq: its consumers and polls built as the "
                        "scheduler's and worker's (bench/trace_floor.py)")
    p.add_argument("--kafka", default="localhost:9092", help="Kafka bootstrap server (default localhost:9092)")
    p.add_argument("--redis", default="redis://localhost:6379", help="Redis URL without db (db 14 is used)")
    p.add_argument("--startup-timeout", type=float, default=90.0, help="bound for the cluster to start, s")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the marks and JSON go")
    p.add_argument("--from-dir", type=Path, metavar="DIR", help="measure nothing: the tables from earlier marks")
    ns = p.parse_args(argv)
    if ns.n < 1 or ns.workers < 1:
        p.error("--n and --workers must be >= 1")
    return ns


def tables(marks: list[Any], measured: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """The analysis of a run's marks: YADTQ's steps (ids ``trace-``), the floor's (``floor-``), and the comparison."""
    measured = measured or {}
    yadtq = trace_table.by_task(marks, "trace-")
    floor = trace_table.by_task(marks, "floor-")
    out: dict[str, Any] = {"yadtq": trace_table.analyse(yadtq, trace_table.YADTQ_CHAIN, trace_table.YADTQ_SIDE,
                                                        measured.get("yadtq", []))}
    if floor:
        out["floor"] = trace_table.analyse(floor, trace_table.FLOOR_CHAIN, trace_table.FLOOR_SIDE,
                                           measured.get("floor", []))
        out["compare"] = trace_table.compare(yadtq, floor)
    return out


def report(result: dict[str, Any]) -> str:
    parts = [trace_table.format_system("YADTQ", result["yadtq"])]
    if "floor" in result:
        mode = result.get("params", {}).get("floor") or "two_hops"
        parts += [trace_table.format_system(f"raw floor ({mode}: two hops, no YADTQ code)", result["floor"]),
                  trace_table.format_compare(result["compare"])]
    return "\n\n".join(parts)


# --- measuring (only in the re-run process, where YADTQ_TRACE is set) ---
def _submitter(kind: str, client: Any, opts: Options) -> tuple[Callable[[str, int], None], Callable[[], None]]:
    """``one(task_id, i)``: submit add(i, i) as ``kind`` says and wait for its result; and a close."""
    from client import TaskSpec, trace

    if kind == "client":
        def one(task_id: str, i: int) -> None:
            client.submit_many([TaskSpec("add", (i, i), task_id=task_id)])
            check_sum(i, client.result(task_id, timeout=10))
        return one, lambda: None

    from kafka import KafkaProducer

    from bench.raw_kafka import PRODUCER
    producer = KafkaProducer(bootstrap_servers=opts.kafka, **PRODUCER)
    topic = client.config.topics.tasks

    def one_raw(task_id: str, i: int) -> None:
        body = json.dumps({"task-id": task_id, "task": "add", "args": [i, i]}).encode()
        trace.mark(task_id, "client.send")
        trace.on_ack([producer.send(topic, body)], [task_id], "client.ack")
        producer.flush(timeout=10)
        check_sum(i, client.result(task_id, timeout=10))
    return one_raw, lambda: producer.close(timeout=5)


def _round_trips(one: Callable[[str, int], None], n: int, tag: str, gap: float = 0.0) -> list[float]:
    from client import trace

    for i in range(WARM_UP):
        one(f"warm-{tag}-{i}", i)
    time.sleep(IDLE_PAUSE)
    samples = []
    for i in range(n):
        task_id = f"trace-{tag}-{i}"
        t = time.perf_counter()
        trace.mark(task_id, "rt.start")
        one(task_id, i)
        trace.mark(task_id, "rt.end")
        samples.append((time.perf_counter() - t) * 1000)
        if gap:
            time.sleep(gap / 1000)  # the cluster finishes what the last task left (events, commits) first
    return samples


def measure_yadtq(ns: argparse.Namespace, opts: Options, log: Path) -> list[float]:
    """Start a cluster (as bench/yadtq_run.py), run the traced round trips, stop it; their times in ms."""
    from bench.yadtq_run import cluster_file
    from client import Client
    from client.config import load_config
    from tests.support.harness import remove_cluster_data

    tag = f"bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="yadtq-trace-") as d:
        config = load_config(cluster_file(opts, ns.workers, tag, Path(d)))
        sup = Child("yadtq supervisor", [sys.executable, "-m", "supervisor", str(Path(d) / "yadtq.yaml")], log)
        client, close = None, None
        try:
            sup.wait_line(r"cluster ready", Deadline(opts.startup_timeout, "YADTQ cluster start"))
            client = Client(config)
            one, close = _submitter(ns.submit, client, opts)
            return _round_trips(one, ns.n, uuid.uuid4().hex[:6], ns.gap)
        finally:
            for done in (close, client.close if client is not None else None):
                if done is not None:
                    with contextlib.suppress(Exception):
                        done()
            sup.stop(signal.SIGINT, group=True, grace=config.workers.shutdown_grace + 15)
            remove_cluster_data(config)


def run(ns: argparse.Namespace, directory: Path) -> int:
    """The measuring run (YADTQ_TRACE is set to ``directory``)."""
    from client import trace

    if not trace.TRACING:
        raise BenchError(f"{trace.ENV} was not set when client.trace was imported")
    opts = Options(n=1, round_trips=ns.n, kafka=ns.kafka, redis=ns.redis, startup_timeout=ns.startup_timeout)
    measured: dict[str, list[float]] = {}
    print(f"tracing {ns.n} idle round trips, W={ns.workers}, submit {ns.submit}; marks in {directory}", flush=True)
    measured["yadtq"] = measure_yadtq(ns, opts, directory / "supervisor.log")
    if not ns.no_floor:
        from bench import trace_floor
        print("the raw floor ...", flush=True)
        measured["floor"] = trace_floor.measure(opts, ns.n, WARM_UP, ns.floor)
    result = {"schema": 1, "params": {"n": ns.n, "workers": ns.workers, "submit": ns.submit,
                                      "floor": None if ns.no_floor else ns.floor, "marks": str(directory)},
              **tables(trace.read(directory), measured)}
    _finish(result, directory.with_suffix(".json"))
    return 0


def _finish(result: dict[str, Any], json_path: Path) -> None:
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    print("\n" + report(result) + f"\n\ntables: {json_path}")


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.from_dir is not None:
        from client import trace
        _finish({"schema": 1, "params": {"marks": str(ns.from_dir)}, **tables(trace.read(ns.from_dir))},
                ns.from_dir.resolve().with_suffix(".json"))
        return 0
    if os.environ.get("YADTQ_TRACE"):
        return run(ns, Path(os.environ["YADTQ_TRACE"]))
    # Every process must see YADTQ_TRACE before it imports client.trace, this one too: run again with it set.
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = ns.out.resolve() / f"trace-{stamp}"
    directory.mkdir(parents=True, exist_ok=True)
    args = own_args(argv if argv is not None else sys.argv[1:])
    env = {**os.environ, "YADTQ_TRACE": str(directory), "PYTHONPATH": str(ROOT)}
    os.execve(sys.executable, [sys.executable, "-m", "bench.trace", *args], env)


def own_args(args: list[str]) -> list[str]:
    """``python -m bench --trace N ...``'s arguments as bench.trace takes them."""
    out: list[str] = []
    it = iter(args)
    for a in it:
        if a == "--trace":
            nxt = next(it, None)
            if nxt is not None and not nxt.startswith("-"):
                out += ["--n", nxt]
            elif nxt is not None:
                out.append(nxt)
        elif a.startswith("--trace="):
            out += ["--n", a.split("=", 1)[1]]
        else:
            out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
