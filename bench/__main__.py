"""python -m bench: the limit, YADTQ, Celery and Huey side by side; see docs/BENCHMARKS.md.

    python -m bench --n 10000 --runs 3 --workers 1,2,4,8 --systems limit,yadtq,celery,huey --out bench/results
    python -m bench --submit client,raw        # YADTQ's tasks from its client and from a plain kafka-python producer
    python -m bench --trace 200 [--workers 1] [--submit client|raw]   # where one round trip's time goes
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import yaml

from bench import docs, report
from bench.common import ROOT, Metrics, Options
from bench.machine import describe

ALL_SYSTEMS = ("limit", "yadtq", "celery", "huey")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers >= 1, got {text!r}")
    return sorted(set(values))


def _systems(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in ALL_SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"systems are {', '.join(ALL_SYSTEMS)}; got {text!r}")
    return [s for s in ALL_SYSTEMS if s in names]


SUBMIT_MODES = ("client", "raw")


def _submit_modes(text: str) -> list[str]:
    modes = [x.strip() for x in text.split(",") if x.strip()]
    if not modes or any(m not in SUBMIT_MODES for m in modes):
        raise argparse.ArgumentTypeError(f"submit modes are {', '.join(SUBMIT_MODES)}; got {text!r}")
    return [m for m in SUBMIT_MODES if m in modes]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="tasks in the throughput batch (default 10000)")
    p.add_argument("--runs", type=int, default=3, help="runs of each system and worker count (default 3)")
    p.add_argument("--workers", type=_int_list, default=[1, 2, 4, 8], help="YADTQ worker counts (default 1,2,4,8)")
    p.add_argument("--systems", type=_systems, default=list(ALL_SYSTEMS),
                   help="any of limit,yadtq,celery,huey (default all)")
    p.add_argument("--submit", type=_submit_modes, default=list(SUBMIT_MODES),
                   help="how tasks reach YADTQ: client (Client.submit_many), raw (a plain kafka-python producer "
                        "in the seed's format, results read with plain redis-py); default client,raw")
    p.add_argument("--nodes", type=int, default=1,
                   help="with N >= 2, also YADTQ with the same workers spread over N supervisors (nodes), "
                        "one scheduler active and the others standing by (default 1: not measured)")
    p.add_argument("--round-trips", type=int, default=300, help="sequential round trips (default 300)")
    p.add_argument("--anchor-concurrency", type=int, default=2, help="Celery's and Huey's processes (default 2)")
    p.add_argument("--kafka", default="localhost:9092", help="Kafka bootstrap server (default localhost:9092)")
    p.add_argument("--redis", default="redis://localhost:6379",
                   help="Redis URL without db (default redis://localhost:6379; dbs 12-14 are used)")
    p.add_argument("--timeout", type=float, default=600.0, help="bound of each timed phase, s (default 600)")
    p.add_argument("--startup-timeout", type=float, default=90.0, help="bound for a system to start, s (default 90)")
    p.add_argument("--yadtq-config", type=Path, help="a yadtq.yaml whose sections override the bench's defaults")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where JSON, plot and logs go")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "BENCHMARKS.md", help="the Markdown file to write")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    p.add_argument("--from-json", type=Path, metavar="FILE",
                   help="measure nothing: remake the table, plot and docs from a JSON file an earlier run wrote")
    ns = p.parse_args(argv)
    if ns.n < 1 or ns.runs < 1 or ns.round_trips < 1 or ns.nodes < 1:
        p.error("--n, --runs, --round-trips and --nodes must be >= 1")
    return ns


def options(ns: argparse.Namespace, log_dir: Path) -> Options:
    overrides: dict[str, Any] = {}
    if ns.yadtq_config is not None:
        overrides = yaml.safe_load(ns.yadtq_config.read_text()) or {}
    return Options(n=ns.n, round_trips=ns.round_trips, kafka=ns.kafka, redis=ns.redis, timeout=ns.timeout,
                   startup_timeout=ns.startup_timeout, anchor_concurrency=ns.anchor_concurrency,
                   log_dir=log_dir, yadtq_overrides=overrides, nodes=ns.nodes)


def plan(ns: argparse.Namespace) -> list[tuple[str, int | None]]:
    """The cases of one run, in order: (system, worker count)."""
    cases: list[tuple[str, int | None]] = []
    for s in ns.systems:
        if s == "yadtq":
            cases += [("yadtq" if m == "client" else "yadtq-raw", w) for m in ns.submit for w in ns.workers]
            if ns.nodes > 1:
                cases += [("yadtq-nodes", w) for w in ns.workers if w >= ns.nodes]
        else:
            cases.append((s, None if s == "limit" else ns.anchor_concurrency))
    return cases


def measure(system: str, workers: int | None, opts: Options, log: Path) -> Metrics:
    """One measurement; the module is imported here, so a missing anchor fails only its cases."""
    if system == "limit":
        from bench import raw_kafka
        return raw_kafka.measure(opts, log)
    if system in ("yadtq", "yadtq-raw", "yadtq-nodes"):
        from bench import yadtq_run
        return yadtq_run.measure(opts, workers or 1, log, submit="raw" if system == "yadtq-raw" else "client",
                                 nodes=opts.nodes if system == "yadtq-nodes" else 1)
    if system == "celery":
        from bench import celery_run
        return celery_run.measure(opts, log)
    from bench import huey_run
    return huey_run.measure(opts, log)


def preflight(opts: Options) -> str | None:
    """Why the services cannot be used, or None if Kafka and Redis answer."""
    host, _, port = opts.kafka.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=3):
            pass
    except (OSError, ValueError) as e:
        return f"Kafka at {opts.kafka} does not answer ({e}): run `make services`"
    try:
        r = redis.Redis.from_url(opts.redis_url(0), socket_timeout=3)
        r.ping()
        r.close()
    except redis.RedisError as e:
        return f"Redis at {opts.redis} does not answer ({e}): run `make services`"
    return None


def _summary(m: Metrics) -> str:
    return (f"throughput {m['throughput']:,.0f}/s, enqueue {m['enqueue_rate']:,.0f}/s, "
            f"RT p50 {m['rt_p50_ms']:.2f} ms p99 {m['rt_p99_ms']:.2f} ms")


def run_case(system: str, workers: int | None, run: int, opts: Options) -> dict[str, Any]:
    name = system + (f"-W{workers}" if system.startswith("yadtq") else "")
    log = opts.log_dir / f"{name}-run{run}.log"
    print(f"[run {run}] {name} ...", flush=True)
    t = time.monotonic()
    try:
        m = measure(system, workers, opts, log)
        out: dict[str, Any] = {"metrics": m, "seconds": round(time.monotonic() - t, 1)}
        print(f"[run {run}] {name}: {_summary(m)} ({out['seconds']:.0f}s)", flush=True)
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}", "seconds": round(time.monotonic() - t, 1),
               "traceback": traceback.format_exc()}
        print(f"[run {run}] {name}: error: {out['error']}", flush=True)
    return out


def run_all(ns: argparse.Namespace, opts: Options, results: dict[str, Any]) -> None:
    cases = plan(ns)
    results["cases"] = [{"system": s, "workers": w, "runs": []} for s, w in cases]
    for run in range(1, ns.runs + 1):
        for (system, workers), case in zip(cases, results["cases"], strict=True):
            case["runs"].append(run_case(system, workers, run, opts))
            time.sleep(1.0)  # let the machine settle between cases


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # stop as on Ctrl-C: every finally block stops what it started


def finish(ns: argparse.Namespace, results: dict[str, Any], stamp: str) -> None:
    """Print the report; write the JSON, the plot and (on a complete run) the docs."""
    json_path = ns.out / f"bench-{stamp}.json"
    report.write_json(results, json_path)
    png_path: Path | None = ns.out / f"bench-{stamp}.png"
    try:
        report.plot(results, ns.out / f"bench-{stamp}.png")
    except Exception as e:
        print(f"warning: no plot: {type(e).__name__}: {e}", file=sys.stderr)
        png_path = None
    print("\n" + report.text_report(results) + "\n")
    print(f"raw numbers: {json_path}" + (f"\nplot: {png_path}" if png_path else ""))
    if ns.no_docs or results["interrupted"]:
        return
    shutil.copyfile(json_path, ns.docs.parent / "benchmarks.json")
    if png_path is not None:
        shutil.copyfile(png_path, ns.docs.parent / "benchmarks.png")
    docs.write(results, ns.docs, "benchmarks.png", "benchmarks.json")
    print(f"docs: {ns.docs}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a == "--trace" or a.startswith("--trace=") for a in args):  # python -m bench --trace N: bench/trace.py
        from bench import trace
        return trace.main(trace.own_args(args))
    ns = parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    ns.out = ns.out.resolve()
    if ns.from_json is not None:
        finish(ns, json.loads(ns.from_json.read_text()), stamp)
        return 0
    opts = options(ns, ns.out / "logs" / stamp)
    if (why := preflight(opts)) is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    ns.docs.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "schema": 1,
        "params": {"n": ns.n, "runs": ns.runs, "workers": ns.workers, "systems": ns.systems, "submit": ns.submit,
                   "round_trips": ns.round_trips, "anchor_concurrency": ns.anchor_concurrency,
                   "timeout": ns.timeout, "yadtq_overrides": opts.yadtq_overrides},
        "machine": describe(opts.kafka, opts.redis_url(0)),
        "cases": [], "interrupted": False,
    }
    t0 = time.monotonic()
    try:
        run_all(ns, opts, results)
    except KeyboardInterrupt:
        results["interrupted"] = True
        print("interrupted: reporting what finished; docs left alone", file=sys.stderr)
    results["duration_s"] = round(time.monotonic() - t0, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finish(ns, results, stamp)
    return 130 if results["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
