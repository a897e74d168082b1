"""Atomic file writes: readers (a resumed run, a training run reading a converted dataset, a dashboard)
see the old file or the complete new one, never a half-written one, whatever kills the writer."""
from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from typing import IO, Any, Callable

__all__ = ["TMP_SUFFIX", "atomic_write", "atomic_write_text", "atomic_write_json", "temp_name_pattern"]

TMP_SUFFIX = ".tmp"  # temp files: ".<final name>.<random>.tmp" (hidden, never matches model_*.pth)


def temp_name_pattern(name_glob: str) -> str:
    """The glob of the temp files :func:`atomic_write` makes for final names matching ``name_glob``."""
    return f".{name_glob}.*{TMP_SUFFIX}"


def _fsync_dir(folder: str) -> None:
    try:  # the rename itself reaches the disk only with the folder's entry (POSIX; no-op elsewhere)
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temp file in the same folder: ``write(f)``, fsync, ``os.replace``.

    On any error the temp file is removed, the old file is left as it was and an ``OSError`` without a
    file name gets ``path`` (disk full: :func:`maskseg_d2.utils.preflight.write_error` names the file).

    Args:
        path (str or PathLike): the final file; its folder must exist.
        write (callable): writes the content into the binary file object it is given.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    # os.open, not mkstemp: mode 0o666 minus the umask, like the plain open() it replaces (mkstemp gives 0o600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # KeyboardInterrupt included: never leave a temp file behind when we can help it
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename:
            e.filename = path
        raise
    _fsync_dir(folder)


def atomic_write_text(path: str | os.PathLike, text: str, errors: str = "strict") -> None:
    """:func:`atomic_write` of ``text`` as UTF-8 (``errors``: as in ``str.encode``)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8", errors)))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> None:
    """:func:`atomic_write` of ``json.dump(obj, ..., **dump_kwargs)`` as UTF-8, streamed (no copy of the text)."""
    def write(f: IO[bytes]) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8")
        json.dump(obj, text, **dump_kwargs)
        text.flush()
        text.detach()  # atomic_write still owns (fsyncs, closes) the file

    atomic_write(path, write)
