"""``predict``: masked images for an image, a folder or a glob, from a trained run."""
from __future__ import annotations

import glob
import os

from . import compat

compat.apply()

import cv2  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.engine import DefaultPredictor  # noqa: E402
from detectron2.utils.visualizer import ColorMode, Visualizer  # noqa: E402
from tqdm import tqdm  # noqa: E402

from .engine.run import load_run  # noqa: E402
from .errors import UserError  # noqa: E402

__all__ = ["list_images", "predict"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(source: str) -> list[str]:
    """An image file, a folder (recursive) or a glob -> sorted image paths."""
    if os.path.isdir(source):
        paths = [os.path.join(d, f) for d, _, fs in os.walk(source) for f in fs]
    else:
        paths = glob.glob(source, recursive=True) if any(c in source for c in "*?[") else [source]
    images = sorted(p for p in paths if p.lower().endswith(IMAGE_EXTS) and os.path.isfile(p))
    if not images:
        raise UserError(f"input={source}: no images found — give an image file, a folder or a glob like 'photos/*.jpg'")
    return images


def predict(run_dir: str, source: str, output: str | None = None, score_threshold: float = 0.5,
            checkpoint: str = "model_final.pth", device: str = "auto") -> list[str]:
    """Write ``<output>/<image stem>.png`` overlays (masks, boxes, class + score); returns their paths.

    Unreadable images are skipped, counted and reported (never a crash halfway through a folder).
    """
    run = load_run(run_dir, checkpoint, device)
    d2cfg = run.d2cfg.clone()
    d2cfg.defrost()
    d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(score_threshold)
    predictor = DefaultPredictor(d2cfg)
    metadata = MetadataCatalog.get(run.dataset.val_name)
    output = output or os.path.join(run_dir, "predict")
    os.makedirs(output, exist_ok=True)
    written, bad = [], []
    for path in tqdm(list_images(source), desc="predict", unit="img"):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            bad.append(path)
            continue
        instances = predictor(bgr)["instances"].to("cpu")
        vis = Visualizer(bgr[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE).draw_instance_predictions(instances)
        out = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".png")
        cv2.imwrite(out, vis.get_image()[:, :, ::-1])
        written.append(out)
    if bad:
        print(f"warning: skipped {len(bad)} unreadable image(s): {', '.join(bad[:5])}")
    return written
