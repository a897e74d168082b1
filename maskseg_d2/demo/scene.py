"""Embedded synthetic demo dataset: cars and sign boards on a campus.

:func:`make_demo_dataset` renders photo-like scenes (textured sky and ground, tree lines and buildings,
lighting gradient, vignetting, blur, sensor noise, JPEG) with 0-4 objects each, and writes the same
instances three ways, shaped like the files the real tools write:

* ``labelstudio.json``: a Label Studio JSON export (polygon, rotated rectangle and brush results);
* ``labelme/<stem>.json``: one LabelMe file per image (polygon, rectangle, circle and mask shapes,
  grouped shapes for sign boards on poles);
* ``truth.json``: COCO instances of the true *visible* masks (RLE), for checking importers.

Geometry uses the **pixel-corner convention** everywhere (Detectron2 / pycocotools): pixel ``(i, j)``
covers ``[j, j+1) x [i, i+1)`` and belongs to a shape when its centre ``(j + 0.5, i + 0.5)`` is inside.
Label Studio percentages are ``100 * x / width``; LabelMe points are the same coordinates in pixels,
except a ``mask`` shape whose two points are the first and last pixel index of its crop (inclusive).

Everything is drawn from ``np.random.default_rng`` seeded by ``seed``, so two runs with the same
arguments write byte-identical files.
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import math
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util
from tqdm import tqdm

from ..data.labelstudio_rle import mask_to_brush_rle

__all__ = [
    "CATEGORY_IDS", "CLASSES", "VARIANTS", "DemoObject", "make_demo_dataset", "render_scene", "trace_polygon",
]

logger = logging.getLogger(__name__)

CLASSES = ["car", "sign board"]
CATEGORY_IDS = {"car": 1, "sign board": 2}
VARIANTS = ("car", "board_flat", "board_rotated", "board_pole", "round_pole")

GENERATOR_VERSION = 1
OCCLUDED_BELOW = 0.97  # visible fraction under which an object is annotated with a brush / mask
MIN_VISIBLE_PX = 40
MIN_VISIBLE_FRACTION = 0.30
TRACE_EPSILON_PX = 0.7
JPEG_QUALITY = 92

_FIRST_VARIANT_CYCLE = ("car", "board_rotated", "round_pole", "car", "board_flat", "board_pole")
_SPACED_PREFIXES = ("parking lot", "main gate", "library front", "bus stop", "north campus")
_NON_ASCII_PREFIX = "panneau été"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_BASE_TIME = _dt.datetime(2024, 5, 6, 9, 0, 0)

# BGR colours
_CAR_COLOURS = [
    (225, 225, 228), (38, 38, 44), (172, 172, 176), (45, 45, 185), (150, 75, 30), (95, 45, 20),
    (60, 120, 55), (40, 180, 215), (110, 110, 115), (70, 95, 150),
]
_BOARD_COLOURS = [
    (175, 95, 20), (60, 140, 25), (40, 40, 200), (25, 200, 235), (10, 130, 240), (35, 65, 115),
    (140, 40, 120),
]
_WALL_COLOURS = [(165, 185, 200), (150, 150, 152), (70, 85, 140), (190, 195, 195)]
_WHITE = (236, 236, 236)


# ------------------------------------------------------------------------------------------- data
@dataclass(eq=False)
class _Part:
    """One painted primitive of an object (convex polygon or disc, pixel-corner coordinates)."""

    kind: str  # "poly" | "circle"
    geom: np.ndarray  # (K, 2) polygon points, or (cx, cy, r)
    colour: tuple[float, float, float]
    shading: str = "flat"  # "flat" | "vgrad" | "cyl" | "glass"
    silhouette: bool = True  # part of the instance mask (details painted on top are not)
    mask: np.ndarray | None = None

    def shifted(self, dx: float, dy: float) -> _Part:
        geom = self.geom.copy()
        geom[..., 0] += dx
        geom[..., 1] += dy
        return _Part(self.kind, geom, self.colour, self.shading, self.silhouette)


@dataclass(eq=False)
class DemoObject:
    """One rendered instance and the geometry needed to annotate it.

    Attributes:
        label (str): "car" or "sign board".
        shape (str): "car", "board" (rectangular sign) or "round" (circular sign).
        kind (str): how it is annotated: "brush" (occluded: Label Studio brush / LabelMe mask),
            "rectangle" (board without pole: Label Studio rectangle) or "polygon" (traced outline).
        visible_mask (np.ndarray): H x W bool, the visible part (the annotation target).
        full_mask (np.ndarray): H x W bool, the whole silhouette as if nothing occluded it.
        rect (tuple | None): board ``(x, y, w, h, angle_deg)`` in pixels; (x, y) is the top-left corner
            before rotation and the board turns clockwise by ``angle_deg`` about it (image y down).
        circle (tuple | None): round sign ``(cx, cy, r)`` in pixels.
        pole (tuple | None): pole rectangle ``(x1, y1, x2, y2)`` in pixels.
        polygon (np.ndarray | None): (K, 2) outline traced from ``visible_mask`` (kind "polygon").
        depth (float): bottom y of the object; larger is nearer and painted later.
    """

    label: str
    shape: str
    kind: str = ""
    visible_mask: np.ndarray | None = None
    full_mask: np.ndarray | None = None
    rect: tuple[float, float, float, float, float] | None = None
    circle: tuple[float, float, float] | None = None
    pole: tuple[float, float, float, float] | None = None
    polygon: np.ndarray | None = None
    depth: float = 0.0
    parts: list[_Part] = field(default_factory=list, repr=False)

    @property
    def has_pole(self) -> bool:
        return self.pole is not None

    @property
    def visible_fraction(self) -> float:
        full = int(self.full_mask.sum())
        return float(self.visible_mask.sum()) / full if full else 0.0

    def board_corners(self) -> np.ndarray:
        """Corners of a rectangular board (TL, TR, BR, BL before rotation), (4, 2) float pixels."""
        return _rect_corners(*self.rect)

    def shifted(self, dx: float, dy: float) -> DemoObject:
        """A copy moved by (dx, dy) pixels (before masks are computed)."""
        moved = DemoObject(self.label, self.shape, parts=[p.shifted(dx, dy) for p in self.parts])
        if self.rect is not None:
            x, y, w, h, a = self.rect
            moved.rect = (x + dx, y + dy, w, h, a)
        if self.circle is not None:
            cx, cy, r = self.circle
            moved.circle = (cx + dx, cy + dy, r)
        if self.pole is not None:
            x1, y1, x2, y2 = self.pole
            moved.pole = (x1 + dx, y1 + dy, x2 + dx, y2 + dy)
        return moved

    def extent(self) -> tuple[float, float, float, float]:
        """Bounding box (x0, y0, x1, y1) of the silhouette parts."""
        lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
        for p in self.parts:
            if not p.silhouette:
                continue
            if p.kind == "poly":
                lo, hi = np.minimum(lo, p.geom.min(0)), np.maximum(hi, p.geom.max(0))
            else:
                cx, cy, r = p.geom
                lo, hi = np.minimum(lo, [cx - r, cy - r]), np.maximum(hi, [cx + r, cy + r])
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# ------------------------------------------------------------------------------------ rasterising
def _rect_corners(x: float, y: float, w: float, h: float, angle_deg: float) -> np.ndarray:
    """Corners of a rectangle turned clockwise (image y down) about its top-left corner."""
    t = math.radians(angle_deg)
    ux, uy = math.cos(t), math.sin(t)  # along the width
    vx, vy = -math.sin(t), math.cos(t)  # along the height
    return np.array([[x, y], [x + w * ux, y + w * uy], [x + w * ux + h * vx, y + w * uy + h * vy],
                     [x + h * vx, y + h * vy]])


def _window(shape: tuple[int, int], x0: float, y0: float, x1: float, y1: float):
    """Pixel index window covering [x0, x1] x [y0, y1], clipped; pixel-centre grids inside it."""
    h, w = shape
    c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1), w)
    r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1), h)
    if c0 >= c1 or r0 >= r1:
        return None
    ys, xs = np.mgrid[r0:r1, c0:c1].astype(np.float64) + 0.5
    return (slice(r0, r1), slice(c0, c1)), xs, ys


def _convex_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """Rasterise a convex polygon: pixels whose centre lies inside (or on) it.

    Args:
        shape (tuple[int, int]): (H, W).
        pts (np.ndarray): (K, 2) vertices in pixel-corner coordinates, either orientation.

    Returns:
        np.ndarray: H x W bool mask.
    """
    out = np.zeros(shape, bool)
    win = _window(shape, *pts.min(0), *pts.max(0))
    if win is None:
        return out
    sl, xs, ys = win
    nxt = np.roll(pts, -1, axis=0)
    sign = 1.0 if np.sum(pts[:, 0] * nxt[:, 1] - nxt[:, 0] * pts[:, 1]) >= 0 else -1.0
    inside = np.ones(xs.shape, bool)
    for (ax, ay), (bx, by) in zip(pts, nxt, strict=True):
        inside &= sign * ((bx - ax) * (ys - ay) - (by - ay) * (xs - ax)) >= -1e-9
    out[sl] = inside
    return out


def _disc_mask(shape: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    """Rasterise a disc: pixels whose centre is within ``r`` of (cx, cy)."""
    out = np.zeros(shape, bool)
    win = _window(shape, cx - r, cy - r, cx + r, cy + r)
    if win is not None:
        sl, xs, ys = win
        out[sl] = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    return out


def _part_mask(shape: tuple[int, int], part: _Part) -> np.ndarray:
    if part.kind == "poly":
        return _convex_mask(shape, part.geom)
    return _disc_mask(shape, *part.geom)


def trace_polygon(mask: np.ndarray, epsilon: float = TRACE_EPSILON_PX, upsample: int = 4) -> np.ndarray:
    """Outline of the largest connected region of a mask, in pixel-corner coordinates.

    The mask is upsampled (nearest) before ``cv2.findContours`` so the outline runs within
    ``0.5 / upsample`` px of the pixel edges instead of through the boundary pixels' centres, then
    simplified with ``cv2.approxPolyDP``.

    Args:
        mask (np.ndarray): H x W bool mask (not empty).
        epsilon (float): approxPolyDP tolerance in pixels.
        upsample (int): upsampling factor.

    Returns:
        np.ndarray: (K, 2) float vertices (K >= 3).
    """
    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    crop = np.pad(mask[y0 : ys.max() + 1, x0 : xs.max() + 1], 1).astype(np.uint8)
    big = np.repeat(np.repeat(crop, upsample, axis=0), upsample, axis=1)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    approx = cv2.approxPolyDP(contour, epsilon * upsample, True)[:, 0, :].astype(np.float64)
    if len(approx) < 3:
        approx = contour[:, 0, :].astype(np.float64)
    return (approx + 0.5) / upsample + np.array([x0 - 1.0, y0 - 1.0])


# ----------------------------------------------------------------------------------- background
def _value_noise(rng: np.random.Generator, h: int, w: int, cells: float, octaves: int = 4,
                 persistence: float = 0.5) -> np.ndarray:
    """Multi-octave value noise in about [0, 1].

    Args:
        rng (np.random.Generator): random source.
        h (int): height.
        w (int): width.
        cells (float): lattice cells across the longer side at the first octave.
        octaves (int): number of octaves, each twice as fine.
        persistence (float): amplitude factor per octave.

    Returns:
        np.ndarray: (h, w) float32.
    """
    total = np.zeros((h, w), np.float32)
    amp, norm, side = 1.0, 0.0, max(h, w)
    for o in range(octaves):
        c = cells * 2**o
        shape = (max(2, round(c * h / side)) + 1, max(2, round(c * w / side)) + 1)
        grid = rng.random(shape, dtype=np.float32)
        total += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        norm += amp
        amp *= persistence
    return total / norm


def _smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _jitter(rng: np.random.Generator, colour: Sequence[float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def _sky(rng: np.random.Generator, h: int, w: int, horizon: float, ys: np.ndarray) -> np.ndarray:
    overcast = rng.random() < 0.3
    top = _jitter(rng, (175, 170, 165) if overcast else (205, 150, 95), 10)
    low = _jitter(rng, (215, 212, 208) if overcast else (235, 215, 190), 8)
    t = np.clip(ys / max(horizon, 1.0), 0, 1)[..., None]
    sky = top * (1 - t) + low * t
    cover = rng.uniform(0.3, 0.9)
    clouds = _smoothstep(0.42, 0.72, _value_noise(rng, h, w, 3, 5))[..., None] * cover
    return sky * (1 - clouds) + _jitter(rng, (242, 242, 240), 4) * clouds


def _ground_layer(rng: np.random.Generator, h: int, w: int, colour: Sequence[float], grain: float,
                  patch: float) -> np.ndarray:
    base = _jitter(rng, colour, 8)
    patches = _value_noise(rng, h, w, 7, 3) - 0.5
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.6)
    return base * (1 + patch * patches[..., None]) + grain * fine[..., None]


def _ground(rng: np.random.Generator, h: int, w: int, horizon: float, ys: np.ndarray) -> np.ndarray:
    asphalt = _ground_layer(rng, h, w, (112, 108, 104), rng.uniform(7, 13), 0.35)
    grass = _ground_layer(rng, h, w, (55, 128, 78), rng.uniform(10, 16), 0.6)
    style = rng.choice(["asphalt", "grass", "mixed"], p=[0.45, 0.2, 0.35])
    if style == "asphalt":
        ground = asphalt
    elif style == "grass":
        ground = grass
    else:
        edge = horizon + rng.uniform(0.15, 0.5) * (h - horizon)
        edge_line = edge + 2.5 * (_value_noise(rng, 1, w, 8, 2)[0] - 0.5)
        ground = np.where((ys < edge_line[None, :])[..., None], grass, asphalt)
    if style != "grass" and rng.random() < 0.7:
        ground = _parking_lines(rng, ground, horizon)
    haze = _smoothstep(0.0, 0.35 * (h - horizon), ys - horizon)[..., None]
    return ground * (0.75 + 0.25 * haze) + _jitter(rng, (190, 190, 190), 5) * 0.25 * (1 - haze)


def _parking_lines(rng: np.random.Generator, ground: np.ndarray, horizon: float) -> np.ndarray:
    h, w = ground.shape[:2]
    layer = np.zeros((h, w), np.float32)
    vx = rng.uniform(-0.5, 1.5) * w
    y_start = horizon + rng.uniform(0.1, 0.3) * (h - horizon)
    for bx in np.linspace(-0.5 * w, 1.5 * w, int(rng.integers(4, 9))) + rng.uniform(-20, 20):
        t = (y_start - horizon) / (h - horizon)
        p0 = (vx + (bx - vx) * t, y_start)
        cv2.line(layer, (int(p0[0] * 16), int(p0[1] * 16)), (int(bx * 16), h * 16), 1.0,
                 int(rng.integers(1, 3)), cv2.LINE_AA, 4)
    paint = _jitter(rng, (215, 222, 225) if rng.random() < 0.7 else (60, 190, 220), 6)
    alpha = 0.75 * np.clip(layer, 0, 1)[..., None]
    return ground * (1 - alpha) + paint * alpha


def _tree_line(rng: np.random.Generator, img: np.ndarray, horizon: float, ys: np.ndarray) -> None:
    h, w = img.shape[:2]
    height = rng.uniform(0.04, 0.14) * h
    top = horizon - height * (0.35 + 0.65 * _value_noise(rng, 1, w, 10, 4)[0])
    inside = (ys >= top[None, :]) & (ys < horizon + 1)
    tex = _value_noise(rng, h, w, 40, 3)[..., None]
    foliage = _jitter(rng, (45, 85, 50), 8) * (0.6 + 0.8 * tex)
    img[inside] = foliage[inside]


def _buildings(rng: np.random.Generator, img: np.ndarray, horizon: float) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        bw, bh = rng.uniform(0.15, 0.45) * w, rng.uniform(0.05, 0.2) * h
        x0 = rng.uniform(-0.1 * w, w - 0.2 * w)
        y1 = horizon + 1.0
        wall = _jitter(rng, _WALL_COLOURS[rng.integers(len(_WALL_COLOURS))], 8)
        r0, r1 = max(int(y1 - bh), 0), max(int(y1), 0)
        c0, c1 = max(int(x0), 0), min(int(x0 + bw), w)
        if r1 - r0 < 4 or c1 - c0 < 4:
            continue
        img[r0:r1, c0:c1] = wall
        img[r0 : r0 + 2, c0:c1] = wall * 0.7  # roof edge
        glass = _jitter(rng, (95, 85, 75), 8)
        step = int(rng.integers(6, 11))
        for r in range(r0 + 4, r1 - 3, step):
            for c in range(c0 + 3, c1 - 3, step):
                img[r : r + step // 2, c : c + step // 2] = glass


def _background(rng: np.random.Generator, h: int, w: int, horizon: float) -> np.ndarray:
    ys = np.mgrid[0:h, 0:w][0].astype(np.float32) + 0.5
    sky, ground = _sky(rng, h, w, horizon, ys), _ground(rng, h, w, horizon, ys)
    img = np.where((ys < horizon)[..., None], sky, ground)
    if rng.random() < 0.6:
        _buildings(rng, img, horizon)
    if rng.random() < 0.75:
        _tree_line(rng, img, horizon, ys)
    return img.astype(np.float32)


# -------------------------------------------------------------------------------------- objects
def _rounded_outline(u0: float, v0: float, u1: float, v1: float, radii: Sequence[float],
                     steps: int = 5) -> np.ndarray:
    """Convex rounded rectangle in (u, v), v up; radii: rear-bottom, front-bottom, front-top, rear-top."""
    rb, fb, ft, rt = radii
    corners = [((u1 - fb, v0 + fb), fb, -90), ((u1 - ft, v1 - ft), ft, 0), ((u0 + rt, v1 - rt), rt, 90),
               ((u0 + rb, v0 + rb), rb, 180)]
    pts = []
    for (cu, cv), r, start in corners:
        for a in np.linspace(start, start + 90, steps):
            pts.append((cu + r * math.cos(math.radians(a)), cv + r * math.sin(math.radians(a))))
    return np.array(pts)


def _trapezoid(u_rear_bottom: float, u_front_bottom: float, u_front_top: float, u_rear_top: float,
               v_bottom: float, v_top: float) -> np.ndarray:
    return np.array([[u_rear_bottom, v_bottom], [u_front_bottom, v_bottom], [u_front_top, v_top],
                     [u_rear_top, v_top]])


def _build_car(rng: np.random.Generator, length: float) -> DemoObject:
    """Side-view car with its left end at x = 0 and the ground (wheel bottoms) at y = 0."""
    L, hf = length, rng.uniform(0.9, 1.2)
    facing_right = rng.random() < 0.5
    body_col = _jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 10)
    r = 0.11 * L
    vb, vt, vc = 0.07 * L, 0.27 * L * hf, 0.27 * L * hf + 0.18 * L * hf
    wheel_u = (0.2 * L, 0.8 * L)
    local: list[tuple[str, np.ndarray, tuple, str, bool]] = [
        ("poly", _rounded_outline(0, vb, L, vt, (0.03 * L, 0.03 * L, 0.09 * L, 0.05 * L)), body_col,
         "vgrad", True),
        ("poly", _trapezoid(0.2 * L, 0.77 * L, 0.62 * L, 0.3 * L, vt - 0.01 * L, vc), body_col,
         "vgrad", True),
    ]
    glass = _jitter(rng, (70, 55, 45), 8)
    i_b, i_t = vt + 0.015 * L, vc - 0.025 * L
    f = (i_b - (vt - 0.01 * L)) / (vc - vt + 0.01 * L)  # how far up the cabin the windows start
    g = (i_t - (vt - 0.01 * L)) / (vc - vt + 0.01 * L)
    rear_b, rear_t = 0.2 * L + f * 0.1 * L + 0.03 * L, 0.2 * L + g * 0.1 * L + 0.03 * L
    front_b, front_t = 0.77 * L - f * 0.15 * L - 0.03 * L, 0.77 * L - g * 0.15 * L - 0.03 * L
    pillar = 0.49 * L
    local += [
        ("poly", _trapezoid(rear_b, pillar - 0.015 * L, pillar - 0.015 * L, rear_t, i_b, i_t), glass,
         "glass", False),
        ("poly", _trapezoid(pillar + 0.015 * L, front_b, front_t, pillar + 0.015 * L, i_b, i_t), glass,
         "glass", False),
        ("poly", _trapezoid(pillar - 0.004 * L, pillar + 0.004 * L, pillar + 0.004 * L, pillar - 0.004 * L,
                            vb + 0.03 * L, vt - 0.02 * L), body_col * 0.6, "flat", False),
        ("poly", _trapezoid(0.955 * L, 0.995 * L, 0.995 * L, 0.955 * L, vb + 0.09 * L, vb + 0.13 * L),
         (150, 235, 245), "flat", False),
        ("poly", _trapezoid(0.005 * L, 0.04 * L, 0.04 * L, 0.005 * L, vb + 0.09 * L, vb + 0.13 * L),
         (40, 40, 200), "flat", False),
    ]
    for u in wheel_u:
        local.append(("circle", np.array([u, r, 1.15 * r]), (30, 30, 32), "flat", False))  # wheel arch
    for u in wheel_u:
        local += [
            ("circle", np.array([u, r, r]), (28, 28, 30), "flat", True),
            ("circle", np.array([u, r, 0.55 * r]), _jitter(rng, (165, 165, 170), 12), "vgrad", False),
            ("circle", np.array([u, r, 0.18 * r]), (70, 70, 72), "flat", False),
        ]
    parts = []
    for kind, geom, col, shading, sil in local:
        geom = geom.astype(np.float64).copy()
        if kind == "poly":
            geom[:, 0] = geom[:, 0] if facing_right else L - geom[:, 0]
            geom[:, 1] = -geom[:, 1]
        else:
            geom[0] = geom[0] if facing_right else L - geom[0]
            geom[1] = -geom[1]
        parts.append(_Part(kind, geom, tuple(np.asarray(col, np.float32).tolist()), shading, sil))
    return DemoObject("car", "car", parts=parts)


def _board_details(rng: np.random.Generator, w: float, h: float, colour: np.ndarray) -> list[tuple]:
    """Border, face and 'text' bars of a board in local (u, v) = (along width, along height)."""
    b = max(1.2, 0.07 * min(w, h))

    def rect(u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
        return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])

    items = [(rect(0, 0, w, h), _jitter(rng, _WHITE, 5), "flat", True),
             (rect(b, b, w - b, h - b), colour, "vgrad", False)]
    ink = _jitter(rng, _WHITE, 5) if colour.mean() < 140 else _jitter(rng, (35, 35, 35), 5)
    n_bars = int(rng.integers(1, 4))
    pitch = (h - 2 * b) / (n_bars + 1)
    for i in range(n_bars):
        v = b + pitch * (i + 1)
        half = max(0.6, 0.12 * pitch + 0.4)
        u1 = w - b - (w - 2 * b) * rng.uniform(0.12, 0.45)
        items.append((rect(b + 0.12 * (w - 2 * b), v - half, u1, v + half), ink, "flat", False))
    return items


def _pole_part(rng: np.random.Generator, x_centre: float, y_top: float, y_bottom: float,
               width: float) -> tuple[_Part, tuple[float, float, float, float]]:
    x1, x2 = x_centre - width / 2, x_centre + width / 2
    pts = np.array([[x1, y_top], [x2, y_top], [x2, y_bottom], [x1, y_bottom]])
    colour = tuple(_jitter(rng, (150, 150, 155), 10).tolist())
    return _Part("poly", pts, colour, "cyl", True), (x1, y_top, x2, y_bottom)


def _build_board(rng: np.random.Generator, width: float, angle: float, with_pole: bool) -> DemoObject:
    """Rectangular board; the ground (pole foot) or the board's bottom is at y = 0, centred on x = 0."""
    w, h = width, width * rng.uniform(0.45, 0.85)
    pole_len = rng.uniform(0.5, 1.2) * h if with_pole else 0.0
    cx, cy = 0.0, -pole_len - h / 2 if with_pole else -h / 2
    t = math.radians(angle)
    # top-left corner before rotation, such that the rotated board stays centred on (cx, cy)
    tlx = cx - (w / 2 * math.cos(t) - h / 2 * math.sin(t))
    tly = cy - (w / 2 * math.sin(t) + h / 2 * math.cos(t))
    obj = DemoObject("sign board", "board", rect=(tlx, tly, w, h, angle))
    if with_pole:
        part, obj.pole = _pole_part(rng, cx, cy, 0.0, max(2.0, 0.05 * w + 1.0))
        obj.parts.append(part)
    colour = _jitter(rng, _BOARD_COLOURS[rng.integers(len(_BOARD_COLOURS))], 12)
    ux, uy, vx, vy = math.cos(t), math.sin(t), -math.sin(t), math.cos(t)
    for pts, col, shading, sil in _board_details(rng, w, h, colour):
        img_pts = np.stack([tlx + pts[:, 0] * ux + pts[:, 1] * vx, tly + pts[:, 0] * uy + pts[:, 1] * vy], 1)
        obj.parts.append(_Part("poly", img_pts, tuple(np.asarray(col).tolist()), shading, sil))
    return obj


def _build_round(rng: np.random.Generator, diameter: float) -> DemoObject:
    """Round sign on a pole; pole foot at (0, 0)."""
    r = diameter / 2
    pole_len = rng.uniform(0.8, 1.6) * diameter
    cy = -pole_len - r
    obj = DemoObject("sign board", "round", circle=(0.0, cy, r))
    part, obj.pole = _pole_part(rng, 0.0, cy, 0.0, max(2.0, 0.06 * diameter + 1.0))
    obj.parts.append(part)
    if rng.random() < 0.5:  # prohibition style: red disc, white bar
        ring, face = _jitter(rng, _WHITE, 5), _jitter(rng, (40, 40, 205), 10)
        bar_col = _jitter(rng, _WHITE, 5)
    else:  # mandatory style: blue disc, white border and bar
        ring, face = _jitter(rng, _WHITE, 5), _jitter(rng, (170, 90, 20), 10)
        bar_col = _jitter(rng, _WHITE, 5)
    obj.parts += [
        _Part("circle", np.array([0.0, cy, r]), tuple(ring.tolist()), "flat", True),
        _Part("circle", np.array([0.0, cy, 0.86 * r]), tuple(face.tolist()), "vgrad", False),
    ]
    bw, bh = 0.55 * r, max(0.8, 0.14 * r)
    bar = np.array([[-bw, cy - bh], [bw, cy - bh], [bw, cy + bh], [-bw, cy + bh]])
    obj.parts.append(_Part("poly", bar, tuple(bar_col.tolist()), "flat", False))
    return obj


def _build(rng: np.random.Generator, variant: str, size: float) -> DemoObject:
    if variant == "car":
        return _build_car(rng, size)
    if variant == "round_pole":
        return _build_round(rng, size)
    if variant == "board_rotated":
        angle = float(rng.uniform(5, 25) * rng.choice([-1, 1]))
    elif variant in ("board_flat", "board_pole", "board"):
        angle = 0.0 if rng.random() < 0.5 or variant == "board_flat" else float(rng.uniform(-25, 25))
    else:
        raise ValueError(f"unknown demo object variant {variant!r}; choose from {VARIANTS}")
    return _build_board(rng, size, angle, with_pole=variant == "board_pole")


def _random_variant(rng: np.random.Generator) -> str:
    return str(rng.choice(["car", "board", "board_pole", "round_pole"], p=[0.5, 0.2, 0.15, 0.15]))


def _place(rng: np.random.Generator, variant: str, w: int, h: int, horizon: float,
           near: DemoObject | None) -> DemoObject:
    """Build an object sized by its depth below the horizon and move it fully inside the image."""
    ground = rng.uniform(horizon + 0.05 * (h - horizon), h - 2)
    t = (ground - horizon) / (h - horizon)
    frac = float(np.clip(0.13 + 0.45 * t + rng.normal(0, 0.06), 0.15, 0.55))
    if variant != "car":  # signs are a bit smaller than cars at the same depth
        frac = max(0.15, frac * rng.uniform(0.65, 0.9))
    obj = _build(rng, variant, frac * w)
    x0, y0, x1, y1 = obj.extent()
    scale = min(1.0, (w - 3) / (x1 - x0), (h - 3) / (y1 - y0))
    if scale < 1.0:
        obj = _build(rng, variant, frac * w * scale * 0.98)
        x0, y0, x1, y1 = obj.extent()
    lo_x, hi_x = 1 - x0, w - 1 - x1
    if near is not None:  # overlap a previous object on purpose (occlusion)
        nx0, _, nx1, _ = near.extent()
        target = rng.uniform(nx0, nx1) - (x1 + x0) / 2
        dx = float(np.clip(target, lo_x, hi_x))
    else:
        dx = rng.uniform(lo_x, hi_x)
    anchor_y = ground  # pole foot / wheels on the ground; boards without pole hang higher (on a wall)
    if variant in ("board", "board_flat", "board_rotated"):
        anchor_y -= rng.uniform(0.1, 0.6) * (ground - horizon + 20)
    dy = float(np.clip(anchor_y, 1 - y0, h - 1 - y1))
    moved = obj.shifted(dx, dy)
    moved.depth = y1 + dy
    return moved


# ---------------------------------------------------------------------------------------- scene
def _shadow(img: np.ndarray, obj: DemoObject) -> None:
    x0, _, x1, y1 = obj.extent()
    h, w = img.shape[:2]
    cx, ax, ay = (x0 + x1) / 2, 0.58 * (x1 - x0), max(1.5, 0.045 * (x1 - x0))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    d = ((xs - cx) / ax) ** 2 + ((ys - y1 + 0.3 * ay) / ay) ** 2
    img *= (1 - 0.5 * np.exp(-d * 1.5))[..., None]


def _paint(img: np.ndarray, obj: DemoObject, ys: np.ndarray, xs: np.ndarray) -> None:
    for part in obj.parts:
        m = part.mask & obj.full_mask
        if not m.any():
            continue
        colour = np.asarray(part.colour, np.float32)
        py, px = ys[m], xs[m]
        if part.shading == "vgrad":
            top, bot = py.min(), py.max() + 1e-3
            gain = 1.22 - 0.5 * (py - top) / (bot - top)
        elif part.shading == "glass":
            top, bot = py.min(), py.max() + 1e-3
            streak = np.exp(-(((px - px.mean()) + 1.2 * (py - py.mean())) / (0.3 * (bot - top) + 1)) ** 2)
            gain = 0.85 + 0.25 * (py - top) / (bot - top) + 0.9 * streak
        elif part.shading == "cyl":
            left, right = px.min(), px.max() + 1e-3
            gain = 0.65 + 0.6 * (1 - np.abs(2 * (px - left) / (right - left) - 1)) ** 0.7
        else:
            gain = np.ones_like(py)
        img[m] = np.clip(colour[None, :] * gain[:, None], 0, 255)


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Lighting gradient, vignetting, colour cast, slight blur, sensor noise; returns BGR uint8."""
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    ang, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0.06, 0.2)
    light = 1 + strength * 2 * ((xs / w - 0.5) * math.cos(ang) + (ys / h - 0.5) * math.sin(ang))
    r2 = ((xs - w / 2) / (w / 2)) ** 2 + ((ys - h / 2) / (h / 2)) ** 2
    vignette = 1 - rng.uniform(0.12, 0.3) * r2 / 2
    cast = (1 + rng.normal(0, 0.035, 3)).astype(np.float32)
    img = img * (light * vignette)[..., None] * cast * rng.uniform(0.85, 1.1)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.9))
    img = img + rng.normal(0, rng.uniform(2.0, 5.0), img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _resolve_visibility(objects: list[DemoObject], shape: tuple[int, int]) -> list[DemoObject]:
    """Compute masks in z-order and drop objects that would be (almost) invisible."""
    for obj in objects:
        for part in obj.parts:
            part.mask = _part_mask(shape, part)
        obj.full_mask = np.logical_or.reduce([p.mask for p in obj.parts if p.silhouette])
    objects = sorted(objects, key=lambda o: o.depth)  # stable: far first, near last
    while True:
        cover = np.zeros(shape, bool)
        for obj in reversed(objects):
            obj.visible_mask = obj.full_mask & ~cover
            cover |= obj.full_mask
        bad = [o for o in objects
               if o.visible_mask.sum() < max(MIN_VISIBLE_PX, MIN_VISIBLE_FRACTION * o.full_mask.sum())]
        if not bad:
            return objects
        objects.remove(min(bad, key=lambda o: o.visible_fraction))


def _annotate_kind(obj: DemoObject) -> None:
    if obj.visible_fraction < OCCLUDED_BELOW:
        obj.kind = "brush"
    elif obj.shape == "board" and not obj.has_pole:
        obj.kind = "rectangle"
    else:
        obj.kind = "polygon"
        obj.polygon = trace_polygon(obj.visible_mask)


def render_scene(rng: np.random.Generator, width: int, height: int, *, num_objects: int | None = None,
                 variants: Sequence[str] = ()) -> tuple[np.ndarray, list[DemoObject]]:
    """Render one campus scene with cars and sign boards.

    Args:
        rng (np.random.Generator): random source (the scene is a function of its state).
        width (int): image width in pixels.
        height (int): image height in pixels.
        num_objects (int | None): objects to try to place (0-4 drawn at random when None: none in
            about 1 of 12 scenes). Objects left with too little visible area are dropped.
        variants (Sequence[str]): variants for the first objects (from :data:`VARIANTS`); the rest are
            drawn at random.

    Returns:
        tuple[np.ndarray, list[DemoObject]]: the H x W x 3 BGR uint8 image and the kept objects in
        painting order (far to near), each with ``visible_mask``, ``kind`` and geometry set.
    """
    if num_objects is None:
        num_objects = 0 if rng.random() < 1 / 12 else int(rng.integers(1, 5))
    horizon = rng.uniform(0.3, 0.6) * height
    img = _background(rng, height, width, horizon)
    objects: list[DemoObject] = []
    for i in range(num_objects):
        variant = variants[i] if i < len(variants) else _random_variant(rng)
        near = objects[int(rng.integers(len(objects)))] if objects and rng.random() < 0.3 else None
        objects.append(_place(rng, variant, width, height, horizon, near))
    objects = _resolve_visibility(objects, (height, width))
    for obj in objects:
        if obj.shape == "car":
            _shadow(img, obj)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    for obj in objects:
        _paint(img, obj, ys, xs)
    for obj in objects:
        _annotate_kind(obj)
        for part in obj.parts:
            part.mask = None  # free memory; geometry stays
    return _finish(rng, img), objects


# ---------------------------------------------------------------------------------- annotations
def _pct(points: np.ndarray, w: int, h: int) -> list[list[float]]:
    return [[float(x) * 100.0 / w, float(y) * 100.0 / h] for x, y in points]


def _ls_result(obj: DemoObject, rid: str, w: int, h: int) -> dict:
    """One Label Studio result (brushlabels / rectanglelabels / polygonlabels) for an object."""
    if obj.kind == "brush":
        rtype = "brushlabels"
        value = {"format": "rle", "rle": mask_to_brush_rle(obj.visible_mask), "brushlabels": [obj.label]}
    elif obj.kind == "rectangle":
        x, y, bw, bh, angle = obj.rect
        rtype = "rectanglelabels"
        value = {"x": x * 100.0 / w, "y": y * 100.0 / h, "width": bw * 100.0 / w, "height": bh * 100.0 / h,
                 "rotation": angle % 360.0, "rectanglelabels": [obj.label]}
    else:
        rtype = "polygonlabels"
        value = {"points": _pct(obj.polygon, w, h), "closed": True, "polygonlabels": [obj.label]}
    return {"original_width": w, "original_height": h, "image_rotation": 0, "value": value, "id": rid,
            "from_name": "label", "to_name": "image", "type": rtype, "origin": "manual"}


def _lm_shape(label: str, points: Sequence[Sequence[float]], shape_type: str, group_id: int | None = None,
              mask: str | None = None) -> dict:
    return {"label": label, "points": [[float(x), float(y)] for x, y in points], "group_id": group_id,
            "description": "", "shape_type": shape_type, "flags": {}, "mask": mask}


def _mask_png_b64(crop: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", crop.astype(np.uint8))  # 0/1 values, as labelme saves masks
    if not ok:
        raise RuntimeError("cv2.imencode failed to write a PNG mask")
    return base64.b64encode(png.tobytes()).decode("ascii")


def _labelme_shapes(obj: DemoObject, next_group: int) -> tuple[list[dict], int]:
    """LabelMe shapes of one object and the next free group id."""
    if obj.kind == "brush":
        ys, xs = np.nonzero(obj.visible_mask)
        x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
        crop = obj.visible_mask[y1 : y2 + 1, x1 : x2 + 1]
        return [_lm_shape(obj.label, [[x1, y1], [x2, y2]], "mask", mask=_mask_png_b64(crop))], next_group
    if obj.shape == "car":
        return [_lm_shape(obj.label, obj.polygon, "polygon")], next_group
    group = next_group if obj.has_pole else None
    if obj.shape == "round":
        cx, cy, r = obj.circle
        shapes = [_lm_shape(obj.label, [[cx, cy], [cx + r, cy]], "circle", group)]
    elif obj.rect[4] == 0.0:
        x, y, bw, bh, _ = obj.rect
        shapes = [_lm_shape(obj.label, [[x, y], [x + bw, y + bh]], "rectangle", group)]
    else:
        shapes = [_lm_shape(obj.label, obj.board_corners(), "polygon", group)]
    if obj.has_pole:
        x1, y1, x2, y2 = obj.pole
        shapes.append(_lm_shape(obj.label, [[x1, y1], [x2, y2]], "rectangle", group))
        next_group += 1
    return shapes, next_group


def _coco_annotation(obj: DemoObject, ann_id: int, image_id: int) -> dict:
    rle = mask_util.encode(np.asfortranarray(obj.visible_mask.astype(np.uint8)))
    return {"id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[obj.label],
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": float(mask_util.area(rle)), "bbox": [float(v) for v in mask_util.toBbox(rle)],
            "iscrowd": 0,
            "demo": {"shape": obj.shape, "kind": obj.kind, "pole": obj.has_pole,
                     "visible_fraction": round(obj.visible_fraction, 4)}}


# -------------------------------------------------------------------------------------- dataset
def _ls_upload_name(name: str) -> str:
    """The file name Label Studio stores on upload: spaces become '_', non-ASCII is URL-encoded."""
    return urllib.parse.quote(name.replace(" ", "_"))


def _image_names(rng: np.random.Generator, n: int) -> list[str]:
    names = [f"campus_{i + 1:04d}.jpg" for i in range(n)]
    if n == 0:
        return names
    order = rng.permutation(n)
    odd = int(order[0])
    names[odd] = f"{_NON_ASCII_PREFIX} {odd + 1:04d}.jpg"
    n_spaced = max(1, round(n / 10)) if n >= 2 else 0
    for i in order[1 : 1 + n_spaced]:
        names[int(i)] = f"{_SPACED_PREFIXES[int(rng.integers(len(_SPACED_PREFIXES)))]} {int(i) + 1:04d}.jpg"
    return names


def _timestamp(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ls_task(task_id: int, upload: str, results: list[dict], rng: np.random.Generator) -> dict:
    created = _BASE_TIME + _dt.timedelta(seconds=37 * task_id, microseconds=int(rng.integers(1_000_000)))
    lead = round(float(rng.uniform(4.0, 95.0)), 3)
    done = created + _dt.timedelta(hours=2, seconds=lead + 60 * task_id)
    annotation = {
        "id": 1000 + task_id, "completed_by": 1, "result": results, "was_cancelled": False,
        "ground_truth": False, "created_at": _timestamp(done), "updated_at": _timestamp(done),
        "lead_time": lead, "prediction": {}, "result_count": len(results), "task": task_id, "project": 1,
        "parent_prediction": None, "parent_annotation": None,
    }
    return {
        "id": task_id, "annotations": [annotation], "file_upload": upload, "drafts": [], "predictions": [],
        "data": {"image": f"/data/upload/1/{upload}"}, "meta": {}, "created_at": _timestamp(created),
        "updated_at": _timestamp(done), "inner_id": task_id, "total_annotations": 1,
        "cancelled_annotations": 0, "total_predictions": 0, "project": 1, "updated_by": None,
    }


def _result_id(rng: np.random.Generator) -> str:
    return "".join(_ID_ALPHABET[i] for i in rng.integers(len(_ID_ALPHABET), size=10))


def _write_json(path: Path, obj, indent: int | None = None) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")


def _scene_plan(rng: np.random.Generator, n: int) -> list[tuple[int, tuple[str, ...]]]:
    """Per image: how many objects to try and the forced first variant (so every type shows up early)."""
    negatives = set(rng.permutation(n)[: max(1, round(n / 12)) if n >= 2 else 0].tolist())
    plan, k = [], 0
    for i in range(n):
        if i in negatives:
            plan.append((0, ()))
        else:
            plan.append((int(rng.integers(1, 5)), (_FIRST_VARIANT_CYCLE[k % len(_FIRST_VARIANT_CYCLE)],)))
            k += 1
    return plan


def _remove_stale(folder: Path, pattern: str, keep: set[str]) -> None:
    for path in folder.glob(pattern):
        if path.name not in keep:
            path.unlink()


def make_demo_dataset(out_dir: str | Path, num_images: int = 80, width: int = 256, height: int = 192,
                      seed: int = 0) -> dict:
    """Render the demo dataset and write Label Studio, LabelMe and COCO-truth annotations.

    Writes ``images/*.jpg``, ``labelstudio.json``, ``labelme/<stem>.json``, ``truth.json`` and
    ``demo_params.json`` (parameters and summary) under ``out_dir``. When ``out_dir`` already holds a
    demo dataset (``demo_params.json``), images and LabelMe files of the old one that the new one does
    not write are removed.

    Args:
        out_dir (str | Path): output folder (created).
        num_images (int): number of images.
        width (int): image width in pixels.
        height (int): image height in pixels.
        seed (int): random seed; same arguments give byte-identical files.

    Returns:
        dict: summary with ``num_images``, ``num_negative``, ``instances`` (per class),
        ``labelstudio_types`` and ``labelme_types`` (counts per result / shape type), ``groups``.
    """
    if num_images < 1 or width < 32 or height < 32:
        raise ValueError(f"need num_images >= 1 and images of at least 32x32, got {num_images}, "
                         f"{width}x{height}")
    out = Path(out_dir)
    had_demo = (out / "demo_params.json").exists()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labelme").mkdir(parents=True, exist_ok=True)
    meta_rng = np.random.default_rng([seed, 2**31 - 1])
    names = _image_names(meta_rng, num_images)
    plan = _scene_plan(meta_rng, num_images)
    summary = {"num_images": num_images, "num_negative": 0, "instances": {c: 0 for c in CLASSES},
               "labelstudio_types": {t: 0 for t in ("polygonlabels", "rectanglelabels", "brushlabels")},
               "labelme_types": {t: 0 for t in ("polygon", "rectangle", "circle", "mask")}, "groups": 0}
    tasks, coco_images, coco_anns = [], [], []
    for idx in tqdm(range(num_images), desc="demo dataset", unit="img"):
        name, (n_obj, variants) = names[idx], plan[idx]
        image, objects = render_scene(np.random.default_rng([seed, idx]), width, height,
                                      num_objects=n_obj, variants=variants)
        ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"cv2.imencode failed for {name}")
        (out / "images" / name).write_bytes(jpg.tobytes())  # write_bytes: non-ASCII paths work everywhere
        results, shapes, group = [], [], 1
        for obj in objects:
            results.append(_ls_result(obj, _result_id(meta_rng), width, height))
            obj_shapes, group = _labelme_shapes(obj, group)
            shapes += obj_shapes
            coco_anns.append(_coco_annotation(obj, len(coco_anns) + 1, idx + 1))
            summary["instances"][obj.label] += 1
            summary["labelstudio_types"][results[-1]["type"]] += 1
        for s in shapes:
            summary["labelme_types"][s["shape_type"]] += 1
        summary["groups"] += group - 1
        summary["num_negative"] += not objects
        upload = f"{int(meta_rng.integers(2**32)):08x}-{_ls_upload_name(name)}"
        tasks.append(_ls_task(idx + 1, upload, results, meta_rng))
        _write_json(out / "labelme" / f"{Path(name).stem}.json",
                    {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": f"../images/{name}",
                     "imageData": None, "imageHeight": height, "imageWidth": width}, indent=2)
        coco_images.append({"id": idx + 1, "file_name": name, "width": width, "height": height})
    _write_json(out / "labelstudio.json", tasks)
    categories = [{"id": CATEGORY_IDS[c], "name": c, "supercategory": "campus"} for c in CLASSES]
    truth = {"images": coco_images, "annotations": coco_anns, "categories": categories}
    _write_json(out / "truth.json", truth)
    if had_demo:
        _remove_stale(out / "images", "*.jpg", set(names))
        _remove_stale(out / "labelme", "*.json", {f"{Path(n).stem}.json" for n in names})
    params = {"generator": "maskseg_d2.demo", "version": GENERATOR_VERSION, "num_images": num_images,
              "width": width, "height": height, "seed": seed}
    _write_json(out / "demo_params.json", {**params, "summary": summary}, indent=2)
    logger.info("demo dataset: %d images, %s instances in %s", num_images, summary["instances"], out)
    return summary
