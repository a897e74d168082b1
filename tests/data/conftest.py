"""Fixtures for the importer tests: photo writing (EXIF included), mask helpers, and label-studio-sdk.

``label-studio-sdk`` is a TEST-ONLY reference: installing it into .venv would move our runtime pins
(pillow 11.3 -> 13), so it lives in its own git-ignored venv ``.venv-ls/`` created once on first use
(about 40 s; cached across sessions) and is driven through subprocesses. Tests that need it are
skipped, with the reason, only when the package registry is unreachable (tests/helpers/registry.py).
"""
from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.registry import pip_install
from PIL import Image


ROOT = Path(__file__).resolve().parents[2]
LS_SDK_PIN = "label-studio-sdk==2.1.2"
LS_VENV = ROOT / ".venv-ls"


# ------------------------------------------------------------------------------------------ photos


def write_photo(path: Path, w: int, h: int, orientation: int | None = None, seed: int = 0) -> Path:
    """Write a noisy RGB photo of w x h stored pixels; ``orientation`` sets a real EXIF tag (JPEG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    with open(path, "wb") as f:  # open(): non-ASCII paths on every platform
        im.save(f, format=fmt, **kwargs)
    return path


# ------------------------------------------------------------------------------------------ masks


def polygon_mask(points, h: int, w: int) -> np.ndarray:
    """Reference raster of a polygon: pixels whose centre lies inside (even-odd, vectorised)."""
    p = np.asarray(points, np.float64)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    inside = np.zeros((h, w), bool)
    for (x0, y0), (x1, y1) in zip(p, np.roll(p, -1, axis=0)):
        crosses = (y0 > ys) != (y1 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < x_at)
    return inside


def annotation_mask(ann: dict, h: int, w: int) -> np.ndarray:
    """The (H, W) bool mask of a loaded annotation (polygons or RLE)."""
    from pycocotools import mask as mask_util

    seg = ann["segmentation"]
    if isinstance(seg, dict):
        return mask_util.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
    return mask_util.decode(mask_util.merge(mask_util.frPyObjects(seg, h, w))).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="session")
def tools() -> SimpleNamespace:
    """Helpers shared by the importer tests (``tools.write_photo(...)``, ``tools.iou(...)`` ...)."""
    return SimpleNamespace(write_photo=write_photo, polygon_mask=polygon_mask,
                           annotation_mask=annotation_mask, iou=iou)


# ------------------------------------------------------------------------------------- label-studio-sdk


def _install_sdk() -> None:
    """Create .venv-ls with the SDK; skips only when the registry is unreachable, fails on any other error."""
    venv = subprocess.run([sys.executable, "-m", "venv", str(LS_VENV)], capture_output=True, text=True)
    assert venv.returncode == 0, f"python -m venv {LS_VENV} failed:\n{venv.stdout}{venv.stderr}"
    pip_install(LS_VENV / "bin" / "python", LS_SDK_PIN, timeout=600)


@pytest.fixture(scope="session")
def ls_sdk() -> SimpleNamespace:
    """label-studio-sdk in .venv-ls: ``ls_sdk.run(script, *args)`` runs Python code there, returns stdout."""
    marker = LS_VENV / f".maskseg-{LS_SDK_PIN}"
    if not marker.exists():
        LS_VENV.mkdir(exist_ok=True)
        with open(LS_VENV / ".build.lock", "w") as lock:  # two sessions must not build it at once
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                _install_sdk()
                marker.touch()
    python = str(LS_VENV / "bin" / "python")

    def run(script: str, *args: str) -> str:
        proc = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"label-studio-sdk script failed:\n{proc.stderr[-3000:]}"
        return proc.stdout

    return SimpleNamespace(python=python, run=run, json=lambda s, *a: json.loads(run(s, *a)))
