"""``python -m supervisor yadtq.yaml``: run a YADTQ cluster until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys

from client.config import Config, load_config
from client.errors import YadtqError
from client.kafka import quiet_kafka_logs
from supervisor.output import Output
from supervisor.supervisor import Supervisor
from worker_pool.logs import LOG_FORMATS, json_line, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supervisor",
                                description="Start a YADTQ cluster (scheduler and workers) from a cluster file, "
                                            "restart what dies, and stop it all on Ctrl-C or SIGTERM.")
    p.add_argument("config", nargs="?", default="yadtq.yaml", help="cluster file (default: yadtq.yaml)")
    p.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                   help="text (the default) or json: one JSON object per line, from the supervisor and every "
                        "process it starts (default: supervisor.log_format of the cluster file)")
    ns = p.parse_args(argv)
    log_format, real_stderr = ns.log_format or "text", sys.stderr  # json mode replaces sys.stderr
    try:
        config = _with_log_format(load_config(ns.config), ns.log_format)
        log_format = config.supervisor.log_format
        out, err = setup_logging("supervisor", log_format, logging.WARNING)
        quiet_kafka_logs()
        Supervisor(config, Output([out, err], log_format)).run()
    except YadtqError as e:
        with contextlib.suppress(OSError, ValueError):  # stderr itself may be gone: the exit code still says it
            line = json_line("supervisor", "error", f"error: {e}", "error") if log_format == "json" else \
                f"[yadtq] error: {e}"
            print(line, file=real_stderr, flush=True)
        return 2
    return 0


def _with_log_format(config: Config, log_format: str | None) -> Config:
    """``config`` with ``--log-format`` in place of supervisor.log_format, when given (the children read it there)."""
    if log_format is None:
        return config
    return dataclasses.replace(config, supervisor=dataclasses.replace(config.supervisor, log_format=log_format))


if __name__ == "__main__":
    sys.exit(main())
