"""ddhpose/errors.py: one line for any library's exception."""

from __future__ import annotations

from ddhpose.errors import message_lines, one_line


class _WithMessage(Exception):
    def __init__(self, message: str) -> None:
        super().__init__("ignored")
        self.message = message


def test_one_line_folds_strips_colour_and_prefers_message():
    exc = ValueError("\x1b[33mfirst line\x1b[0m\n\n   second   line \n")
    assert message_lines(exc) == ["first line", "second   line"]
    assert one_line(exc) == "first line second line"
    assert one_line(exc, first=True) == "first line"
    assert one_line(_WithMessage("RESOURCE_DOES_NOT_EXIST: no model\ntrace")) == \
        "RESOURCE_DOES_NOT_EXIST: no model trace"
    assert one_line(KeyError()) == "KeyError"
