"""A Kafka cluster of three brokers (issue 11's base): `scripts/services.sh` with
YADTQ_KAFKA_BROKERS=3 starts it, YADTQ's topics get three copies and
min.insync.replicas 2, and losing the leader of TASKS loses no task.

Behind the ``brokers`` marker (three JVMs on this machine): `make test-brokers`,
which `.ci/run` runs after `make test`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import redis
import yaml
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from client import Client, TaskSpec, load_config
from client import kafka as kafka_io
from client.protocol import Heartbeat, parse_event
from client.store import _SCRIPTS, Keys, lua_text
from scripts import chaos, chaos_tasks
from tests.integration.conftest import REDIS, cluster_config
from tests.support import netns
from tests.support.harness import ClusterProcess, WatchedProcess, remove_cluster_data, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.brokers]

ROOT = Path(__file__).resolve().parents[2]
# Below Linux's ephemeral range (32768-60999): a node's port there may be taken by
# another node's outgoing connection, or a connection to it may connect to itself.
BASE = 29092
NODES = 3


@dataclass(frozen=True)
class Brokers:
    """The three nodes: their state dir, and the address their client listeners bind to."""

    state: Path
    host: str

    @property
    def servers(self) -> list[str]:
        return [f"{self.host}:{BASE + i}" for i in range(NODES)]

    def services(self, command: str) -> None:
        """Run scripts/services.sh ``command`` on these nodes (``kafka-up`` starts those that are down)."""
        env = {**os.environ, "YADTQ_SERVICES_DIR": str(self.state), "YADTQ_KAFKA": f"{self.host}:{BASE}",
               "YADTQ_KAFKA_BROKERS": str(NODES), "YADTQ_SERVICES_BIND": self.host,
               "YADTQ_KAFKA_JAVA_OPTS": "-Xms128m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"}
        subprocess.run([str(ROOT / "scripts" / "services.sh"), command], env=env, check=True, timeout=180)

    def kill(self, node: int) -> None:
        os.kill(int((self.state / f"kafka-{node}" / "kafka.pid").read_text()), signal.SIGKILL)

    def answers(self, node: int) -> bool:
        return not _free(self.host, BASE + node - 1)


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


@pytest.fixture(scope="module")
def bridge() -> Iterator[netns.Bridge | None]:
    """A bridge that network namespaces (the nodes of the partition test) reach the services on;
    None where namespaces cannot be made (then that test is skipped, and fails under CI)."""
    if netns.available():
        yield None
        return
    b = netns.Bridge()
    try:
        yield b
    finally:
        b.remove()


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory, bridge: netns.Bridge | None) -> Iterator[Brokers]:
    """Three KRaft nodes on 29092-29094 (controllers on 127.0.0.1:29192-29194), state in a
    temporary dir; on the bridge's address when there is one, else on 127.0.0.1."""
    host = bridge.host if bridge is not None else "127.0.0.1"
    busy = [p for p in (*range(BASE, BASE + NODES), *range(BASE + 100, BASE + 100 + NODES))
            if not _free("127.0.0.1", p) or not _free(host, p)]
    assert not busy, f"ports {busy} are in use: another 3-broker test run, or a leftover of one"
    b = Brokers(tmp_path_factory.mktemp("kafka3"), host)
    b.services("kafka-up")
    try:
        yield b
    finally:  # SIGKILL: their data is thrown away, and a graceful stop of three nodes takes half a minute
        for pid_file in b.state.glob("kafka-*/kafka.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        wait_until(lambda: not any(b.answers(i) for i in range(1, NODES + 1)), "the three nodes are gone",
                   timeout=30)


def _leader_of(admin: KafkaAdminClient, topic: str) -> tuple[int, list[int]]:
    [described] = admin.describe_topics([topic])
    [partition] = described["partitions"]
    return partition["leader_id"], partition["replica_nodes"]


def test_yadtqs_topics_get_three_copies_and_losing_the_leader_of_tasks_loses_no_task(
        brokers: Brokers, start_cluster: Any) -> None:
    cluster = start_cluster(count=2, kafka={"bootstrap_servers": brokers.servers})
    topics = cluster.config.topics
    admin = KafkaAdminClient(bootstrap_servers=brokers.servers)
    try:
        leader, replicas = _leader_of(admin, topics.tasks)
        assert sorted(replicas) == [1, 2, 3]
        conf = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.tasks,
                                                      configs={"min.insync.replicas": None})])
        assert conf["topic"][topics.tasks]["min.insync.replicas"]["value"] == "2"
    finally:
        admin.close()

    c = cluster.client
    handles = c.submit_many([TaskSpec("sleep", (0.005,)) for _ in range(600)])
    wait_until(lambda: int(c.redis.hget(c.keys.stats, "success") or 0) >= 50, "some tasks ended")
    brokers.kill(leader)  # the leader of TASKS, mid-run
    killed = time.monotonic()
    c.wait([h.id for h in handles], timeout=120)
    print(f"the {len(handles)} tasks ended {time.monotonic() - killed:.1f}s after node {leader} was killed")
    assert [h.status() for h in handles] == ["success"] * len(handles)
    assert c.submit("add", 2, 3).result(timeout=60) == 5  # and new tasks still go through
    brokers.services("kafka-up")  # the lost node comes back and rejoins
    wait_until(lambda: brokers.answers(leader), f"node {leader} answers again", timeout=60)


# --- Several nodes (issue 11): two supervisors, each its own process tree and cluster file ---

NODE_WORKERS = 2
TASKS = 3000


class Nodes:
    """Two nodes, 'a' and 'b', of one cluster: the same topics and key prefix, each its own
    `python -m supervisor FILE` with its own ``node`` and two workers."""

    def __init__(self, tmp_path: Path, base: Path,
                 launch: Callable[[str, Path], ClusterProcess] = lambda name, path: ClusterProcess(path)) -> None:
        self.launch = launch
        cfg = yaml.safe_load(base.read_text())
        self.paths: dict[str, Path] = {}
        for name in ("a", "b"):
            self.paths[name] = tmp_path / f"{name}.yaml"
            self.paths[name].write_text(yaml.safe_dump({**cfg, "node": name}))
        self.config = {name: load_config(p) for name, p in self.paths.items()}
        self.procs: dict[str, ClusterProcess] = {}  # each node's newest
        self.started: list[ClusterProcess] = []
        self.client = Client(self.config["a"])
        self.keys = Keys(self.config["a"].redis.key_prefix)

    def start(self, name: str) -> ClusterProcess:
        self.procs[name] = p = self.launch(name, self.paths[name])
        self.started.append(p)
        p.wait_line(r"cluster ready", timeout=120)
        return p

    def active(self) -> str | None:
        """The node whose scheduler holds the scheduler lease now, if any."""
        text = self.client.redis.get(self.keys.scheduler_lease)
        return json.loads(text).get("node") if text else None

    def tree(self, name: str) -> list[psutil.Process]:
        sup = psutil.Process(self.procs[name].proc.pid)
        return [sup, *sup.children(recursive=True)]

    def stop(self) -> None:
        for p in self.started:
            p.stop()
        self.client.close()
        for config in self.config.values():
            remove_cluster_data(config)


@pytest.fixture
def nodes(brokers: Brokers, tmp_path: Path) -> Iterator[Nodes]:
    """Node 'a' started first (its scheduler is the active one), then node 'b' (standing by)."""
    base = cluster_config(tmp_path, NODE_WORKERS, kafka={"bootstrap_servers": brokers.servers},
                          tasks={"modules": ["worker_pool.builtin_tasks", "tests.tasks", "scripts.chaos_tasks"]})
    n = Nodes(tmp_path, base)
    try:
        n.start("a")
        wait_until(lambda: n.active() == "a", "node a's scheduler is active")
        b = n.start("b")
        b.wait_line(r"scheduler standing by", timeout=30)
        yield n
    finally:
        n.stop()


def _kill_node(nodes: Nodes, name: str) -> dict[int, float]:
    """SIGKILL every process of node ``name`` at once (a host lost as a whole); {pid: when}."""
    procs = nodes.tree(name)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    at = time.time()
    return {p.pid: at for p in procs}


def _takeover(nodes: Nodes, since: float, to: str) -> float:
    wait_until(lambda: nodes.active() == to, f"node {to}'s scheduler takes over", timeout=30, every=0.02)
    return time.monotonic() - since


def _check_runs(nodes: Nodes, ids: list[str], gone: dict[int, float]) -> None:
    """Every task ended success with its result; no run overlapped another of its task, and none
    started after its task had ended (scripts/chaos_tasks.py records each run)."""
    c, prefix = nodes.client, nodes.config["a"].redis.key_prefix
    spans: list[str] = c.redis.lrange(chaos_tasks.spans_key(prefix), 0, -1)  # type: ignore[assignment]
    _check_spans(nodes, ids, spans, gone)


def _check_spans(nodes: Nodes, ids: list[str], spans: list[str], gone: dict[int, float]) -> None:
    """As _check_runs, from ``spans`` ('S id pid start' and 'E id pid start end'); task i returns i * i.
    A run without an end ended when its process was gone (``gone``)."""
    c = nodes.client
    pipe = c.redis.pipeline(transaction=False)
    for t in ids:
        pipe.hmget(c.keys.task(t), "status", "result", "finished_at")
    records = pipe.execute()
    assert [s for s, _, _ in records] == ["success"] * len(ids)
    assert [r for _, r, _ in records] == [str(i * i) for i in range(len(ids))]
    overlapping = {t: runs for t, runs in chaos._runs(spans, gone).items()
                   if chaos.overlapping_runs([e for e in spans if e.split(" ")[1] == t], gone)}
    assert overlapping == {}, [e for e in spans if e.split(" ")[1] in overlapping]
    ended = {t: float(f) for t, (_, _, f) in zip(ids, records, strict=True)}
    late = [e for e in spans if e.startswith("S ") and float(e.split(" ")[3]) > ended[e.split(" ")[1]]]
    assert late == [], f"runs that started after their task had ended: {late[:5]}"


# What a stood-down scheduler may still send: reads, and the renewal that finds its lease taken.
_READS = {"GET", "HGET", "HGETALL", "HMGET", "HEXISTS", "EXISTS", "TYPE", "PTTL", "PING"}


def _redis_ports(proc: psutil.Process) -> set[int]:
    """The local ports of ``proc``'s connections to the test Redis."""
    port = urlsplit(REDIS).port or 6379
    return {c.laddr.port for c in proc.net_connections(kind="tcp") if c.raddr and c.raddr.port == port}


@contextlib.contextmanager
def _monitor(nodes: Nodes) -> Iterator[list[tuple[int, str]]]:
    """Every command Redis receives while the block runs, as (client port, command) (MONITOR)."""
    seen: list[tuple[int, str]] = []
    m = redis.Redis.from_url(REDIS).monitor()  # type: ignore[no-untyped-call]
    m.__enter__()

    def read() -> None:
        with contextlib.suppress(redis.RedisError, OSError, ValueError, AttributeError):
            while (c := m.next_command()) is not None:
                if c["client_type"] == "tcp":
                    seen.append((int(c["client_port"]), c["command"]))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        m.__exit__(None, None, None)
        reader.join(5)


def _submit(nodes: Nodes) -> list[str]:
    handles = nodes.client.submit_many([TaskSpec("chaos_work", (i, 0.002)) for i in range(TASKS)])
    return [h.id for h in handles]


def _ended(nodes: Nodes) -> int:
    return int(nodes.client.redis.hget(nodes.client.keys.stats, "success") or 0)


@pytest.mark.parametrize("broker_restart", [False, True], ids=["node-lost", "node-lost-and-a-broker-restarted"])
def test_losing_the_node_of_the_active_scheduler_hands_over_to_the_standby_and_loses_no_task(
        nodes: Nodes, brokers: Brokers, broker_restart: bool) -> None:
    ids = _submit(nodes)
    broker = 0
    if broker_restart:
        wait_until(lambda: _ended(nodes) >= TASKS // 10, "a tenth of the tasks ended", timeout=120)
        admin = KafkaAdminClient(bootstrap_servers=brokers.servers)
        try:
            broker, _ = _leader_of(admin, nodes.config["a"].topics.tasks)
        finally:
            admin.close()
        brokers.kill(broker)
    wait_until(lambda: _ended(nodes) >= TASKS // 3, "a third of the tasks ended", timeout=120)
    # Node a's scheduler was made the active one; after a broker's loss it may have been replaced
    # already (it exits when Kafka fails it, and the standby is the first to find the lease free).
    lost = wait_until(nodes.active, "a scheduler is active")
    other = "b" if lost == "a" else "a"
    killed = time.monotonic()
    gone = _kill_node(nodes, lost)
    took = _takeover(nodes, killed, other)
    print(f"node {other}'s scheduler took over {took:.1f}s after node {lost} was killed")
    assert took < 10
    if broker_restart:
        brokers.services("kafka-up")
        wait_until(lambda: brokers.answers(broker), f"broker {broker} answers again", timeout=60)
    nodes.client.wait(ids, timeout=180)
    print(f"all {TASKS} tasks ended {time.monotonic() - killed:.1f}s after node {lost} was killed")
    _check_runs(nodes, ids, gone)
    survivor = nodes.procs[other]
    survivor.wait_line(r"scheduler active .*took over", timeout=5)
    declared = re.compile(rf"worker {lost}\.\S+ down \(node {lost} is gone: its lease lapsed\): reassigning (\d+)")
    survivor.wait_line(declared.pattern, 5)
    moved = sum(int(m.group(1)) for line in list(survivor.lines) if (m := declared.search(line)))
    print(f"{moved} task(s) moved from node {lost}'s workers")
    if broker_restart:
        return
    assert moved > 0  # the kill landed while its workers held tasks: the move was tested
    # The node comes back (a new generation of it): it stands by, and its workers take tasks again.
    again = nodes.start(lost)
    again.wait_line(r"scheduler standing by", timeout=30)
    more = [h.id for h in nodes.client.submit_many([TaskSpec("node_of_worker") for _ in range(200)])]
    nodes.client.wait(more, timeout=120)
    assert {nodes.client.result(t) for t in more} == {"a", "b"}


def test_a_paused_active_scheduler_writes_nothing_once_it_resumes(nodes: Nodes) -> None:
    ids = _submit(nodes)
    wait_until(lambda: _ended(nodes) >= TASKS // 3, "a third of the tasks ended", timeout=120)
    sup_a = psutil.Process(nodes.procs["a"].proc.pid)
    sched = psutil.Process(nodes.procs["a"].pid("scheduler"))
    # Its supervisor too: else it would see the silence and kill it, and it would never resume.
    for p in (sup_a, sched):
        p.suspend()
    paused = time.monotonic()
    ports = _redis_ports(sched)
    took = _takeover(nodes, paused, "b")
    print(f"node b's scheduler took over {took:.1f}s after node a's was paused")
    assert took < 10
    with _monitor(nodes) as seen:
        resumed = time.time()
        sched.resume()
        ports |= _redis_ports(sched)
        wait_until(lambda: sched.status() == psutil.STATUS_ZOMBIE, "the resumed scheduler exits", timeout=15)
        # MONITOR shows commands in the order Redis ran them: once a marker sent now is seen,
        # so is everything the scheduler sent before it exited.
        marker = f"yadtq-test-marker-{uuid.uuid4().hex}"
        nodes.client.redis.echo(marker)
        wait_until(lambda: any(marker in cmd for _, cmd in seen), "MONITOR saw every command before the marker")
    # What it sent once resumed: reads, its lease renewal (which finds the lease taken), and at most
    # the scripts of a round it had begun before it stopped, each of which checks its epoch first
    # and writes nothing for a stale one (test_node_keys.py, test_store.py). No plain write.
    renew = hashlib.sha1(lua_text("lease_renew").encode()).hexdigest()
    scripts = {renew, *(s.sha for s in _SCRIPTS.values())}
    from_it = [cmd for port, cmd in seen if port in ports]
    assert any(c.startswith(f"EVALSHA {renew}") for c in from_it), f"no lease renewal seen: {from_it}"
    assert [c for c in from_it if c.split(" ")[0].upper() not in _READS
            and not (c.startswith("EVALSHA ") and c.split(" ")[1] in scripts)] == [], from_it
    # Nor anything on Kafka: not even a heartbeat (its assignments need an ASSIGN that Redis took first).
    assert _heartbeats_since(nodes, "a.scheduler", sched.pid, resumed) == []
    sup_a.resume()
    nodes.procs["a"].wait_line(r"scheduler is dead \(exit code 6", timeout=30)
    nodes.procs["a"].wait_line(r"scheduler standing by", timeout=30)
    nodes.client.wait(ids, timeout=180)
    # No process of node a was killed: a run cut short would count as never ended, and overlap.
    _check_runs(nodes, ids, {})


def _heartbeats_since(nodes: Nodes, sender: str, pid: int, since: float) -> list[Heartbeat]:
    """The heartbeats on the status topic from (``sender``, ``pid``) sent after ``since`` (its clock)."""
    config = nodes.config["a"]
    consumer = kafka_io.consumer(config.kafka, None)
    try:
        parts = kafka_io.assign_all(consumer, [config.topics.status])
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        found: list[Heartbeat] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, "the status topic was not read to its end within 60s"
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    if b'"heartbeat"' in r.value and isinstance(ev := parse_event(r.value), Heartbeat):
                        found.append(ev)
        return [h for h in found if h.sender == sender and h.pid == pid and h.ts > since]
    finally:
        consumer.close()


# --- A real partition: each node in its own network namespace ---

class NsCluster(ClusterProcess):
    """`python -m supervisor FILE` run inside a network namespace."""

    def __init__(self, space: netns.Namespace, config_path: Path, env: dict[str, str]) -> None:
        self.config_path = config_path
        WatchedProcess.__init__(self, space.argv(sys.executable, "-m", "supervisor", str(config_path)),
                                {**os.environ, **env})


@pytest.fixture
def bridge_redis(bridge: netns.Bridge | None, tmp_path: Path) -> Iterator[str]:
    """A Redis of its own on the bridge's address (the shared one listens on 127.0.0.1 only)."""
    if bridge is None:
        reason = f"no network namespaces here: {netns.available()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    addr, password = f"{bridge.host}:26379", uuid.uuid4().hex
    # With a password: Redis refuses other hosts than the loopback without one (protected mode).
    env = {**os.environ, "YADTQ_SERVICES_DIR": str(tmp_path / "redis"), "YADTQ_REDIS": addr,
           "YADTQ_SERVICES_BIND": bridge.host, "YADTQ_REDIS_PASSWORD": password}
    subprocess.run([str(ROOT / "scripts" / "services.sh"), "redis-up"], env=env, check=True, timeout=60)
    try:
        yield f"redis://:{password}@{addr}/0"
    finally:
        subprocess.run([str(ROOT / "scripts" / "services.sh"), "redis-down"], env=env, timeout=60)


def _watch_cut(nodes: Nodes, pids: set[int], timeout: float) -> tuple[float, dict[int, float]]:
    """From now: (seconds until node b's scheduler is active, when each of ``pids`` was first seen
    dead: gone, or a zombie its blocked parent has not reaped yet), both watched at once."""
    start, deadline = time.monotonic(), time.monotonic() + timeout
    took: float | None = None
    seen: dict[int, float] = {}
    while took is None or len(seen) < len(pids):
        assert time.monotonic() < deadline, f"takeover {took}, processes {sorted(pids - set(seen))} after {timeout}s"
        for pid in pids - set(seen):
            try:
                dead = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                dead = True
            if dead:
                seen[pid] = time.time()
        if took is None and nodes.active() == "b":
            took = time.monotonic() - start
        time.sleep(0.02)
    return took, seen


def _spans(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_node_cut_off_by_a_network_partition_stops_its_runs_before_the_others_take_its_tasks(
        brokers: Brokers, bridge: netns.Bridge, bridge_redis: str, tmp_path: Path) -> None:
    base = cluster_config(tmp_path, NODE_WORKERS, kafka={"bootstrap_servers": brokers.servers},
                          redis={"url": bridge_redis},
                          tasks={"modules": ["worker_pool.builtin_tasks", "tests.tasks"]})
    spans = tmp_path / "spans"
    spaces = {name: bridge.join(name) for name in ("a", "b")}
    nodes = Nodes(tmp_path, base, lambda name, path: NsCluster(spaces[name], path, {"YADTQ_TEST_SPANS": str(spans)}))
    try:
        nodes.start("a")
        wait_until(lambda: nodes.active() == "a", "node a's scheduler is active")
        nodes.start("b").wait_line(r"scheduler standing by", timeout=30)
        a_workers = {nodes.procs["a"].pid(w) for w in nodes.config["a"].worker_ids()}
        # A long run on each worker (12 s: past the takeover and the move), then short ones.
        ids = [h.id for h in nodes.client.submit_many([TaskSpec("span_work", (i, 12.0)) for i in range(4)])]
        ids += [h.id for h in nodes.client.submit_many([TaskSpec("span_work", (i, 0.01)) for i in range(4, 300)])]
        wait_until(lambda: a_workers <= {int(e.split(" ")[2]) for e in _spans(spans)}, "node a's workers run tasks")
        spaces["a"].cut()
        cut = time.monotonic()
        took, gone = _watch_cut(nodes, a_workers, timeout=30)
        print(f"node b's scheduler took over {took:.1f}s after node a was cut off; node a's workers were dead "
              f"{max(gone.values()) - (time.time() - time.monotonic() + cut):.1f}s after it")
        assert took < 10
        a = nodes.procs["a"]
        a.wait_line(r"could not renew its lease", timeout=60)
        nodes.client.wait(ids, timeout=180)
        print(f"all {len(ids)} tasks ended {time.monotonic() - cut:.1f}s after node a was cut off")
        runs = _spans(spans)
        cut_short = [e for e in runs if e.startswith("S ") and int(e.split(" ")[2]) in a_workers
                     and not any(x.startswith(f"E {' '.join(e.split(' ')[1:4])} ") for x in runs)]
        assert cut_short, "no run on node a was cut short: the partition landed between tasks"
        _check_spans(nodes, ids, runs, gone)
        # The link comes back. Node a was declared lost (its epoch bumped): its supervisor finds its
        # lease gone and stops; started again (as systemd would), it rejoins as a new generation.
        spaces["a"].heal()
        a.wait_line(r"node a's lease is no longer this supervisor's", timeout=60)
        assert a.proc.wait(60) != 0
        nodes.start("a").wait_line(r"scheduler standing by", timeout=30)
        more = [h.id for h in nodes.client.submit_many([TaskSpec("node_of_worker") for _ in range(200)])]
        nodes.client.wait(more, timeout=120)
        assert {nodes.client.result(t) for t in more} == {"a", "b"} and nodes.active() == "b"
    finally:
        nodes.stop()
