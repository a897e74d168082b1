"""Image files as the importers see them: size (EXIF orientation applied), names, folder index, and the
reconciliation of the size an annotation file records with the real image.

Names: a file name that is not valid UTF-8 is an error (it cannot be written to JSON or a log), and
:func:`normalize_name` keys a name the way Label Studio's upload renames it. :class:`ImageIndex`
indexes an image folder once.

Size reconciliation: instances live in the *display* orientation, what the annotator saw and what
Detectron2's ``read_image`` returns (it applies the EXIF orientation). Each image's EXIF-applied size
is compared with the size the annotation file records:

* equal -> nothing to do;
* transposed (W and H swapped; or the swapped aspect ratio, when the photo was also resized) -> the
  EXIF case: the tool recorded the size *before* rotation (Label Studio's COCO export does, from
  ``PIL.Image.size``). Coordinates that the tool derived from
  that size (Label Studio: percent x recorded size) are stretched back to the display size; absolute
  display-pixel coordinates (LabelMe, a generic COCO file) are kept, and a shape reaching beyond the
  display bounds is an error (it was drawn on the un-rotated photo). Counted as an adjustment;
* any other size with the same aspect ratio (within :data:`ASPECT_TOLERANCE`) -> the photos were
  resized after annotating: coordinates and masks are rescaled. Counted and reported (up to
  :data:`RESCALE_LIMIT` times per side; beyond that it is an error);
* anything else -> :class:`~maskseg_d2.errors.UserError` naming both sizes.

Importers compute geometry on the *canvas* (:attr:`SizeFix.canvas`) and map it to the image with
:meth:`SizeFix.points` / :meth:`SizeFix.mask`.
"""
from __future__ import annotations

import math
import os
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import fail
from .geometry import GeometryError
from .loading import LoadStats

__all__ = [
    "ASPECT_TOLERANCE",
    "EXIF_NOTE",
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "RESCALE_LIMIT",
    "RESCALE_NOTE",
    "ImageIndex",
    "SizeFix",
    "check_declared_size",
    "check_utf8_name",
    "exif_orientation",
    "is_utf8",
    "normalize_name",
    "read_image_size",
    "reconcile_size",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Pillow refuses to open images above 2x its MAX_IMAGE_PIXELS (DecompressionBombError), and so does
# Detectron2's read_image: a declared size above that is never a real training image, and is the bound
# on every mask the importers allocate.
MAX_IMAGE_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
_EXIF_ORIENTATION = 0x0112
ASPECT_TOLERANCE = 0.01  # 1%: a 4000x3000 photo resized to 1333x1000 (rounded) still matches
EXIF_NOTE = "EXIF-rotated image whose size was recorded before rotation"
RESCALE_NOTE = "image resized since it was annotated (geometry rescaled)"
RESCALE_LIMIT = 32.0  # a photo shrunk or grown more than this per side since annotating is another image
_BOUNDS_SLACK = 1.0  # px a shape may overshoot the image (clicks on the border) before it counts as outside


def read_image_size(path: str | os.PathLike, where: str = "") -> tuple[int, int]:
    """Size of an image as Detectron2's ``read_image`` sees it (EXIF orientation applied).

    Args:
        path (str or PathLike): the image file (only the header is read).
        where (str): the item, for the error.

    Returns:
        tuple[int, int]: (height, width); swapped when the EXIF orientation is 5..8 (90° rotations).
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = exif_orientation(im)
    except Image.DecompressionBombError as e:  # not an OSError; Detectron2's read_image would raise it too
        raise fail(where or str(path), f"image {path} is too large to open: {e}",
                   f"resize it below {MAX_IMAGE_PIXELS} pixels") from None
    except (UnidentifiedImageError, OSError) as e:
        raise fail(where or str(path), f"cannot read image {path}: {e}",
                   "replace the file with a valid image") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def check_declared_size(height: Any, width: Any, where: str, what: str = "size") -> tuple[int, int]:
    """Check an image size written in an annotation file: positive, finite, openable.

    Args:
        height: the recorded height (a JSON value).
        width: the recorded width.
        where (str): the item, for the error.
        what (str): how the file calls the size (``"imageWidth/imageHeight"`` ...), for the error.

    Returns:
        tuple[int, int]: (height, width), rounded.

    Raises:
        UserError: for a value that is not a positive finite number, or a size above
            :data:`MAX_IMAGE_PIXELS` (no mask that large is ever allocated).
    """
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0.5
             for v in (height, width))
    if not ok:
        given = "missing" if height is None or width is None else f"{width!r}x{height!r} (WxH)"
        raise fail(where, f"{what} is {given}, expected positive numbers",
                   "re-export the annotations (or delete the size fields to use the image's)")
    h, w = int(round(height)), int(round(width))
    if h * w > MAX_IMAGE_PIXELS:
        raise fail(where, f"{what} is {w}x{h} (WxH), larger than any image Detectron2 can read "
                   f"({MAX_IMAGE_PIXELS} pixels)", "re-export the annotations of the real image")
    return h, w


def is_utf8(name: str) -> bool:
    """bool: False for a file name that was not valid UTF-8 on disk (Python holds it with surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_utf8_name(path: str, where: str) -> str:
    """Return ``path`` when it is valid UTF-8; a file name in another encoding is an error.

    On Linux such names reach Python as lone surrogates; they cannot be written to a JSON or a log file.

    Args:
        path (str): the file path.
        where (str): the item, for the error.

    Returns:
        str: ``path``.
    """
    if not is_utf8(path):
        raise fail(where, f"file name {os.fsencode(path)!r} is not valid UTF-8",
                   "rename the file (e.g. convmv -f latin1 -t utf8 --notest <file>)")
    return path


def exif_orientation(im: Image.Image) -> int:
    """int: the EXIF orientation tag of an open image (1 = upright; 1 also when absent or broken)."""
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block: Detectron2/PIL ignore it too
        return 1


def normalize_name(name: str) -> str:
    """File-name key that survives Label Studio's upload renaming.

    URL-decoded, Unicode NFC, stripped, spaces -> ``_``, and characters other than letters, digits,
    ``-``, ``_`` and ``.`` removed (what Django's ``get_valid_filename`` does on upload). Case-sensitive.

    Args:
        name (str): a file name (no folder).

    Returns:
        str: the normalised name.
    """
    s = unicodedata.normalize("NFC", urllib.parse.unquote(name)).strip().replace(" ", "_")
    return "".join(ch for ch in s if ch.isalnum() or ch in "-_.")


class ImageIndex:
    """One-time index of the images under a folder (recursive; hidden folders skipped).

    Keys: relative POSIX path, file name, and :func:`normalize_name` of the file name.

    Args:
        root (str or PathLike): the image folder.
        where (str): who needs it (named in the error when the folder is missing).
    """

    def __init__(self, root: str | os.PathLike, where: str = "") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise fail(where or str(root), f"image folder {root} does not exist",
                       "put the photos there or set dataset.images")
        self.relpaths: set[str] = set()
        self.by_name: dict[str, list[str]] = {}
        self.by_norm: dict[str, list[str]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(self.root)
            for f in sorted(filenames):
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                    rel = (rel_dir / f).as_posix()
                    self.relpaths.add(rel)
                    self.by_name.setdefault(unicodedata.normalize("NFC", f), []).append(rel)
                    self.by_norm.setdefault(normalize_name(f), []).append(rel)

    def __len__(self) -> int:
        return len(self.relpaths)

    def path(self, rel: str, where: str = "") -> str:
        """str: absolute path of an indexed relative path (an error when the name is not UTF-8)."""
        return check_utf8_name(os.path.abspath(self.root / rel), where or str(self.root))


# ------------------------------------------------------------------------------- recorded size vs image


@dataclass(frozen=True)
class SizeFix:
    """How geometry drawn for the recorded size maps onto the real image.

    Attributes:
        height (int): real image height (EXIF applied).
        width (int): real image width.
        canvas_height (int): height of the space the importer computes geometry in.
        canvas_width (int): width of that space.
        kind (str): ``"same"``, ``"exif"`` or ``"rescaled"``.
        check_bounds (bool): raise when a point lies beyond the canvas (absolute coordinates with a
            transposed recorded size: a shape there was drawn on the un-rotated photo).
    """

    height: int
    width: int
    canvas_height: int
    canvas_width: int
    kind: str = "same"
    check_bounds: bool = False

    @classmethod
    def of_image(cls, path: str | os.PathLike, where: str = "") -> "SizeFix":
        """SizeFix for an image without recorded size (nothing to reconcile)."""
        h, w = read_image_size(path, where)
        return cls(h, w, h, w)

    @property
    def size(self) -> tuple[int, int]:
        """tuple[int, int]: real (height, width)."""
        return self.height, self.width

    @property
    def canvas(self) -> tuple[int, int]:
        """tuple[int, int]: (height, width) of the canvas."""
        return self.canvas_height, self.canvas_width

    @property
    def scale(self) -> tuple[float, float]:
        """tuple[float, float]: (sx, sy) from canvas pixels to image pixels."""
        return self.width / self.canvas_width, self.height / self.canvas_height

    def points(self, points: np.ndarray, where: str) -> np.ndarray:
        """Map (N, 2) canvas points to image pixels.

        Args:
            points (np.ndarray): (N, 2) x, y on the canvas.
            where (str): the item, for the error.

        Returns:
            np.ndarray: (N, 2) float64 image coordinates.
        """
        p = np.asarray(points, dtype=np.float64)
        if self.check_bounds and len(p):
            over = p.max(axis=0) - (self.canvas_width + _BOUNDS_SLACK, self.canvas_height + _BOUNDS_SLACK)
            if (over > 0).any():
                x, y = p.max(axis=0)
                raise GeometryError(str(fail(
                    where, f"the shape reaches ({x:.0f}, {y:.0f}), beyond the {self.canvas_width}x"
                    f"{self.canvas_height} image as EXIF-rotated; it was drawn on the un-rotated photo",
                    "annotate with a tool that applies the EXIF orientation, or save the photos upright "
                    "(PIL.ImageOps.exif_transpose) and annotate again")), "drawn on the un-rotated photo")
        if self.canvas == self.size:
            return p
        return p * np.array(self.scale)

    def check_mask_size(self, shape: tuple[int, int], where: str) -> None:
        """Raise a :class:`GeometryError` unless a (H, W) mask ``shape`` is the canvas size (check it
        before decoding a mask of a declared size, so a wrong size never allocates anything)."""
        if tuple(shape) != self.canvas:
            raise GeometryError(str(fail(
                where, f"mask is {shape[1]}x{shape[0]} (WxH) but the image is "
                f"{self.canvas_width}x{self.canvas_height}", "re-export the annotations")),
                "mask size mismatch")

    def mask(self, mask: np.ndarray, where: str) -> np.ndarray:
        """Map a (H, W) canvas-sized mask to the image size (nearest neighbour when rescaled).

        Args:
            mask (np.ndarray): bool mask the size of the canvas.
            where (str): the item, for the error.

        Returns:
            np.ndarray: (height, width) bool mask.
        """
        self.check_mask_size(mask.shape, where)
        if self.canvas == self.size:
            return mask
        resized = cv2.resize(mask.astype(np.uint8), (self.width, self.height),
                             interpolation=cv2.INTER_NEAREST)
        return resized.astype(bool)


def _aspect_matches(h: int, w: int, rh: int, rw: int) -> bool:
    return abs((w / h) / (rw / rh) - 1.0) <= ASPECT_TOLERANCE


def reconcile_size(
    path: str | os.PathLike, height: float, width: float, where: str, *, relative: bool,
    stats: LoadStats | None = None, what: str = "size",
) -> SizeFix:
    """Compare the recorded size with the real image and say how to map geometry (see module doc).

    Args:
        path (str or PathLike): the resolved image.
        height (float): height recorded in the annotation file.
        width (float): width recorded in the annotation file.
        where (str): the item (file + task / image), for errors and notes.
        relative (bool): True when the tool computed coordinates from the recorded size (Label Studio
            percentages), False for absolute display-pixel coordinates (LabelMe, COCO).
        stats (LoadStats or None): where adjustments are counted.
        what (str): how the file calls the size (``"imageWidth/imageHeight"`` ...), for errors.

    Returns:
        SizeFix: real size, canvas and kind.
    """
    h, w = check_declared_size(height, width, where, what)  # before anything is sized by it
    rh, rw = read_image_size(path, where)
    if (h, w) == (rh, rw):
        return SizeFix(rh, rw, h, w)
    factor = max(h * w / (rh * rw), rh * rw / (h * w)) ** 0.5
    if factor > RESCALE_LIMIT:  # not a resized photo but another image (and a canvas worth no allocation)
        raise fail(where, f"annotation says {w}x{h} (WxH) but image {path} is {rw}x{rh}, {factor:.0f} times "
                   f"{'smaller' if h * w > rh * rw else 'larger'}",
                   "annotate the same image you train on, or re-export the annotations")
    transposed = (h, w) == (rw, rh) or (_aspect_matches(w, h, rh, rw) and not _aspect_matches(h, w, rh, rw))
    if transposed:  # recorded before EXIF rotation (and maybe resized since)
        if stats is not None:
            stats.note(EXIF_NOTE, where)
            if (h, w) != (rw, rh):
                stats.note(RESCALE_NOTE, where)
        if relative:
            return SizeFix(rh, rw, h, w, "exif")
        return SizeFix(rh, rw, w, h, "exif", check_bounds=True)  # display pixels of the recorded size
    if _aspect_matches(h, w, rh, rw):
        if stats is not None:
            stats.note(RESCALE_NOTE, where)
        return SizeFix(rh, rw, h, w, "rescaled")
    raise fail(where, f"annotation says {w}x{h} (WxH) but image {path} is {rw}x{rh} (EXIF applied), "
               "a different aspect ratio",
               "annotate the same image you train on, or re-export the annotations")
