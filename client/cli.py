"""The command-line client: submit a task, read its status, wait for its result."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import redis

from client.api import Client, TaskSpec
from client.config import load_config, safe_url
from client.errors import ResultTimeout, ServiceUnavailable, TaskFailed, TaskNotFound, YadtqError
from client.insight import Insight
from client.kafka import quiet_kafka_logs
from client.protocol import now

EPILOG = """\
examples:
  python -m client submit add 1 2 --wait        prints 3
  python -m client submit sleep 5               prints the new task id
  python -m client submit echo '"text"' --kwargs '{"sep": "-"}'
  python -m client status ID                    queued | processing | success | failed
  python -m client status ID --json             the whole Redis record
  python -m client result ID --timeout 10       waits, prints the result as JSON
  python -m client info                         workers, load, backlog, oldest waiting, done, failed
  python -m client inspect running              also: queued, retries, dead (dead letters)

Arguments are read as JSON where they parse (1 is a number, '"1"' a string);
anything else is taken as a plain string. Exit status: 0 success, 1 the task
failed, 2 bad usage or config, 3 timed out, 4 unknown task id, 5 service down.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m client", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Submit tasks to a YADTQ cluster and read their results.")
    p.add_argument("--config", "-c", default="yadtq.yaml", help="cluster file (default: yadtq.yaml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("submit", help="submit a task; print its id, or its result with --wait")
    s.add_argument("task", help="registered task name, e.g. add")
    s.add_argument("args", nargs="*", help="positional arguments (JSON, or plain strings)")
    s.add_argument("--kwargs", type=_kwargs, default=None, help="keyword arguments as a JSON object")
    s.add_argument("--id", dest="task_id", help="task id to use (default: a new UUID)")
    s.add_argument("--time-limit", type=float, help="seconds the task may run (default: from the config)")
    s.add_argument("--retries", type=int, help="retry limit for this task (default: from the config)")
    s.add_argument("--wait", action="store_true", help="wait for the task to end and print its result")
    s.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    st = sub.add_parser("status", help="print a task's status")
    st.add_argument("task_id")
    st.add_argument("--json", action="store_true", help="print the whole record as JSON")
    r = sub.add_parser("result", help="wait for a task to end and print its result as JSON")
    r.add_argument("task_id")
    r.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    _add_insight_commands(sub)
    return p


# --- info and inspect: the cluster as its operator sees it (client/insight.py) ---

INSPECT_WHAT = ("running", "queued", "retries", "dead")


def _add_insight_commands(sub: Any) -> None:
    i = sub.add_parser("info", help="the cluster at a glance: workers, load, backlog, oldest waiting, done, failed")
    i.add_argument("--json", action="store_true", help="print it as JSON")
    n = sub.add_parser("inspect", help="list the tasks running, queued, waiting for a retry, or dead letters")
    n.add_argument("what", choices=INSPECT_WHAT, help="running | queued | retries | dead")
    n.add_argument("--limit", type=_positive_int, default=100, help="at most this many lines (default 100)")
    n.add_argument("--json", action="store_true", help="print them as JSON")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _insight_command(ns: argparse.Namespace) -> int:
    insight = Insight(load_config(ns.config))
    try:
        return _insight_print(insight, ns)
    except redis.RedisError as e:  # the Client's commands say so through ServiceUnavailable
        raise ServiceUnavailable(f"Redis at {safe_url(insight.config.redis.url)} does not answer: {e}") from None
    finally:
        insight.close()


def _insight_print(insight: Insight, ns: argparse.Namespace) -> int:
    """Print ``info`` or ``inspect WHAT``, as text or (``--json``) as JSON."""
    if ns.command == "info":
        overview = insight.overview()
        print(json.dumps(overview, indent=2, sort_keys=True, default=str) if ns.json else format_info(overview))
        return 0 if overview["kafka_up"] and overview["redis_up"] else 5  # what it could read, and: a service is down
    lines: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "running": insight.running, "queued": lambda: insight.queued(ns.limit),
        "retries": lambda: insight.retries(ns.limit), "dead": lambda: insight.dead_letters(ns.limit)}
    found = lines[ns.what]()[:ns.limit]
    print(json.dumps(found, indent=2, sort_keys=True, default=str) if ns.json
          else format_inspect(ns.what, found, now()))
    return 0


def _ago(t: Any, at: float) -> str:
    return f"{max(0.0, at - t):.1f}s" if isinstance(t, (int, float)) else "-"


def format_info(o: dict[str, Any]) -> str:
    """``info``'s text: one line per process, then the queue and the totals."""
    sup = o.get("supervisor")
    who = f"pid {sup['pid']} (epoch {sup['epoch']})" if sup else "not running"
    out = [f"supervisor {who} | kafka {'up' if o['kafka_up'] else 'DOWN'} | redis {'up' if o['redis_up'] else 'DOWN'}"]
    out += [_process_line(w) for w in o.get("workers") or []]
    backlog = o.get("backlog")
    out.append("backlog: " + (", ".join(f"{t} {n}" for t, n in backlog.items()) if backlog is not None
                              else "unknown (Kafka)"))
    oldest, dead = o.get("oldest_unstarted_age"), o.get("dead_letters")
    shown_oldest = f"{oldest:.1f}s" if oldest is not None else "unknown"
    shown_dead = f"{dead['total']} ({dead['kept']} kept)" if dead else "unknown"
    waiting = o.get("retries_waiting")
    out.append(f"oldest waiting: {shown_oldest} | retries waiting {'unknown' if waiting is None else waiting} | "
               f"dead letters {shown_dead}")
    totals = o.get("totals")
    out.append("success, failed: unknown (Redis)" if totals is None else
               " ".join(f"{k} {totals.get(k, 0)}" for k in ("success", "failed", "cancelled")
                        if k in totals or k != "cancelled"))
    out.append("health: " + ("ok" if not o["health"] else "; ".join(o["health"])))
    out += [f"({part} unreadable: {why})" for part, why in o.get("errors", {}).items()]
    return "\n".join(out)


def _process_line(w: dict[str, Any]) -> str:
    age = f"{w['heartbeat_age']:.1f}s ago" if w["heartbeat_age"] is not None else "never"
    load = f"  load {w['load']}" if w["load"] is not None else ""
    rss = f"  rss {w['rss'] / 2 ** 20:.0f}MB" if w.get("rss") else ""
    cpu = f" cpu {w['cpu']:.0f}%" if w.get("cpu") is not None else ""
    return (f"{w['id']:<10} {'up' if w['up'] else 'DOWN':<4} pid {w['pid'] or '-'}{load}  heartbeat {age}  "
            f"restarts {w['restarts']}  deaths {w['deaths']}{rss}{cpu}")


def format_inspect(what: str, lines: list[dict[str, Any]], at: float) -> str:
    """``inspect``'s text: one line per task (or dead letter), or a line saying there is none."""
    if not lines:
        return f"no {'dead letters' if what == 'dead' else what + ' tasks'}"
    out = []
    for t in lines:
        if what == "running":
            out.append(f"{t['id']}  {t.get('task', '?')}  on {t.get('worker', '?')}  for "
                       f"{_ago(t.get('started_at'), at)}  attempt {t.get('attempt', '?')}")
        elif what == "queued":
            out.append(f"{t['id']}  {t.get('task', t.get('invalid', '?'))}  waiting {_ago(t.get('submitted_at'), at)}"
                       f"  ({t['where']})")
        elif what == "retries":
            due = t["due"] - at
            out.append(f"{t['id']}  {t.get('task', '?')}  {'due in ' + f'{due:.1f}s' if due > 0 else 'due now'}  "
                       f"retries {t.get('retries', 0)}  {t.get('error', '')}")
        else:
            out.append(f"@{t['offset']}  {t.get('id') or '(no task id)'}  {_ago(t.get('at'), at)} ago  "
                       f"from {t.get('from') or 'TASKS'}: {t['error']}")
    return "\n".join(out)


def _kwargs(text: str) -> dict[str, Any]:
    """``--kwargs``: a JSON object, else a usage error (exit 2) that says so."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"sep\": \"-\"}}', got {text!r}")
    return value


def _arg(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    quiet_kafka_logs()
    try:
        if ns.command in ("info", "inspect"):
            return _insight_command(ns)
        with Client.from_config(ns.config) as client:
            return _run(client, ns)
    except TaskFailed as e:
        print(f"failed: {e.error}", file=sys.stderr)
        return 1
    except ResultTimeout as e:
        print(f"timeout: {e}", file=sys.stderr)
        return 3
    except TaskNotFound as e:
        print(f"not found: {e}", file=sys.stderr)
        return 4
    except ServiceUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 5
    except YadtqError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(client: Client, ns: argparse.Namespace) -> int:
    if ns.command == "submit":
        spec = TaskSpec(ns.task, [_arg(a) for a in ns.args], ns.kwargs, ns.task_id, ns.time_limit, ns.retries)
        handle = client.submit_many([spec])[0]
        if not ns.wait:
            print(handle.id)
            return 0
        print(json.dumps(handle.result(timeout=ns.timeout)))
        return 0
    if ns.command == "status":
        rec = client.record(ns.task_id)
        if not rec:
            raise TaskNotFound(f"no record of task {ns.task_id} (never submitted, or expired)")
        print(json.dumps(rec, indent=2, sort_keys=True) if ns.json else rec.get("status", "unknown"))
        return 0
    print(json.dumps(client.result(ns.task_id, timeout=ns.timeout)))
    return 0
