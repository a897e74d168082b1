"""Checks before training (output dir writable, enough free disk) and one-line errors for failed writes.

- :class:`RunGuard` (a Hydra callback, ``configs/hydra/default.yaml``) checks the run/sweep dir *before*
  Hydra creates it: a path under a file or on a read-only disk is one line and exit code 2, no traceback.
- :func:`check_disk_space` runs in :func:`maskseg_d2.engine.train` before the model is built: the free space
  must hold 2 checkpoints (an atomic save writes the new file next to the old one) + 0.5 GB, estimated from
  the model's size; ``min_free_gb=<GB>`` replaces the estimate, ``min_free_gb=0`` turns the check off.
- :func:`write_error` turns a write that fails mid-run (disk full, quota, file size limit, read-only)
  into a :class:`UserError` naming the file.
"""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shutil
import sys
import tempfile
from typing import Any, Iterator

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from ..errors import UserError

try:
    import resource
except ImportError:  # Windows: no ulimit
    resource = None

__all__ = ["check_output_dir", "checkpoint_bytes", "check_disk_space", "write_error", "disk_errors",
           "RunGuard", "MARGIN_GB"]

logger = logging.getLogger(__name__)

GB = 1024 ** 3
MARGIN_GB = 0.5  # logs, metrics, TensorBoard events, evaluation files, W&B images
# Only writes fail with these; EACCES/EPERM may come from reading an input: converted under the run dir only.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM}
_PATH_NAMES = ("path", "save_file", "filename", "file_name", "fname")  # locals naming an open file's target


def _existing_ancestor(path: str) -> str:
    base = path
    while not os.path.lexists(base):
        parent = os.path.dirname(base)
        if parent == base:
            break
        base = parent
    return base


def check_output_dir(path: str, key: str = "hydra.run.dir") -> None:
    """Raise a one-line :class:`UserError` unless ``path`` exists as a writable folder or can be created.

    Creates nothing: a throw-away folder is made and removed in ``path`` or its nearest existing parent.

    Args:
        path (str): the run dir (Hydra's ``hydra.run.dir``, Detectron2's OUTPUT_DIR) or a sweep dir.
        key (str): the override that sets it, named in the fix.
    """
    path = os.path.abspath(path)
    base = _existing_ancestor(path)
    if not os.path.isdir(base):
        raise UserError(f"{path}: cannot create the output dir, {base} is a file — choose another folder: "
                        f"{key}=<dir> (or paths.log_dir=<dir> for every run)")
    try:  # os.access() says yes to root everywhere except read-only mounts; only a real write tells
        os.rmdir(tempfile.mkdtemp(prefix=".maskseg-write-test-", dir=base))
    except OSError as e:
        raise UserError(f"{path}: cannot create or write the output dir (in {base}: {e.strerror}) — choose "
                        f"another folder: {key}=<dir> (or paths.log_dir=<dir> for every run)") from None


def checkpoint_bytes(d2cfg: Any) -> int | None:
    """Size of one training checkpoint: fp32 weights and buffers + SGD momentum of the trainable weights.

    The model is built on PyTorch's ``meta`` device (no memory, ~50 ms). None if it cannot be built that way.
    """
    # heavy (~1.3 s): every tool imports this module through utils.cli before it parses the command line
    import torch
    from detectron2.modeling import build_model

    cfg = d2cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "meta", ""
    try:
        with torch.device("meta"):
            model = build_model(cfg)
    except Exception as e:  # an exotic architecture: fall back to the margin alone
        logger.warning("Could not estimate the checkpoint size (%s); checking for %.1f GB free only",
                       e, MARGIN_GB)
        return None
    tensors = list(model.parameters()) + list(model.buffers())
    weights = sum(t.numel() * t.element_size() for t in tensors)
    momentum = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    return weights + momentum


def _fsize_limit() -> int | None:
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def check_disk_space(output_dir: str, d2cfg: Any, min_free_gb: float | None = None,
                     max_to_keep: int | None = None) -> dict[str, float]:
    """Raise a one-line :class:`UserError` when the run dir's disk cannot hold the run's checkpoints.

    Args:
        output_dir (str): the run dir (may not exist yet).
        d2cfg (CfgNode): the run's Detectron2 config (model, ``SOLVER.MAX_ITER``/``CHECKPOINT_PERIOD``).
        min_free_gb (float or None): None: 2 checkpoints + 0.5 GB; a number: that many GB; 0: no check.
        max_to_keep (int or None): periodic checkpoints kept (None: all, Detectron2's default).

    Returns:
        dict: ``{"free_gb", "needed_gb", "checkpoint_gb"}`` (also when the check is off).
    """
    free = shutil.disk_usage(_existing_ancestor(os.path.abspath(output_dir))).free / GB
    ckpt = checkpoint_bytes(d2cfg) if min_free_gb is None or float(min_free_gb) > 0 else None
    ckpt_gb = (ckpt or 0) / GB
    need = 2 * ckpt_gb + MARGIN_GB if min_free_gb is None else float(min_free_gb)
    info = {"free_gb": free, "needed_gb": need, "checkpoint_gb": ckpt_gb}
    if need <= 0:
        return info
    if free < need:
        why = f"min_free_gb={need:g}" if min_free_gb is not None else \
            f"2 checkpoints of {ckpt_gb:.2f} GB + {MARGIN_GB} GB"
        raise UserError(f"{output_dir}: not enough free disk space: {free:.2f} GB free, the run needs "
                        f"{need:.2f} GB ({why}) — free space, run on a bigger disk (hydra.run.dir=<dir>), or "
                        f"lower the threshold: min_free_gb=<GB> (min_free_gb=0 turns the check off)")
    limit = _fsize_limit()
    if ckpt and limit is not None and limit < ckpt:
        raise UserError(f"{output_dir}: a checkpoint is ~{ckpt / 2**20:.0f} MB but the file size limit "
                        f"(ulimit -f) is {limit / 2**20:.0f} MB — raise it (ulimit -f unlimited) or set "
                        f"min_free_gb=0 to skip")
    s = d2cfg.SOLVER
    periodic = s.MAX_ITER // s.CHECKPOINT_PERIOD if s.CHECKPOINT_PERIOD > 0 else 0
    kept = (min(periodic, max_to_keep) if max_to_keep else periodic) + 2  # + model_final + model_best
    if ckpt and kept * ckpt_gb + MARGIN_GB > free:
        logger.warning("Keeping all %d checkpoints of this run needs ~%.1f GB but %.1f GB are free: the disk "
                       "may fill up — raise solver.checkpoint_period or free space",
                       kept, kept * ckpt_gb + MARGIN_GB, free)
    return info


def _oserrors(exc: BaseException) -> Iterator[OSError]:
    seen = set()
    while exc is not None and id(exc) not in seen:  # torch wraps a failed write's OSError in a RuntimeError
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            yield exc
        exc = exc.__cause__ or exc.__context__


def _frame_file(frame: Any) -> str | None:
    names = [getattr(v, "name", None) for v in frame.f_locals.values()
             if isinstance(v, io.IOBase) and any(c in str(getattr(v, "mode", "")) for c in "wax+")]
    if not names:
        return None
    if isinstance(names[0], str):
        return names[0]
    # os.fdopen(mkstemp()) files are named by their descriptor: the frame's path variable says which file
    return next((frame.f_locals[n] for n in _PATH_NAMES if isinstance(frame.f_locals.get(n), str)), None)


def _file_being_written(exc: BaseException) -> str | None:
    """The file a failed write was writing: the OSError's filename, else an open file in the failed frames."""
    for e in _oserrors(exc):
        if e.filename:
            return str(e.filename)
    tb, found = exc.__traceback__, None
    while tb is not None:
        found = _frame_file(tb.tb_frame) or found  # the innermost frame that names one
        tb = tb.tb_next
    return found


def _under(path: str | None, folder: str | None) -> bool:
    if not path or not folder:
        return False
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def write_error(exc: BaseException, run_dir: str | None = None) -> UserError | None:
    """A one-line :class:`UserError` for a failed write (disk full, quota, ulimit -f, read-only), else None.

    Args:
        exc (BaseException): the exception raised by the write (an ``OSError``, or torch's ``RuntimeError``
            around one).
        run_dir (str or None): the run dir; permission errors are converted only for files under it, and the
            fix says how to continue the run.
    """
    oserr = next((e for e in _oserrors(exc) if e.errno in _WRITE_ERRNOS | _ACCESS_ERRNOS), None)
    if oserr is None:
        return None
    path = _file_being_written(exc)
    if oserr.errno in _ACCESS_ERRNOS and not _under(path, run_dir):
        return None  # could be reading an input: the original error says more
    where = path or run_dir or "a file"
    folder = os.path.dirname(os.path.abspath(path)) if path else run_dir
    free = f", {shutil.disk_usage(_existing_ancestor(folder)).free / GB:.2f} GB free" if folder else ""
    then = ""
    if run_dir:  # resume needs a checkpoint; without one the run starts over
        then = (f"; then continue the run: resume={run_dir}"
                if os.path.isfile(os.path.join(run_dir, "last_checkpoint")) else "; then run it again")
    if oserr.errno == errno.ENOSPC:
        return UserError(f"{where}: disk full, cannot write ({oserr.strerror}{free}) — free disk space "
                         f"(old outputs/ runs, model_*.pth) or write to a bigger disk{then}")
    if oserr.errno == errno.EDQUOT:
        return UserError(f"{where}: disk quota exceeded, cannot write ({oserr.strerror}{free}) — free space "
                         f"in your quota or write to another disk{then}")
    if oserr.errno == errno.EFBIG:
        return UserError(f"{where}: file too large for the file size limit (ulimit -f) or the file system, "
                         f"cannot write ({oserr.strerror}) — raise the limit (ulimit -f unlimited) or write "
                         f"to another file system{then}")
    return UserError(f"{where}: cannot write ({oserr.strerror}) — write to a folder you may write to, e.g. "
                     f"hydra.run.dir=<dir>{then}")


@contextlib.contextmanager
def disk_errors(run_dir: str | None = None) -> Iterator[None]:
    """Re-raise a failed write inside the block as the one-line :class:`UserError` of :func:`write_error`."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        err = write_error(e, run_dir)
        if err is None:
            raise
        raise err from None


class RunGuard(Callback):
    """Hydra callback: the run dir (or sweep dir) must be creatable and writable before Hydra makes it.

    Without it, a run dir under a regular file, on a read-only disk or under ``/proc`` ends in Hydra's own
    traceback from ``mkdir`` before any of our code runs.
    """

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: Any, key: str) -> None:
        try:
            path = OmegaConf.select(config, key)
        except Exception:  # an interpolation error: Hydra reports it itself, with the key
            return
        try:
            if path:
                check_output_dir(str(path), key)
        except UserError as e:  # exit here even in a multirun: no job could write anything
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(UserError.exit_code)
