"""The supervisor's HTTP endpoint: the dashboard at ``/``, ``/metrics``, ``/healthz``, ``/api/...``.

A small threaded server of the standard library, run by the supervisor in
threads of its own when ``http.listen`` is set. Every answer is read through
``client.insight`` (Redis counters, Kafka offsets, the supervisor's snapshot),
so nothing here is kept in this process's memory and a restart changes no
value. A failing scrape or a bad request is answered as an HTTP error and
logged once; it never reaches the supervisor's loop.
"""

from __future__ import annotations

import hmac
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from client import ops
from client.api import Client
from client.config import Config, Secret, split_listen
from client.errors import ServiceUnavailable, YadtqError
from client.insight import Counters, Histogram, Insight, Snapshot, health

MAX_LIMIT = 1000  # the most lines one /api listing returns


# --- /metrics ---

@dataclass
class MetricsView:
    """Everything /metrics shows; a part that could not be read is None (and left out)."""

    kafka_up: bool
    redis_up: bool
    counters: Counters | None = None
    timings: dict[str, dict[str, Histogram]] | None = None
    workers: list[dict[str, Any]] | None = None
    backlog: dict[str, int] | None = None
    oldest_unstarted_age: float | None = None
    retries_waiting: int | None = None
    dead_letters_total: int | None = None
    scheduler_up: bool | None = None
    errors: list[str] = field(default_factory=list)


def _labelled(kind: type[Any], name: str, doc: str, label: str, values: dict[str, Any]) -> Metric:
    m = kind(name, doc, labels=[label])
    for key, v in sorted(values.items()):
        m.add_metric([key], v)
    metric: Metric = m
    return metric


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


def _counter_families(c: Counters) -> Iterator[Metric]:
    yield _labelled(CounterMetricFamily, "yadtq_tasks_submitted", "Tasks accepted by the scheduler (first placed), "
                    "by task name.", "task", c.submitted)
    finished = CounterMetricFamily("yadtq_tasks_finished", "Tasks that ended, by task name and status.",
                                   labels=["task", "status"])
    for (task, status), n in sorted(c.finished.items()):
        finished.add_metric([task, status], n)
    yield finished
    yield _labelled(CounterMetricFamily, "yadtq_task_retries", "Runs that raised and were scheduled to run again, "
                    "by task name.", "task", c.retries)
    yield _labelled(CounterMetricFamily, "yadtq_task_worker_lost", "Runs whose worker died while running them, "
                    "by task name.", "task", c.lost)
    yield _labelled(CounterMetricFamily, "yadtq_messages_aliased", "Task messages whose key names "
                    "tasks.accept_aliases mapped to the seed's, by mapping ('task_id->task-id').", "alias", c.aliased)


def _worker_families(workers: list[dict[str, Any]]) -> Iterator[Metric]:
    procs = {w["id"]: w for w in workers}
    only = {k: w for k, w in procs.items() if k != "scheduler"}
    yield _labelled(CounterMetricFamily, "yadtq_worker_deaths", "Times the supervisor found the process dead "
                    "(exited, or heartbeats lapsed), by process (workers and the scheduler).", "worker",
                    {k: w["deaths"] for k, w in procs.items()})
    yield _labelled(CounterMetricFamily, "yadtq_worker_restarts", "Times the supervisor started the process again, "
                    "by process (workers and the scheduler).", "worker", {k: w["restarts"] for k, w in procs.items()})
    yield _labelled(GaugeMetricFamily, "yadtq_worker_up", "1 if the worker runs and its last heartbeat arrived "
                    "within the timeout.", "worker", {k: 1 if w["up"] else 0 for k, w in only.items()})
    yield _labelled(GaugeMetricFamily, "yadtq_worker_load", "Unfinished tasks the scheduler has given the worker.",
                    "worker", {k: w["load"] or 0 for k, w in only.items()})
    yield _labelled(GaugeMetricFamily, "yadtq_worker_heartbeat_age_seconds", "Seconds since the worker's last "
                    "heartbeat arrived at the supervisor.", "worker",
                    {k: w["heartbeat_age"] for k, w in only.items() if w["heartbeat_age"] is not None})
    yield _labelled(GaugeMetricFamily, "yadtq_worker_rss_bytes", "Resident memory of the process (workers and the "
                    "scheduler), sampled every second.", "worker",
                    {k: w["rss"] for k, w in procs.items() if w.get("rss") is not None})
    yield _labelled(GaugeMetricFamily, "yadtq_worker_cpu_percent", "CPU of the process, in % of one core, over "
                    "the last second.", "worker", {k: w["cpu"] for k, w in procs.items() if w.get("cpu") is not None})


def _histogram_families(timings: dict[str, dict[str, Histogram]]) -> Iterator[Metric]:
    for kind, name, doc in (("wait", "yadtq_task_queue_wait_seconds", "Seconds from submitted to first started."),
                            ("run", "yadtq_task_run_seconds", "Seconds from started to finished, of the run "
                                                              "that ended the task.")):
        m = HistogramMetricFamily(name, doc, labels=["task"])
        for task, h in sorted(timings.get(kind, {}).items()):
            m.add_metric([task], buckets=h.cumulative(), sum_value=h.total)
        yield m


def metric_families(v: MetricsView) -> list[Metric]:
    """The families /metrics shows for ``v`` (pure: unit-tested through prometheus-client's parser)."""
    out: list[Metric] = [_gauge("yadtq_kafka_up", "1 if Kafka answers.", int(v.kafka_up)),
                         _gauge("yadtq_redis_up", "1 if Redis answers.", int(v.redis_up))]
    if v.scheduler_up is not None:
        out.append(_gauge("yadtq_scheduler_up", "1 if the scheduler runs and its heartbeats arrive.",
                          int(v.scheduler_up)))
    if v.counters is not None:
        out += _counter_families(v.counters)
    if v.timings is not None:
        out += _histogram_families(v.timings)
    if v.workers is not None:
        out += _worker_families(v.workers)
    if v.backlog is not None:
        out.append(_labelled(GaugeMetricFamily, "yadtq_backlog", "Messages in the topic that its consumer group has "
                             "not committed yet (end offset minus committed offset).", "topic", v.backlog))
    for name, doc, value in (
            ("yadtq_oldest_unstarted_age_seconds", "Seconds since the oldest task accepted and never started was "
                                                   "submitted (0: none waits).", v.oldest_unstarted_age),
            ("yadtq_retries_waiting", "Tasks on the retry schedule.", v.retries_waiting)):
        if value is not None:
            out.append(_gauge(name, doc, value))
    if v.dead_letters_total is not None:
        out.append(CounterMetricFamily("yadtq_dead_letters", "Messages ever written to the dead-letter topic "
                                                             "(its end offset).", value=v.dead_letters_total))
    return out


def read_metrics(insight: Insight, log: Callable[[str, Exception], None]) -> MetricsView:
    """Read everything /metrics shows; each part that fails is left out and logged (once)."""
    v = MetricsView(kafka_up=insight.kafka_up(), redis_up=insight.redis_up())
    snap = insight.snapshot()
    if snap is not None:
        sched = snap.get("scheduler")
        v.scheduler_up = bool(sched and sched.up)
    parts: list[tuple[str, Callable[[], Any]]] = []
    if v.redis_up:
        parts += [("counters", insight.counters), ("timings", insight.timings), ("workers", insight.workers),
                  ("retries_waiting", insight.retries_waiting)]
    if v.kafka_up:
        parts += [("backlog", insight.backlog), ("dead_letters_total", lambda: insight.dead_letters_total()[0])]
    if v.kafka_up and v.redis_up:
        parts.append(("oldest_unstarted_age", insight.oldest_unstarted_age))
    for name, read in parts:
        try:
            setattr(v, name, read())
        except Exception as e:  # a service away, or a bug in one part: the others are still served
            v.errors.append(f"{name}: {e}")
            log(f"/metrics: {name}", e)
    return v


class _Collector:
    """prometheus-client's collector interface: the families of one fresh read per scrape."""

    def __init__(self, read: Callable[[], MetricsView]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self._read())


# --- actions ---

def authorize(token: Secret, header: str | None) -> tuple[int, str] | None:
    """None if an action may run with this Authorization header, else (HTTP status, why).

    No token configured: every action is refused (403). A missing or wrong
    ``Bearer`` token: 401. Compared in constant time."""
    if not token:
        return 403, "actions over HTTP are refused: no http.token (or http.token_env) is configured"
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return 401, "this action needs the token: send 'Authorization: Bearer TOKEN'"
    if not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
        return 401, "wrong token"
    return None


def _ids(body: dict[str, Any], key: str = "ids") -> list[str] | None:
    """The body's list of ids (None if absent); _BadRequest if it is not a list of strings."""
    ids = body.get(key)
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > MAX_IDS:
        raise _BadRequest(f"{key}: expected a list of up to {MAX_IDS} strings")
    return ids


def _required_ids(body: dict[str, Any]) -> list[str]:
    ids = _ids(body)
    if not ids:
        raise _BadRequest('ids: expected a non-empty list of task ids, e.g. {"ids": ["ID"]}')
    return ids


def _text_field(body: dict[str, Any], key: str) -> str | None:
    v = body.get(key)
    if v is not None and not isinstance(v, str):
        raise _BadRequest(f"{key}: expected a string")
    return v


def _cancel(client: Client, body: dict[str, Any], by: str) -> list[ops.Outcome]:
    """``{"ids": [...]}``: cancel each task that has not ended."""
    return ops.cancel(client, _required_ids(body), by)


def _retry(client: Client, body: dict[str, Any], by: str) -> list[ops.Outcome]:
    """``{"ids": [...]}``, or ``{"failed": true, "task": NAME, "since": "1h"}`` (the last two optional):
    run failed (or cancelled) tasks again."""
    if body.get("failed") is True:
        if "ids" in body:
            raise _BadRequest("give either ids or failed, not both")
        since = _text_field(body, "since")
        seconds = ops.parse_duration(since) if since else None
        return ops.retry_failed(client, _text_field(body, "task"), seconds, by)
    return ops.retry(client, _required_ids(body), by)


def _replay(client: Client, body: dict[str, Any], by: str) -> list[ops.Outcome]:
    """``{"ids": ["PARTITION:OFFSET", ...]}`` or ``{"all": true}``: produce dead letters to TASKS again."""
    if body.get("all") is True:
        return ops.replay(client, None)
    return ops.replay(client, _required_ids(body))


def _purge(client: Client, body: dict[str, Any], by: str) -> list[ops.Outcome]:
    """``{"all": true}`` (every task not started yet) or ``{"ids": [...]}`` (those, if still unstarted):
    cancel tasks that have not started."""
    if body.get("all") is not True:
        return ops.purge(client, by, _required_ids(body))
    return ops.purge(client, by)


MAX_IDS = 100_000  # ids one action may name
# An action (POST /api/NAME) -> the function that calls client/ops.py with (client, body, who).
ACTIONS: dict[str, Callable[[Client, dict[str, Any], str], list[ops.Outcome]]] = {
    "cancel": _cancel, "retry": _retry, "dead-letters/replay": _replay, "purge": _purge}


def outcomes(found: list[ops.Outcome]) -> dict[str, Any]:
    """An action's answer: how many were done, and each id's outcome."""
    return {"done": sum(o.done for o in found), "count": len(found),
            "outcomes": [{"id": o.id, "result": o.result, "detail": o.detail, "done": o.done} for o in found]}


# --- the dashboard (package data: supervisor/dashboard/) ---

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
          "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8")}
# The page runs only its own script and style, talks only to this server, and is never framed.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                                           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                           "form-action 'none'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def static_file(name: str) -> bytes:
    return resources.files("supervisor").joinpath("dashboard", name).read_bytes()


# --- the server ---

class _Errors:
    """Logs each kind of failure once (a scrape every 15 s must not flood the supervisor's output)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, where: str, e: Exception) -> None:
        key = f"{where}: {type(e).__name__}"
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        self._say(f"http {where}: {type(e).__name__}: {e} (logged once)")


class Handler(BaseHTTPRequestHandler):
    """Answers one request through the server's Endpoint, whatever happens in it."""

    server: HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the supervisor's output is for what matters."""

    def do_GET(self) -> None:
        self._guarded(self.server.endpoint.get)

    def do_POST(self) -> None:
        self._guarded(self.server.endpoint.post)

    def _guarded(self, route: Callable[[Handler, str, dict[str, list[str]]], tuple[int, str, bytes]]) -> None:
        url = urlsplit(self.path)
        try:
            status, ctype, body = route(self, unquote(url.path), parse_qs(url.query))
        except _BadRequest as e:
            status, ctype, body = 400, "text/plain; charset=utf-8", f"{e}\n".encode()
        except Exception as e:  # never let a request reach the supervisor: answer it, log it once
            self.server.endpoint.errors(url.path.split("/")[1] if "/" in url.path else url.path, e)
            status, ctype, body = 500, "text/plain; charset=utf-8", f"error: {type(e).__name__}: {e}\n".encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in PAGE_HEADERS.items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client went away


class _BadRequest(Exception):
    pass


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value, default=str, sort_keys=True).encode() + b"\n"


def _text(status: int, text: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", text.encode() + b"\n"


def _limit(query: dict[str, list[str]], default: int = 50) -> int:
    text = query.get("limit", [str(default)])[-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise _BadRequest(f"limit: expected an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


class Endpoint:
    """The routes, over one Insight. ``get`` and ``post`` answer (status, content type, body)."""

    def __init__(self, config: Config, insight: Insight, say: Callable[[str], None]) -> None:
        self.config = config
        self.insight = insight
        self.errors = _Errors(say)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(lambda: read_metrics(insight, self.errors)))  # type: ignore[arg-type]
        self.client = Client(config)  # the actions' (client/ops.py); its Kafka producer is made on first use
        self._acting = threading.Lock()  # one action at a time: they are rare, and Client makes its producer lazily

    def close(self) -> None:
        self.client.close()
        self.insight.close()

    def get(self, h: Handler, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if path in STATIC:
            name, ctype = STATIC[path]
            return 200, ctype, static_file(name)
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            reasons = health(self.insight.snapshot(), self.insight.kafka_up(), self.insight.redis_up())
            return _text(503, "; ".join(reasons)) if reasons else _text(200, "ok")
        if path.startswith("/api/"):
            return self._api(path.removeprefix("/api/").rstrip("/"), query)
        return _text(404, f"not found: {path} (try /, /metrics, /healthz, /api/overview)")

    def _api(self, what: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        i = self.insight
        if what.startswith("tasks/"):
            task = i.task(what.removeprefix("tasks/"))
            return _json(200, task) if task else _json(404, {"error": "no such task (never placed, or expired)"})
        reads: dict[str, Callable[[], Any]] = {
            "overview": i.overview, "workers": i.workers, "retries": lambda: i.retries(_limit(query)),
            "dead-letters": lambda: i.dead_letters(_limit(query)), "running": i.running,
            "queued": lambda: i.queued(_limit(query)),
            "failed-groups": lambda: i.failed_groups(query.get("name", [None])[-1]),
            "tasks": lambda: i.tasks(query.get("status", [None])[-1], query.get("name", [None])[-1],
                                     _limit(query))}
        if what not in reads:
            return _json(404, {"error": f"no such API: /api/{what}", "known": sorted([*reads, "tasks/ID"])})
        try:
            return _json(200, reads[what]())
        except (redis.RedisError, ServiceUnavailable) as e:
            return _json(503, {"error": str(e)})

    def post(self, h: Handler, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        raw = _read_body(h)  # first, whatever the answer: unread bytes would be taken for the next request
        refused = authorize(self.config.http.token, h.headers.get("Authorization"))
        if refused:
            return _text(*refused)
        action = ACTIONS.get(path.removeprefix("/api/").strip("/"))
        if action is None:
            return _text(404, f"no such action: {path}")
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            raise _BadRequest(f"the body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise _BadRequest("the body must be a JSON object")
        by = f"http from {h.client_address[0]}"
        try:
            with self._acting:
                return _json(200, outcomes(action(self.client, body, by)))
        except (redis.RedisError, ServiceUnavailable) as e:
            return _text(503, str(e))
        except YadtqError as e:  # bad input the ops functions found (a duration that is not one)
            raise _BadRequest(str(e)) from None


MAX_BODY = 1_000_000  # bytes an action's body may have


def _read_body(h: Handler) -> bytes:
    """The request's body; _BadRequest (and the connection closed) if its length is not a number up to MAX_BODY."""
    text = h.headers.get("Content-Length") or "0"
    if not text.isdigit() or int(text) > MAX_BODY:
        h.close_connection = True  # the body is not read: the connection cannot carry another request
        raise _BadRequest(f"Content-Length: expected a number of bytes up to {MAX_BODY}, got {text[:20]!r}")
    return h.rfile.read(int(text))


class Handler6(Handler):
    """The same handler; its own class only marks an IPv6 address for ``serve``."""


class HttpServer(ThreadingHTTPServer):
    """The threaded server; ``start()`` serves from a daemon thread, ``stop()`` ends it."""

    daemon_threads = True
    endpoint: Endpoint

    def __init__(self, address: tuple[str, int], handler: type[Handler]) -> None:
        if handler is Handler6:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="yadtq-http",
                         daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.endpoint.close()


def serve(config: Config, snapshot: Callable[[], Snapshot | None], say: Callable[[str], None]) -> HttpServer:
    """Start serving on ``http.listen``; raise OSError if the address cannot be bound."""
    host, port = split_listen(config.http.listen)
    insight = Insight(config, snapshot)
    try:
        server = HttpServer((host, port), Handler6 if ":" in host else Handler)
    except OSError:
        insight.close()
        raise
    server.endpoint = Endpoint(config, insight, say)
    server.start()
    return server
