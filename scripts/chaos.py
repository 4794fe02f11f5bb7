"""The chaos run: SIGKILL workers and the scheduler while tasks run; lose nothing.

    python -m scripts.chaos                      # 3,000 tasks, 4 workers, 10 + 2 kills
    python -m scripts.chaos --tasks 20000 --worker-kills 40 --scheduler-kills 5

It starts ``python -m supervisor`` on a private copy of the cluster file (own
topics and Redis key prefix, same Kafka and Redis), submits a mix of instant
and sleeping tasks in waves, and between waves kills a random live worker
process or the scheduler with SIGKILL. Then it checks every task: it must end
``success`` with the right result, must not have run again after it ended,
and must have run more than once only because a worker died under it. The
last line is the summary; the exit code is 0 only if nothing was lost or
wrong and the supervisor is back to all workers live.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from client import Client, TaskSpec, load_config
from client.config import Config
from client.errors import ResultTimeout, YadtqError
from client.store import TERMINAL, Status
from scripts.chaos_tasks import runs_key, started_key
from tests.support.harness import ClusterProcess, remove_cluster_data


@dataclass
class Options:
    tasks: int = 3000
    workers: int = 4
    worker_kills: int = 10
    scheduler_kills: int = 2
    kill_interval: float = 0.7   # seconds between kills
    sleep_share: float = 0.4     # share of tasks that sleep, so that kills land mid-task
    timeout: float = 300.0       # for the whole run to drain after the last kill
    seed: int | None = None
    keep: bool = False           # keep the topics and keys afterwards, to look at them


@dataclass
class Summary:
    tasks: int = 0
    success: int = 0
    wrong: int = 0               # ended success with a wrong result, or failed
    lost: int = 0                # not ended within the timeout
    worker_kills: int = 0
    scheduler_kills: int = 0
    restarts: int = 0
    re_executions: int = 0       # runs beyond the first, summed over tasks
    after_success: int = 0       # tasks run again after they had ended: must be 0
    live_workers: str = "?"
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        return (f"chaos: tasks {self.tasks} | success {self.success} | wrong {self.wrong} | lost {self.lost} | "
                f"worker kills {self.worker_kills} | scheduler kills {self.scheduler_kills} | "
                f"restarts {self.restarts} | re-executions {self.re_executions} | "
                f"run after success {self.after_success} | live workers {self.live_workers} | "
                f"{self.seconds:.1f}s | {'OK' if self.ok else 'FAILED: ' + '; '.join(self.problems)}")


def chaos_config(base: Config, workers: int, folder: Path) -> Path:
    """A cluster file for this run: the base file's Kafka and Redis, private names."""
    tag = f"chaos-{uuid.uuid4().hex[:8]}"
    cfg: dict[str, Any] = {
        "kafka": {"bootstrap_servers": base.kafka.bootstrap_servers},
        "redis": {"url": base.redis.url, "key_prefix": f"{tag}:"},
        "topics": {"tasks": f"{tag}.TASKS", "status": f"{tag}.status", "workers": f"{tag}.W",
                   "dead_letter": f"{tag}.dead-letter"},
        # Quick to notice a death; restarts never back off within one run.
        "workers": {"count": workers, "heartbeat_interval": 0.5, "heartbeat_timeout": 3.0, "max_pending": 8,
                    "shutdown_grace": 5.0},
        "tasks": {"modules": [*base.tasks.modules, "scripts.chaos_tasks"], "max_retries": 10},
        "supervisor": {"status_interval": 1.0, "max_restarts": 1000, "startup_timeout": 60.0},
    }
    path = folder / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(opts: Options, base: Config) -> Summary:
    """One chaos run against the Kafka and Redis that ``base`` names."""
    rng = random.Random(opts.seed)
    with tempfile.TemporaryDirectory(prefix="yadtq-chaos-") as folder:
        path = chaos_config(base, opts.workers, Path(folder))
        config = load_config(path)
        cluster = ClusterProcess(path)
        client = Client(config)
        summary = Summary(tasks=opts.tasks)
        started = time.monotonic()
        try:
            cluster.wait_line(r"cluster ready", timeout=120)
            expected = _submit_and_kill(cluster, client, config, opts, rng, summary)
            _drain(client, list(expected), opts.timeout, summary)
            _check(client, config, expected, summary)
            _check_cluster(cluster, config, summary)
        finally:
            summary.seconds = time.monotonic() - started
            cluster.stop()
            client.close()
            if not opts.keep:
                remove_cluster_data(config)
        summary.restarts = sum(1 for line in cluster.lines if " is dead (" in line)
        if summary.re_executions > summary.restarts:
            summary.problems.append(f"{summary.re_executions} re-executions but only {summary.restarts} deaths")
        return summary


def _submit_and_kill(cluster: ClusterProcess, client: Client, config: Config, opts: Options,
                     rng: random.Random, summary: Summary) -> dict[str, int]:
    """Submit the tasks in waves, with a kill after each wave; return task id -> expected result."""
    kills = ["worker"] * opts.worker_kills + ["scheduler"] * opts.scheduler_kills
    rng.shuffle(kills)
    waves = len(kills) + 1
    expected: dict[str, int] = {}
    for wave in range(waves):
        lo, hi = wave * opts.tasks // waves, (wave + 1) * opts.tasks // waves
        specs = [TaskSpec("chaos_work", (i, rng.choice((0.01, 0.05, 0.1)) if rng.random() < opts.sleep_share else 0))
                 for i in range(lo, hi)]
        for h, s in zip(client.submit_many(specs), specs, strict=True):
            expected[h.id] = int(s.args[0]) ** 2
        if wave < len(kills):
            time.sleep(opts.kill_interval)  # let the wave get under way, so the kill lands mid-task
            _kill(cluster, config, kills[wave], rng, summary)
    return expected


def _kill(cluster: ClusterProcess, config: Config, what: str, rng: random.Random, summary: Summary) -> None:
    """SIGKILL the scheduler or a random worker whose newest process is alive."""
    names = ["scheduler"] if what == "scheduler" else config.worker_ids()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        name = rng.choice(names)
        pid = cluster.pid(name)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # killed before and not restarted yet: pick again shortly
            time.sleep(0.1)
            continue
        if what == "scheduler":
            summary.scheduler_kills += 1
        else:
            summary.worker_kills += 1
        return
    summary.problems.append(f"no live {what} to kill within 60s")


def _drain(client: Client, ids: list[str], timeout: float, summary: Summary) -> None:
    try:
        client.wait(ids, timeout=timeout)
    except ResultTimeout as e:
        summary.problems.append(str(e))


def _check(client: Client, config: Config, expected: dict[str, int], summary: Summary) -> None:
    ids = list(expected)
    pipe = client.redis.pipeline(transaction=False)
    for t in ids:
        pipe.hmget(client.keys.task(t), "status", "result", "finished_at")
    records = pipe.execute()
    prefix = config.redis.key_prefix
    runs: dict[str, str] = client.redis.hgetall(runs_key(prefix))  # type: ignore[assignment]
    starts: dict[str, str] = client.redis.hgetall(started_key(prefix))  # type: ignore[assignment]
    for t, (status, result, finished) in zip(ids, records, strict=True):
        if status == Status.SUCCESS and result == str(expected[t]):
            summary.success += 1
        elif status in TERMINAL:
            summary.wrong += 1
        else:
            summary.lost += 1
        summary.re_executions += max(0, int(runs.get(t, 0)) - 1)
        if finished and t in starts and float(starts[t]) > float(finished):
            summary.after_success += 1
    for what, n in (("wrong", summary.wrong), ("lost", summary.lost), ("run after success", summary.after_success)):
        if n:
            summary.problems.append(f"{n} {what}")


def _check_cluster(cluster: ClusterProcess, config: Config, summary: Summary) -> None:
    """The supervisor must be back to every worker live (its status line says so)."""
    n = config.workers.count
    try:
        cluster.wait_line(rf"workers {n}/{n} live \| scheduler up", timeout=60, start=cluster.mark())
        summary.live_workers = f"{n}/{n}"
    except AssertionError:
        summary.live_workers = "not all"
        summary.problems.append(f"the supervisor did not get back to {n} live workers within 60s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--config", default="yadtq.yaml", help="cluster file naming Kafka and Redis (default: yadtq.yaml)")
    d = Options()
    for name in ("tasks", "workers", "worker_kills", "scheduler_kills"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    p.add_argument("--kill-interval", type=float, default=d.kill_interval, help="seconds between kills")
    p.add_argument("--timeout", type=float, default=d.timeout, help="seconds for the tasks to end after the last kill")
    p.add_argument("--seed", type=int, default=None, help="random seed, to repeat a run's choices")
    p.add_argument("--keep", action="store_true", help="keep the run's topics and Redis keys")
    ns = p.parse_args(argv)
    try:
        base = load_config(ns.config)
        summary = run(Options(**{k: v for k, v in vars(ns).items() if k != "config"}), base)
    except YadtqError as e:
        print(f"chaos: error: {e}", file=sys.stderr)
        return 2
    print(summary.line(), flush=True)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
