"""The demo scene painter: :func:`render_scene` places 0-4 objects on a background, resolves which part
of each is visible, paints them (shadows, shading), finishes the photo (lighting, vignetting, blur,
noise) and decides how each object is annotated.

Geometry uses the **pixel-corner convention** everywhere (Detectron2 / pycocotools): pixel ``(i, j)``
covers ``[j, j+1) x [i, i+1)`` and belongs to a shape when its centre ``(j + 0.5, i + 0.5)`` is inside.
Everything is drawn from the ``np.random.Generator`` passed in, so the same state paints the same scene.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from ..predict.annotations import mask_to_polygons
from .background import paint_background
from .objects import DemoObject, build_object, part_mask, random_variant

__all__ = ["MIN_VISIBLE_FRACTION", "MIN_VISIBLE_PX", "OCCLUDED_BELOW", "render_scene"]

OCCLUDED_BELOW = 0.97  # visible fraction under which an object is annotated with a brush / mask
MIN_VISIBLE_PX = 40
MIN_VISIBLE_FRACTION = 0.30
TRACE_EPSILON_PX = 0.7  # polygon simplification of traced outlines


def _place(rng: np.random.Generator, variant: str, w: int, h: int, horizon: float,
           near: DemoObject | None) -> DemoObject:
    """Build an object sized by its depth below the horizon and move it fully inside the image."""
    ground = rng.uniform(horizon + 0.05 * (h - horizon), h - 2)
    t = (ground - horizon) / (h - horizon)
    frac = float(np.clip(0.13 + 0.45 * t + rng.normal(0, 0.06), 0.15, 0.55))
    if variant != "car":  # signs are a bit smaller than cars at the same depth
        frac = max(0.15, frac * rng.uniform(0.65, 0.9))
    obj = build_object(rng, variant, frac * w)
    x0, y0, x1, y1 = obj.extent()
    scale = min(1.0, (w - 3) / (x1 - x0), (h - 3) / (y1 - y0))
    if scale < 1.0:
        obj = build_object(rng, variant, frac * w * scale * 0.98)
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
            part.mask = part_mask(shape, part)
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
        obj.polygon = mask_to_polygons(obj.visible_mask, TRACE_EPSILON_PX)[0]  # the largest part


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
    img = paint_background(rng, height, width, horizon)
    objects: list[DemoObject] = []
    for i in range(num_objects):
        variant = variants[i] if i < len(variants) else random_variant(rng)
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

