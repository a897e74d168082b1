"""Photo-like backgrounds of the demo scenes: textured sky and ground (asphalt, grass, parking lines),
tree lines and buildings, and the colour jitter and value noise they (and the objects) are drawn with.

Colours are BGR floats; :func:`paint_background` returns an (H, W, 3) float32 image that
:func:`~maskseg_d2.demo.scene.render_scene` paints the objects on.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["jitter", "paint_background"]

_WALL_COLOURS = [(165, 185, 200), (150, 150, 152), (70, 85, 140), (190, 195, 195)]


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


def jitter(rng: np.random.Generator, colour: Sequence[float], amount: float) -> np.ndarray:
    """``colour`` with Gaussian noise of ``amount`` per channel, clipped to [0, 255] (float32)."""
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def _sky(rng: np.random.Generator, h: int, w: int, horizon: float, ys: np.ndarray) -> np.ndarray:
    overcast = rng.random() < 0.3
    top = jitter(rng, (175, 170, 165) if overcast else (205, 150, 95), 10)
    low = jitter(rng, (215, 212, 208) if overcast else (235, 215, 190), 8)
    t = np.clip(ys / max(horizon, 1.0), 0, 1)[..., None]
    sky = top * (1 - t) + low * t
    cover = rng.uniform(0.3, 0.9)
    clouds = _smoothstep(0.42, 0.72, _value_noise(rng, h, w, 3, 5))[..., None] * cover
    return sky * (1 - clouds) + jitter(rng, (242, 242, 240), 4) * clouds


def _ground_layer(rng: np.random.Generator, h: int, w: int, colour: Sequence[float], grain: float,
                  patch: float) -> np.ndarray:
    base = jitter(rng, colour, 8)
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
    return ground * (0.75 + 0.25 * haze) + jitter(rng, (190, 190, 190), 5) * 0.25 * (1 - haze)


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
    paint = jitter(rng, (215, 222, 225) if rng.random() < 0.7 else (60, 190, 220), 6)
    alpha = 0.75 * np.clip(layer, 0, 1)[..., None]
    return ground * (1 - alpha) + paint * alpha


def _tree_line(rng: np.random.Generator, img: np.ndarray, horizon: float, ys: np.ndarray) -> None:
    h, w = img.shape[:2]
    height = rng.uniform(0.04, 0.14) * h
    top = horizon - height * (0.35 + 0.65 * _value_noise(rng, 1, w, 10, 4)[0])
    inside = (ys >= top[None, :]) & (ys < horizon + 1)
    tex = _value_noise(rng, h, w, 40, 3)[..., None]
    foliage = jitter(rng, (45, 85, 50), 8) * (0.6 + 0.8 * tex)
    img[inside] = foliage[inside]


def _buildings(rng: np.random.Generator, img: np.ndarray, horizon: float) -> None:
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        bw, bh = rng.uniform(0.15, 0.45) * w, rng.uniform(0.05, 0.2) * h
        x0 = rng.uniform(-0.1 * w, w - 0.2 * w)
        y1 = horizon + 1.0
        wall = jitter(rng, _WALL_COLOURS[rng.integers(len(_WALL_COLOURS))], 8)
        r0, r1 = max(int(y1 - bh), 0), max(int(y1), 0)
        c0, c1 = max(int(x0), 0), min(int(x0 + bw), w)
        if r1 - r0 < 4 or c1 - c0 < 4:
            continue
        img[r0:r1, c0:c1] = wall
        img[r0 : r0 + 2, c0:c1] = wall * 0.7  # roof edge
        glass = jitter(rng, (95, 85, 75), 8)
        step = int(rng.integers(6, 11))
        for r in range(r0 + 4, r1 - 3, step):
            for c in range(c0 + 3, c1 - 3, step):
                img[r : r + step // 2, c : c + step // 2] = glass


def paint_background(rng: np.random.Generator, h: int, w: int, horizon: float) -> np.ndarray:
    """Sky above ``horizon``, ground below, maybe buildings and a tree line: (h, w, 3) float32 BGR."""
    ys = np.mgrid[0:h, 0:w][0].astype(np.float32) + 0.5
    sky, ground = _sky(rng, h, w, horizon, ys), _ground(rng, h, w, horizon, ys)
    img = np.where((ys < horizon)[..., None], sky, ground)
    if rng.random() < 0.6:
        _buildings(rng, img, horizon)
    if rng.random() < 0.75:
        _tree_line(rng, img, horizon, ys)
    return img.astype(np.float32)
