"""Training augmentations: masks and boxes follow the image through crop/resize/flip; colour and JPEG only
touch pixels, in the right channel order."""
import numpy as np
import pytest

from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T

from maskseg_d2.config import build_d2_cfg
from maskseg_d2.data import register_dataset
from maskseg_d2.data.augmentations import (JpegTransform, RandomJpegQuality, RandomSaturation,
                                           build_train_augmentations)


@pytest.fixture
def strong(compose_cfg, demo_root):
    cfg = compose_cfg("experiment=demo", f"dataset.root={demo_root}", "augment=strong", "device=cpu")
    info = register_dataset(cfg.dataset)
    return build_d2_cfg(cfg, info, "o"), DatasetCatalog.get(info.train_name)


def test_strong_pipeline_in_order(strong):
    d2, _ = strong
    augs = build_train_augmentations(d2)
    kinds = [type(a).__name__ for a in augs]
    assert kinds == ["RandomCrop", "ResizeShortestEdge", "RandomFlip", "RandomBrightness", "RandomContrast",
                     "RandomSaturation", "RandomApply"]
    assert isinstance(augs[-1].aug, RandomJpegQuality) and augs[-1].prob == 0.5


def test_masks_and_boxes_follow_the_image(strong):
    d2, records = strong
    mapper = DatasetMapper(d2, is_train=True, augmentations=build_train_augmentations(d2))
    record = next(r for r in records if len(r["annotations"]) >= 2)
    np.random.seed(0)
    for _ in range(8):
        out = mapper(dict(record))
        image, inst = out["image"], out["instances"]
        h, w = image.shape[1:]
        assert min(h, w) in d2.INPUT.MIN_SIZE_TRAIN or max(h, w) == d2.INPUT.MAX_SIZE_TRAIN
        masks = inst.gt_masks.polygons if hasattr(inst.gt_masks, "polygons") else None
        bitmasks = inst.gt_masks if masks is None else None
        for i, box in enumerate(inst.gt_boxes.tensor.numpy()):
            if masks is not None:
                pts = np.concatenate([np.asarray(p).reshape(-1, 2) for p in masks[i]])
                lo, hi = pts.min(0), pts.max(0)
            else:
                ys, xs = np.nonzero(bitmasks.tensor[i].numpy())
                lo, hi = np.array([xs.min(), ys.min()]), np.array([xs.max() + 1, ys.max() + 1])
            # crop on: boxes are recomputed from the (cropped, resized, flipped) masks
            np.testing.assert_allclose(box, [*lo, *hi], atol=1.0)
            assert 0 <= box[0] <= box[2] <= w and 0 <= box[1] <= box[3] <= h


def test_flip_moves_masks_with_pixels(strong):
    d2, records = strong
    record = next(r for r in records if r["annotations"])
    plain = DatasetMapper(d2, is_train=True, augmentations=[T.ResizeShortestEdge(192, 512)])(dict(record))
    flipped = DatasetMapper(d2, is_train=True, augmentations=[T.ResizeShortestEdge(192, 512),
                                                              T.RandomFlip(prob=1.0)])(dict(record))
    w = plain["image"].shape[2]
    assert (flipped["image"].numpy() == plain["image"].numpy()[:, :, ::-1]).all()
    a, b = plain["instances"].gt_boxes.tensor[0].numpy(), flipped["instances"].gt_boxes.tensor[0].numpy()
    np.testing.assert_allclose(b, [w - a[2], a[1], w - a[0], a[3]], atol=1e-3)


@pytest.mark.parametrize("fmt", ["BGR", "RGB"])
def test_jpeg_keeps_shape_and_colours(fmt):
    red = np.zeros((32, 48, 3), np.uint8)
    red[..., 2 if fmt == "BGR" else 0] = 200  # pure red in either channel order
    red[8:24, 8:40] = 90  # an edge for the artefacts
    low = JpegTransform(10, fmt).apply_image(red)
    assert low.shape == red.shape and low.dtype == np.uint8 and not np.array_equal(low, red)
    red_channel = 2 if fmt == "BGR" else 0
    assert low[0, 0, red_channel] > 150 and low[0, 0, 2 - red_channel] < 60  # still red, channels not swapped
    err = {q: np.abs(JpegTransform(q, fmt).apply_image(red).astype(int) - red).mean() for q in (10, 100)}
    assert err[100] < 5 and err[100] < err[10] / 2  # quality 100: chroma subsampling at the edge only
    assert JpegTransform(50, fmt).apply_coords(np.array([[1.0, 2.0]])).tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError):
        RandomJpegQuality(0, 50)


def test_saturation_knows_the_channel_order():
    bgr_red = np.array([[[0, 0, 255]]], np.uint8)
    gray = RandomSaturation(0.0, 0.0, "BGR").get_transform(bgr_red).apply_image(bgr_red)
    assert gray.tolist() == [[[76, 76, 76]]]  # 0.299 * 255: red's luma
    rgb_red = bgr_red[:, :, ::-1].copy()
    assert RandomSaturation(0.0, 0.0, "RGB").get_transform(rgb_red).apply_image(rgb_red).tolist() == [[[76, 76, 76]]]
