"""What ``input=`` can be, and how awkward images are read (EXIF, alpha, grayscale, corrupt)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from maskseg_d2.errors import UserError
from maskseg_d2.predict.sources import list_images, prefetch, read_bgr, resolve_input
from maskseg_d2.predict.video import _want_window, display_available


def test_resolve_input_kinds(awkward_folder, tmp_path):
    root = awkward_folder["root"]
    spec = resolve_input(str(root))
    assert spec.kind == "images" and spec.root == str(root) and spec.name == "photos"
    rel = [str(p)[len(str(root)) + 1 :] for p in spec.paths]
    assert rel == sorted(
        awkward_folder["readable"] + [awkward_folder["broken"]]
    )  # listed; reading reports it
    one = resolve_input(str(root / "a_photo.jpg"))
    assert one.paths == [str(root / "a_photo.jpg")] and one.root == str(root) and one.name == "a_photo"
    globbed = resolve_input(str(root / "*.jpg"))
    assert [p.rsplit("/", 1)[1] for p in globbed.paths] == [
        "a_photo.jpg",
        "d_gray.jpg",
        "e_rotated.jpg",
        "f_broken.jpg",
    ]
    assert resolve_input("0").kind == "webcam" and resolve_input(1).camera == 1
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert resolve_input(str(video)).kind == "video"
    with pytest.raises(UserError, match="video file not found"):
        resolve_input(str(tmp_path / "missing.mov"))
    with pytest.raises(UserError, match="no images found"):
        list_images(str(tmp_path / "empty*"))


def test_read_bgr_applies_exif_and_normalises_channels(awkward_folder, demo_root):
    root = awkward_folder["root"]
    rotated = read_bgr(str(root / awkward_folder["exif"]))
    assert rotated.shape[:2] == awkward_folder["exif_size"] and rotated.flags["C_CONTIGUOUS"]
    upright = np.asarray(Image.open(sorted((demo_root / "images").glob("*.jpg"))[4]).convert("RGB"))[
        :, :, ::-1
    ]
    assert np.abs(rotated.astype(int) - upright).mean() < 6  # same picture, up to JPEG re-encoding
    alpha = read_bgr(str(root / "c_alpha.png"))
    gray = read_bgr(str(root / "d_gray.jpg"))
    assert alpha.shape[2] == 3 and gray.shape[2] == 3 and alpha.dtype == gray.dtype == np.uint8
    assert np.array_equal(gray[:, :, 0], gray[:, :, 2])
    with pytest.raises(Exception):
        read_bgr(str(root / awkward_folder["broken"]))


def test_prefetch_keeps_order_and_reraises():
    assert list(prefetch(lambda x: x * x, range(20), workers=3, depth=4)) == [x * x for x in range(20)]
    assert list(prefetch(str, [1, 2], workers=0)) == ["1", "2"]

    def boom(x):
        if x == 3:
            raise ValueError("three")
        return x

    with pytest.raises(ValueError, match="three"):
        list(prefetch(boom, range(6), workers=2))


def test_live_window_only_with_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        assert display_available() is False and _want_window("auto") is False
        with pytest.raises(UserError, match="no display"):
            _want_window("true")
    assert _want_window("false") is False
