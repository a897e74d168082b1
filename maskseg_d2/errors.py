"""One error type for everything a user can fix: bad data, missing files, wrong config values.

Entry points catch :class:`UserError`, print its one-line message to stderr and exit with code 2 (no
traceback). The message names the file and the item (task id, shape index, image) and says what to do.
"""
from __future__ import annotations

__all__ = ["UserError", "fail"]


class UserError(Exception):
    """A problem in the user's input, reported as one line; tools exit with code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


def fail(where: str, what: str, fix: str = "") -> UserError:
    """Build a UserError: ``<where>: <what>[ — <fix>]`` (raise the result)."""
    return UserError(f"{where}: {what}" + (f" — {fix}" if fix else ""))
