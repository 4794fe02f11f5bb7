"""The command-line client: submit a task, read its status, wait for its result."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from client import ops
from client.api import Client, TaskSpec
from client.errors import ResultTimeout, ServiceUnavailable, TaskCancelled, TaskFailed, TaskNotFound, YadtqError
from client.kafka import quiet_kafka_logs

EPILOG = """\
examples:
  python -m client submit add 1 2 --wait        prints 3
  python -m client submit sleep 5               prints the new task id
  python -m client submit echo '"text"' --kwargs '{"sep": "-"}'
  python -m client status ID                    queued | processing | success | failed | cancelled
  python -m client status ID --json             the whole Redis record
  python -m client result ID --timeout 10       waits, prints the result as JSON
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
    _add_ops_commands(sub)
    return p


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
        rec = client.record(ns.task_id)
        if not rec:
            raise TaskNotFound(f"no record of task {ns.task_id} (never submitted, or expired)")
        print(json.dumps(rec, indent=2, sort_keys=True) if ns.json else rec.get("status", "unknown"))
        return 0
    print(json.dumps(client.result(ns.task_id, timeout=ns.timeout)))
    return 0


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
