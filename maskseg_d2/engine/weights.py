"""Fetch initial weights up front so an offline machine fails in one line, before any work is done."""
from __future__ import annotations

from .. import compat

compat.apply()

from detectron2.utils.file_io import PathManager  # noqa: E402

from ..errors import UserError  # noqa: E402

__all__ = ["ensure_weights"]


def ensure_weights(weights: str) -> str:
    """Download (or find in iopath's cache) ``weights``; return the local path ("" stays "")."""
    if not weights or "://" not in weights:
        return weights
    try:
        return PathManager.get_local_path(weights)
    except Exception as e:  # urllib/iopath raise many types; all mean "could not fetch"
        from iopath.common.file_io import get_cache_dir

        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"could not download {weights} ({reason}); cache dir {get_cache_dir()} — on an offline machine put "
            f"the file there (or anywhere and pass model.weights=/path/to/file.pkl), or train from scratch "
            f"with model.weights=scratch"
        ) from None
