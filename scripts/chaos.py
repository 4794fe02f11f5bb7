"""The chaos run: SIGKILL workers, the scheduler and the supervisor, restart Redis
and the broker, while tasks run; lose nothing, run nothing twice at once.

    python -m scripts.chaos                      # 3,000 tasks, 4 workers, 10 + 2 kills
    python -m scripts.chaos --tasks 20000 --worker-kills 40 --scheduler-kills 5
    python -m scripts.chaos --supervisor-kills 3 --redis-restarts 1 --broker-restarts 1

It starts ``python -m supervisor`` on a private copy of the cluster file (own
topics and Redis key prefix, same Kafka and Redis), submits a mix of instant
and sleeping tasks in waves, and between waves kills a random live worker
process or the scheduler with SIGKILL, or SIGKILLs the supervisor and starts
``python -m supervisor`` again on the same file (as systemd would), or
restarts Redis or the broker with ``scripts/services.sh`` (``redis-down`` then
``redis-up``, ``kafka-down`` then ``kafka-up``: the services the cluster file
names; set ``YADTQ_SERVICES_DIR`` and the cluster file's addresses to restart
private ones). Then it checks every task: it must end ``success`` with the
right result, must not have run again after it ended, must have run more than
once only because a worker died under it, and no two of its runs may overlap
in time. The last line is the summary; the exit code is 0 only if nothing was
lost or wrong and the supervisor is back to all workers live.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import redis
import yaml

from client import Client, TaskSpec, load_config
from client.config import Config
from client.errors import ResultTimeout, YadtqError
from client.store import TERMINAL, Status
from scripts.chaos_tasks import running_key, runs_key, spans_key, started_key
from tests.support.harness import ROOT, ClusterProcess, remove_cluster_data


@dataclass
class Options:
    tasks: int = 3000
    workers: int = 4
    worker_kills: int = 10
    scheduler_kills: int = 2
    supervisor_kills: int = 0
    redis_restarts: int = 0
    broker_restarts: int = 0
    outage: float = 2.0          # seconds a restarted service stays down
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
    supervisor_kills: int = 0
    redis_restarts: int = 0
    broker_restarts: int = 0
    restarts: int = 0
    re_executions: int = 0       # runs beyond the first, summed over tasks
    after_success: int = 0       # tasks run again after they had ended: must be 0
    overlapping: int = 0         # runs that started while another run of the task still ran: must be 0
    unexplained: int = 0         # tasks that ran more than 1 + the deaths that hit them while they ran: must be 0
    mid_task: int = 0            # runs cut short by their process's death, then run again: must be > 0 with kills
    live_workers: str = "?"
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        return (f"chaos: tasks {self.tasks} | success {self.success} | wrong {self.wrong} | lost {self.lost} | "
                f"worker kills {self.worker_kills} | scheduler kills {self.scheduler_kills} | "
                f"supervisor kills {self.supervisor_kills} | redis restarts {self.redis_restarts} | "
                f"broker restarts {self.broker_restarts} | "
                f"restarts {self.restarts} | re-executions {self.re_executions} | "
                f"run after success {self.after_success} | overlapping runs {self.overlapping} | "
                f"unexplained re-runs {self.unexplained} | kills mid-task {self.mid_task} | "
                f"live workers {self.live_workers} | "
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
        "supervisor": {"status_interval": 1.0, "status_idle_interval": 10.0, "max_restarts": 1000,
                       "startup_timeout": 60.0},
    }
    path = folder / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Clusters:
    """The supervisor of the run (a new one after each supervisor kill), and a
    watch on every child process any of them started: when each was seen gone.

    A run that never ended (its process was killed) ended at the latest when its
    process was seen gone: that bounds it for the overlap check.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.all = [ClusterProcess(path)]
        self.gone: dict[int, float] = {}  # pid -> wall clock when seen gone
        self._alive: set[int] = set()
        self._read: list[int] = [0]  # per cluster: lines scanned for started pids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pid-watch", daemon=True)
        self._thread.start()

    @property
    def current(self) -> ClusterProcess:
        return self.all[-1]

    def restart(self) -> None:
        """Start ``python -m supervisor`` again on the same file."""
        self.all.append(ClusterProcess(self.path))
        self._read.append(0)

    def _watch(self) -> None:
        rx = re.compile(r"started \S+ \(pid (\d+)\)")
        while not self._stop.wait(0.05):
            for i, c in enumerate(list(self.all)):
                lines = c.lines[self._read[i]:]
                self._read[i] += len(lines)
                self._alive.update(int(m.group(1)) for line in lines if (m := rx.search(line)))
            for pid in list(self._alive):
                if not _exists(pid):
                    self.gone[pid] = time.time()
                    self._alive.discard(pid)

    def children_alive(self, pids: list[int]) -> list[int]:
        return [p for p in pids if _exists(p)]

    def lines(self) -> list[str]:
        return [line for c in self.all for line in c.lines]

    def stop(self) -> None:
        """Stop the current supervisor; kill what a killed one left behind (its process group)."""
        self.current.stop()
        for c in self.all[:-1]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGKILL)
            c.stop()
        self._stop.set()
        self._thread.join(5)


def _exists(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run(opts: Options, base: Config) -> Summary:
    """One chaos run against the Kafka and Redis that ``base`` names."""
    rng = random.Random(opts.seed)
    with tempfile.TemporaryDirectory(prefix="yadtq-chaos-") as folder:
        path = chaos_config(base, opts.workers, Path(folder))
        config = load_config(path)
        clusters = Clusters(path)
        client = Client(config)
        summary = Summary(tasks=opts.tasks)
        started = time.monotonic()
        try:
            clusters.current.wait_line(r"cluster ready", timeout=120)
            expected = _submit_and_kill(clusters, client, config, opts, rng, summary)
            _drain(client, list(expected), opts.timeout, summary)
            _check(client, config, expected, summary)
            _check_overlaps(client, config, clusters, summary)
            _check_reruns(client, config, clusters, summary)
            _check_cluster(clusters.current, config, summary)
        finally:
            summary.seconds = time.monotonic() - started
            clusters.stop()
            client.close()
            if not opts.keep:
                remove_cluster_data(config)
        summary.restarts = sum(1 for line in clusters.lines() if " is dead (" in line)
        if summary.re_executions > summary.restarts + summary.supervisor_kills * opts.workers:
            summary.problems.append(f"{summary.re_executions} re-executions but only {summary.restarts} deaths")
        return summary


def _submit_and_kill(clusters: Clusters, client: Client, config: Config, opts: Options,
                     rng: random.Random, summary: Summary) -> dict[str, int]:
    """Submit the tasks in waves, with a kill after each wave; return task id -> expected result."""
    kills = (["worker"] * opts.worker_kills + ["scheduler"] * opts.scheduler_kills
             + ["supervisor"] * opts.supervisor_kills + ["redis"] * opts.redis_restarts
             + ["broker"] * opts.broker_restarts)
    rng.shuffle(kills)
    waves = len(kills) + 1
    expected: dict[str, int] = {}
    for wave in range(waves):
        lo, hi = wave * opts.tasks // waves, (wave + 1) * opts.tasks // waves
        specs = [TaskSpec("chaos_work", (i, rng.choice((0.01, 0.05, 0.1)) if rng.random() < opts.sleep_share else 0))
                 for i in range(lo, hi)]
        for h, s in zip(_submit(client, specs, summary), specs, strict=True):
            expected[h.id] = int(s.args[0]) ** 2
        if wave < len(kills):
            time.sleep(opts.kill_interval)  # let the wave get under way, so the kill lands mid-task
            _disrupt(clusters, client, kills[wave], opts, rng, summary)
    return expected


def _submit(client: Client, specs: list[TaskSpec], summary: Summary, timeout: float = 180) -> list[Any]:
    """Submit, retrying while a service just restarted still settles."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.submit_many(specs)
        except YadtqError as e:
            if time.monotonic() > deadline:
                summary.problems.append(f"could not submit for {timeout:.0f}s: {e}")
                raise
            time.sleep(1)


def _disrupt(clusters: Clusters, client: Client, what: str, opts: Options, rng: random.Random,
             summary: Summary) -> None:
    config = client.config
    if what in ("worker", "scheduler"):
        _kill(clusters.current, client, what, rng, summary)
    elif what == "supervisor":
        _kill_supervisor(clusters, config, summary)
    else:
        _restart_service(config, what, opts.outage, summary)


def _kill_supervisor(clusters: Clusters, config: Config, summary: Summary) -> None:
    """SIGKILL the supervisor and start it again; its children must not outlive it for long."""
    old = clusters.current
    children = [old.pid(name) for name in ["scheduler", *config.worker_ids()]]
    old.proc.send_signal(signal.SIGKILL)
    old.proc.wait(10)
    summary.supervisor_kills += 1
    clusters.restart()
    # Its children have heartbeat_timeout to notice and exit (DESIGN §4.7).
    deadline = time.monotonic() + config.workers.heartbeat_timeout + 5
    while clusters.children_alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = clusters.children_alive(children)
    if left:
        summary.problems.append(f"{len(left)} children of a killed supervisor still ran "
                                f"{config.workers.heartbeat_timeout + 5:g}s later (pids {left})")
    try:
        clusters.current.wait_line(r"cluster ready", timeout=120)
    except AssertionError:
        summary.problems.append("the supervisor started again after a kill was not ready within 120s")


def _restart_service(config: Config, what: str, outage: float, summary: Summary) -> None:
    """``scripts/services.sh redis-down`` (or kafka-down), wait ``outage`` seconds, then up again."""
    name = "redis" if what == "redis" else "kafka"
    r = urlsplit(config.redis.url)
    env = {**os.environ, "YADTQ_KAFKA": config.kafka.bootstrap_servers[0],
           "YADTQ_REDIS": f"{r.hostname or 'localhost'}:{r.port or 6379}"}
    for step in ("down", "up"):
        out = subprocess.run([str(ROOT / "scripts" / "services.sh"), f"{name}-{step}"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300, check=False)
        if out.returncode != 0:
            summary.problems.append(f"services.sh {name}-{step} failed: {(out.stdout + out.stderr).strip()[-300:]}")
            return
        if step == "down":
            time.sleep(outage)
    if what == "redis":
        summary.redis_restarts += 1
    else:
        summary.broker_restarts += 1


def _kill(cluster: ClusterProcess, client: Client, what: str, rng: random.Random, summary: Summary) -> None:
    """SIGKILL the scheduler, or a worker: one running a task if there is one within 3 s (so the
    kill lands mid-task), else a random one whose newest process is alive."""
    names = ["scheduler"] if what == "scheduler" else client.config.worker_ids()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        busy = _busy_worker(cluster, client, rng) if what == "worker" else None
        pid = busy or cluster.pid(rng.choice(names))
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


def _busy_worker(cluster: ClusterProcess, client: Client, rng: random.Random, wait: float = 3.0) -> int | None:
    """The pid of a worker's newest process that runs a chaos task now (``running_key``), if one
    does within ``wait`` seconds."""
    key = running_key(client.config.redis.key_prefix)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            busy: set[str] = set(client.redis.hkeys(key))  # type: ignore[arg-type]
        except redis.RedisError:  # just restarted: a random worker then
            return None
        current = [cluster.pid(name) for name in client.config.worker_ids()]
        choices = [pid for pid in current if str(pid) in busy]
        if choices:
            return rng.choice(choices)
        time.sleep(0.02)
    return None


def rerun_check(spans: list[str], gone: dict[int, float]) -> tuple[int, int]:
    """(tasks that ran more than 1 + the deaths that hit them while they ran, runs cut short by a
    death and run again).

    A death hit a task while it ran if the process of one of its runs died (``gone``) and no
    later run of that task was on the same process: so every run but a task's last must be on a
    process that is gone, and a different one each time. A run with no end entry whose process
    is gone was cut short by the kill: the chaos run must have at least one, or its kills all hit
    idle workers and the check above passed for nothing.
    """
    unexplained = mid_task = 0
    for runs in _runs_by_task(spans).values():
        runs.sort()
        earlier = runs[:-1]
        if any(r.pid not in gone or any(later.pid == r.pid for later in runs[i + 1:])
               for i, r in enumerate(earlier)):
            unexplained += 1
        mid_task += sum(1 for r in earlier if not r.ended and r.pid in gone)
    return unexplained, mid_task


@dataclass(frozen=True, order=True)
class _Run:
    start: float
    pid: int
    ended: bool


def _runs_by_task(spans: list[str]) -> dict[str, list[_Run]]:
    """Task id -> its runs (start, pid, whether it logged its end), from the spans list."""
    ended = {tuple(e.split(" ")[1:4]) for e in spans if e.startswith("E ")}
    runs: dict[str, list[_Run]] = defaultdict(list)
    for entry in spans:
        kind, task, pid, start, *_ = entry.split(" ")
        if kind == "S":
            runs[task].append(_Run(float(start), int(pid), (task, pid, start) in ended))
    return runs


def _check_reruns(client: Client, config: Config, clusters: Clusters, summary: Summary) -> None:
    spans: list[str] = client.redis.lrange(spans_key(config.redis.key_prefix), 0, -1)  # type: ignore[assignment]
    summary.unexplained, summary.mid_task = rerun_check(spans, dict(clusters.gone))
    if summary.unexplained:
        summary.problems.append(f"{summary.unexplained} tasks ran more often than 1 + the deaths that hit them")
    if summary.worker_kills and not summary.mid_task:
        summary.problems.append("no kill landed mid-task: the re-run check tested nothing")


def overlapping_runs(spans: list[str], gone: dict[int, float]) -> int:
    """How many runs started while another run of the same task still ran.

    ``spans`` holds 'S task pid start' and 'E task pid start end' (see
    scripts/chaos_tasks.py). A run with no end was cut short by its process's
    death: it ended by the time that process was seen gone (``gone``), or by
    the start of that process's next run; with neither known it never ended.
    """
    count = 0
    for runs in _runs(spans, gone).values():
        runs.sort()
        running_until = -math.inf
        for start, end in runs:
            if start < running_until:
                count += 1
            running_until = max(running_until, end)
    return count


def _runs(spans: list[str], gone: dict[int, float]) -> dict[str, list[tuple[float, float]]]:
    """Task id -> (start, end) of each of its runs."""
    starts: list[tuple[str, int, str]] = []
    ends: dict[tuple[str, int, str], float] = {}
    for entry in spans:
        kind, task, pid, start, *rest = entry.split(" ")
        if kind == "S":
            starts.append((task, int(pid), start))
        else:
            ends[(task, int(pid), start)] = float(rest[0])
    by_pid: dict[int, list[float]] = defaultdict(list)
    for _, proc, begun in starts:
        by_pid[proc].append(float(begun))
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in starts:
        task, proc, begun = run
        end = ends.get(run)
        if end is None:  # cut short: rare, so the scan of its process's runs is cheap enough
            end = min([gone.get(proc, math.inf), *(t for t in by_pid[proc] if t > float(begun))])
        runs[task].append((float(begun), end))
    return runs


def _check_overlaps(client: Client, config: Config, clusters: Clusters, summary: Summary) -> None:
    spans: list[str] = client.redis.lrange(spans_key(config.redis.key_prefix), 0, -1)  # type: ignore[assignment]
    summary.overlapping = overlapping_runs(spans, dict(clusters.gone))
    if summary.overlapping:
        summary.problems.append(f"{summary.overlapping} overlapping runs")


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
    for name in ("tasks", "workers", "worker_kills", "scheduler_kills", "supervisor_kills", "redis_restarts",
                 "broker_restarts"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    p.add_argument("--outage", type=float, default=d.outage, help="seconds a restarted service stays down")
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
