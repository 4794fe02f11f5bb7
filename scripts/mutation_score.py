"""The score of the last `make mutate-py` run, read from mutmut's results in mutants/.

mutmut 3 keeps, next to each mutated file's copy, a ``mutants/<path>.meta`` JSON file whose
``exit_code_by_key`` maps each mutant's name to the exit code of the tests run against it. This
prints one score line (killed / total) and the survivors by file, so that the number and the
list to work on come out of `make mutate-py` without opening mutmut's browser.

    python scripts/mutation_score.py [PATH ...]          # the score, of PATHs only if given
    python scripts/mutation_score.py --names [PATH ...]  # mutmut's name patterns for PATHs

PATH is a file or folder under client/, worker_pool/ or supervisor/ (``client/store.py``,
``supervisor/``).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

MUTANTS = Path("mutants")
# mutmut's exit codes (mutmut/stats.py, status_by_exit_code); any other code is "suspicious".
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          35: "suspicious", 36: "timeout", 37: "killed", -24: "timeout", 24: "timeout", 152: "timeout",
          255: "timeout", -11: "segfault", -9: "segfault", None: "not checked"}


def name_pattern(path: str) -> str:
    """mutmut's name pattern for the mutants of a file or folder: ``client/store.py`` -> ``client.store.*``."""
    stem = path.strip("/").removesuffix(".py").removesuffix("/__init__")
    return stem.replace("/", ".") + ".*"


def read_results(paths: list[str]) -> dict[str, Counter[str]]:
    """Per source file (under any of PATHS, or all): how many mutants ended in each status."""
    by_file: dict[str, Counter[str]] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        source = meta.relative_to(MUTANTS).as_posix().removesuffix(".meta")
        if paths and not any(source == p or source.startswith(p.rstrip("/") + "/") for p in paths):
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        by_file[source] = Counter(STATUS.get(code, "suspicious") for code in codes.values())
    return by_file


def survivors(paths: list[str]) -> dict[str, list[str]]:
    """The names of the surviving mutants (tests ran, all passed), per source file."""
    found: dict[str, list[str]] = {}
    for meta in sorted(MUTANTS.rglob("*.py.meta")):
        source = meta.relative_to(MUTANTS).as_posix().removesuffix(".meta")
        if paths and not any(source == p or source.startswith(p.rstrip("/") + "/") for p in paths):
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        names = sorted(name for name, code in codes.items() if code == 0)
        if names:
            found[source] = names
    return found


def report(paths: list[str]) -> int:
    """Print the score and the survivors by file; 1 when there are no results to read."""
    by_file = read_results(paths)
    if not by_file:
        print(f"no mutmut results under {MUTANTS}/ (run make mutate-py first)", file=sys.stderr)
        return 1
    total = sum((c for c in by_file.values()), Counter[str]())
    # Mutants not run (narrowed away by MUTATE_PATHS) do not count.
    checked = sum(total.values()) - total["not checked"]
    killed = total["killed"] + total["timeout"] + total["segfault"]
    score = 100.0 * killed / checked if checked else 0.0
    print(f"mutation score: {killed} killed / {checked} mutants = {score:.1f}% "
          f"(survived {total['survived']}, no tests {total['no tests']}, timeout {total['timeout']}, "
          f"suspicious {total['suspicious']}, skipped {total['skipped']})")
    print("survivors by file (survived + no tests / mutants):")
    for source, counts in sorted(by_file.items()):
        left = counts["survived"] + counts["no tests"]
        if left:
            print(f"  {source}: {left} / {sum(counts.values()) - counts['not checked']}"
                  f" (survived {counts['survived']}, no tests {counts['no tests']})")
    print("list them: mutmut results; see one: mutmut show <name> (from the worktree root)")
    return 0


def main(argv: list[str]) -> int:
    """``--names PATH...`` prints mutmut's name patterns; otherwise the score of PATHs (or all)."""
    if argv[:1] == ["--names"]:
        print(" ".join(name_pattern(p) for p in argv[1:]))
        return 0
    return report(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
