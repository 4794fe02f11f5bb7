"""The command-line client (``yadtq`` or ``python -m client``): submit tasks, read their status, wait
for their results, and the operator's commands (README, "Operating a cluster")."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import redis

from client import ops
from client.api import Client, TaskSpec
from client.config import load_config, safe_url
from client.errors import (
    InvalidMessage,
    ResultTimeout,
    ServiceUnavailable,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    YadtqError,
)
from client.events import describe, read_status
from client.insight import Insight
from client.kafka import quiet_kafka_logs
from client.protocol import PROTOCOL_VERSION, TaskLimits, check_task_id, now, parse_task
from client.store import Status

EPILOG = """\
examples:
  python -m client submit add 1 2 --wait        prints 3
  python -m client submit sleep 5               prints the new task id
  python -m client submit echo '"text"' --kwargs '{"sep": "-"}'
  python -m client status ID                    queued | processing | success | failed | cancelled
  python -m client status ID --json             the whole Redis record
  python -m client status ID --history          the events of its attempts, one a line
  python -m client result ID --timeout 10       waits, prints the result as JSON
  python -m client info                         workers, load, backlog, oldest waiting, done, failed
  python -m client inspect running              also: queued, retries, dead (dead letters)
  python -m client submit-many tasks.jsonl      one task a line; prints the ids
  python -m client wait ID... --timeout 60      a progress bar (plain lines when piped)
  python -m client events --follow              the status topic as readable lines
  python -m client cancel ID...                 cancel tasks that have not ended
  python -m client retry ID...                  run failed or cancelled tasks again
  python -m client retry --failed --task add --since 1h
  python -m client dead-letters list            the dead letters, with why
  python -m client dead-letters replay 0:12     produce dead letters to TASKS again
  python -m client purge --yes                  cancel every task not started yet

Arguments are read as JSON where they parse (1 is a number, '"1"' a string);
anything else is taken as a plain string. Exit status: 0 success, 1 the task
failed, 2 bad usage or config, 3 timed out, 4 unknown task id, 5 service down.
cancel, retry, replay and purge print one line per id (id, what happened, why)
and exit 1 if it was refused for any id (e.g. a task that has ended).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=_prog(), epilog=EPILOG,
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
    st.add_argument("--history", action="store_true",
                    help="print the events of its attempts instead, one a line (with --json: a JSON list)")
    r = sub.add_parser("result", help="wait for a task to end and print its result as JSON")
    r.add_argument("task_id")
    r.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    _add_insight_commands(sub)
    _add_submit_many(sub)
    _add_wait(sub)
    _add_events(sub)
    _add_ops_commands(sub)
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


def _prog() -> str:
    """``yadtq`` when run as the console script, else ``python -m client``."""
    return "yadtq" if Path(sys.argv[0]).name == "yadtq" else "python -m client"


def _add_ops_commands(sub: Any) -> None:
    """The operator's actions (client/ops.py): cancel, retry, dead-letters, purge."""
    c = sub.add_parser("cancel", help="cancel tasks that have not ended (a running one is stopped)")
    c.add_argument("task_ids", nargs="+", metavar="ID")
    c.add_argument("--by", help="who cancels, recorded in the task (default: user@host)")
    r = sub.add_parser("retry", help="run failed (or cancelled) tasks again: IDs, or --failed")
    r.add_argument("task_ids", nargs="*", metavar="ID")
    r.add_argument("--failed", action="store_true", help="every failed task still on record")
    r.add_argument("--task", metavar="NAME", help="with --failed: only tasks of this name")
    r.add_argument("--since", type=_duration, metavar="DURATION",
                   help="with --failed: only those that failed in the last DURATION (90s, 10m, 2h, 1d)")
    r.add_argument("--by", help="who retries, recorded in the task (default: user@host)")
    d = sub.add_parser("dead-letters", help="list or replay the dead-letter topic")
    dsub = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", help="every dead letter: ID (partition:offset), when, task id, why")
    dl.add_argument("--json", action="store_true", help="one JSON object per line, with the message text")
    dr = dsub.add_parser("replay", help="produce dead letters to TASKS again")
    dr.add_argument("ids", nargs="*", metavar="ID", help="partition:offset, as `list` shows")
    dr.add_argument("--all", action="store_true", help="every dead letter")
    p = sub.add_parser("purge", help="cancel every task not started yet (asks first)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--by", help="who purges, recorded in each task (default: user@host)")


def _duration(text: str) -> float:
    try:
        return ops.parse_duration(text)
    except YadtqError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    except TaskCancelled as e:
        print(f"cancelled: {e}", file=sys.stderr)
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
    command: Callable[[Client, argparse.Namespace], int] | None = getattr(ns, "run", None)
    if command is not None:  # the commands that set_defaults(run=...) their own function
        return command(client, ns)
    if ns.command in _OPS:
        return _OPS[ns.command](client, ns)
    if ns.command == "submit":
        spec = TaskSpec(ns.task, [_arg(a) for a in ns.args], ns.kwargs, ns.task_id, ns.time_limit, ns.retries)
        handle = client.submit_many([spec])[0]
        if not ns.wait:
            print(handle.id)
            return 0
        print(json.dumps(handle.result(timeout=ns.timeout)))
        return 0
    if ns.command == "status":
        return _status(client, ns)
    print(json.dumps(client.result(ns.task_id, timeout=ns.timeout)))
    return 0


def _status(client: Client, ns: argparse.Namespace) -> int:
    """``status ID``: its status, its whole record (``--json``), or its history (``--history``)."""
    rec = client.record(ns.task_id)
    if not rec:
        raise TaskNotFound(f"no record of task {ns.task_id} (never submitted, or expired)")
    if ns.history:
        entries = client.history(ns.task_id)
        print(json.dumps(entries, indent=2) if ns.json else format_history(entries))
    else:
        print(json.dumps(rec, indent=2, sort_keys=True) if ns.json else rec.get("status", "unknown"))
    return 0


def format_history(entries: list[dict[str, Any]]) -> str:
    """``status ID --history``'s text: one line per event, 'time  attempt N  event  key=value ...'
    (the keys sorted: Lua's cjson writes them in any order)."""
    if not entries:
        return "no history (a task placed before histories were kept, or none placed yet)"
    lines = []
    for e in entries:
        when = datetime.fromtimestamp(e["at"]).isoformat(sep=" ", timespec="milliseconds")
        details = " ".join(f"{_shown(k)}={_shown(v)}" for k, v in sorted(e.items())
                           if k not in ("at", "event", "attempt"))
        lines.append(f"{when}  attempt {_shown(e.get('attempt', '?'))}  {_shown(e['event'])}  {details}".rstrip())
    return "\n".join(lines)


def _shown(value: object) -> str:
    """A history value on one line: as it is if it is a plain word or number, else as JSON (quoted,
    with control characters escaped: an entry's error is a task's text, which may hold anything)."""
    text = str(value)
    if isinstance(value, (int, float)) or (isinstance(value, str) and text.isprintable() and " " not in text
                                           and "=" not in text and text):
        return text
    return json.dumps(value)


# --- submit-many FILE.jsonl ---

_SPEC_KEYS = ("task", "args", "kwargs", "options", "id")


def _add_submit_many(sub: Any) -> None:
    s = sub.add_parser("submit-many", help="submit the tasks of a JSON-lines file (one task a line); print their ids",
                       description='Each line: {"task": "add", "args": [1, 2], "kwargs": {}, "options": '
                                   '{"timeout": 10, "max_retries": 3}, "id": "optional-task-id"}; only "task" is '
                                   "required; blank lines are skipped. Every line is checked before anything is "
                                   "sent: a bad one is named with its line number, and nothing is submitted.")
    s.add_argument("file", type=argparse.FileType("r", encoding="utf-8"), help="the JSON-lines file, - for stdin")
    s.set_defaults(run=cmd_submit_many)


def cmd_submit_many(client: Client, ns: argparse.Namespace) -> int:
    """``submit-many FILE``: every line checked, then all submitted at once; one id printed a line."""
    with ns.file as f:
        specs, line_of = read_task_lines(f, client.config.tasks.limits())
    try:
        handles = client.submit_many(specs)
    except InvalidMessage as e:  # checked by the cluster's store (an id naming a key YADTQ does not own)
        where = f"{f.name}:{line_of[e.task_id]}: " if e.task_id in line_of else ""
        raise InvalidMessage(f"{where}{e.reason}", e.task_id) from None
    for h in handles:
        print(h.id)
    return 0


def read_task_lines(f: TextIO, limits: TaskLimits) -> tuple[list[TaskSpec], dict[str, int]]:
    """The task specs of a JSON-lines file, each checked as the scheduler will check it, and the line
    number of each task id; InvalidMessage naming the file and line of the first bad one."""
    specs: list[TaskSpec] = []
    line_of: dict[str, int] = {}
    for number, text in enumerate(f, start=1):
        if not text.strip():
            continue
        try:
            spec = task_spec_line(text, limits)
            if spec.task_id in line_of:
                raise InvalidMessage(f"task id {spec.task_id!r} is already on line {line_of[spec.task_id]}")
        except InvalidMessage as e:
            raise InvalidMessage(f"{f.name}:{number}: {e.reason}; nothing was submitted", e.task_id) from None
        assert spec.task_id is not None
        line_of[spec.task_id] = number
        specs.append(spec)
    return specs, line_of


def task_spec_line(text: str, limits: TaskLimits) -> TaskSpec:
    """One line of a submit-many file as a TaskSpec with its id; InvalidMessage saying what is wrong."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise InvalidMessage(f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InvalidMessage('expected a JSON object like {"task": "add", "args": [1, 2]}')
    if unknown := sorted(set(obj) - set(_SPEC_KEYS)):
        raise InvalidMessage(f"unknown key(s) {', '.join(map(repr, unknown))}; the keys are {', '.join(_SPEC_KEYS)}")
    try:
        task_id = check_task_id(obj.pop("id")) if "id" in obj else str(uuid.uuid4())
    except InvalidMessage as e:
        raise InvalidMessage(f"'id' is not a valid task id: {e.reason}") from None
    try:  # the scheduler's own parser: the same checks, the same messages
        raw = json.dumps({"v": PROTOCOL_VERSION, "task-id": task_id, **obj}, allow_nan=False).encode()
    except ValueError as e:
        raise InvalidMessage(f"cannot be sent as JSON ({e})") from None
    task = parse_task(raw, limits)
    return TaskSpec(task.name, task.args, task.kwargs, task.task_id, task.options.timeout, task.options.max_retries)


# --- wait ID... ---

def _add_wait(sub: Any) -> None:
    w = sub.add_parser("wait", help="wait for tasks to end: a progress bar on a terminal, a line per task otherwise",
                       description="Exit status: 0 all succeeded, 1 some did not (failed, cancelled), 3 timed out, "
                                   "4 an unknown task id.")
    w.add_argument("task_ids", nargs="*", metavar="ID", help="task ids (default: read from stdin, e.g. from "
                                                             "submit-many)")
    w.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit status 3)")
    w.set_defaults(run=cmd_wait)


def cmd_wait(client: Client, ns: argparse.Namespace) -> int:
    """``wait ID...``: report each task as it ends; the exit status says whether all succeeded."""
    ids = list(dict.fromkeys(ns.task_ids or _stdin_ids()))  # each once, in the order given
    if not ids:
        raise InvalidMessage("no task ids: give them as arguments, or one a line on stdin")
    try:
        statuses = client.store.statuses(ids)
    except redis.RedisError as e:
        raise ServiceUnavailable(f"Redis at {safe_url(client.config.redis.url)} failed: {e}") from None
    if unknown := [t for t, s in zip(ids, statuses, strict=True) if s is None]:
        raise TaskNotFound(f"no record of {len(unknown)} task(s) (never submitted, or expired): "
                           f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
    report: _Report = _BarReport(len(ids)) if sys.stdout.isatty() else _PlainReport()
    ended: Counter[str] = Counter()
    pending = set(ids)
    try:
        with report:
            for task_id, status in client.as_ended(ids, ns.timeout):
                pending.discard(task_id)
                ended[status] += 1
                error = client.record(task_id).get("error", "") if status == Status.FAILED else ""
                report.ended(task_id, status, error)
    except ResultTimeout:
        report.timed_out(sorted(pending), ns.timeout)
    print(_summary(len(ids), ended, len(pending), ns.timeout))
    if pending:
        return 3
    return 0 if ended[Status.SUCCESS] == len(ids) else 1


def _stdin_ids() -> list[str]:
    return [] if sys.stdin.isatty() else sys.stdin.read().split()


def _summary(total: int, ended: Counter[str], pending: int, timeout: float | None) -> str:
    parts = [f"{n} {status}" for status, n in sorted(ended.items())]
    if pending:
        parts.append(f"{pending} not ended after {timeout:g}s" if timeout is not None else f"{pending} not ended")
    return f"{total} task(s): {', '.join(parts) or 'none ended'}"


class _Report:
    """How ``wait`` shows progress: a context manager told of each task as it ends."""

    def __enter__(self) -> _Report:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def ended(self, task_id: str, status: str, error: str) -> None:
        raise NotImplementedError

    def timed_out(self, task_ids: list[str], timeout: float | None) -> None:
        raise NotImplementedError


class _PlainReport(_Report):
    """Not a terminal: one line per task as it ends (``ID success``, ``ID failed: error``), for scripts."""

    def ended(self, task_id: str, status: str, error: str) -> None:
        print(f"{task_id} {status}: {error}" if error else f"{task_id} {status}", flush=True)

    def timed_out(self, task_ids: list[str], timeout: float | None) -> None:
        for t in task_ids:
            print(f"{t} not ended", flush=True)


class _BarReport(_Report):
    """A terminal: a progress bar (rich), with a line above it for each task that did not succeed."""

    def __init__(self, total: int) -> None:
        # Imported here: rich takes some 50 ms to import, which no other command needs to pay.
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self._progress = Progress(TextColumn("waiting"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[failed]} not succeeded"), TimeElapsedColumn())
        self._bar = self._progress.add_task("wait", total=total, failed=0)
        self._failed = 0

    def __enter__(self) -> _Report:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def ended(self, task_id: str, status: str, error: str) -> None:
        if status != Status.SUCCESS:
            self._failed += 1
            self._progress.console.print(f"{task_id} {status}: {error}" if error else f"{task_id} {status}",
                                         markup=False, highlight=False)
        self._progress.update(self._bar, advance=1, failed=self._failed)

    def timed_out(self, task_ids: list[str], timeout: float | None) -> None:
        return None  # the summary line says how many


# --- events [--follow] ---

def _add_events(sub: Any) -> None:
    e = sub.add_parser("events", help="the status topic as readable lines: heartbeats, tasks-finished, worker-down",
                       description="Prints the last events on the status topic and exits, or with --follow goes "
                                   "on printing new ones until Ctrl-C. A message that is not a valid event is "
                                   "shown as 'invalid event at TOPIC:PARTITION@OFFSET: reason'.")
    e.add_argument("--follow", "-f", action="store_true", help="go on printing new events until Ctrl-C")
    e.add_argument("--from-beginning", action="store_true", help="start at the oldest event Kafka keeps")
    e.add_argument("--last", "-n", type=int, default=20, metavar="N",
                   help="start N events before the end of each partition (default: 20)")
    e.add_argument("--no-heartbeats", action="store_true", help="leave out heartbeats")
    e.set_defaults(run=cmd_events)


def cmd_events(client: Client, ns: argparse.Namespace) -> int:
    """``events``: one line per status event; Ctrl-C or a closed pipe ends it quietly."""
    try:
        for line in _event_lines(client, ns):
            print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `yadtq events --follow | head`: head is done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0


def _event_lines(client: Client, ns: argparse.Namespace) -> Iterator[str]:
    for raw, at_ms, where in read_status(client.config, follow=ns.follow, from_beginning=ns.from_beginning,
                                         last=max(ns.last, 0)):
        line = describe(raw, at_ms, where)
        if not (ns.no_heartbeats and line.split(" ", 2)[1] == "heartbeat"):
            yield line


# --- the operator's actions ---
def _cancel(client: Client, ns: argparse.Namespace) -> int:
    return _print_outcomes(ops.cancel(client, ns.task_ids, ns.by))


def _retry(client: Client, ns: argparse.Namespace) -> int:
    if ns.failed == bool(ns.task_ids) or (not ns.failed and (ns.task or ns.since is not None)):
        raise YadtqError("retry takes task IDs, or --failed [--task NAME] [--since DURATION], not both")
    if ns.failed:
        outcomes = ops.retry_failed(client, ns.task, ns.since, ns.by)
        print(f"{len(outcomes)} failed task(s) found", file=sys.stderr)
        return _print_outcomes(outcomes)
    return _print_outcomes(ops.retry(client, ns.task_ids, ns.by))


def _dead_letters(client: Client, ns: argparse.Namespace) -> int:
    if ns.action == "replay":
        if ns.all == bool(ns.ids):
            raise YadtqError("dead-letters replay takes IDs (partition:offset) or --all, not both")
        return _print_outcomes(ops.replay(client, None if ns.all else ns.ids))
    for d in ops.dead_letters(client):
        if ns.json:
            print(json.dumps({"id": d.id, "timestamp": d.timestamp, "task_id": d.task_id, "error": d.error,
                              "value": d.value.decode("utf-8", "replace")}))
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.timestamp))
            print(f"{d.id}\t{when}\t{d.task_id or '-'}\t{d.error}")
    return 0


def _purge(client: Client, ns: argparse.Namespace) -> int:
    ids = ops.unstarted_tasks(client)
    if not ids:
        print("nothing to purge: no task is waiting to start")
        return 0
    if not ns.yes and not _confirm(f"cancel {len(ids)} task(s) not started yet? [y/N] "):
        print("nothing cancelled", file=sys.stderr)
        return 1
    return _print_outcomes(ops.purge(client, ns.by, ids))


def _confirm(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    try:
        return input().strip().lower() in ("y", "yes")
    except EOFError:  # no terminal, no answer: no
        return False


def _print_outcomes(outcomes: list[ops.Outcome]) -> int:
    for o in outcomes:
        print(f"{o.id}\t{o.result}\t{o.detail}")
    return 0 if all(o.done for o in outcomes) else 1


_OPS = {"cancel": _cancel, "retry": _retry, "dead-letters": _dead_letters, "purge": _purge}
