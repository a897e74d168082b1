"""Class names in any language: DejaVu Sans (shipped with matplotlib) for Latin, Greek, Cyrillic and Vietnamese,
then whichever CJK font the system has (``apt install fonts-noto-cjk``), picked per character.

OpenCV's Hershey fonts draw only ASCII (everything else becomes ``?``) and Detectron2's Visualizer asks
matplotlib for one generic "sans-serif" font; both would turn a Label Studio project labelled in French,
Vietnamese or Chinese into question marks or boxes. Here the OpenCV overlays render their labels with Pillow
and :class:`UnicodeVisualizer` hands matplotlib the whole font list, so its per-glyph fallback applies.
"""
from __future__ import annotations

import functools
import logging

import numpy as np
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from PIL import Image, ImageDraw, ImageFont

from detectron2.utils.visualizer import Visualizer

__all__ = ["CJK_HINT", "font_files", "font_families", "missing_characters", "text_mask", "UnicodeVisualizer"]

logger = logging.getLogger(__name__)

CJK_HINT = ("install a CJK font (Debian/Ubuntu: apt install fonts-noto-cjk; conda: conda install -c conda-forge "
            "font-ttf-noto-cjk), then delete matplotlib's font cache (rm -r ~/.cache/matplotlib)")
# Family names of common CJK fonts, in order of preference; matched as substrings of matplotlib's font list.
_CJK_FAMILIES = ("Noto Sans CJK", "Source Han Sans", "Noto Serif CJK", "WenQuanYi", "Droid Sans Fallback",
                 "AR PL", "IPAGothic", "Unifont")
_WARNED: set[str] = set()


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[tuple[str, str], ...]:
    """(family, file) pairs: DejaVu Sans first, then the CJK fonts matplotlib found on the system."""
    found = [("DejaVu Sans", font_manager.findfont("DejaVu Sans"))]  # part of matplotlib: always there
    for hint in _CJK_FAMILIES:
        for entry in sorted(font_manager.fontManager.ttflist, key=lambda e: (e.name, e.fname)):
            if hint.lower() in entry.name.lower() and entry.name not in {f for f, _ in found}:
                found.append((entry.name, entry.fname))
    return tuple(found)


def font_files() -> list[str]:
    """The font files tried for each character, in order (DejaVu Sans first)."""
    return [path for _, path in _fonts()]


def font_families() -> list[str]:
    """The same fonts as matplotlib family names (a list: matplotlib falls back glyph by glyph)."""
    return [family for family, _ in _fonts()]


@functools.lru_cache(maxsize=16)
def _charmap(path: str) -> frozenset[int]:
    return frozenset(FT2Font(path).get_charmap())


def _font_index(char: str, files: tuple[str, ...]) -> int:
    """The first font that has ``char`` (0 when none has it: DejaVu Sans draws its "missing" box)."""
    return next((i for i, path in enumerate(files) if ord(char) in _charmap(path)), 0)


@functools.lru_cache(maxsize=256)
def missing_characters(text: str) -> str:
    """The characters of ``text`` that no available font draws (warned about once each, with what to install)."""
    files = tuple(font_files())
    missing = "".join(dict.fromkeys(c for c in text if not c.isspace()
                                    and not any(ord(c) in _charmap(p) for p in files)))
    if missing and missing not in _WARNED:  # once per set: "汽车 87%", "汽车 88%"... miss the same two
        _WARNED.add(missing)
        logger.warning("No font draws %r of the label %r (drawn as boxes): %s", missing, text, CJK_HINT)
    return missing


@functools.lru_cache(maxsize=64)
def _pil_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=4096)
def text_mask(text: str, size: int, stroke: int = 0) -> np.ndarray:
    """White-on-black rendering of ``text``: (H, W) uint8 coverage, each run of characters in the first font
    that has them, on one baseline. Cached: labels repeat from image to image.

    Args:
        text (str): any Unicode text.
        size (int): font size in pixels.
        stroke (int): extra stroke width (bold) in pixels.

    Returns:
        np.ndarray: (H, W) uint8, 255 where the glyphs are.
    """
    files = tuple(font_files())
    missing_characters(text)
    runs: list[tuple[int, str]] = []
    for char in text:
        index = _font_index(char, files) if not char.isspace() else (runs[-1][0] if runs else 0)
        if runs and runs[-1][0] == index:
            runs[-1] = (index, runs[-1][1] + char)
        else:
            runs.append((index, char))
    fonts = [_pil_font(files[i], size) for i, _ in runs]
    ascent = max([f.getmetrics()[0] for f in fonts] or [_pil_font(files[0], size).getmetrics()[0]])
    descent = max([f.getmetrics()[1] for f in fonts] or [0])
    width = int(np.ceil(sum(f.getlength(run) for f, (_, run) in zip(fonts, runs)))) + 2 * stroke
    canvas = Image.new("L", (max(width, 1), ascent + descent + 2 * stroke), 0)
    draw, x = ImageDraw.Draw(canvas), float(stroke)
    for font, (_, run) in zip(fonts, runs):
        draw.text((x, ascent + stroke), run, fill=255, font=font, anchor="ls", stroke_width=stroke, stroke_fill=255)
        x += font.getlength(run)
    return np.asarray(canvas)


class UnicodeVisualizer(Visualizer):
    """Detectron2's Visualizer whose labels use :func:`font_families` (it asks for "sans-serif" alone, one font)."""

    def draw_text(self, text, position, **kwargs):
        """Detectron2's ``draw_text``, then the font list set on the text it added."""
        out = super().draw_text(text, position, **kwargs)
        missing_characters(str(text))
        self.output.ax.texts[-1].set_fontfamily(font_families())
        return out
