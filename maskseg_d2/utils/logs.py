"""One log file per run: our messages and Detectron2's / fvcore's, in the tool's output folder.

Detectron2's ``default_setup`` gives the ``detectron2`` and ``fvcore`` loggers handlers of their own (terminal +
``log.txt``, ``propagate=False``) while Hydra's job logging writes everything else to its ``<job>.log``: two
files, each half of the story. Here the Detectron2 loggers lose their handlers and propagate to the root logger,
which holds the one terminal handler (Hydra's ``job_logging``) and the one file handler added here, so every
line appears once on the terminal and once in the file.

The file is ``log.txt`` (:data:`LOG_FILE`): the name Detectron2's tools write, where its users look first.

- ``tools/train.py``: :func:`open_run_log` in :func:`maskseg_d2.engine.train.train`, once the run dir is known and
  before Detectron2's ``default_setup`` (each DDP process: ``log.txt`` for rank 0, ``log.txt.rank<N>`` for the
  others, as Detectron2 names them).
- ``tools/eval.py``, ``predict.py``, ``export.py``, ``visualize.py`` decide their output folder deep inside:
  :func:`tool_log` keeps the records in memory and writes them to ``<output>/log.txt`` when the tool finishes.

Progress bars (tqdm) write to the terminal's stderr, not through logging, so they never reach the file.
Secrets are redacted by the log-record factory of :mod:`maskseg_d2.utils.secrets`, before any handler.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from typing import Iterator

from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

__all__ = ["LOG_FILE", "FILE_FORMAT", "ROUTED_LOGGERS", "open_run_log", "route_detectron2_logs", "ToolLog", "tool_log"]

LOG_FILE = "log.txt"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _PlainFormatter(logging.Formatter):
    """Without terminal colours (Detectron2 logs its config highlighted by pygments)."""

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI.sub("", super().format(record))


# Detectron2's own log.txt format, so lines from both sources read alike.
FILE_FORMAT = _PlainFormatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt="%m/%d %H:%M:%S")
ROUTED_LOGGERS = ("detectron2", "fvcore", "maskseg_d2")
_TAG = "_maskseg_run_log"  # marks the handlers added here, so a second run in the process replaces them


def route_detectron2_logs() -> None:
    """Send the ``detectron2``, ``fvcore`` and ``maskseg_d2`` loggers' records to the root logger's handlers.

    Removes the handlers Detectron2's ``setup_logger`` added (their file is the old second log) and lets INFO
    through even when the root logger is at WARNING (a training started from Python, not from a tool).
    """
    for name in ROUTED_LOGGERS:
        lg = logging.getLogger(name)
        for handler in list(lg.handlers):
            lg.removeHandler(handler)
        lg.propagate = True
        lg.setLevel(logging.NOTSET)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)


def _remove_ours(root: logging.Logger) -> None:
    for handler in [h for h in root.handlers if getattr(h, _TAG, False)]:
        root.removeHandler(handler)
        handler.close()


def _add(root: logging.Logger, handler: logging.Handler, formatter: logging.Formatter | None = None) -> None:
    setattr(handler, _TAG, True)
    if formatter is not None:
        handler.setFormatter(formatter)
    root.addHandler(handler)


def open_run_log(output_dir: str) -> str:
    """Log everything of this process to ``<output_dir>/log.txt`` (rank N > 0: ``log.txt.rank<N>``) from now on.

    Call it once, before Detectron2's ``default_setup``: it makes ``default_setup``'s two ``setup_logger`` calls
    first, with the same arguments (``OUTPUT_DIR`` is ``output_dir``), so that ``default_setup``'s own calls hit
    their ``lru_cache``, add no handler, and its lines (the config included) come through the handlers made here.
    A second call (another run in the same process) replaces those handlers. A process without a terminal handler
    (a DDP worker) gets one on rank 0.

    Returns:
        str: the log file.
    """
    rank = comm.get_rank()
    path = os.path.join(output_dir, LOG_FILE if rank == 0 else f"{LOG_FILE}.rank{rank}")
    root = logging.getLogger()
    _remove_ours(root)
    os.makedirs(output_dir, exist_ok=True)
    # default_setup's own calls, made first (see the docstring); route_detectron2_logs() then removes the handlers
    # they made, once: the cached calls never make them again.
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    setup_logger(output_dir, distributed_rank=rank)
    route_detectron2_logs()
    _add(root, logging.FileHandler(path, mode="a", encoding="utf-8"), FILE_FORMAT)
    terminal = [h for h in root.handlers if type(h) is logging.StreamHandler]  # FileHandler is a subclass
    if rank == 0 and not terminal:
        _add(root, logging.StreamHandler(sys.stdout), FILE_FORMAT)
    return path


class ToolLog(logging.Handler):
    """Keeps every record until the output folder is known, then writes them to ``<folder>/log.txt``."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def finish(self, message: str, folder: str | None) -> str | None:
        """Log the tool's closing ``message`` (terminal and file), then write the file into ``folder``.

        Returns:
            str or None: the log file (None when ``folder`` is None: nothing written).
        """
        logging.getLogger("maskseg_d2.tools").info(message)
        if folder is None:
            return None
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, LOG_FILE)
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(FILE_FORMAT.format(r) + "\n" for r in self.records)
        self.records.clear()
        return path


@contextlib.contextmanager
def tool_log() -> Iterator[ToolLog]:
    """Collect the log of one tool call (ours and Detectron2's) for :meth:`ToolLog.finish`."""
    route_detectron2_logs()
    root = logging.getLogger()
    handler = ToolLog()
    _add(root, handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
