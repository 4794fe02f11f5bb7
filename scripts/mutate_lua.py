"""Mutation testing of YADTQ's Lua scripts (``client/lua/*.lua``), which mutmut cannot mutate.

    python -m scripts.mutate_lua                  # every script, 2 mutants at a time
    python -m scripts.mutate_lua --list           # the mutants, without running anything
    python -m scripts.mutate_lua --only retry.lua:18 --only claim.lua

Each script is read into tokens (comments and strings are never mutated) and
these mutants are made of it, one change each (``OPERATORS``):

- ``compare``: ``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``~=``;
- ``logic``: ``and`` <-> ``or``;
- ``not``: ``not x`` -> ``x``;
- ``constant``: an integer constant n -> n + 1, 0 <-> 1 (``KEYS[n]`` and ``ARGV[n]`` included);
- ``drop``: a statement removed: a ``redis.call`` that writes, a ``tally``, a ``return``,
  an assignment (a statement over several lines goes whole);
- ``condition``: the condition of an ``if`` or ``elseif`` replaced by ``true``, then by ``false``.

Each mutant runs in a copy of the repository (one per job, made once, served by
one pytest process: ``Worker``, ``serve``) whose one script is the mutant, with
the tests that execute that script in-process against the real Redis
(``STORE_TESTS``, ``TESTS``): a failure kills it; a run past the timeout counts
as a timeout (killed, too: the suite noticed); a pass with every test of the
unmutated run passing means it survived. Those tests use Redis db 15 (or
YADTQ_TEST_REDIS), each under its own key prefix, as they always do. A run
with a test skipped (Kafka or Redis away) is an error, never a survivor.

The scripts hold no ``while``, ``repeat`` or numeric ``for``, and the mutator
refuses any that do: a mutant looping for ever inside Redis would block the
shared server for everyone.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LUA = Path("client") / "lua"

# The store's scripts (client/store.py's _SCRIPTS: common.lua first, died.lua in ASSIGN and CLAIM) run in
# these tests; the fastest, and those that kill most, first (-x stops at the first failure).
# test_scripts_are_loaded_again_when_redis_lost_them is left out: it runs SCRIPT FLUSH on the shared
# server, and what it checks is the store's reload in Python, not a script.
STORE_TESTS = ["tests/unit/test_store_answers.py", "tests/integration/test_store.py",
               "tests/integration/test_store_lua.py", "tests/integration/test_scheduler_store.py",
               "tests/integration/test_ops_lua.py",
               # the counters and timings the scripts keep for /metrics (the rest of that file starts clusters)
               "tests/integration/test_insight.py::test_the_scripts_count_per_task_and_a_damaged_counter_starts_again",
               "--deselect",
               "tests/integration/test_store.py::test_scripts_are_loaded_again_when_redis_lost_them"]
# The lease's scripts (client/lease.py) run in test_lease_scripts.py and in test_owner.py's tests on
# the lease_keys fixture; the other tests there start whole clusters.
LEASE_TESTS = ["tests/integration/test_lease_scripts.py", "tests/integration/test_owner.py", "-k",
               "test_lease_scripts or lease_has_one_holder or lease_value_that_is_not or dead_holder "
               "or clean_release or owner_epoch"]
TESTS = {"lease_acquire.lua": LEASE_TESTS, "lease_renew.lua": LEASE_TESTS, "lease_release.lua": LEASE_TESTS}
PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
WRITES = {"HSET", "HSETNX", "HDEL", "ZADD", "ZREM", "SET", "DEL", "EXPIRE", "PEXPIRE", "PUBLISH", "HINCRBY",
          "INCR"}
FLIPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "~=", "~=": "==", "and": "or", "or": "and"}
OPERATORS = ("compare", "logic", "not", "constant", "drop", "condition")
# Operators after which a statement goes on at the next line.
CONTINUED = {"=", ",", "..", "and", "or", "+", "-", "*", "/", "(", "{", "["}

_TOKEN = re.compile(r"""
    (?P<comment>--\[(?P<eq>=*)\[.*?\](?P=eq)\]|--[^\n]*)
  | (?P<string>\[(?P<eq2>=*)\[.*?\](?P=eq2)\]|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
  | (?P<number>0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|[-+*/%^\#<>=(){}\[\];:,.])
  | (?P<space>\s+)
""", re.X | re.S)


@dataclass(frozen=True)
class Token:
    kind: str  # comment, string, number, name, op (spaces are dropped)
    text: str
    start: int
    end: int
    line: int


@dataclass(frozen=True)
class Mutant:
    """One change to one script: ``source[start:end]`` becomes ``new``."""

    file: str      # the script's name, e.g. 'retry.lua'
    line: int
    start: int
    end: int
    new: str
    operator: str


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str    # killed, timeout, survived, error
    seconds: float
    detail: str    # a survivor: 'original -> mutant'; a kill: the first failing test


def tokenize(source: str) -> list[Token]:
    """The tokens of a Lua source, comments and strings included (never mutated); raise on anything else."""
    tokens, pos = [], 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise ValueError(f"cannot read Lua at line {source.count(chr(10), 0, pos) + 1}: {source[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        if kind in ("eq", "eq2"):  # a long comment or string: the named group is the outer one
            kind = "comment" if m.group("comment") else "string"
        if kind != "space":
            tokens.append(Token(kind, m.group(), m.start(), m.end(), source.count("\n", 0, m.start()) + 1))
        pos = m.end()
    return tokens


def code_of(source: str) -> list[Token]:
    """The tokens a mutant may change or reason on: no comments."""
    code = [t for t in tokenize(source) if t.kind != "comment"]
    loops = [t for t in code if t.kind == "name" and t.text in ("while", "repeat")]
    loops += [t for i, t in enumerate(code) if t.text == "for" and code[i + 2].text == "="]
    if loops:
        raise ValueError(f"a loop at line {loops[0].line}: a mutant of it could block the shared Redis")
    return code


def flips(file: str, code: list[Token]) -> Iterator[Mutant]:
    """compare and logic: each comparison and each and/or, flipped."""
    for t in code:
        if t.kind == "op" and t.text in FLIPS:
            yield Mutant(file, t.line, t.start, t.end, FLIPS[t.text], "compare")
        elif t.kind == "name" and t.text in ("and", "or"):
            yield Mutant(file, t.line, t.start, t.end, FLIPS[t.text], "logic")


def negations(file: str, code: list[Token]) -> Iterator[Mutant]:
    """not: ``not x`` -> ``x``."""
    for t, after in itertools.pairwise(code):
        if t.kind == "name" and t.text == "not":
            yield Mutant(file, t.line, t.start, after.start, "", "not")


def constants(file: str, code: list[Token]) -> Iterator[Mutant]:
    """constant: each integer n -> n + 1, and 0 <-> 1."""
    for t in code:
        if t.kind == "number" and t.text.isdigit():
            n = int(t.text)
            yield Mutant(file, t.line, t.start, t.end, {0: "1", 1: "0"}.get(n, str(n + 1)), "constant")


def statement_end(code: list[Token], i: int) -> int:
    """The index of the last token of the statement that starts at ``code[i]``."""
    depth, j = 0, i
    while j + 1 < len(code):
        t = code[j]
        depth += (t.text in "({[") - (t.text in ")}]") if t.kind == "op" else 0
        nxt = code[j + 1]
        if nxt.line > t.line and depth == 0 and t.text not in CONTINUED:
            break
        j += 1
    return j


def droppable(code: list[Token], i: int, last: int) -> bool:
    """Is the statement ``code[i..last]`` a redis.call write, a tally, a return or an assignment?"""
    t = code[i]
    if t.text in ("return", "local"):
        return code[i + 1].text != "function"
    if t.text == "tally":
        return True
    if [x.text for x in code[i:i + 4]] == ["redis", ".", "call", "("]:
        return code[i + 4].text.strip("'\"") in WRITES
    keywords = {"if", "elseif", "else", "end", "for", "function", "then"}
    return t.kind == "name" and t.text not in keywords and any(x.text == "=" for x in code[i:last + 1])


def drops(file: str, code: list[Token]) -> Iterator[Mutant]:
    """drop: each statement that starts a line and is one of ``droppable``'s, removed."""
    for i, t in enumerate(code):
        if i > 0 and code[i - 1].line == t.line:
            continue  # not the first token of its line
        last = statement_end(code, i)
        if droppable(code, i, last):
            yield Mutant(file, t.line, t.start, code[last].end, "", "drop")


def conditions(file: str, code: list[Token]) -> Iterator[Mutant]:
    """condition: the condition of each if and elseif, as true then as false."""
    for i, t in enumerate(code):
        if t.kind != "name" or t.text not in ("if", "elseif"):
            continue
        j = i + 1
        while code[j].text != "then":
            j += 1
        first, last = code[i + 1], code[j - 1]
        for value in ("true", "false"):
            yield Mutant(file, first.line, first.start, last.end, value, "condition")


def mutants_of(path: Path) -> list[Mutant]:
    """Every mutant of one script, in the order of the source."""
    code = code_of(path.read_text(encoding="utf-8"))
    found: list[Mutant] = []
    for make in (flips, negations, constants, drops, conditions):
        found += make(path.name, code)
    return sorted(found, key=lambda m: (m.start, m.operator, m.new))


def apply(source: str, m: Mutant) -> str:
    return source[:m.start] + m.new + source[m.end:]


def describe(source: str, m: Mutant) -> str:
    """'original -> mutant' of the lines the mutant changes."""
    first = source.rfind("\n", 0, m.start) + 1
    end = source.find("\n", m.end)
    end = len(source) if end < 0 else end
    before = " ".join(source[first:end].split())
    after = " ".join(apply(source, m)[first:end - (m.end - m.start) + len(m.new)].split())
    return f"{before}  ->  {after or '(nothing)'}"


class Tally:
    """A pytest plugin: how many tests passed and skipped, and the first that failed."""

    def __init__(self) -> None:
        self.passed = self.skipped = 0
        self.failed = ""

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.skipped:
            self.skipped += 1
        elif report.failed and not self.failed:
            self.failed = report.nodeid
        elif report.passed and report.when == "call":
            self.passed += 1

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed and not self.failed:
            self.failed = f"collecting {report.nodeid}"


def serve() -> None:
    """A worker (``--serve``, started in a copy of the repository): for each line read, JSON
    ``{"file", "text", "args"}``, run the tests ``args`` with ``file`` holding ``text`` (null: as it
    is), and answer one JSON line: ``{"rc", "passed", "skipped", "failed"}``.

    One pytest process serves many mutants (pytest.main again and again), as starting one costs
    more than the tests on a loaded machine. The store builds its scripts' texts at import
    (client/store.py's _SCRIPTS): they are rebuilt from the mutated file here, then put back.
    The lease reads its scripts' files each time (client/lease.py).
    """
    import hashlib

    import pytest

    from client import store
    answers = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # pytest's output is not wanted: only the answers go out
    os.dup2(null, 2)
    scripts = {name: (s.text, s.sha) for name, s in store._SCRIPTS.items()}
    for line in sys.stdin:
        job = json.loads(line)
        path = Path.cwd() / LUA / job["file"]
        original = path.read_text(encoding="utf-8")
        if job["text"] is not None:
            path.write_text(job["text"], encoding="utf-8")
            for s in store._SCRIPTS.values():
                s.text = s.text.replace(original, job["text"])
                s.sha = hashlib.sha1(s.text.encode()).hexdigest()
        tally = Tally()
        try:
            rc = int(pytest.main([*PYTEST, *job["args"]], plugins=[tally]))
        finally:
            path.write_text(original, encoding="utf-8")
            for name, (text, sha) in scripts.items():
                store._SCRIPTS[name].text, store._SCRIPTS[name].sha = text, sha
        answers.write(json.dumps({"rc": rc, "passed": tally.passed, "skipped": tally.skipped,
                                  "failed": tally.failed}) + "\n")
        answers.flush()


class Worker:
    """A copy of the repository, and the ``serve`` process that runs mutants in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=str(self.root), PYTHONDONTWRITEBYTECODE="1")
        return subprocess.Popen([sys.executable, "-m", "scripts.mutate_lua", "--serve"], cwd=self.root, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)

    def ask(self, file: str, text: str | None, timeout: float) -> dict[str, Any] | None:
        """Run the tests of ``file`` holding ``text``; their tally, or None past ``timeout`` (the
        worker is then killed, with anything it started, and replaced)."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"file": file, "text": text, "args": tests_for(file, self.root)}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            answer: dict[str, Any] = json.loads(line)
            return answer
        self.stop()
        shutil.copy(ROOT / LUA / file, self.root / LUA / file)  # it had no time to put it back
        self.proc = self._start()
        return None

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the whole group: pytest and anything it started
        self.proc.wait()


class Runner:
    """Runs mutants, ``jobs`` at a time, each in a worker's copy of the repository."""

    def __init__(self, workdir: Path, jobs: int, timeout: float | None) -> None:
        self.workers: queue.Queue[Worker] = queue.Queue()
        self.all: list[Worker] = []
        for n in range(jobs):
            copy = workdir / f"repo{n}"
            shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
                ".git", ".venv*", ".services", "__pycache__", ".*_cache", "*.egg-info", "docs"))
            self.all.append(Worker(copy))
            self.workers.put(self.all[-1])
        self.timeout = timeout
        self.baseline: dict[str, tuple[int, float]] = {}  # script -> (tests passed, seconds) unmutated

    def measure(self, files: list[str], when: str = "before the mutants") -> None:
        """Run each script's tests unmutated in every worker: how many pass, and how long they take.
        Run again after the mutants, it shows that no mutant left a worker broken (its kills false)."""
        groups = {tuple(tests_for(f)): f for f in files}  # one script per group of tests
        for w in self.all:
            for f in groups.values():
                started = time.monotonic()
                answer = w.ask(f, None, 900.0)
                if not answer or answer["rc"] != 0 or answer["skipped"] or not answer["passed"]:
                    raise SystemExit(f"the tests of {f} fail or skip without a mutant ({when}): {answer}")
                for other in files:
                    if tests_for(other) == tests_for(f):
                        self.baseline[other] = (answer["passed"], time.monotonic() - started)

    def run(self, m: Mutant) -> Outcome:
        """Run one mutant's tests in a free worker."""
        w = self.workers.get()
        original = (ROOT / LUA / m.file).read_text(encoding="utf-8")
        passed, seconds = self.baseline[m.file]
        started = time.monotonic()
        try:
            answer = w.ask(m.file, apply(original, m), self.timeout or max(60.0, 10 * seconds))
        finally:
            self.workers.put(w)
        status, detail = classify(answer, passed, describe(original, m))
        return Outcome(m, status, time.monotonic() - started, detail)

    def close(self) -> None:
        for w in self.all:
            w.stop()


def classify(answer: dict[str, Any] | None, passed: int, change: str) -> tuple[str, str]:
    """(status, detail) of one mutant's test run."""
    if answer is None:
        return "timeout", change
    if answer["rc"] == 1:
        return "killed", answer["failed"] or "failed"
    if answer["rc"] == 0 and answer["passed"] == passed and not answer["skipped"]:
        return "survived", change
    return "error", f"pytest exit {answer['rc']}, {answer['passed']} passed, {answer['skipped']} skipped"


def tests_for(file: str, root: Path = ROOT) -> list[str]:
    """The pytest arguments that run the tests of one script in ``root`` (a test file it lacks left out;
    a test named 'file::test' counts as its file)."""
    args = TESTS.get(file, STORE_TESTS)
    return [x for i, x in enumerate(args)
            if x.startswith("-") or args[i - 1] in ("-k", "--deselect") or (root / x.split("::")[0]).exists()]


def chosen_by(all_mutants: list[Mutant], only: list[str]) -> list[Mutant]:
    """The mutants named by ``--only`` ('file', 'file:line'), or all."""
    if not only:
        return all_mutants
    return [m for m in all_mutants if any(f"{m.file}:{m.line}" == o or m.file == o for o in only)]


def report(outcomes: list[Outcome], wall: float) -> str:
    """The survivors and timeouts (file:line, original -> mutant), then the score line."""
    lines = []
    for o in sorted(outcomes, key=lambda o: (o.mutant.file, o.mutant.start)):
        if o.status in ("survived", "timeout", "error"):
            lines.append(f"{o.status.upper():9} {o.mutant.file}:{o.mutant.line} [{o.mutant.operator}] {o.detail}")
    n = Counter(o.status for o in outcomes)
    scored = len(outcomes) - n["error"]
    score = 100.0 * (n["killed"] + n["timeout"]) / scored if scored else 0.0
    lines.append(f"Lua mutants: {len(outcomes)}, killed {n['killed']}, timeout {n['timeout']}, survived "
                 f"{n['survived']}, error {n['error']}: score {score:.1f}% (killed + timeout of "
                 f"{scored}), wall {wall:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.mutate_lua", description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", default=[], help="a script or script:line (repeatable)")
    p.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="mutants run at a time (at most 2)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per mutant (default 5x the unmutated run)")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--json", type=Path, help="write every outcome to this file")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # a worker (Worker)
    a = p.parse_args(argv)
    if a.serve:
        serve()
        return 0
    sources = sorted((ROOT / LUA).glob("*.lua"))
    chosen = chosen_by([m for path in sources for m in mutants_of(path)], a.only)
    if a.list:
        texts = {path.name: path.read_text(encoding="utf-8") for path in sources}
        for m in chosen:
            print(f"{m.file}:{m.line} [{m.operator}] {describe(texts[m.file], m)}")
        print(f"{len(chosen)} mutants")
        return 0
    return run_all(chosen, a.jobs, a.timeout, a.json)


def run_all(chosen: list[Mutant], jobs: int, timeout: float | None, json_path: Path | None) -> int:
    """Run the mutants and print the report; exit code 0 if none survived."""
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="yadtq-mutate-lua-") as tmp:
        runner = Runner(Path(tmp), jobs, timeout)
        try:
            runner.measure(sorted({m.file for m in chosen}))
            print(f"{len(chosen)} mutants, {jobs} at a time; unmutated runs: "
                  + ", ".join(f"{f} {p} passed in {s:.1f} s" for f, (p, s) in sorted(runner.baseline.items())),
                  flush=True)
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for i, o in enumerate(pool.map(runner.run, chosen), 1):
                    outcomes.append(o)
                    print(f"[{i}/{len(chosen)}] {o.status:8} {o.mutant.file}:{o.mutant.line} [{o.mutant.operator}] "
                          f"{o.seconds:.1f} s {o.detail}", flush=True)
            runner.measure(sorted({m.file for m in chosen}), "after the mutants")
        finally:
            runner.close()
    wall = time.monotonic() - started
    if json_path:
        json_path.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    print(report(outcomes, wall))
    return 0 if all(o.status in ("killed", "timeout") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
