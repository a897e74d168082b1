"""Checkpoints that survive a crash, and checkpoint files that cannot run code when they are loaded.

:class:`SafeCheckpointer` is Detectron2's ``DetectionCheckpointer`` with three changes:

* **Atomic saves.** ``model_XXXXXXX.pth`` is written to a hidden temp file in the same folder, fsynced and
  renamed over the final name (``os.replace``); only then is ``last_checkpoint`` rewritten, the same way. A
  kill at any moment leaves the previous checkpoint and pointer intact, never a half-written file under a
  name that ``resume`` reads.
* **Resume that survives a bad file.** When ``last_checkpoint`` names a file that is missing or cannot be
  read (copied halfway, written by an older non-atomic version), resume falls back to the newest readable
  ``model_*.pth`` with one warning, instead of crashing.
* **Safe loading.** ``.pth`` files go through ``torch.load(weights_only=True)``: tensors, numbers, strings
  and containers only. A file holding other pickled objects is refused with a one-line
  :class:`~maskseg_d2.errors.UserError`, unless the environment variable ``MASKSEG_TRUST_WEIGHTS=1`` opts in.
  Detectron2's ``.pkl`` model-zoo format is a plain pickle: loaded in full, with a warning for local files
  (files downloaded from the Detectron2 model zoo are trusted).
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import pickle
import re
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from iopath.common.file_io import get_cache_dir

from ..errors import UserError
from ..utils.fileio import atomic_write, temp_name_pattern

__all__ = ["SafeCheckpointer", "TRUST_ENV", "trust_from_env", "load_checkpoint_file",
           "checkpoint_files", "has_finite_weights", "is_model_zoo_file"]

logger = logging.getLogger(__name__)

# An environment variable rather than a config key: train, eval, predict, export and notebooks all load
# weights through different configs, and an opt-in to running code must not be saved into a run's config.
TRUST_ENV = "MASKSEG_TRUST_WEIGHTS"
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_warned_pickles: set[str] = set()


def trust_from_env() -> bool:
    """True when ``MASKSEG_TRUST_WEIGHTS`` is set to 1/true/yes: load checkpoints with pickled objects too."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def is_model_zoo_file(path: str) -> bool:
    """True for a file in iopath's download cache under ``detectron2/``: fetched from the Detectron2 model zoo
    (``detectron2://`` and ``https://dl.fbaipublicfiles.com/detectron2/`` URLs land there)."""
    zoo = os.path.realpath(os.path.join(get_cache_dir(), "detectron2"))
    return os.path.realpath(path).startswith(zoo + os.sep)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:120]}" if text else type(error).__name__


def load_checkpoint_file(path: str, trust: bool | None = None) -> Any:
    """``torch.load`` a ``.pth`` file on CPU without running code from it.

    Args:
        path (str): a local file.
        trust (bool or None): load files with pickled objects in full (they can run code); None reads
            ``MASKSEG_TRUST_WEIGHTS``.

    Returns:
        the loaded object (a Detectron2 checkpoint is a dict with ``"model"``).

    Raises:
        UserError: the file holds pickled objects other than tensors and trust is off.
        Exception: what torch raises for a missing, truncated or corrupt file (RuntimeError, EOFError...).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        names = ", ".join(sorted(set(_GLOBAL.findall(str(e)))))
        if not names:
            raise  # a corrupt file (bad opcode, cut short), not one refused for the objects it holds
    if not (trust_from_env() if trust is None else trust):
        raise UserError(
            f"{path}: not loaded: it holds pickled Python objects besides tensors ({names}), which run code "
            f"when loaded — use a checkpoint from a trusted source, or if you trust this one, run with "
            f"MASKSEG_TRUST_WEIGHTS=1")
    logger.warning("%s=1: loading %s in full although it holds pickled objects (%s) that can run code",
                   TRUST_ENV, path, names)
    return torch.load(path, map_location="cpu", weights_only=False)


def checkpoint_files(folder: str) -> list[str]:
    """The ``model_*.pth`` files in ``folder``, newest first (modification time, then name)."""
    paths = [p for p in glob.glob(os.path.join(glob.escape(folder), "model_*.pth")) if os.path.isfile(p)]
    return sorted(paths, key=lambda p: (os.stat(p).st_mtime_ns, os.path.basename(p)), reverse=True)


def _finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values()
               if torch.is_tensor(v) and v.is_floating_point())


def has_finite_weights(path: str) -> bool:
    """True when ``path`` loads safely and every floating-point weight of its ``"model"`` is finite."""
    try:
        state = load_checkpoint_file(path, trust=False)["model"]
    except Exception:  # unreadable, truncated, or holding pickled code: not a good checkpoint
        return False
    return _finite(state)


class SafeCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic saves, resume that falls back past bad files, and safe loading.

    Same constructor as ``DetectionCheckpointer`` plus ``trust`` (bool or None: load ``.pth`` files with
    pickled objects in full; None reads ``MASKSEG_TRUST_WEIGHTS``).
    """

    def __init__(self, model, save_dir: str = "", *, save_to_disk: bool | None = None, trust: bool | None = None,
                 **checkpointables: Any) -> None:
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.trust = trust
        self.resumed_from = ""  # the file resume_or_load(resume=True) loaded
        self._preloaded: dict[str, dict] = {}  # read while choosing a resume file: not read twice

    @classmethod
    def from_checkpointer(cls, other: DetectionCheckpointer, trust: bool | None = None) -> "SafeCheckpointer":
        """The same model, folder, ``save_to_disk`` and checkpointables as ``other``."""
        return cls(other.model, other.save_dir, save_to_disk=other.save_to_disk, trust=trust,
                   **other.checkpointables)

    # ---------------------------------------------------------------------------------------- saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically, then point ``last_checkpoint`` at it.

        Raises:
            OSError: the write failed (disk full...): the previous file and ``last_checkpoint`` are intact.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", path)
        atomic_write(path, lambda f: torch.save(data, f))  # disk full: train()'s disk_errors makes it one line
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Rewrite ``last_checkpoint`` atomically (temp file + ``os.replace``)."""
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(path, lambda f: f.write(last_filename_basename.encode("utf-8")))

    # --------------------------------------------------------------------------------------- resuming
    def has_checkpoint(self) -> bool:
        """True when ``last_checkpoint`` or any ``model_*.pth`` exists (a kill between writing the first
        checkpoint and its pointer still resumes)."""
        return super().has_checkpoint() or bool(checkpoint_files(self.save_dir))

    def _remove_stale_temp_files(self) -> None:
        if not self.save_to_disk:
            return
        folder = glob.escape(self.save_dir)
        stale = [p for name in ("model_*.pth", "last_checkpoint")
                 for p in glob.glob(os.path.join(folder, temp_name_pattern(name)))]
        for path in stale:  # left by a save that was killed before its rename; never read
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if stale:
            logger.info("Removed %d unfinished checkpoint temp file(s) from an interrupted save", len(stale))

    def _readable(self, path: str) -> tuple[bool, str]:
        if not os.path.isfile(path):
            return False, "missing"
        try:
            self._preloaded = {path: self._load_file(path)}
        except UserError:
            raise  # pickled code in a run dir: the user decides, no silent skipping
        except Exception as e:  # truncated/corrupt: torch raises RuntimeError, EOFError, UnpicklingError...
            return False, f"unreadable ({_first_line(e)})"
        return True, ""

    def resume_checkpoint(self) -> str:
        """The file to resume from: the one ``last_checkpoint`` names, or else the newest readable ``model_*.pth``.

        A fallback is logged as one warning and ``last_checkpoint`` is pointed at the file used.

        Returns:
            str: a path ("" when the folder holds no checkpoint at all).

        Raises:
            UserError: checkpoints exist but none can be read.
        """
        self._remove_stale_temp_files()
        named = self.get_checkpoint_file()  # "" without last_checkpoint
        files = checkpoint_files(self.save_dir)
        if named:
            ok, reason = self._readable(named)
            if ok:
                return named
            files = [p for p in files if os.path.abspath(p) != os.path.abspath(named)]
            what = f"last_checkpoint names {os.path.basename(named)}, which is {reason}"
        elif files:
            what = "last_checkpoint is missing"
        else:
            return ""
        for path in files:
            if self._readable(path)[0]:
                logger.warning("resume: %s; resuming from the newest readable checkpoint %s instead",
                               what, os.path.basename(path))
                if self.save_to_disk:  # the main process only (DDP)
                    self.tag_last_checkpoint(os.path.basename(path))
                return path
        pointer = os.path.join(self.save_dir, "last_checkpoint")
        raise UserError(
            f"{pointer}: no checkpoint to resume from ({what}, and no other model_*.pth in {self.save_dir} can be "
            f"read) — copy a complete checkpoint into {self.save_dir}, or leave resume out to start a new run")

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict[str, Any]:
        """Like fvcore's, but resuming goes through :meth:`resume_checkpoint` (fallback past bad files)."""
        found = self.resume_checkpoint() if resume else ""
        if found:
            self.resumed_from = found
            return self.load(found)
        return self.load(path, checkpointables=[])

    def last_finite_checkpoint(self) -> str | None:
        """The newest ``model_*.pth`` with finite weights, and ``last_checkpoint`` pointed at it.

        Used after a divergence: a checkpoint saved between the step that broke the weights and the NaN loss
        must not be what ``resume=true`` continues from.

        Returns:
            str or None: its path; None when no checkpoint has finite weights (``last_checkpoint`` is removed).
        """
        for path in checkpoint_files(self.save_dir):
            if has_finite_weights(path):
                if self.save_to_disk:  # the main process only (DDP)
                    self.tag_last_checkpoint(os.path.basename(path))
                return path
        if self.save_to_disk:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.save_dir, "last_checkpoint"))
        return None

    # ---------------------------------------------------------------------------------------- loading
    def _load_file(self, filename: str) -> dict[str, Any]:
        if filename in self._preloaded:
            return self._preloaded.pop(filename)
        if filename.endswith(".pkl"):
            self._warn_pickle(filename)
            return super()._load_file(filename)  # Detectron2 / Caffe2 model-zoo formats (pickle)
        if filename.endswith(".pyth"):
            return super()._load_file(filename)  # pycls: torch.load's own default, weights_only=True since 2.6
        loaded = load_checkpoint_file(filename, self.trust)
        if not isinstance(loaded, dict):
            raise UserError(f"{filename}: holds a {type(loaded).__name__}, not a checkpoint dict — pass a "
                            f"model_*.pth written by tools/train.py or a state dict of tensors")
        return loaded if "model" in loaded else {"model": loaded}

    def _warn_pickle(self, filename: str) -> None:
        if is_model_zoo_file(filename) or filename in _warned_pickles:
            return
        _warned_pickles.add(filename)
        logger.warning("%s: .pkl files are loaded with pickle, which can run code — load them only from a "
                       "trusted source (Detectron2 model-zoo downloads are); .pth files of tensors load safely",
                       filename)
