"""The Lua mutator of `make mutate-lua` (scripts/mutate_lua.py): what it changes, and what it never does."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import mutate_lua
from scripts.mutate_lua import LUA, ROOT, apply, code_of, mutants_of, tokenize

SOURCE = """-- a comment with if x < 1 then return 0 end
local n = tonumber(ARGV[1]) or 0
if n >= 2 and not redis.call('EXISTS', KEYS[1]) then
  redis.call('HSET', KEYS[1], 'f', '<= 3 and 4')
  return {'big', n}
end
redis.call('HGET', KEYS[1],
  'f')
return {'small'}
"""


def mutated(tmp_path: Path) -> list[str]:
    path = tmp_path / "x.lua"
    path.write_text(SOURCE)
    return [apply(SOURCE, m) for m in mutants_of(path)]


def test_comments_and_strings_are_never_mutated(tmp_path: Path) -> None:
    texts = mutated(tmp_path)
    assert len(texts) >= 15
    for text in texts:
        assert text.startswith("-- a comment with if x < 1 then return 0 end\n")
        for changed in ("'< 3", "'<= 4", "3 or 4'", "'bi", "'HSE", "'EXIST"):
            assert changed not in text.replace("'HSET'", "").replace("'EXISTS'", "").replace("'big'", "")


def test_each_operator_makes_its_mutants(tmp_path: Path) -> None:
    found = mutated(tmp_path)
    for change in ("if n > 2 and", "if n >= 3 and", "if n >= 2 or not", "if n >= 2 and redis.call('EXISTS'",
                   "if true then", "if false then", "ARGV[0]", "KEYS[0]", "or 1\n"):
        assert any(change in text for text in found), change
    dropped = [SOURCE.replace(line, "") for line in ("local n = tonumber(ARGV[1]) or 0",
                                                     "redis.call('HSET', KEYS[1], 'f', '<= 3 and 4')",
                                                     "return {'big', n}", "return {'small'}")]
    assert all(d in found for d in dropped)
    # A read is not dropped (it changes nothing), nor is a statement cut in half.
    assert not any("redis.call('HGET'" not in text for text in found)


def test_a_loop_is_refused_as_a_mutant_could_block_the_shared_redis() -> None:
    for loop in ("while true do end", "repeat until false", "for i = 1, 3 do end"):
        with pytest.raises(ValueError, match="loop"):
            code_of(loop)
    assert code_of("for i, k in ipairs(KEYS) do end")


def test_every_script_of_yadtq_is_read_whole() -> None:
    for path in sorted((ROOT / LUA).glob("*.lua")):
        source = path.read_text(encoding="utf-8")
        assert "".join(t.text for t in tokenize(source)).replace(" ", "") == "".join(source.split())
        assert mutants_of(path), path.name


def test_a_test_named_by_its_node_id_is_run_when_its_file_exists(tmp_path: Path) -> None:
    node = "tests/integration/test_insight.py::test_the_scripts_count_per_task_and_a_damaged_counter_starts_again"
    assert node in mutate_lua.tests_for("finish.lua")  # not imported by name: pytest would take it for a test
    assert node not in mutate_lua.tests_for("finish.lua", tmp_path)  # a copy without that file
