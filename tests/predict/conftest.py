"""Fixtures for prediction tests: an input folder with awkward images, and checks that every output agrees.

The tiny trained run (``predict_run``) is shared by all tests: tests/conftest.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from maskseg_d2.data import load_dataset
from maskseg_d2.data.geometry import rasterize_polygons
from maskseg_d2.predict.outputs import class_slug
from maskseg_d2.predict.sources import output_stems

EXIF_ORIENTATION = 0x0112


def save_exif_rotated(src: Path, dst: Path) -> tuple[int, int]:
    """Store ``src`` rotated 90° counter-clockwise with EXIF orientation 6 (display: rotate 90° clockwise).

    Returns:
        tuple[int, int]: the (height, width) a viewer shows: the size of ``src``.
    """
    upright = Image.open(src).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    stored.save(dst, "JPEG", quality=95, exif=exif.tobytes())
    return upright.height, upright.width


@pytest.fixture(scope="session")
def awkward_folder(demo_root, tmp_path_factory) -> dict:
    """A folder of inputs: 2 demo photos (one in a subfolder), an RGBA PNG, a grayscale JPEG, an
    EXIF-rotated JPEG and a corrupt file.

    Returns:
        dict: ``root`` (Path), ``readable`` (relative names), ``broken`` (relative name), ``exif``
        (relative name of the rotated photo) and ``exif_size`` (its displayed (height, width)).
    """
    root = tmp_path_factory.mktemp("awkward") / "photos"
    (root / "sub").mkdir(parents=True)
    demo = sorted((demo_root / "images").glob("*.jpg"))
    shutil.copy(demo[0], root / "a_photo.jpg")
    shutil.copy(demo[1], root / "sub" / "b_photo.jpg")
    rgba = np.dstack(
        [
            np.asarray(Image.open(demo[2]).convert("RGB")),
            np.full(Image.open(demo[2]).size[::-1], 128, np.uint8),
        ]
    )
    Image.fromarray(rgba, "RGBA").save(root / "c_alpha.png")
    Image.open(demo[3]).convert("L").save(root / "d_gray.jpg", quality=95)
    exif_size = save_exif_rotated(demo[4], root / "e_rotated.jpg")
    (root / "f_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    readable = ["a_photo.jpg", "c_alpha.png", "d_gray.jpg", "e_rotated.jpg", "sub/b_photo.jpg"]
    return {
        "root": root,
        "readable": readable,
        "broken": "f_broken.jpg",
        "exif": "e_rotated.jpg",
        "exif_size": exif_size,
    }


# ------------------------------------------------------------------------------- output consistency


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled (a polygon outline cannot have holes)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool) | mask


def one_part_without_holes(mask: np.ndarray) -> bool:
    """What ``labelstudio.shape=auto`` writes as a polygon (else as an exact brush mask), by OpenCV's labelling."""
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return n == 2 and np.array_equal(fill_holes(mask), mask.astype(bool))


def part_under(mask: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The 8-connected part of ``mask`` that overlaps ``other`` most (what one Label Studio polygon keeps)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    overlap = np.bincount(labels[other], minlength=n)[1:]
    return labels == 1 + int(np.argmax(overlap))


def boundary_distance(mask: np.ndarray) -> np.ndarray:
    """Per pixel, the distance (px) to the nearest pixel on the other side of the mask's edge."""
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(np.pad(m, 1, constant_values=0), cv2.DIST_L2, 3)[1:-1, 1:-1]
    outside = (
        cv2.distanceTransform(1 - m, cv2.DIST_L2, 3) if m.any() else np.full(m.shape, np.inf, np.float32)
    )
    return np.where(mask, inside, outside)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def decode_segmentation(ann: dict, h: int, w: int) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, dict):
        return mask_util.decode(
            {
                "size": seg["size"],
                "counts": seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"],
            }
        ).astype(bool)
    return rasterize_polygons([np.reshape(p, (-1, 2)) for p in seg], h, w)


def read_coco_outputs(out: Path) -> dict:
    """``{file_name: [(category_id, score, mask), ...]}`` from coco_results.json + coco_images.json."""
    images = {im["id"]: im for im in json.loads((out / "coco_images.json").read_text())["images"]}
    per_image: dict = {im["file_name"]: [] for im in images.values()}
    for r in json.loads((out / "coco_results.json").read_text()):
        seg = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode())
        per_image[images[r["image_id"]]["file_name"]].append(
            (r["category_id"], r["score"], mask_util.decode(seg).astype(bool))
        )
    return per_image


def check_outputs(
    out: Path, input_root: Path, classes: list[str], ls_shape: str = "auto", min_iou: float = 0.5
) -> dict:
    """Assert that every output kind under ``out`` describes the same instances as coco_results.json.

    Mask PNGs and cut-outs must match exactly, and so must brush / LabelMe mask shapes. Polygons are
    simplified outlines (Label Studio keeps the largest part): every pixel where they disagree with the
    mask must lie within 2 px of its edge, and the IoU reach ``min_iou`` (1.0: exact everywhere).

    Returns:
        dict: the COCO view ``{file_name: [(category_id, score, mask)]}``.
    """
    coco = read_coco_outputs(out)
    names = sorted(coco)
    stems = dict(zip(names, output_stems(names, str(input_root))))
    for name in names:
        stem, insts = stems[name], coco[name]
        image = cv2.imread(name, cv2.IMREAD_COLOR)
        overlay = cv2.imread(str(out / "overlay" / f"{stem}.jpg"))
        h, w = insts[0][2].shape if insts else overlay.shape[:2]
        assert overlay.shape[:2] == (h, w), name  # display orientation, like the masks
        mask_files = sorted((out / "masks" / stem).glob("*.png")) if insts else []
        cutouts = sorted((out / "cutout" / stem).glob("*.png")) if insts else []
        assert len(mask_files) == len(cutouts) == len(insts), name
        for k, ((cat, score, mask), mf, cf) in enumerate(zip(insts, mask_files, cutouts)):
            assert mf.name == cf.name == f"{k:02d}_{class_slug(classes[cat - 1])}_{score:.3f}.png"
            png = cv2.imread(str(mf), cv2.IMREAD_UNCHANGED)
            assert png.dtype == np.uint8 and set(np.unique(png)) <= {0, 255}
            assert np.array_equal(png > 0, mask), mf
            bgra = cv2.imread(str(cf), cv2.IMREAD_UNCHANGED)
            ys, xs = np.nonzero(mask)
            crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            assert bgra.shape == (*crop.shape, 4) and np.array_equal(bgra[:, :, 3] > 0, crop), cf
        del image

    # Label Studio: accept every prediction as the annotation (what "predictions -> annotations" does),
    # then our importer must find the same instances.
    tasks = json.loads((out / "labelstudio_predictions.json").read_text())
    assert len(tasks) == len(names)
    for t in tasks:
        assert set(t) == {"data", "predictions"} and len(t["predictions"]) == 1
        pred = t["predictions"][0]
        assert {"model_version", "score", "result"} <= set(pred) and 0.0 <= pred["score"] <= 1.0
        t["annotations"] = [{"id": 1, "result": pred["result"], "was_cancelled": False}]
    export = out / "ls_accepted.json"
    export.write_text(json.dumps(tasks))
    ls = {d["file_name"]: d for d in load_dataset(export, input_root, fmt="labelstudio", classes=classes)}
    lm = {d["file_name"]: d for d in load_dataset(out / "labelme", fmt="labelme", classes=classes)}
    for name in names:
        key = os.path.abspath(name)
        for source, d in (("labelstudio", ls[key]), ("labelme", lm[key])):
            insts = coco[name]
            got = [
                (a["category_id"] + 1, decode_segmentation(a, d["height"], d["width"]))
                for a in d["annotations"]
            ]
            assert [c for c, _ in got] == [c for c, _, _ in insts], (source, name)
            for (_, m), (_, _, ref) in zip(got, insts):
                assert m.shape == ref.shape
                brush = ls_shape == "brush" or ls_shape == "auto" and not one_part_without_holes(ref)
                if source == "labelstudio" and brush or min_iou >= 1.0:
                    assert np.array_equal(m, ref), (source, name)
                else:  # simplified outlines without holes: any disagreement hugs the mask's edge
                    ref = fill_holes(part_under(ref, m) if source == "labelstudio" else ref)
                    assert (
                        iou(m, ref) >= min_iou and boundary_distance(ref)[m != ref].max(initial=0) <= 2.0
                    ), (source, name, iou(m, ref))
    return coco


@pytest.fixture
def assert_outputs_consistent():
    """``assert_outputs_consistent(out, input_root, classes, ls_shape)`` -> the COCO view (check_outputs)."""
    return check_outputs


@pytest.fixture
def read_coco():
    """``read_coco(out)`` -> ``{file_name: [(category_id, score, mask)]}`` (read_coco_outputs)."""
    return read_coco_outputs
