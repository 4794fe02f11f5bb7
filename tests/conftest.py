"""Session-wide hooks: the Lua coverage of ``make test`` (tests/support/lua_coverage.py)."""

from __future__ import annotations

import os

import pytest

from tests.support import lua_coverage

# Now, not at pytest_configure: a conftest under tests/ imported before that (pytest's initial
# conftests, e.g. tests/integration's for `pytest tests/integration/...`) imports client, whose
# scripts are read then.
lua_coverage.start()


@pytest.hookimpl(trylast=True)  # after the Python coverage report
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the run's controller reports the counts of all its workers
        return
    lines = lua_coverage.summary()
    if lines:
        terminalreporter.write_sep("-", "Lua coverage of client/lua: statement lines and one-line bodies that ran")
        for line in lines:
            terminalreporter.write_line(line)
