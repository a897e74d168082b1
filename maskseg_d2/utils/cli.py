"""Shared behaviour of the ``tools/`` entry points."""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

from ..errors import UserError

__all__ = ["exit_on_user_error", "in_multirun"]


def in_multirun() -> bool:
    """True inside a Hydra multirun job (``-m``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """A :class:`UserError` becomes ``error: <one line>`` on stderr and exit code 2, without a traceback.

    In a multirun the error is logged and re-raised instead, so Hydra marks that job failed and the sweep
    goes on with the next one (exiting would end the whole sweep).
    """
    try:
        yield
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        if in_multirun():
            logging.getLogger("maskseg_d2").error("job failed: %s", e)
            raise
        sys.exit(UserError.exit_code)
