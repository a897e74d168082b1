"""Format detection by content, explicit formats, JSON_MIN shape, several inputs read as one dataset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskseg_d2.data import detect_format, load_dataset, read_dataset
from maskseg_d2.data.loading import PROGRESS_MIN_ITEMS, progress
from maskseg_d2.errors import UserError

W, H = 64, 48
PCT = [[10, 10], [60, 10], [60, 70], [10, 70]]


def ls_task(tid, name, label="car", **ann):
    res = {"id": f"r{tid}", "type": "polygonlabels", "from_name": "poly", "to_name": "image",
           "original_width": W, "original_height": H, "value": {"points": PCT, "polygonlabels": [label]}}
    return {"id": tid, "data": {"image": f"/data/upload/1/0123abcd-{name}"},
            "annotations": [{"id": tid, "result": [res], **ann}]}


def min_record(tid, name, label="car", aid=1, updated="2024-01-01T00:00:00Z", **extra):
    """A JSON_MIN record as convert_to_json_min writes it (see test_labelstudio_sdk for the SDK-made ones)."""
    return {"image": f"/data/upload/1/0123abcd-{name}", "id": tid,
            "poly": [{"points": PCT, "closed": True, "polygonlabels": [label], "original_width": W,
                      "original_height": H}],
            "annotator": 1, "annotation_id": aid, "created_at": updated, "updated_at": updated,
            "lead_time": 1.0, **extra}


@pytest.fixture
def folder(tmp_path, tools):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        tools.write_photo(tmp_path / "images" / name, W, H)
    return tmp_path


def write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_detect_every_format(folder):
    coco = {"images": [], "annotations": [], "categories": []}
    docs = {"labelstudio": [ls_task(1, "a.jpg")], "labelstudio_min": [min_record(1, "a.jpg")], "coco": coco,
            "labelstudio_coco": dict(coco, info={"contributor": "Label Studio"}),
            "labelme": {"shapes": [], "imagePath": "a.jpg"}}
    for fmt, doc in docs.items():
        assert detect_format(write(folder / f"{fmt}.json", doc)) == fmt
    assert detect_format(folder / "images") == "labelme"  # a folder
    with pytest.raises(UserError) as e:
        detect_format(write(folder / "odd.json", {"foo": 1}))
    assert "odd.json" in str(e.value) and "unrecognised" in str(e.value)


def test_explicit_format_must_match_content(folder):
    path = write(folder / "ls.json", [ls_task(1, "a.jpg")])
    with pytest.raises(UserError) as e:
        read_dataset(path, folder / "images", fmt="coco")
    assert str(e.value) == (f"{path}: this is a Label Studio JSON export, not a COCO instances file — "
                            "set the format to labelstudio (or auto)")
    with pytest.raises(UserError) as e:
        read_dataset(path, None, fmt="auto")
    assert "needs the image folder" in str(e.value) and "--image-root" in str(e.value)


def test_json_min_records_picked_like_json(folder):
    records = [min_record(1, "a.jpg", "sign", aid=2, updated="2024-03-01T00:00:00Z"),  # newest first
               min_record(1, "a.jpg", "car", aid=1),
               {"image": "/data/upload/1/0123abcd-b.jpg", "id": 2, "annotator": None, "annotation_id": None,
                "created_at": None, "updated_at": None, "lead_time": None},  # task without annotations
               dict(min_record(3, "c.jpg"), poly=[], ch="day")]  # empty annotation, a Choices answer
    dicts = load_dataset(write(folder / "min.json", records), folder / "images", fmt="labelstudio_min",
                                 classes=["car", "sign"])
    got = [(d["image_id"], [a["category_id"] for a in d["annotations"]]) for d in dicts]
    assert got == [(1, [1]), (3, [])]


def test_several_inputs_share_classes(folder, tools):
    ls = write(folder / "ls.json", [ls_task(1, "a.jpg", "car")])
    mn = write(folder / "min.json", [min_record(2, "b.jpg", "Sign")])
    lm = folder / "lm"
    tools.write_photo(lm / "d.jpg", W, H)
    truck = {"label": "truck", "points": [[1, 1], [20, 1], [20, 20]], "shape_type": "polygon",
             "group_id": None}
    write(lm / "d.json", {"version": "5.4.1", "shapes": [truck], "imagePath": "d.jpg", "imageData": None,
                          "imageHeight": H, "imageWidth": W})
    res = read_dataset([ls, mn, lm], image_root=folder / "images", class_map={"Sign": "sign"})
    assert res.thing_classes == ["car", "sign", "truck"]
    assert res.format == "labelstudio+labelstudio_min+labelme"
    labels = [res.thing_classes[d["annotations"][0]["category_id"]] for d in res.dicts]
    assert labels == ["car", "sign", "truck"]


def test_progress_bar_only_for_long_loads():
    short = list(range(PROGRESS_MIN_ITEMS - 1))
    assert progress(short, "x") is short
    bar = progress(list(range(PROGRESS_MIN_ITEMS)), "x")
    assert type(bar).__name__ == "tqdm" and sum(bar) == sum(range(PROGRESS_MIN_ITEMS))
