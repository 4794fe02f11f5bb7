"""The command-line client: submit a task, read its status, wait for its result."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from client.api import Client, TaskSpec
from client.errors import ResultTimeout, ServiceUnavailable, TaskFailed, TaskNotFound, YadtqError
from client.kafka import quiet_kafka_logs

EPILOG = """\
examples:
  python -m client submit add 1 2 --wait        prints 3
  python -m client submit sleep 5               prints the new task id
  python -m client submit echo '"text"' --kwargs '{"sep": "-"}'
  python -m client status ID                    queued | processing | success | failed
  python -m client status ID --json             the whole Redis record
  python -m client result ID --timeout 10       waits, prints the result as JSON

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
    return p


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
