"""The Lua instrumenter of make test's coverage (client/luacov.py): probes only where a statement
starts, never inside an expression or a string, the lines kept where they were."""

from __future__ import annotations

import re

import pytest

from client import luacov
from client.store import lua_text
from tests.support.lua_coverage import texts

KEY = "t0123456789:lua-coverage"


def probes(text: str) -> list[str]:
    return luacov.instrument("f.lua", text, KEY)[1]


def test_a_probe_before_each_statement_and_in_each_one_line_body() -> None:
    text = "local a = 1\nif a then return 2 end\nif a then\n  a = 3\nelse a = 4 end\nreturn a"
    out, labels = luacov.instrument("f.lua", text, KEY)
    assert labels == ["f.lua:1", "f.lua:2", "f.lua:2:then", "f.lua:3", "f.lua:4", "f.lua:5:else", "f.lua:6"]
    assert out.count("\n") == text.count("\n")  # a script's error names the line it names without probes
    assert out.splitlines()[1] == (f"redis.call('HINCRBY', '{KEY}', 'f.lua:2', 1); if a then "
                                   f"redis.call('HINCRBY', '{KEY}', 'f.lua:2:then', 1); return 2 end")


def test_no_probe_inside_a_multi_line_expression() -> None:
    text = ("local x = f(1,\n  2)\nlocal y =\n  3\nlocal z = 'a' ..\n  'b'\n"
            "if x and (y\n    or z) then\n  return 1\nend\nlocal t = {\n  a = 1;\n  b = f(2)\n}")
    assert probes(text) == ["f.lua:1", "f.lua:3", "f.lua:5", "f.lua:7", "f.lua:9", "f.lua:11"]


def test_strings_and_comments_are_not_code() -> None:
    text = "local s = 'then (' -- then x = ( \nlocal t = \"do \\\" (\"\nreturn s"
    assert probes(text) == ["f.lua:1", "f.lua:2", "f.lua:3"]


def test_an_empty_one_line_body_gets_no_probe() -> None:
    assert probes("if a then end\nfor i = 1, 2 do end") == ["f.lua:1", "f.lua:2"]


@pytest.mark.parametrize("text", ["local s = [[x]]", "--[[ a\n]]", "local s = [==[x]==]"])
def test_long_brackets_are_refused_not_misread(text: str) -> None:
    with pytest.raises(ValueError, match="long brackets"):
        probes(text)


def test_the_key_must_be_a_plain_name() -> None:
    with pytest.raises(ValueError, match="YADTQ_LUA_COVERAGE"):
        luacov.instrument("f.lua", "return 1", "a'); redis.call('FLUSHALL")


def test_off_the_scripts_are_the_files_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(luacov.ENV, raising=False)
    assert lua_text("claim") == texts()["claim.lua"]
    monkeypatch.setenv(luacov.ENV, KEY)
    assert lua_text("claim") == luacov.instrument("claim.lua", texts()["claim.lua"], KEY)[0]


def test_every_script_gets_a_probe_per_statement_line() -> None:
    # The scripts' own statements start lines: each line that starts with a statement keyword or a
    # call at the block's indentation has its probe (a check of the instrumenter on the real files).
    starts = re.compile(r"^\s*(local|return|redis\.call|if|for)\b")
    for name, text in texts().items():
        labels = set(probes(text.replace("\r", "")))
        lines = text.split("\n")
        wanted = {f"f.lua:{no}" for no, line in enumerate(lines, 1)
                  if starts.match(line) and not lines[no - 2].rstrip().endswith(("=", ",", "(", "..", "and", "or"))}
        assert wanted <= labels, f"{name}: no probe on {sorted(wanted - labels)}"


def test_a_report_names_what_never_ran() -> None:
    text = "local a = 1\nif a then return 2 end\nreturn 3"
    (f,) = luacov.report({"f.lua": text}, {"f.lua:1": 4, "f.lua:2": 4, "f.lua:2:then": 4})
    assert (f.lines, f.lines_run, f.branches, f.branches_run, f.never) == (3, 2, 1, 1, ["3"])
