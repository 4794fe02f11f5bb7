"""``python -m supervisor yadtq.yaml``: run a YADTQ cluster until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from client.config import load_config
from client.errors import YadtqError
from client.kafka import quiet_kafka_logs
from supervisor.supervisor import Supervisor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supervisor",
                                description="Start a YADTQ cluster (scheduler and workers) from a cluster file, "
                                            "restart what dies, and stop it all on Ctrl-C or SIGTERM.")
    p.add_argument("config", nargs="?", default="yadtq.yaml", help="cluster file (default: yadtq.yaml)")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s supervisor %(levelname)s %(message)s")
    quiet_kafka_logs()
    try:
        config = load_config(ns.config)
        Supervisor(config).run()
    except YadtqError as e:
        with contextlib.suppress(OSError, ValueError):  # stderr itself may be gone: the exit code still says it
            print(f"[yadtq] error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
