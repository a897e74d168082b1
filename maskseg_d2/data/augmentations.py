"""Training augmentations built from the config: crop, multi-scale resize, flip, colour, JPEG quality.

Why Detectron2 transforms and not albumentations (which the seeds used): a ``T.Augmentation`` returns a
``Transform`` that :class:`~detectron2.data.DatasetMapper` applies to the image *and* to polygons, bitmasks
and boxes, so geometry can never drift from the labels, and crops recompute boxes from the masks. The two
things Detectron2 lacks are small: a format-aware saturation and JPEG re-encoding (``cv2.imencode``, cv2
is already a dependency) — cheaper than another dependency with its own numpy/opencv pins.

Order: crop -> resize -> flip (geometry, masks follow) -> brightness/contrast/saturation -> JPEG (pixels only).
"""
from __future__ import annotations

import logging

import numpy as np

import cv2
from detectron2.config import CfgNode
from detectron2.data import transforms as T

__all__ = ["build_train_augmentations", "build_test_augmentations", "JpegTransform", "RandomJpegQuality",
           "RandomSaturation"]

logger = logging.getLogger(__name__)

_GRAY_WEIGHTS_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma


class JpegTransform(T.Transform):
    """Re-encode the image as JPEG at ``quality``; coordinates and masks are unchanged."""

    def __init__(self, quality: int, image_format: str = "BGR") -> None:
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            return img  # JPEG is 8-bit colour; leave anything else as it is
        rgb = self.image_format == "RGB"
        bgr = img[:, :, ::-1] if rgb else img  # cv2 encodes BGR: chroma subsampling must see the real colours
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, int(self.quality)])
        if not ok:
            return img
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return np.ascontiguousarray(out[:, :, ::-1]) if rgb else out

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> T.Transform:
        return T.NoOpTransform()


class RandomJpegQuality(T.Augmentation):
    """JPEG compression artefacts at a random quality in ``[quality_min, quality_max]``."""

    def __init__(self, quality_min: int, quality_max: int, image_format: str = "BGR") -> None:
        super().__init__()
        if not 1 <= quality_min <= quality_max <= 100:
            raise ValueError(f"JPEG quality range [{quality_min}, {quality_max}] must lie within [1, 100]")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        quality = int(np.random.randint(self.quality_min, self.quality_max + 1))
        return JpegTransform(quality, self.image_format)


class RandomSaturation(T.Augmentation):
    """Blend with the grayscale image by a random factor; unlike ``T.RandomSaturation`` it knows BGR from RGB."""

    def __init__(self, intensity_min: float, intensity_max: float, image_format: str = "BGR") -> None:
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        weights = _GRAY_WEIGHTS_RGB if self.image_format == "RGB" else _GRAY_WEIGHTS_RGB[::-1]
        gray = image.astype(np.float32).dot(weights)[:, :, np.newaxis]
        w = np.random.uniform(self.intensity_min, self.intensity_max)
        return T.BlendTransform(src_image=gray, src_weight=1 - w, dst_weight=w)


def _flip(cfg: CfgNode) -> list[T.Augmentation]:
    flip = cfg.INPUT.RANDOM_FLIP
    if flip == "none":
        return []
    if flip not in ("horizontal", "vertical"):
        raise ValueError(f"INPUT.RANDOM_FLIP={flip}: use horizontal, vertical or none")
    prob = float(cfg.MASKSEG.AUGMENT.get("FLIP_PROB", 0.5))  # .get: configs of runs made before the key
    return [T.RandomFlip(prob, horizontal=flip == "horizontal", vertical=flip == "vertical")]


def _photometric(cfg: CfgNode) -> list[T.Augmentation]:
    aug, fmt = cfg.MASKSEG.AUGMENT, cfg.INPUT.FORMAT
    out: list[T.Augmentation] = []
    if aug.BRIGHTNESS:
        out.append(T.RandomBrightness(*aug.BRIGHTNESS))
    if aug.CONTRAST:
        out.append(T.RandomContrast(*aug.CONTRAST))
    if aug.SATURATION:
        out.append(RandomSaturation(*aug.SATURATION, image_format=fmt))
    if aug.JPEG_QUALITY and aug.JPEG_PROB > 0:
        out.append(T.RandomApply(RandomJpegQuality(*aug.JPEG_QUALITY, image_format=fmt), prob=aug.JPEG_PROB))
    return out


def build_train_augmentations(cfg: CfgNode) -> list[T.Augmentation]:
    """The training augmentations for :class:`~detectron2.data.DatasetMapper` (``augmentations=``).

    Args:
        cfg (CfgNode): uses ``INPUT.{CROP, MIN_SIZE_TRAIN, MIN_SIZE_TRAIN_SAMPLING, MAX_SIZE_TRAIN,
            RANDOM_FLIP, FORMAT}`` and ``MASKSEG.AUGMENT.*`` (see :func:`maskseg_d2.config.add_maskseg_config`).

    Returns:
        list[T.Augmentation]: in application order.
    """
    augs: list[T.Augmentation] = []
    if cfg.INPUT.CROP.ENABLED:
        augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, tuple(cfg.INPUT.CROP.SIZE)))
    augs.append(T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                     cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING))
    augs += _flip(cfg) + _photometric(cfg)
    logger.info("Training augmentations: %s", augs)
    return augs


def build_test_augmentations(cfg: CfgNode) -> list[T.Augmentation]:
    """Deterministic resize to ``INPUT.MIN_SIZE_TEST`` (what evaluation and the validation loss see)."""
    return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
