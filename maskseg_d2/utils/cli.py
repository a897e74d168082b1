"""Shared behaviour of the ``tools/`` entry points."""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from ..errors import UserError
from .preflight import write_error
from .secrets import protect_run, redact

__all__ = ["exit_on_user_error", "in_multirun"]


def in_multirun() -> bool:
    """True inside a Hydra multirun job (``-m``)."""
    try:
        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _fail(error: UserError) -> None:
    print(f"error: {redact(str(error))}", file=sys.stderr, flush=True)
    if in_multirun():
        logging.getLogger("maskseg_d2").error("job failed: %s", error)
        raise error
    sys.exit(UserError.exit_code)


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """A :class:`UserError` becomes ``error: <one line>`` on stderr and exit code 2, without a traceback.

    A write that fails for lack of space or rights (disk full, quota, ``ulimit -f``, read-only disk) is
    reported the same way, naming the file (:func:`maskseg_d2.utils.preflight.write_error`). Secret values
    from the environment are redacted from the message and from every log line from here on
    (:mod:`maskseg_d2.utils.secrets`).

    In a multirun the error is logged and re-raised instead, so Hydra marks that job failed and the sweep
    goes on with the next one (exiting would end the whole sweep).
    """
    protect_run()
    try:
        yield
    except UserError as e:
        _fail(e)
    except (OSError, RuntimeError) as e:
        error = write_error(e)  # train() converts errors under its run dir itself (disk_errors)
        if error is None:
            raise
        _fail(error)
