"""The supervisor's output never raises (supervisor/output.py)."""

from __future__ import annotations

import io

from supervisor.output import Output


class Broken(io.StringIO):
    """A stream whose reader is gone, as stdout piped into `head` once head exits."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_stream_falls_back_to_the_next_and_then_to_nothing() -> None:
    second = io.StringIO()
    say = Output([Broken(), second])
    say("one")
    say("two")
    assert second.getvalue() == "[yadtq] output failed; writing to output from now on\n[yadtq] one\n[yadtq] two\n"

    silent = Output([Broken(), Broken()])
    silent("nobody hears this")  # and nothing is raised
    closed = io.StringIO()
    closed.close()
    Output([closed])("nor this")
