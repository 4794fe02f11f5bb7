"""Which lines of the Lua scripts ran: coverage of ``client/lua/*.lua`` under the tests.

Redis runs the scripts, so no Python tool sees inside them. When the
environment variable ``YADTQ_LUA_COVERAGE`` names a Redis key (the test
session sets it, and every process the tests start inherits it),
``client.store.lua_text`` passes each script through ``instrument``: before
every statement that starts a line it puts a probe,
``redis.call('HINCRBY', <key>, '<file>:<line>', 1);``, and after a ``then``,
``else`` or ``do`` followed by code on the same line (the one-line branches
``if stale(...) then return {...} end``) a probe ``'<file>:<line>:then'``.
The probes go on the lines they count, so an error's line number is unchanged.
``report`` reads the counts back. With the variable unset nothing here runs:
production scripts are the files as written.

A statement starts a line when the lines before it closed every bracket and
did not end in an operator, a comma or ``=``, and the line does not begin
with ``end``, ``else``, ``elseif``, ``until`` or a closing bracket: a probe
is never put inside a multi-line expression. Long brackets (``[[ ]]``,
``--[[``) are refused rather than misread: the scripts use none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENV = "YADTQ_LUA_COVERAGE"
_KEY = re.compile(r"[\w:.-]{1,100}")
# A line (masked: no strings, no comment) whose expression goes on to the next line.
_CONTINUES = re.compile(r"(\b(and|or|not|function|local|return|in)|[-+*/%^,=<>~({\[#]|\.\.)$")
# A line that goes on a statement begun above, or closes a block: no probe before it.
_NOT_START = re.compile(r"^(\b(end|else|elseif|until|and|or|then|do)\b|[)}\]]|\.\.)")
# A block opened on a line and given a body on the same line.
_BRANCH = re.compile(r"\b(then|else|do)\b(?=\s*\S)(?!\s*end\b)")


def _mask(line: str) -> str:
    """``line`` with the inside of its strings as ``x`` and its comment as spaces (same length)."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":  # an escape: two characters, neither ends the string
                out.append("x" * len(line[i:i + 2]))
                i += 2
                continue
            out.append(c if c == quote else "x")
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
            out.append(c)
        elif line.startswith("--", i):
            out.append(" " * (len(line) - i))
            break
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _depth(code: str) -> int:
    """How many brackets ``code`` (masked) opens, less those it closes."""
    return sum(code.count(c) for c in "({[") - sum(code.count(c) for c in ")}]")


def _probe(key: str, label: str) -> str:
    return f"redis.call('HINCRBY', '{key}', '{label}', 1); "


def _instrument_line(line: str, code: str, where: str, key: str, start: bool) -> tuple[str, list[str]]:
    """``line`` with its probes (branch bodies, then the statement start) and their labels."""
    labels: list[str] = []
    for m in reversed(list(_BRANCH.finditer(code))):  # right to left: earlier positions stay valid
        label = f"{where}:{m.group(1)}"
        n = sum(1 for x in labels if x.startswith(label))
        label += str(n + 1) if n else ""
        labels.insert(0, label)
        at = m.end()
        line = f"{line[:at]} {_probe(key, label)}{line[at:].lstrip()}"
    if start:
        indent = len(line) - len(line.lstrip())
        line = line[:indent] + _probe(key, where) + line[indent:]
        labels.insert(0, where)
    return line, labels


def instrument(name: str, text: str, key: str) -> tuple[str, list[str]]:
    """The script ``text`` (file ``name``) with a probe counting in the hash ``key`` before each
    statement that starts a line and in each one-line branch body; and the probes' labels
    (``name:line``, ``name:line:then``), which are the lines and branches that could run."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"{ENV} must name a Redis key of letters, digits, ':', '.', '-': got {key!r}")
    out: list[str] = []
    labels: list[str] = []
    depth, goes_on = 0, False
    for no, line in enumerate(text.split("\n"), 1):
        code = _mask(line).rstrip()
        if "[[" in code or "[=" in code or "--[" in line.lstrip()[:3]:
            raise ValueError(f"{name}:{no}: long brackets are not supported by the Lua instrumenter")
        stripped = code.strip()
        if not stripped:
            out.append(line)
            continue
        start = depth == 0 and not goes_on and not _NOT_START.match(stripped)
        new, found = _instrument_line(line, code, f"{name}:{no}", key, start)
        out.append(new)
        labels += found
        depth += _depth(code)
        goes_on = bool(_CONTINUES.search(stripped))
    return "\n".join(out), labels


@dataclass(frozen=True)
class FileReport:
    """One script's coverage: its lines and one-line branches, and those that never ran."""

    name: str
    lines: int
    lines_run: int
    branches: int
    branches_run: int
    never: list[str]  # labels without the file name: '23', '47:then'

    @property
    def percent(self) -> float:
        return 100.0 * (self.lines_run + self.branches_run) / max(1, self.lines + self.branches)


def report(texts: dict[str, str], counts: dict[str, int]) -> list[FileReport]:
    """Each script's coverage (``texts``: name -> its text as written) from the probe ``counts``."""
    out = []
    for name, text in sorted(texts.items()):
        labels = instrument(name, text, "k")[1]
        lines = [x for x in labels if x.count(":") == 1]
        branches = [x for x in labels if x.count(":") == 2]
        never = [x.split(":", 1)[1] for x in labels if not counts.get(x)]
        out.append(FileReport(name, len(lines), sum(1 for x in lines if counts.get(x)),
                              len(branches), sum(1 for x in branches if counts.get(x)), never))
    return out
