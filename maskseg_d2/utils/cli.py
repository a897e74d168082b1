"""Shared behaviour of the ``tools/`` entry points."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from ..errors import UserError

__all__ = ["exit_on_user_error"]


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """A :class:`UserError` becomes ``error: <one line>`` on stderr and exit code 2, without a traceback."""
    try:
        yield
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(UserError.exit_code)
