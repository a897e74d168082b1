"""The demo's objects: cars, rectangular sign boards (flat, rotated, on a pole) and round signs on poles.

Each object is a list of painted primitives (convex polygons and discs, pixel-corner coordinates) built in
a local frame by :func:`build_object`, plus the geometry an annotator would draw (board rectangle, circle,
pole). :func:`part_mask` rasterises a primitive: a pixel belongs to it when its centre is inside.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .background import jitter

__all__ = ["CLASSES", "VARIANTS", "DemoObject", "build_object", "part_mask", "random_variant"]

CLASSES = ["car", "sign board"]
VARIANTS = ("car", "board_flat", "board_rotated", "board_pole", "round_pole")

# BGR colours
_CAR_COLOURS = [
    (225, 225, 228), (38, 38, 44), (172, 172, 176), (45, 45, 185), (150, 75, 30), (95, 45, 20),
    (60, 120, 55), (40, 180, 215), (110, 110, 115), (70, 95, 150),
]
_BOARD_COLOURS = [
    (175, 95, 20), (60, 140, 25), (40, 40, 200), (25, 200, 235), (10, 130, 240), (35, 65, 115),
    (140, 40, 120),
]
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


def part_mask(shape: tuple[int, int], part: _Part) -> np.ndarray:
    """H x W bool mask of one primitive of an object (polygon or disc)."""
    if part.kind == "poly":
        return _convex_mask(shape, part.geom)
    return _disc_mask(shape, *part.geom)


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
    body_col = jitter(rng, _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], 10)
    r = 0.11 * L
    vb, vt, vc = 0.07 * L, 0.27 * L * hf, 0.27 * L * hf + 0.18 * L * hf
    wheel_u = (0.2 * L, 0.8 * L)
    local: list[tuple[str, np.ndarray, tuple, str, bool]] = [
        ("poly", _rounded_outline(0, vb, L, vt, (0.03 * L, 0.03 * L, 0.09 * L, 0.05 * L)), body_col,
         "vgrad", True),
        ("poly", _trapezoid(0.2 * L, 0.77 * L, 0.62 * L, 0.3 * L, vt - 0.01 * L, vc), body_col,
         "vgrad", True),
    ]
    glass = jitter(rng, (70, 55, 45), 8)
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
            ("circle", np.array([u, r, 0.55 * r]), jitter(rng, (165, 165, 170), 12), "vgrad", False),
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

    items = [(rect(0, 0, w, h), jitter(rng, _WHITE, 5), "flat", True),
             (rect(b, b, w - b, h - b), colour, "vgrad", False)]
    ink = jitter(rng, _WHITE, 5) if colour.mean() < 140 else jitter(rng, (35, 35, 35), 5)
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
    colour = tuple(jitter(rng, (150, 150, 155), 10).tolist())
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
    colour = jitter(rng, _BOARD_COLOURS[rng.integers(len(_BOARD_COLOURS))], 12)
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
        ring, face = jitter(rng, _WHITE, 5), jitter(rng, (40, 40, 205), 10)
        bar_col = jitter(rng, _WHITE, 5)
    else:  # mandatory style: blue disc, white border and bar
        ring, face = jitter(rng, _WHITE, 5), jitter(rng, (170, 90, 20), 10)
        bar_col = jitter(rng, _WHITE, 5)
    obj.parts += [
        _Part("circle", np.array([0.0, cy, r]), tuple(ring.tolist()), "flat", True),
        _Part("circle", np.array([0.0, cy, 0.86 * r]), tuple(face.tolist()), "vgrad", False),
    ]
    bw, bh = 0.55 * r, max(0.8, 0.14 * r)
    bar = np.array([[-bw, cy - bh], [bw, cy - bh], [bw, cy + bh], [-bw, cy + bh]])
    obj.parts.append(_Part("poly", bar, tuple(bar_col.tolist()), "flat", False))
    return obj


def build_object(rng: np.random.Generator, variant: str, size: float) -> DemoObject:
    """An object of a :data:`VARIANTS` variant (or ``"board"``: flat or rotated) in its local frame."""
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


def random_variant(rng: np.random.Generator) -> str:
    """A variant for an object after the forced ones: half cars, the rest sign boards."""
    return str(rng.choice(["car", "board", "board_pole", "round_pole"], p=[0.5, 0.2, 0.15, 0.15]))
