"""register_dataset: format detection, deterministic split, idempotent catalog registration."""
from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from maskseg_d2.data import DatasetInfo, register_dataset
from maskseg_d2.data.register import split_train_val
from maskseg_d2.errors import UserError

W, H = 64, 48
CLASSES = ["car", "sign board"]


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, np.zeros((H, W, 3), np.uint8))
    path.write_bytes(buf.tobytes())


def ls_task(tid: int, name: str, label: str) -> dict:
    pts = [[10, 10], [60, 10], [60, 70], [10, 70]]  # percent
    result = {"id": f"r{tid}", "type": "polygonlabels", "from_name": "label", "to_name": "image",
              "original_width": W, "original_height": H, "image_rotation": 0,
              "value": {"points": pts, "polygonlabels": [label]}}
    ann = {"id": tid, "was_cancelled": False, "ground_truth": False, "result": [result],
           "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z"}
    return {"id": tid, "data": {"image": f"/data/upload/1/0123abcd-{name}"}, "annotations": [ann]}


def make_labelstudio(root: Path, n: int) -> Path:
    names = [f"img_{i:03d}.jpg" for i in range(n)]
    for name in names:
        write_image(root / "images" / name)
    tasks = [ls_task(i + 1, name, CLASSES[i % 2]) for i, name in enumerate(names)]
    (root / "labelstudio.json").write_text(json.dumps(tasks))
    return root


def make_labelme_with_mask(root: Path) -> Path:
    write_image(root / "labelme" / "a.jpg")
    buf = io.BytesIO()
    Image.fromarray(np.ones((5, 5), np.uint8) * 255).save(buf, format="PNG")
    shapes = [{"label": "car", "points": [[2, 2], [6, 6]], "group_id": None, "shape_type": "mask",
               "flags": {}, "mask": base64.b64encode(buf.getvalue()).decode()},
              {"label": "sign board", "points": [[20, 20], [30, 20], [30, 30]], "group_id": None,
               "shape_type": "polygon", "flags": {}}]
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": "a.jpg", "imageData": None,
           "imageHeight": H, "imageWidth": W}
    (root / "labelme" / "a.json").write_text(json.dumps(doc))
    return root


def cfg_for(root: Path | str, name: str = "demo", **overrides) -> dict:
    cfg = {"name": name, "root": str(root), "format": "auto", "annotations": None, "images": None,
           "classes": list(CLASSES), "class_map": {}, "val_fraction": 0.25, "split_seed": 0}
    cfg.update(overrides)
    return cfg


def split_of(info: DatasetInfo) -> tuple[set[str], set[str]]:
    train = {Path(d["file_name"]).name for d in DatasetCatalog.get(info.train_name)}
    val = {Path(d["file_name"]).name for d in DatasetCatalog.get(info.val_name)}
    return train, val


def test_register_labelstudio_and_metadata(tmp_path):
    root = make_labelstudio(tmp_path / "demo", 8)
    info = register_dataset(OmegaConf.create(cfg_for(root)))
    assert (info.train_name, info.val_name) == ("demo_train", "demo_val")
    assert info.thing_classes == CLASSES and info.mask_format == "polygon" and info.format == "labelstudio"
    assert info.num_train + info.num_val == 8 and info.num_val >= 1 and info.num_instances == 8
    assert len(info.dataset_hash) == 64
    meta = MetadataCatalog.get("demo_val")
    assert meta.thing_classes == CLASSES and meta.evaluator_type == "coco" and meta.mask_format == "polygon"
    assert meta.image_root == str(root / "images") and meta.annotation_file == str(root / "labelstudio.json")
    assert not hasattr(meta, "json_file")  # COCOEvaluator would read it as a COCO file
    records = DatasetCatalog.get("demo_train") + DatasetCatalog.get("demo_val")
    # image_id = index after sorting by file_name
    assert sorted((d["image_id"], Path(d["file_name"]).name) for d in records) == [
        (i, f"img_{i:03d}.jpg") for i in range(8)]
    # NUM_CLASSES derives from thing_classes; every category id fits
    from detectron2.config import get_cfg

    d2 = get_cfg()
    d2.MODEL.ROI_HEADS.NUM_CLASSES = len(info.thing_classes)
    assert d2.MODEL.ROI_HEADS.NUM_CLASSES == len(meta.thing_classes) == 2
    assert {a["category_id"] for d in records for a in d["annotations"]} == {0, 1}


def test_register_twice_is_idempotent_and_returns_copies(tmp_path):
    root = make_labelstudio(tmp_path / "demo", 4)
    first = register_dataset(cfg_for(root))
    records = DatasetCatalog.get("demo_train")
    n, num_annotations = len(records), len(records[0]["annotations"])
    # each get() is a new list of new dicts: a caller may drop records or replace keys (annotations are shared:
    # Detectron2's DatasetMapper deep-copies the record it maps)
    records.pop()
    records[0]["annotations"] = []
    again = DatasetCatalog.get("demo_train")
    assert len(again) == n and len(again[0]["annotations"]) == num_annotations > 0
    # changed metadata would trip Detectron2's "unchanged value" assertion without the removal
    second = register_dataset(cfg_for(root, classes=["sign board", "car"]))
    assert first.dataset_hash != second.dataset_hash  # the class list is part of the hash
    assert MetadataCatalog.get("demo_train").thing_classes == ["sign board", "car"]
    assert all(d["annotations"] for d in DatasetCatalog.get("demo_train"))
    assert DatasetCatalog.list().count("demo_train") == 1


def test_split_deterministic_and_stable_when_images_are_added(tmp_path):
    root = make_labelstudio(tmp_path / "demo", 12)
    train, val = split_of(register_dataset(cfg_for(root)))
    assert split_of(register_dataset(cfg_for(root))) == (train, val)
    assert val and train and not train & val
    make_labelstudio(root, 20)  # 8 more photos
    train2, val2 = split_of(register_dataset(cfg_for(root)))
    assert train <= train2 and val <= val2
    other = split_of(register_dataset(cfg_for(root, split_seed=1)))
    assert other != (train2, val2)


def test_split_keeps_both_sides_non_empty():
    assert split_train_val(["a.jpg", "b.jpg"], 0.0, 0).count(True) == 1
    assert split_train_val(["a.jpg", "b.jpg"], 0.999999, 0).count(False) == 1
    rel = [f"{i}.jpg" for i in range(1000)]
    assert 200 < sum(split_train_val(rel, 0.25, 0)) < 300


def test_auto_detects_labelme_and_bitmask(tmp_path):
    root = make_labelme_with_mask(tmp_path / "lm")
    info = register_dataset(cfg_for(root, name="lm"))
    assert info.format == "labelme" and info.mask_format == "bitmask" and info.num_instances == 2
    assert info.num_train == 1 and info.num_val == 1  # a single image serves both splits (warned)
    assert MetadataCatalog.get("lm_train").mask_format == "bitmask"


def test_auto_missing_data_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as e:
        register_dataset(cfg_for("datasets/cars_signs", name="cars_signs"))
    assert str(e.value) == (
        "Dataset 'cars_signs' not found under datasets/cars_signs — put the Label Studio export (JSON, "
        "JSON_MIN or COCO) at datasets/cars_signs/labelstudio.json and the photos in "
        "datasets/cars_signs/images/, or a COCO file at datasets/cars_signs/coco.json, or LabelMe JSON files "
        "in datasets/cars_signs/labelme/ (layout: datasets/README.md)")


def test_bad_config_values(tmp_path):
    root = make_labelstudio(tmp_path / "demo", 2)
    for bad, needle in [({"format": "yolo"}, "dataset.format=yolo"), ({"val_fraction": 1.0}, "val_fraction"),
                        ({"format": "labelstudio", "annotations": str(root / "nope.json")}, "nope.json"),
                        ({"format": "coco"}, "coco.json not found"),
                        ({"unknown": "ignore"}, "dataset.unknown"),
                        ({"split": {"val": ["img_999.jpg"]}}, "matches no image"),
                        ({"split": {"train": ["img_000.jpg"], "val": ["img_000.jpg"]}},
                         "both train and val")]:
        with pytest.raises(UserError) as e:
            register_dataset(cfg_for(root, **bad))
        assert "\n" not in str(e.value) and needle in str(e.value)


def test_auto_finds_coco_json_and_unknown_skip(tmp_path):
    root = make_labelstudio(tmp_path / "c", 4)
    coco = {"images": [{"id": i, "file_name": f"img_{i:03d}.jpg", "width": W, "height": H} for i in range(4)],
            "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "tree"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1 + i % 2, "iscrowd": 0,
                             "segmentation": [[5, 5, 30, 5, 30, 30]]} for i in range(4)]}
    (root / "labelstudio.json").unlink()
    (root / "coco.json").write_text(json.dumps(coco))
    with pytest.raises(UserError) as e:
        register_dataset(cfg_for(root, name="c"))
    assert "'tree' (2×" in str(e.value) and "dataset.unknown=skip" in str(e.value)
    info = register_dataset(cfg_for(root, name="c", unknown="skip"))
    assert info.format == "coco" and info.annotations == str(root / "coco.json")
    assert info.num_instances == 2 and info.skipped == {"unknown label 'tree'": 2}


def test_explicit_split_lists(tmp_path):
    root = make_labelstudio(tmp_path / "demo", 6)
    train, val = split_of(register_dataset(cfg_for(root, split={"train": ["img_00[0-2].jpg"]})))
    assert train == {"img_000.jpg", "img_001.jpg", "img_002.jpg"} and len(val) == 3  # the rest validates
    train, val = split_of(register_dataset(cfg_for(root, split={"val": ["img_001.jpg", "img_00[45].jpg"]})))
    assert val == {"img_001.jpg", "img_004.jpg", "img_005.jpg"} and len(train) == 3
    with pytest.raises(UserError) as e:
        register_dataset(cfg_for(root, split={"train": ["img_000.jpg"], "val": ["img_001.jpg"]}))
    assert "4 image(s) are in neither list" in str(e.value)


def _register_in_fresh_process(cfg: dict) -> tuple:
    """What a DDP worker does: another process registers the dataset again from the config."""
    from detectron2.data import DatasetCatalog

    from maskseg_d2.data import register_dataset as register

    info = register(cfg)
    names = [sorted(Path(d["file_name"]).name for d in DatasetCatalog.get(n))
             for n in (info.train_name, info.val_name)]
    return names, info.thing_classes, info.dataset_hash


def test_workers_register_the_same_split(tmp_path):
    """Two workers at once (LabelMe with embedded images: both write the decoded cache). Forked rather than
    spawned (Detectron2's launch) only to skip the imports; each loads and registers from scratch."""
    import multiprocessing

    lm = tmp_path / "lm" / "labelme"
    lm.mkdir(parents=True)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    for i in range(6):
        shape = {"label": CLASSES[i % 2], "points": [[2, 2], [30, 2], [30, 30]], "group_id": None,
                 "shape_type": "polygon", "flags": {}}
        doc = {"version": "5.4.1", "shapes": [shape], "imagePath": f"p{i}.png", "imageData": data,
               "imageHeight": H, "imageWidth": W}
        (lm / f"p{i}.json").write_text(json.dumps(doc))
    cfg = cfg_for(tmp_path / "lm", name="lmddp")
    here = register_dataset(cfg)
    shutil.rmtree(lm / ".maskseg_images")  # both workers decode and write it at the same time
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_register_in_fresh_process, [cfg, cfg])
    expected = ([sorted(Path(d["file_name"]).name for d in DatasetCatalog.get(n))
                 for n in (here.train_name, here.val_name)], here.thing_classes, here.dataset_hash)
    assert results == [expected, expected]
