"""Print, as shell exports, the Kafka and Redis addresses a cluster file names.

`make services` evaluates this so that scripts/services.sh starts local
services exactly where yadtq.yaml expects them.
"""

from __future__ import annotations

import shlex
import sys
from urllib.parse import urlsplit

from client.config import load_config
from client.errors import ConfigError


def main(path: str) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        # Quoted for the shell that evaluates this: errors quote keys and paths.
        print(f"echo {shlex.quote(f'error: {e}')} >&2; false")
        return 1
    kafka = cfg.kafka.bootstrap_servers[0]
    r = urlsplit(cfg.redis.url)
    print(f"export YADTQ_KAFKA={kafka} YADTQ_REDIS={r.hostname or 'localhost'}:{r.port or 6379}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "yadtq.yaml"))
