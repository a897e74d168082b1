"""What ``input=`` can be (an image, a folder, a glob, a video file, a webcam index) and how it is read.

Images are decoded with Detectron2's ``read_image`` (the EXIF orientation applied, alpha dropped,
grayscale expanded to 3 channels), exactly as training and evaluation read them, so a rotated phone
photo is predicted in the orientation it is displayed in. Decoding runs in threads ahead of the
model (:func:`prefetch`).
"""
from __future__ import annotations

import glob
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from detectron2.data.detection_utils import read_image

from ..data.images import IMAGE_EXTENSIONS
from ..errors import UserError

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "InputSpec", "list_images", "resolve_input", "read_bgr", "prefetch",
           "output_stems"]

IMAGE_EXTS = IMAGE_EXTENSIONS
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class InputSpec:
    """A resolved ``input=``.

    Attributes:
        kind (str): ``"images"``, ``"video"`` or ``"webcam"``.
        paths (list[str]): image files (sorted) or the one video file.
        root (str): the folder names are taken relative to (the folder itself, or the file's folder).
        camera (int or None): the webcam index.
        single (bool): ``input=`` named one image file.
    """

    kind: str
    paths: list[str] = field(default_factory=list)
    root: str = "."
    camera: int | None = None
    single: bool = False

    @property
    def name(self) -> str:
        """str: a short name for output folders (the folder / file stem, ``webcam<N>``)."""
        if self.kind == "webcam":
            return f"webcam{self.camera}"
        if self.kind == "video" or self.single:
            return os.path.splitext(os.path.basename(self.paths[0]))[0]
        return os.path.basename(os.path.abspath(self.root)) or "images"


def _has_ext(path: str, exts: tuple[str, ...]) -> bool:
    return path.lower().endswith(exts)


def list_images(source: str) -> list[str]:
    """An image file, a folder (recursive, hidden folders skipped) or a glob -> sorted image paths.

    Args:
        source (str): what the user passed as ``input=``.

    Returns:
        list[str]: image files, by extension (a corrupt file is still listed: reading reports it).
    """
    if os.path.isdir(source):
        paths = []
        for d, dirs, files in os.walk(source):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            paths += [os.path.join(d, f) for f in files if not f.startswith(".")]
    elif any(c in source for c in "*?["):
        paths = glob.glob(source, recursive=True)
    else:
        paths = [source]
    images = sorted(p for p in paths if _has_ext(p, IMAGE_EXTS) and os.path.isfile(p))
    if not images:
        raise UserError(f"input={source}: no images found — give an image file, a folder, a glob like "
                        f"'photos/*.jpg', a video file ({', '.join(VIDEO_EXTS[:4])} ...) "
                        "or a webcam index (0)")
    return images


def resolve_input(source: str | int) -> InputSpec:
    """Decide what ``input=`` is.

    Args:
        source (str or int): an image, a folder, a glob, a video file, or a webcam index (``0``).

    Returns:
        InputSpec: the kind and the files.
    """
    text = str(source).strip()
    if text.isdigit() and not os.path.exists(text):
        return InputSpec("webcam", camera=int(text))
    if _has_ext(text, VIDEO_EXTS) and not any(c in text for c in "*?["):
        if not os.path.isfile(text):
            raise UserError(f"input={text}: video file not found — check the path")
        return InputSpec("video", [text], os.path.dirname(text) or ".")
    paths = list_images(text)
    if os.path.isdir(text):
        return InputSpec("images", paths, text)
    if os.path.isfile(text):
        return InputSpec("images", paths, os.path.dirname(text) or ".", single=True)
    common = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    return InputSpec("images", paths, common)


def output_stems(paths: list[str], root: str) -> list[str]:
    """Relative output names without extension (``sub/photo``), unique even for ``a.jpg`` + ``a.png``.

    Args:
        paths (list[str]): the input images.
        root (str): the folder the names are relative to.

    Returns:
        list[str]: POSIX relative stems; a clash keeps the extension (``a_png``).
    """
    rels = [PurePosixPath(os.path.relpath(os.path.abspath(p), os.path.abspath(root)).replace(os.sep, "/"))
            for p in paths]
    stems = [str(r.with_suffix("")) for r in rels]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    return [str(r.with_name(r.name.replace(".", "_"))) if seen[s] > 1 else s for r, s in zip(rels, stems)]


def read_bgr(path: str) -> np.ndarray:
    """Read an image as the model sees it: (H, W, 3) uint8 BGR, contiguous, EXIF orientation applied.

    Args:
        path (str): the image file.

    Returns:
        np.ndarray: the image.

    Raises:
        OSError, ValueError: when the file is not a readable image (callers report and skip it).
    """
    return np.ascontiguousarray(read_image(path, format="BGR"))


def prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int = 2, depth: int = 8) -> Iterator[R]:
    """``map(fn, items)`` in threads, in order, with at most ``depth`` results waiting.

    Decoding (PIL/OpenCV release the GIL) overlaps with the model this way; ``depth`` bounds memory.

    Args:
        fn (callable): called on each item in a worker thread; its exceptions are re-raised here.
        items (iterable): the inputs.
        workers (int): threads (0: run ``fn`` inline).
        depth (int): results computed ahead of the consumer.

    Yields:
        the results of ``fn``, in the order of ``items``.
    """
    if workers <= 0:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict-read") as pool:
        pending: deque[Future] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= max(depth, 1):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
