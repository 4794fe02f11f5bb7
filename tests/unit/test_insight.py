"""The operator's view: the counters decoded, health, the metrics text, the token, the server on failures."""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from kafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from client.cli import format_info, format_inspect
from client.cli import main as cli_main
from client.config import NO_SECRET, Config, Secret
from client.errors import ConfigError
from client.insight import (
    TIMING_BUCKETS,
    Counters,
    Histogram,
    ProcessView,
    Snapshot,
    attempts,
    backlog_of,
    encode_snapshot,
    error_type,
    health,
    parse_snapshot,
    parse_stats,
    parse_timings,
    task_summary,
)
from client.store import lua_text
from supervisor.http import Endpoint, Handler, HttpServer, MetricsView, authorize, metric_families
from supervisor.liveness import Liveness
from tests.support.harness import unreachable_services


def test_the_stats_hash_is_decoded_into_totals_and_counts_per_name() -> None:
    c = parse_stats({"success": "7", "failed": "2", "submitted|add": "5", "submitted|a|b": "1",
                     "finished|success|add": "5", "finished|failed|odd|name": "2", "retries|flaky": "3",
                     "lost|die": "1", "deaths|W1": "2", "restarts|W1": "2", "finished|nobar": "9",
                     "other|x": "4", "submitted|bad": "x"})
    assert c.totals == {"success": 7, "failed": 2}
    assert c.submitted == {"add": 5, "a|b": 1, "bad": 0}  # a name may hold '|'; a damaged count is 0
    assert c.finished == {("add", "success"): 5, ("odd|name", "failed"): 2}
    assert (c.retries, c.lost, c.deaths, c.restarts) == ({"flaky": 3}, {"die": 1}, {"W1": 2}, {"W1": 2})


def test_the_timings_hash_is_decoded_into_histograms() -> None:
    t = parse_timings({"run|1|add": "3", "run|19|add": "1", "run_sum|add": "4000.5", "wait|2|a|b": "2",
                       "wait_sum|a|b": "0.02", "run|20|add": "9", "run|0|add": "9", "run|x|add": "9",
                       "run_sum|bad": "nan", "nothing": "1"})
    add = t["run"]["add"]
    assert add.count == 4 and add.total == 4000.5
    cumulative = add.cumulative()
    assert cumulative[0] == ("0.005", 3) and cumulative[-2] == ("3600.0", 3) and cumulative[-1] == ("+Inf", 4)
    assert len(cumulative) == len(TIMING_BUCKETS) + 1
    assert t["wait"]["a|b"].counts[1] == 2
    assert t["run"]["bad"].total == 0.0  # a damaged sum reads as 0


def test_the_lua_scripts_share_the_buckets() -> None:
    common = lua_text("common")
    buckets = re.search(r"local BUCKETS = \{([^}]*)\}", common)
    assert buckets is not None
    assert tuple(float(b) for b in buckets.group(1).split(",")) == TIMING_BUCKETS


def _snap(sched_up: bool = True, workers: tuple[bool, ...] = (True, False)) -> Snapshot:
    procs = [ProcessView("scheduler", 10, sched_up, sched_up, 0.5)]
    procs += [ProcessView(f"W{i + 1}", 11 + i, True, up, 0.2 if up else None) for i, up in enumerate(workers)]
    return Snapshot(1000.0, 9, 3, procs)


def test_health_names_every_reason() -> None:
    assert health(_snap(), True, True) == []
    assert health(_snap(sched_up=False), True, True) == ["the scheduler is down"]
    assert health(_snap(workers=(False, False)), False, True) == ["kafka does not answer",
                                                                 "no worker is live (0 of 2)"]
    assert health(None, True, False) == ["redis does not answer",
                                         "no supervisor is running (no snapshot of its processes)"]
    alive_silent = Snapshot(1.0, 9, 3, [ProcessView("scheduler", 10, True, False, 9.0), *_snap().workers()])
    assert health(alive_silent, True, True) == ["the scheduler has not sent a heartbeat within the timeout"]


def test_a_snapshot_round_trips_and_junk_is_no_snapshot() -> None:
    s = _snap()
    assert parse_snapshot(encode_snapshot(s)) == s
    for junk in (None, "", "not json", "[]", '{"at": 1}', '{"at": "x", "supervisor_pid": 1, "epoch": 1, '
                                                         '"processes": []}'):
        assert parse_snapshot(junk) is None


def test_backlog_is_end_minus_committed_or_minus_the_first_kept_offset() -> None:
    a0, a1, b0 = TopicPartition("A", 0), TopicPartition("A", 1), TopicPartition("B", 0)
    assert backlog_of({a0: 10, a1: 5, b0: 7}, {a0: 4, a1: 5}, {a0: 0, a1: 0, b0: 2}) == {"A": 6, "B": 5}
    assert backlog_of({a0: 3}, {a0: 9}, {}) == {"A": 0}  # never negative


def test_a_task_summary_reads_numbers_and_skips_what_is_not_a_yadtq_record() -> None:
    fields = ["failed", "add", "W1", "2", "1.5", "2.0", "3.25", "ValueError: x\nTraceback...", "1", None, None, "1"]
    assert task_summary("t1", fields) == {"id": "t1", "status": "failed", "task": "add", "worker": "W1",
                                          "attempt": 2, "submitted_at": 1.5, "started_at": 2.0,
                                          "finished_at": 3.25, "error": "ValueError: x", "retries": 1}
    assert task_summary("t2", ["success"] + [None] * 11) is None  # no marker: not ours
    assert attempts({"attempt": "3", "retries": "1", "worker_deaths": "1", "first_started_at": "5.0"})[
        "first_started_at"] == 5.0


def _families(v: MetricsView) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry(auto_describe=False)

    class One:
        def collect(self) -> list[object]:
            return metric_families(v)  # type: ignore[return-value]
    registry.register(One())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_the_metrics_text_has_the_names_and_labels_of_the_issue() -> None:
    h = Histogram()
    h.counts[0], h.counts[-1], h.total = 2, 1, 5000.0
    v = MetricsView(kafka_up=True, redis_up=False, scheduler_up=True,
                    counters=parse_stats({"submitted|add": "3", "finished|success|add": "2",
                                          "finished|failed|add": "1", "retries|add": "4"}),
                    timings={"wait": {"add": h}, "run": {}},
                    workers=[{"id": "scheduler", "up": True, "load": None, "heartbeat_age": 0.1, "restarts": 1,
                              "deaths": 1, "rss": 1000, "cpu": 2.5},
                             {"id": "W1", "up": False, "load": 3, "heartbeat_age": None, "restarts": 0, "deaths": 0}],
                    backlog={"TASKS": 5}, oldest_unstarted_age=2.5, retries_waiting=4, dead_letters_total=7)
    m = _families(v)
    assert m["yadtq_tasks_submitted_total"] == {(("task", "add"),): 3}
    assert m["yadtq_tasks_finished_total"] == {(("status", "success"), ("task", "add")): 2,
                                               (("status", "failed"), ("task", "add")): 1}
    assert m["yadtq_task_retries_total"] == {(("task", "add"),): 4}
    assert m["yadtq_worker_deaths_total"] == {(("worker", "scheduler"),): 1, (("worker", "W1"),): 0}
    assert m["yadtq_worker_restarts_total"][(("worker", "scheduler"),)] == 1
    assert m["yadtq_worker_up"] == {(("worker", "W1"),): 0} and m["yadtq_worker_load"] == {(("worker", "W1"),): 3}
    assert "yadtq_worker_heartbeat_age_seconds" not in m  # W1 never beat: no sample rather than a made-up age
    assert m["yadtq_worker_rss_bytes"] == {(("worker", "scheduler"),): 1000}
    assert m["yadtq_worker_cpu_percent"] == {(("worker", "scheduler"),): 2.5}
    assert m["yadtq_task_queue_wait_seconds_bucket"][(("le", "0.005"), ("task", "add"))] == 2
    assert m["yadtq_task_queue_wait_seconds_bucket"][(("le", "+Inf"), ("task", "add"))] == 3
    assert m["yadtq_task_queue_wait_seconds_count"] == {(("task", "add"),): 3}
    assert m["yadtq_task_queue_wait_seconds_sum"] == {(("task", "add"),): 5000.0}
    assert m["yadtq_backlog"] == {(("topic", "TASKS"),): 5}
    assert m["yadtq_oldest_unstarted_age_seconds"] == {(): 2.5} and m["yadtq_retries_waiting"] == {(): 4}
    assert m["yadtq_dead_letters_total"] == {(): 7}
    assert m["yadtq_kafka_up"] == {(): 1} and m["yadtq_redis_up"] == {(): 0} and m["yadtq_scheduler_up"] == {(): 1}


def test_a_part_that_could_not_be_read_is_left_out() -> None:
    m = _families(MetricsView(kafka_up=False, redis_up=False))
    assert set(m) == {"yadtq_kafka_up", "yadtq_redis_up"}


def test_actions_need_the_configured_token() -> None:
    assert authorize(NO_SECRET, "Bearer x") == (403, "actions over HTTP are refused: no http.token (or "
                                                     "http.token_env) is configured")
    token = Secret("s3cret")
    assert authorize(token, None)[0] == 401  # type: ignore[index]
    assert authorize(token, "Basic s3cret")[0] == 401  # type: ignore[index]
    assert authorize(token, "Bearer wrong") == (401, "wrong token")
    assert authorize(token, "Bearer s3cret") is None
    assert authorize(token, "bearer s3cret") is None


@pytest.mark.parametrize("listen", ["", "127.0.0.1:9180", "0.0.0.0:0", "[::1]:80", "host:65535"])
def test_http_listen_takes_host_port_or_nothing(listen: str) -> None:
    assert Config.from_dict({"http": {"listen": listen}}).http.listen == listen


@pytest.mark.parametrize("listen", ["9180", ":9180", "host:", "host:65536", "host:x", "host:-1", 9180])
def test_a_wrong_http_listen_names_the_key(listen: object) -> None:
    with pytest.raises(ConfigError, match=r"http\.listen: expected"):
        Config.from_dict({"http": {"listen": listen}})


def test_the_http_token_comes_from_the_file_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config().http.listen == "127.0.0.1:9180" and not Config().http.token
    monkeypatch.setenv("YADTQ_T", "from-env")
    assert Config.from_dict({"http": {"token_env": "YADTQ_T"}}).http.token.reveal() == "from-env"
    with pytest.raises(ConfigError, match=r"http\.token_env: give token or token_env, not both"):
        Config.from_dict({"http": {"token": "a", "token_env": "YADTQ_T"}})
    with pytest.raises(ConfigError, match=r"http\.token_env: the environment variable NOT_SET_X is not set"):
        Config.from_dict({"http": {"token_env": "NOT_SET_X"}})
    assert "from-env" not in repr(Config.from_dict({"http": {"token_env": "YADTQ_T"}}))


def test_info_and_inspect_texts() -> None:
    overview = {"kafka_up": True, "redis_up": False, "supervisor": {"pid": 9, "epoch": 3},
                "workers": [{"id": "W1", "up": True, "pid": 11, "load": 2, "heartbeat_age": 0.25, "restarts": 1,
                             "deaths": 1, "rss": 50 * 2 ** 20, "cpu": 12.3}],
                "backlog": {"TASKS": 4}, "oldest_unstarted_age": 1.5, "retries_waiting": 2,
                "dead_letters": {"total": 3, "kept": 1}, "totals": {"success": 5, "failed": 1},
                "health": ["redis does not answer"], "errors": {}}
    assert format_info(overview).splitlines() == [
        "supervisor pid 9 (epoch 3) | kafka up | redis DOWN",
        "W1         up   pid 11  load 2  heartbeat 0.2s ago  restarts 1  deaths 1  rss 50MB cpu 12%",
        "backlog: TASKS 4", "oldest waiting: 1.5s | retries waiting 2 | dead letters 3 (1 kept)",
        "success 5 failed 1", "health: redis does not answer"]
    assert format_inspect("dead", [], 0.0) == "no dead letters"
    assert format_inspect("retries", [{"id": "t", "task": "f", "due": 12.0, "retries": 1, "error": "E: x"}],
                          10.0) == "t  f  due in 2.0s  retries 1  E: x"


def test_the_heartbeat_age_is_from_the_last_arrival() -> None:
    live = Liveness(timeout=4.0)
    live.watch("W1", 10, at=100.0)
    assert live.age("W1", 101.0) is None and live.age("W2", 101.0) is None
    live.beat("W1", 10, at=102.0)
    assert live.age("W1", 103.5) == 1.5


class _BrokenInsight:
    """An Insight whose reads fail: Redis gone for the counters, a bug for the workers."""

    def __init__(self) -> None:
        self.closed = False

    def kafka_up(self) -> bool:
        return False

    def redis_up(self) -> bool:
        return True

    def snapshot(self) -> Snapshot:
        return _snap()

    def counters(self) -> Counters:
        raise redis.ConnectionError("Redis went away")

    def timings(self) -> dict[str, dict[str, Histogram]]:
        return {}

    def retries_waiting(self) -> int:
        return 3

    def __getattr__(self, name: str) -> Callable[..., object]:  # workers(), overview(), tasks() ...
        def read(*args: object) -> object:
            raise RuntimeError("a bug")
        return read

    def close(self) -> None:
        self.closed = True


def test_a_failing_read_is_an_http_error_logged_once_and_the_server_serves_on() -> None:
    said: list[str] = []
    server = HttpServer(("127.0.0.1", 0), Handler)
    broken = _BrokenInsight()
    server.endpoint = Endpoint(Config(), broken, said.append)  # type: ignore[arg-type]
    server.start()
    port = server.server_address[1]

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
    try:
        for _ in range(2):
            status, text = get("/api/workers")
            assert status == 500 and "RuntimeError: a bug" in text
            status, text = get("/metrics")  # what can be read is served; what cannot is left out
            assert status == 200 and "yadtq_retries_waiting 3.0" in text and "yadtq_tasks_submitted" not in text
        assert get("/healthz") == (503, "kafka does not answer\n")
        assert get("/api/tasks?limit=0")[0] == 400
        assert get("/nothing")[0] == 404
        assert get("/api/retry")[0] == 404
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # one connection, kept alive
        conn.request("POST", "/api/retry", body=b'{"ids": ["a"]}')
        refused = conn.getresponse()
        assert (refused.status, refused.read()) == (403, b"actions over HTTP are refused: no http.token (or "
                                                         b"http.token_env) is configured\n")
        conn.request("GET", "/healthz")  # the refused body was read: this request is parsed as one
        health_answer = conn.getresponse()
        assert (health_answer.status, health_answer.read()) == (503, b"kafka does not answer\n")
        conn.request("POST", "/api/retry", headers={"Content-Length": "x"})
        bad = conn.getresponse()
        assert bad.status == 400 and bad.getheader("Connection") == "close"
        conn.close()
        assert sorted(said) == ["http /metrics: counters: ConnectionError: Redis went away (logged once)",
                                "http /metrics: workers: RuntimeError: a bug (logged once)",
                                "http api: RuntimeError: a bug (logged once)"]
    finally:
        server.stop()
    assert broken.closed


def test_info_and_inspect_with_the_services_away_say_so_and_exit_5(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with unreachable_services() as lines:
        path = tmp_path / "y.yaml"
        path.write_text(lines)
        assert cli_main(["-c", str(path), "info"]) == 5
        out = capsys.readouterr().out
        assert "kafka DOWN | redis DOWN" in out and "success, failed: unknown (Redis)" in out
        assert "health: kafka does not answer; redis does not answer; no supervisor is running" in out
        assert cli_main(["-c", str(path), "inspect", "retries"]) == 5
        assert "does not answer" in capsys.readouterr().err


def test_the_error_type_of_a_record() -> None:
    assert error_type("ValueError: bad value: 3") == "ValueError"
    assert error_type("WorkerLost: the worker died") == "WorkerLost"
    assert error_type("no colon here") == error_type("two words: x") == error_type("") == "(other)"
