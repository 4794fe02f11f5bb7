"""The supervisor: the parent of the scheduler and the workers.

It starts them as processes, watches their exits and their heartbeats on the
``status`` topic, and replaces any that die or go quiet. When a worker is
replaced it first tells the scheduler (a ``worker-down`` event), which moves
that worker's unfinished tasks to live workers' topics.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal

import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from client import kafka as kafka_io
from client.config import Config, safe_url
from client.errors import ForeignData, InvalidMessage, LeaseLost, ServiceUnavailable
from client.lease import REDIS_TIMEOUT, RENEW_INTERVAL, Keeper, Lease, Renewal, lease_ttl
from client.protocol import Heartbeat, WorkerDown, encode_event, now, parse_event
from client.store import Keys, TaskStore, connect, ping
from supervisor import http
from supervisor.liveness import Liveness
from supervisor.output import Output, StatusGate
from supervisor.scheduler import run_scheduler
from supervisor.topics import ensure_topics
from supervisor.view import Publisher
from worker_pool import quarantine
from worker_pool.process import EXIT_DEPOSED, EXIT_FENCED, EXIT_HARD_LIMIT, EXIT_ORPHANED, EXIT_SERVICE_LOST
from worker_pool.registry import default_registry
from worker_pool.worker import run_worker

PROBE_INTERVAL = 1.0  # seconds between checks that Kafka and Redis answer
LOOP_REDIS_TIMEOUT = 5.0  # seconds one Redis command of the supervisor's loop may take
# Heartbeats of its own the supervisor sends and reads back ("canaries"): one not back within
# this many heartbeat intervals means heartbeats are held up on their way (a broker's loss holds
# every acks=all write until it is fenced and out of the ISRs), and silence says nothing then.
CANARY_LATE = 2.0
# On a node of several: seconds before its lease would lapse in Redis at which a
# node that cannot renew it stops its workers (the other nodes move their tasks
# once it has lapsed, and a task must never run twice at once).
CUT_OFF_MARGIN = 1.0

_spawn = multiprocessing.get_context("spawn")  # no fork: the parent holds Kafka threads and sockets
_EXIT_MEANINGS = {EXIT_SERVICE_LOST: ": Kafka or Redis stopped answering", EXIT_HARD_LIMIT: ": hard time limit",
                  EXIT_FENCED: ": fenced, a newer supervisor took the cluster",
                  EXIT_ORPHANED: ": its supervisor was gone",
                  EXIT_DEPOSED: ": another node's scheduler is active now; standing by again"}


def restart_delay(history: list[float], at: float, max_restarts: int, window: float, max_backoff: float) -> float:
    """Seconds to wait before the next restart, given the times of earlier ones.

    Up to ``max_restarts`` within ``window`` seconds restart at once; past
    that the wait doubles with each further restart, up to ``max_backoff``.
    """
    recent = sum(1 for t in history if at - t < window)
    if recent < max_restarts:
        return 0.0
    return float(min(max_backoff, 2.0 ** (recent - max_restarts)))


@dataclass
class Child:
    """One supervised process: the scheduler or a worker."""

    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    process: multiprocessing.process.BaseProcess | None = None
    restarts: list[float] = field(default_factory=list)  # monotonic clock, as every time here
    due: float = 0.0            # when it may be started again
    announced: bool = False     # said 'live' since its last start
    careful: bool = False       # the last one died abnormally: start the next in careful mode (quarantine.py)
    spawned: int = 0            # starts by this supervisor: each after the first is a restart

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


@dataclass(frozen=True)
class ClusterStatus:
    """What the status line shows. Two compare equal when nothing changed (StatusGate):
    the text of a Redis error is not compared, only that Redis did not answer."""

    workers_live: int
    workers_total: int
    scheduler_up: bool
    load: tuple[tuple[str, int], ...] = ()
    done: int = 0
    failed: int = 0
    restarts: int = 0
    redis_error: str | None = field(default=None, compare=False)
    redis_up: bool = True

    def text(self) -> str:
        """The status line, e.g. ``workers 4/4 live | scheduler up | load W1=0 W2=1 | done 7 failed 1 | restarts 0``."""
        if not self.redis_up:
            return f"workers {self.workers_live}/{self.workers_total} live | redis unavailable: {self.redis_error}"
        loads = " ".join(f"{w}={n}" for w, n in self.load)
        return (f"workers {self.workers_live}/{self.workers_total} live | "
                f"scheduler {'up' if self.scheduler_up else 'down'} | load {loads} | done {self.done} "
                f"failed {self.failed} | restarts {self.restarts}")

    def fields(self) -> dict[str, Any]:
        """The same as the fields of a JSON log line."""
        fields: dict[str, Any] = {"workers_live": self.workers_live, "workers_total": self.workers_total,
                                  "scheduler_up": self.scheduler_up, "redis_up": self.redis_up}
        if self.redis_up:
            fields.update(load=dict(self.load), done=self.done, failed=self.failed, restarts=self.restarts)
        else:
            fields["redis_error"] = self.redis_error
        return fields


class Supervisor:
    """``start()``, then ``loop()`` until ``stop()``, then ``shutdown()``."""

    def __init__(self, config: Config, say: Callable[[str], None] | None = None) -> None:
        self.config = config
        # Never raises: a broken stdout must not end the supervision.
        self.say = say or Output(log_format=config.supervisor.log_format)
        self.keys = Keys(config.redis.key_prefix, config.node)
        self.children: dict[str, Child] = {"scheduler": Child("scheduler", run_scheduler, (config,))}
        for w in config.worker_ids():
            self.children[w] = Child(w, run_worker, (config, w))
        # Whose heartbeats are whose: on a named node its scheduler beats as 'a.scheduler'.
        self._senders = {config.scheduler_id(): "scheduler", **{w: w for w in config.worker_ids()}}
        self.stopping = False
        self._hurry = False  # a second Ctrl-C: skip the grace period
        self._unannounced: list[WorkerDown] = []  # worker-down events Kafka has not taken yet
        self._status_gate = StatusGate(config.supervisor.status_interval, config.supervisor.status_idle_interval)
        self._ready = False
        self._last_probe = 0.0
        self._last_round = 0.0  # when the last loop round began (monotonic)
        # Canaries not yet read back: (their ts, the wall clock that names them; when sent, monotonic).
        self._canaries: list[tuple[float, float]] = []
        self._canaries_late = False
        self._last_canary = 0.0
        self._cut_off = False  # a node that could not renew its lease in time: its workers are stopped
        self._cut_off_said = False
        self._lease_ttl = 0.0
        self.up = {"kafka": True, "redis": True}  # did each answer at the last probe?
        # When each child's heartbeats arrived, on this process's monotonic clock.
        self.liveness = Liveness(config.workers.heartbeat_timeout, config.supervisor.startup_timeout)
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._lease: Lease | None = None
        self._keeper: Keeper | None = None  # renews the lease from its own thread
        self.epoch = 0  # the lease's fencing epoch, given to every child
        self._spawn_after = 0.0  # no child starts before (the previous generation's must have seen our epoch)
        self.view: Publisher | None = None  # the processes as the operator sees them (supervisor/view.py)
        self._http: http.HttpServer | None = None

    # --- lifecycle ---
    def start(self) -> None:
        cfg = self.config
        default_registry.load_modules(cfg.tasks.modules)  # a bad module is a config error: say so now
        # Short: the loop must go on (probes, restarts, the status line) while Redis is cut off.
        self.redis = connect(cfg.redis, timeout=LOOP_REDIS_TIMEOUT)
        ping(self.redis, cfg.redis)
        if bad := TaskStore(self.redis, self.keys, cfg.tasks.result_ttl).misplaced_keys():
            raise ForeignData(f"Redis at {safe_url(cfg.redis.url)}: YADTQ's own keys hold what YADTQ never "
                              f"writes there: {', '.join(bad)}; another program or a person wrote them. Delete "
                              "them if no YADTQ cluster uses them, or give this cluster its own redis.key_prefix")
        self._take_lease()  # before anything slow, created or started: a second supervisor stops here
        self.view = Publisher(TaskStore(self.redis, self.keys, cfg.tasks.result_ttl))
        topics = ensure_topics(cfg, say=lambda m: self._emit("topics", m, "warning"))
        self._producer = kafka_io.producer(cfg.kafka)
        # Heartbeats need no millisecond latency here (the timeout is seconds),
        # so fetch in bigger, rarer gulps: the status topic also carries every
        # tasks-finished event, and fetching them is most of this process's CPU.
        self._consumer = kafka_io.consumer(cfg.kafka, None, fetch_max_wait_ms=250, fetch_min_bytes=65536)
        parts = kafka_io.assign_all(self._consumer, [cfg.topics.status])
        self._consumer.seek_to_end(*parts)  # only heartbeats from now on matter
        self._emit("services", f"kafka {cfg.kafka.describe()} | redis {cfg.redis.describe()}"
                   f"{' prefix ' + repr(cfg.redis.key_prefix) if cfg.redis.key_prefix else ''}")
        self._emit("topics", f"topics: {', '.join(topics)}", topics=topics)
        self._serve_http()
        self._await_fence()
        if self.stopping:  # Ctrl-C meanwhile: start nothing (and never before the fence's end)
            return
        # So the active scheduler, on whichever node, learns this node's workers.
        TaskStore(self.redis, self.keys, cfg.tasks.result_ttl).register_workers(cfg.node, cfg.worker_ids(),
                                                                               self.epoch)
        for c in self.children.values():
            self._spawn(c)

    def _take_lease(self) -> None:
        """Own the cluster (its topics and key prefix), or raise ClusterOwned naming the owner;
        then keep it from a thread of its own, with its own Redis connection."""
        cfg = self.config
        ttl = lease_ttl(cfg.workers.heartbeat_timeout)
        client = connect(cfg.redis, timeout=REDIS_TIMEOUT)
        self._lease = Lease(client, self.keys, ttl, [cfg.topics.tasks, cfg.topics.status, *cfg.worker_ids()])
        self.epoch = self._lease.acquire(wait_for_dead=ttl + 1.0, say=lambda line: self._emit("lease", line))
        self._lease_ttl = ttl
        # Several nodes: the lease's thread stops this node's workers if the lease is about to lapse.
        self._keeper = Keeper(self._lease, RENEW_INTERVAL, self._stop_cut_off_workers if cfg.node else None,
                              CUT_OFF_MARGIN)
        self._keeper.start()
        if not self._lease.released_before:
            # Its supervisor stopped renewing without releasing: stalled, maybe,
            # with its children still running. Each of them reads the lease with
            # its heartbeat and exits on seeing our epoch: ours start after that.
            fence = 2 * cfg.workers.heartbeat_interval + 0.5
            self._spawn_after = time.monotonic() + fence
            self._emit("lease", f"the previous supervisor did not release the lease: starting processes in "
                       f"{fence:g}s, once any of its processes still running has seen the new epoch and exited",
                       "warning")

    def _await_fence(self) -> None:
        """Wait until the processes of an unreleased previous generation must have exited (see _take_lease)."""
        while time.monotonic() < self._spawn_after and not self.stopping:
            time.sleep(0.05)
        self._lease_news()

    def _lease_news(self) -> None:
        """Act on what the lease's thread found; raise LeaseLost if another supervisor took it."""
        if self._keeper is None:
            return
        while not self._keeper.news.empty():
            self._on_renewal(self._keeper.news.get())

    def _stop_cut_off_workers(self) -> None:
        """On a node of several: the lease's thread found the lease about to lapse unrenewed.

        Once a node's lease has lapsed, the active scheduler (on another node,
        perhaps) may declare its silent workers dead and move their tasks. A node
        cut off from Redis (a network partition) cannot say that its workers are
        still running them, so it stops them first, CUT_OFF_MARGIN before the TTL
        ends by its own clock. From the lease's thread: this process's loop may
        be blocked on the same lost connection. They start again once the lease
        is renewed and the services answer (``_check_cut_off``).
        """
        self._cut_off = True
        for name, c in list(self.children.items()):
            if name != "scheduler" and c.alive():  # the scheduler stands down by its own lease
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    c.process.kill()  # type: ignore[union-attr]  # _check sees the exit and says so

    def _check_cut_off(self) -> None:
        """Say that the workers were stopped (``_stop_cut_off_workers``), and when they may start again."""
        if not self._cut_off or self._keeper is None:
            return
        if not self._cut_off_said:
            self._cut_off_said = True
            self._emit("cut-off", f"this node could not renew its lease for {self._lease_ttl - CUT_OFF_MARGIN:g}s "
                       "(Redis unreachable): its workers were stopped before other nodes move their tasks", "error")
        if not self._keeper.expiring:
            self._cut_off = self._cut_off_said = False
            self._emit("lease", "this node renews its lease again: its workers start again")

    def _renew_now(self) -> None:
        """Renew the lease from this thread now (a child was fenced: is the lease still ours?)."""
        assert self._lease is not None
        try:
            self._on_renewal(self._lease.renew())
        except redis.RedisError:
            return  # Redis is away (the probe says so): keep the children, and the lease once it is back

    def _on_renewal(self, found: Renewal) -> None:
        if found is Renewal.RETAKEN:
            self._emit("lease", f"the cluster's lease had lapsed; taken again (epoch {self.epoch})", "warning")
        elif found is Renewal.HELD:  # after AWAY
            self._emit("lease", "the cluster's lease is renewed again")
        elif found is Renewal.AWAY:
            self._emit("lease", "cannot renew the cluster's lease: Redis does not answer; trying every second",
                       "warning")
        elif found is Renewal.LOST:
            if self.config.node:
                raise LeaseLost(f"node {self.config.node}'s lease is no longer this supervisor's: another supervisor "
                                "of this node took it, or the active scheduler declared the node lost while it was "
                                "stalled or cut off past workers.heartbeat_timeout (its tasks run elsewhere now): "
                                "stopping every process at once; start it again to rejoin as a new generation")
            raise LeaseLost("another supervisor took this cluster's lease while this one could not renew it "
                            "(stalled or cut off past workers.heartbeat_timeout): stopping every process at once")

    def stop(self) -> None:
        self.stopping = True

    def run(self) -> None:
        """Run until SIGINT or SIGTERM, then shut down cleanly."""
        # Only flags here: the work happens in the loop, outside the handler.
        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.stopping:  # a second Ctrl-C: do not wait for the grace period
                self._hurry = True
            self.stop()
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            self.start()
            while not self.stopping:
                self.loop(time.monotonic())
        except LeaseLost as e:
            self._emit("error", f"error: {e}", "error")
            self._hurry = True  # the new owner's processes run this cluster now: not one more write from ours
            if self._keeper is not None:
                self._keeper.stop()
            self._keeper = None  # not ours to release
            raise
        finally:
            self.shutdown()

    def loop(self, at: float) -> None:
        """One round: read heartbeats, replace dead children, print the status line if it is due (StatusGate)."""
        if self._last_round and at - self._last_round > self.config.workers.heartbeat_timeout / 2:
            # This process stalled: the heartbeats of that time wait unread on the topic, so
            # silence says nothing yet (a worker that died meanwhile lapses a timeout later).
            self._emit("message", f"the supervisor did not run for {at - self._last_round:.1f}s (stopped or "
                       "starved): judging heartbeats from now", "warning")
            self.liveness.stalled(at)
        self._last_round = at
        self._lease_news()
        self._check_cut_off()
        if at - self._last_probe >= PROBE_INTERVAL:
            self._probe(at)
        self._read_heartbeats()
        self._send_canary(at)
        self._send_announcements()
        for c in self.children.values():
            self._check(c, at)
        if self.view is not None:  # before 'cluster ready': whoever reads that line finds the snapshot up to date
            self.view.publish(self.children.values(), self.liveness, self.epoch, at, self.up["redis"])
        if not self._ready and all(c.announced for c in self.children.values()):
            self._ready = True
            self._emit("ready", f"cluster ready: {len(self.config.worker_ids())} workers live",
                       workers=len(self.config.worker_ids()))
        if self._status_gate.sample_due(at):
            status = self.status(at)
            if self._status_gate.should_print(status, at):
                self._emit("status", status.text(), **status.fields())

    def shutdown(self) -> None:
        """Stop every child (SIGTERM, the grace period, then SIGKILL), then let go of Kafka and the lease.

        Each step is guarded: whatever fails, no child is left behind (they are
        not daemons, so multiprocessing's exit handler would wait for them forever).
        """
        self.stopping = True
        try:
            self._terminate_children()
        finally:
            self._kill_all()
            self._close("the Kafka consumer", lambda: self._consumer.close() if self._consumer else None)
            self._close("the Kafka producer", lambda: kafka_io.close_producer(self._producer)
                        if self._producer else None)
            self._close("the HTTP endpoint", lambda: self._http.stop() if self._http else None)
            # Gone at once rather than after its TTL (not if another supervisor took the lease: it is theirs).
            self._close("the snapshot", lambda: self.view.clear()
                        if self.view is not None and self._keeper is not None else None)
            self._close("the cluster's lease", lambda: self._keeper.release() if self._keeper else None)
            if self.epoch:  # it took the lease: a supervisor refused at the start ran nothing to stop
                self._emit("stopped", "stopped")

    def _terminate_children(self) -> None:
        live = [c for c in self.children.values() if c.alive()]
        if not live or self._hurry:
            return
        self._emit("stopping", f"stopping {len(live)} process(es); grace {self.config.workers.shutdown_grace:g}s")
        for c in live:
            c.process.terminate()  # type: ignore[union-attr]
        deadline = time.monotonic() + self.config.workers.shutdown_grace
        while any(c.alive() for c in live) and time.monotonic() < deadline and not self._hurry:
            time.sleep(0.05)

    def _kill_all(self) -> None:
        for c in self.children.values():
            try:
                if c.alive():
                    self._emit("killed", f"{c.name} did not stop in time: killing pid {c.pid}", "warning",
                               name=c.name, pid=c.pid)
                    c.process.kill()  # type: ignore[union-attr]
                    c.process.join(5)  # type: ignore[union-attr]
            except (OSError, ValueError) as e:  # e.g. already reaped: what matters is that it is gone
                self._emit("message", f"{c.name}: {e}", "warning")

    def _close(self, what: str, close: Callable[[], object]) -> None:
        try:
            close()
        except Exception as e:  # shutting down: say it and go on with the next step
            self._emit("message", f"could not close {what}: {e}", "warning")

    # --- services ---
    def _probe(self, at: float) -> None:
        """Check that Kafka and Redis answer; say so when either goes or comes back."""
        self._last_probe = at
        cfg = self.config
        kafka_up = kafka_io.reachable(cfg.kafka.bootstrap_servers)
        try:
            self.redis.ping()
            redis_up = True
        except redis.RedisError:
            redis_up = False
        where = {"kafka": ",".join(cfg.kafka.bootstrap_servers), "redis": safe_url(cfg.redis.url)}
        for name, up in (("kafka", kafka_up), ("redis", redis_up)):
            if up == self.up[name]:
                continue
            self.up[name] = up
            if up:
                self._emit("service-up", f"{name} at {where[name]} answers again: resuming", service=name)
                if name == "kafka":
                    # Judge heartbeats again once they flow (the first one read),
                    # or at the latest after startup_timeout.
                    self.liveness.resume(at)
            else:
                if name == "kafka":
                    self.liveness.pause()
                self._emit("service-down", f"{name} at {where[name]} does not answer: tasks are kept, and the "
                           "cluster resumes by itself once it is back", "error", service=name)

    def _services_up(self) -> bool:
        return all(self.up.values())

    # --- children ---
    def _spawn(self, c: Child) -> None:
        c.process = _spawn.Process(target=c.target, args=(*c.args, self.epoch),
                                   kwargs={"careful": True} if c.careful else {}, name=f"yadtq-{c.name}",
                                   daemon=False)
        c.process.start()
        self.liveness.watch(c.name, c.pid, time.monotonic())
        c.announced = False
        if c.spawned and self.view is not None:
            self.view.count("restarts", c.name)
        c.spawned += 1
        self._emit("started", f"started {c.name} (pid {c.pid}){' in careful mode' if c.careful else ''}",
                   name=c.name, pid=c.pid, careful=c.careful)

    def _check(self, c: Child, at: float) -> None:
        if self.stopping:  # children exiting now are doing what they were told
            return
        if c.process is None:
            # While Kafka or Redis is away a new process could only exit again.
            if at >= c.due and self._services_up() and not (self._cut_off and c.name != "scheduler"):
                self._spawn(c)
            return
        reason = self._death(c, at)
        if reason is None:
            return
        c.careful = c.alive() or quarantine.abnormal(c.process.exitcode)  # a lapse, or a crash
        if c.alive():
            c.process.kill()  # heartbeats lapsed: make sure it is dead before moving its work
            c.process.join(5)
            if c.alive():  # in uninterruptible sleep: a second process would share its topic, so wait
                self._emit("message", f"{c.name} (pid {c.pid}) has not died yet after SIGKILL; waiting", "warning")
                return
        dead_pid = c.pid or 0
        if c.process.exitcode == EXIT_FENCED:
            self._renew_now()  # a newer generation exists: LeaseLost stops this one rather than restart it
        lost_service = c.process.exitcode == EXIT_SERVICE_LOST
        deposed = c.process.exitcode == EXIT_DEPOSED
        c.process.close()
        c.process = None
        self._emit("dead", f"{c.name} is dead ({reason})", "warning", name=c.name, pid=dead_pid, reason=reason)
        if self.view is not None:
            self.view.count("deaths", c.name)
        if c.name != "scheduler":
            self._announce_down(c.name, reason, dead_pid)
        self._schedule_restart(c, at, lost_service, deposed)

    def _schedule_restart(self, c: Child, at: float, lost_service: bool, deposed: bool = False) -> None:
        """Set when ``c`` starts again: at once, or after the crash backoff (not for a deposed
        scheduler, which did nothing wrong: it stands by again at once)."""
        cfg = self.config.supervisor
        if lost_service:
            self._probe(at)  # now, so that no new process is started while the service is away
        # A service that is away is not a crash of the child: it restarts as
        # soon as the service answers. An exit 3 while both answer (an error
        # the probe cannot see, e.g. a refused command) backs off like a crash.
        held = (lost_service and not self._services_up()) or deposed
        c.due = at if held else at + restart_delay(c.restarts, at, cfg.max_restarts, cfg.restart_window,
                                                    cfg.max_backoff)
        c.restarts = [t for t in c.restarts if at - t < cfg.restart_window] + [at]
        if c.due > at:
            self._emit("backoff", f"{c.name} is crashing repeatedly: next start in {c.due - at:.0f}s", "warning",
                       name=c.name, delay=round(c.due - at, 3))

    def _death(self, c: Child, at: float) -> str | None:
        """Why ``c`` counts as dead now, or None if it is fine."""
        assert c.process is not None
        if not c.process.is_alive():
            return f"exit code {c.process.exitcode}{_EXIT_MEANINGS.get(c.process.exitcode or 0, '')}"
        lapsed = self.liveness.lapsed(c.name, at)
        return None if lapsed is None or self._heartbeats_held_up(at) else lapsed

    def _announce_down(self, worker: str, reason: str, pid: int) -> None:
        self._unannounced.append(WorkerDown(worker, reason, now(), pid))
        self._send_announcements()

    def _send_announcements(self) -> None:
        """Tell the scheduler of dead workers; kept for the next round while Kafka is away."""
        assert self._producer is not None
        if not self._unannounced:
            return
        try:
            sent = [self._producer.send(self.config.topics.status, encode_event(ev)) for ev in self._unannounced]
            self._producer.flush(timeout=5)
            kafka_io.check_sent(sent, "a worker-down event")
        except (KafkaError, ServiceUnavailable) as e:
            self._emit("announce-failed", f"cannot tell the scheduler that "
                       f"{', '.join(ev.worker for ev in self._unannounced)} died (Kafka: {e}); will retry", "warning")
            return
        self._unannounced.clear()

    # --- the operator's view (client/insight.py, supervisor/http.py) ---
    def _serve_http(self) -> None:
        """Serve /metrics, /healthz and /api on http.listen; a port that cannot be bound is said, not fatal."""
        listen = self.config.http.listen
        if not listen:
            return
        try:
            self._http = http.serve(self.config, lambda: self.view.snapshot if self.view else None, self.say)
        except OSError as e:
            self._emit("http", f"http: cannot listen on {listen}: {e.strerror or e}; "
                       "running without /metrics and /healthz", "warning")
            return
        host, port = str(self._http.server_address[0]), int(self._http.server_address[1])
        self._emit("http", f"http: the dashboard, /metrics, /healthz and /api on http://{host}:{port}")

    # --- heartbeats and status ---
    def _read_heartbeats(self) -> None:
        assert self._consumer is not None
        for records in self._consumer.poll(timeout_ms=200).values():
            arrived = time.monotonic()  # liveness is judged on this clock, never on the sender's ts
            for r in records:
                if b'"heartbeat"' not in r.value:  # most events here are the scheduler's business
                    continue
                try:
                    ev = parse_event(r.value)
                except InvalidMessage:
                    continue  # the scheduler logs bad events; here only heartbeats matter
                if isinstance(ev, Heartbeat):
                    if ev.role == "supervisor":
                        self._on_canary(ev, arrived)
                    else:
                        self._on_heartbeat(ev, arrived)

    # --- do heartbeats flow? its own, read back ---
    def _send_canary(self, at: float) -> None:
        """Send a heartbeat of its own every heartbeat interval, to read it back (``_on_canary``)."""
        if self._producer is None or at - self._last_canary < self.config.workers.heartbeat_interval:
            return
        self._last_canary = at
        sent = now()
        try:
            self._producer.send(self.config.topics.status, encode_event(
                Heartbeat(self.config.canary_id(), "supervisor", os.getpid(), sent)))
        except KafkaError:
            return  # Kafka away: the probe says so, and judging stops (Liveness.pause)
        if len(self._canaries) < 1000:  # the oldest one is what matters
            self._canaries.append((sent, at))

    def _on_canary(self, hb: Heartbeat, arrived: float) -> None:
        if hb.sender != self.config.canary_id() or hb.pid != os.getpid():
            return  # another node's, or an earlier supervisor's
        self._canaries = [c for c in self._canaries if c[0] > hb.ts]  # the topic is read in order
        if self._canaries_late:
            self._canaries_late = False
            self.liveness.stalled(arrived)  # what was held up arrives now: silence counts from here
            self._emit("message", "heartbeats flow again: judging them from now")

    def _heartbeats_held_up(self, at: float) -> bool:
        """Is its oldest canary not back after CANARY_LATE heartbeat intervals? Then heartbeats are held
        up on their way (a broker failing over), and a silent process is not judged dead for it."""
        late = bool(self._canaries) and at - self._canaries[0][1] > CANARY_LATE * self.config.workers.heartbeat_interval
        if late and not self._canaries_late:
            self._canaries_late = True
            self._emit("message", "this supervisor's own heartbeats are held up in Kafka (a broker failing "
                       "over?): no process is judged by its heartbeats until they flow again", "warning")
        return late

    def _on_heartbeat(self, hb: Heartbeat, arrived: float) -> None:
        c = self.children.get(self._senders.get(hb.sender, ""))
        if c is None or c.pid is None or not self.liveness.beat(c.name, hb.pid, arrived):
            return  # a process we already replaced, or another cluster's
        if not c.announced:
            c.announced = True
            again = " again" if c.restarts else ""
            self._emit("live", f"{c.name} live{again} (pid {c.pid})", name=c.name, pid=c.pid, again=bool(again))

    def _emit(self, event: str, message: str, level: Literal["info", "warning", "error"] = "info",
              **fields: Any) -> None:
        """One line for the operator, of kind ``event`` (supervisor/output.py); never raises."""
        if isinstance(self.say, Output):
            self.say.emit(event, message, level, **fields)
        else:
            self.say(message)

    def status(self, at: float) -> ClusterStatus:
        """The cluster's status now: one Redis round trip (the counters)."""
        workers = [c for n, c in self.children.items() if n != "scheduler"]
        live = sum(1 for c in workers if c.alive() and c.announced)
        sched_up = self.children["scheduler"].alive()
        try:
            load, stats = TaskStore(self.redis, self.keys, 0).counters()
        except redis.RedisError as e:
            return ClusterStatus(live, len(workers), sched_up, redis_error=str(e), redis_up=False)
        return ClusterStatus(live, len(workers), sched_up, tuple((c.name, load.get(c.name, 0)) for c in workers),
                             stats.get("success", 0), stats.get("failed", 0),
                             sum(len(c.restarts) for c in self.children.values()))

    def status_line(self, at: float) -> str:
        """The status line now (``status(at).text()``)."""
        return self.status(at).text()

