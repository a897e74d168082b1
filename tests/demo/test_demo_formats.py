"""The demo dataset's two exports (Label Studio JSON, LabelMe) import to the same instances as its truth."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_util

from maskseg_d2.data import load_dataset


def _masks(record):
    h, w = record["height"], record["width"]
    out = []
    for ann in record["annotations"]:
        seg = ann["segmentation"]
        rle = mask_util.merge(mask_util.frPyObjects(seg, h, w)) if isinstance(seg, list) else seg
        if isinstance(rle.get("counts"), str):
            rle = {"size": rle["size"], "counts": rle["counts"].encode()}
        out.append((ann["category_id"], mask_util.decode(rle).astype(bool)))
    return out


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture(scope="module")
def loaded(demo_root):
    classes = ["car", "sign board"]
    ls = load_dataset(demo_root / "labelstudio.json", demo_root / "images", fmt="labelstudio", classes=classes)
    lm = load_dataset(demo_root / "labelme", fmt="labelme", classes=classes)
    truth = json.loads((demo_root / "truth.json").read_text())
    return ls, lm, truth


def test_both_formats_give_the_truth_instances(loaded):
    ls, lm, truth = loaded
    by_name = {im["file_name"].split("/")[-1]: im for im in truth["images"]}
    truth_anns = {}
    for ann in truth["annotations"]:
        truth_anns.setdefault(ann["image_id"], []).append(ann)
    assert len(ls) == len(lm) == len(truth["images"]) == 16
    ious = []
    for fmt in (ls, lm):
        for record in fmt:
            im = by_name[record["file_name"].replace("\\", "/").split("/")[-1]]
            assert (record["height"], record["width"]) == (im["height"], im["width"])
            gt = [(a["category_id"] - 1, mask_util.decode(a["segmentation"]).astype(bool))
                  for a in truth_anns.get(im["id"], [])]
            got = _masks(record)
            assert sorted(c for c, _ in got) == sorted(c for c, _ in gt), record["file_name"]
            for cat, m in gt:  # each true instance has a same-class import with high overlap
                best = max((_iou(m, g) for c, g in got if c == cat), default=0.0)
                ious.append(best)
    assert min(ious) >= 0.9 and np.mean(ious) >= 0.98
