"""Property: a mutated export never crashes an importer and never yields a silently wrong instance.

Valid exports (Label Studio JSON, LabelMe, COCO) of two small photos are generated once; hypothesis then
applies one or two mutations -- delete a key, replace a value by another JSON type, make a number NaN /
infinite / negative / huge, truncate an RLE or the whole file, rename a label to an unknown one -- and
loads the result strictly and leniently (``on_error=skip``). Whatever happens must be one of:

* a :class:`~maskseg_d2.errors.UserError` (tools print it as one line and exit 2);
* a load whose every instance equals (class, mask IoU >= 0.99) an instance of the unmutated export, with
  none of those lost -- unless the load reports something (a skipped item, an adjustment or a problem).

Mutations that keep an export valid but change its meaning (moving a vertex inside the image, swapping
two valid class names, regrouping LabelMe shapes, deleting an optional key such as a box's ``rotation``)
cannot be detected by any importer and are not drawn: numbers are only made invalid (NaN, inf, far
negative, far too large), labels only renamed to unknown ones. Fields are drawn uniformly (a brush RLE
is one field, not one per byte).
"""
from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers.json_mutations import Path_, is_number, json_paths, mutate, parent_of, path_in
from PIL import Image

from maskseg_d2.data import labelstudio_rle
from maskseg_d2.data.coco_rle import coco_rle_totals
from maskseg_d2.data import read_dataset
from maskseg_d2.errors import UserError
from pycocotools import mask as mask_util

W, H = 64, 48
CLASSES = ["car", "sign board"]
NOT_JSON_NUMBERS = [None, True, False, "x", "12.5", [], {}, ["x"], {"k": "v"}]  # type-changing values
SETTINGS = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------------------------- valid exports


def _mask() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[8:30, 30:58] = True
    m[20:26, 30:34] = False
    return m


POLY = [(6, 6), (30, 8), (26, 30), (8, 26)]
TRI = [(40, 30), (60, 30), (50, 46)]


def _pct(points) -> list[list[float]]:
    return [[x / W * 100, y / H * 100] for x, y in points]


def _ls_export() -> list[dict]:
    def res(rid, rtype, value):
        return {"id": rid, "type": rtype, "from_name": "label", "to_name": "image", "original_width": W,
                "original_height": H, "image_rotation": 0, "origin": "manual", "value": value}

    def task(tid, name, results):
        return {"id": tid, "data": {"image": f"/data/upload/1/ab12cd34-{name}"}, "project": 1,
                "annotations": [{"id": tid, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
                                 "created_at": "2024-05-01T10:00:00Z", "result": results}]}

    return [task(1, "a.jpg", [res("p1", "polygonlabels", {"points": _pct(POLY), "closed": True,
                                                          "polygonlabels": ["car"]}),
                              res("r1", "rectanglelabels", {"x": 62.5, "y": 12.5, "width": 25.0,
                                                            "height": 25.0, "rotation": 10.0,
                                                            "rectanglelabels": ["sign board"]})]),
            task(2, "b.jpg", [res("b1", "brushlabels", {"format": "rle",
                                                        "rle": labelstudio_rle.mask_to_brush_rle(_mask()),
                                                        "brushlabels": ["car"]}),
                              res("p2", "polygonlabels", {"points": _pct(TRI),
                                                          "polygonlabels": ["sign board"]})])]


def _png_b64(crop: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(crop.astype(np.uint8) * 255).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _lm_export() -> dict:
    def shape(label, points, stype="polygon", group_id=None, mask=None):
        return {"label": label, "points": [list(map(float, p)) for p in points], "group_id": group_id,
                "description": "", "shape_type": stype, "flags": {}, "mask": mask}

    crop = _mask()[8:30, 30:58]
    shapes = [shape("car", POLY), shape("sign board", [(40, 8), (58, 24)], "rectangle"),
              shape("car", [(50, 36), (56, 36)], "circle", group_id=3),
              shape("car", [(30, 8), (57, 29)], "mask", mask=_png_b64(crop)),
              shape("sign board", TRI, group_id=7)]
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": "a.jpg", "imageData": None,
            "imageHeight": H, "imageWidth": W}


def _coco_export() -> dict:
    rle = mask_util.encode(np.asfortranarray(_mask().astype(np.uint8)))
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H},
                       {"id": 2, "file_name": "b.jpg", "width": W, "height": H}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0, "bbox": [6, 6, 24, 24],
                 "segmentation": [[v for p in POLY for v in p]]},
                {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "area": 1.0, "bbox": [40, 8, 18, 16],
                 "segmentation": [[40, 8, 58, 8, 58, 24, 40, 24], [44, 26, 50, 26, 47, 32]]},
                {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 1.0, "bbox": [30, 8, 28, 22],
                 "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}},
                {"id": 4, "image_id": 2, "category_id": 2, "iscrowd": 0, "area": 1.0,
                 "bbox": [40, 30, 20, 16], "segmentation": [[v for p in TRI for v in p]]}],
            "categories": [{"id": 1, "name": "car", "supercategory": ""},
                           {"id": 2, "name": "sign board", "supercategory": ""}]}


class Exports:
    """The photos and the three valid exports, written once; ``read`` loads a (mutated) document."""

    def __init__(self, root: Path, tools) -> None:
        self.root, self.tools = root, tools
        self.images = root / "images"
        for i, name in enumerate(("a.jpg", "b.jpg")):
            tools.write_photo(self.images / name, W, H, seed=i)
        self.docs = {"labelstudio": _ls_export(), "coco": _coco_export(), "labelme": _lm_export()}
        self.reference = {}
        for fmt, doc in self.docs.items():
            result = self.read(fmt, json.dumps(doc))
            clean = not (result.skipped or result.adjusted or result.problems)
            assert clean, (fmt, result)  # else "reported" would hold for every mutation
            self.reference[fmt] = self.instances(result)

    def read(self, fmt: str, text: str, strict: bool = True):
        """Load one export given as JSON text (a LabelMe file next to its photo: imagePath is relative)."""
        path = (self.images / "_mutated.json") if fmt == "labelme" else (self.root / f"_mutated_{fmt}.json")
        path.write_text(text, encoding="utf-8")
        return read_dataset([str(path)], str(self.images), fmt, classes=CLASSES, strict=strict)

    def instances(self, result) -> dict[str, list[tuple[str, np.ndarray]]]:
        """image name -> [(class, mask)] of a load."""
        out: dict[str, list[tuple[str, np.ndarray]]] = {}
        for d in result.dicts:
            for ann in d["annotations"]:
                mask = self.tools.annotation_mask(ann, d["height"], d["width"])
                cls = result.thing_classes[ann["category_id"]]
                out.setdefault(Path(d["file_name"]).name, []).append((cls, mask))
        return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tools) -> Exports:
    ex = Exports(tmp_path_factory.mktemp("props"), tools)
    assert {fmt: sum(len(v) for v in ref.values()) for fmt, ref in ex.reference.items()} == \
        {"labelstudio": 4, "coco": 4, "labelme": 5}
    return ex


# ------------------------------------------------------------------------------------------ mutations


INVALID_NUMBERS = {
    "nan": lambda v: float("nan"),
    "inf": lambda v: float("inf") if v >= 0 else float("-inf"),
    "far negative": lambda v: -10_000.0 - abs(v),
    "far too large": lambda v: v * 1000 + 10_000,
}
LABEL_KEYS = ("polygonlabels", "rectanglelabels", "brushlabels", "label", "name")
KINDS = ["delete key", "change type", "change type", "invalid number", "invalid number", "truncate RLE",
         "rename label", "truncate file"]  # sampled uniformly: type and number changes weigh double
GEOMETRY_KEYS = {"points", "segmentation", "x", "y", "width", "height", "rle", "counts", "mask", "size",
                 "original_width", "original_height", "imageWidth", "imageHeight", "shape_type", "type"}
OPTIONAL_KEYS = ("rotation",)  # absent in exports older than rotated boxes: 0 is its valid default


@st.composite
def mutation(draw, doc: Any) -> tuple[str, Path_, Any]:
    """(kind, path, argument) of one mutation applicable to ``doc``."""
    paths = json_paths(doc)
    kind = draw(st.sampled_from(KINDS))
    if draw(st.booleans()):  # half of the draws go to geometry numbers, where a silent change hurts most
        paths = [(p, v) for p, v in paths if GEOMETRY_KEYS & set(map(str, p)) and
                 (is_number(v) or kind not in ("change type", "invalid number"))] or paths
    if kind == "delete key":
        keys = [p for p, _ in paths if isinstance(parent_of(doc, p), dict) and p[-1] not in OPTIONAL_KEYS]
        keys = keys or [p for p, _ in json_paths(doc) if isinstance(parent_of(doc, p), dict)]
        return kind, draw(path_in(keys)), None
    if kind == "change type":
        return kind, draw(path_in([p for p, _ in paths])), draw(st.sampled_from(NOT_JSON_NUMBERS))
    numbers = [p for p, v in paths if is_number(v)]
    if kind == "invalid number" and numbers:
        return kind, draw(path_in(numbers)), draw(st.sampled_from(sorted(INVALID_NUMBERS)))
    rles = [p for p, v in paths if p[-1] in ("rle", "counts", "mask") and isinstance(v, (list, str)) and v]
    if kind == "truncate RLE" and rles:
        return kind, draw(st.sampled_from(rles)), draw(st.floats(0.0, 0.98))
    labels = [p for p, v in paths
              if isinstance(v, str) and (p[-1] in LABEL_KEYS or (len(p) > 1 and p[-2] in LABEL_KEYS))]
    if kind == "rename label" and labels:
        unknown = st.text(min_size=1, max_size=12).filter(lambda t: t.strip() not in CLASSES)
        return kind, draw(st.sampled_from(labels)), draw(unknown)
    return "truncate file", (), draw(st.floats(0.0, 0.99))


def apply(doc: Any, kind: str, path: Path_, arg: Any) -> Any:
    """Apply one mutation to a copy of ``doc``; ``truncate file`` returns the cut JSON text instead."""
    return mutate(doc, kind, path, arg, INVALID_NUMBERS, cut_file="truncate file")


# ------------------------------------------------------------------------------------------ property


def _check(exports: Exports, fmt: str, text: str, reference: dict, mutations: list) -> None:
    for strict in (True, False):
        try:
            result = exports.read(fmt, text, strict=strict)
        except UserError as e:
            assert "\n" not in str(e)
            continue  # reported: the tools print it as one line and exit 2
        got = exports.instances(result)
        wrong, unmatched = [], {name: list(insts) for name, insts in reference.items()}
        for name, insts in got.items():
            for cls, mask in insts:
                pool = unmatched.get(name, [])
                same = (i for i, (c, m) in enumerate(pool) if c == cls and exports.tools.iou(m, mask) >= 0.99)
                hit = next(same, None)
                if hit is None:
                    wrong.append((name, cls, int(mask.sum())))
                else:
                    pool.pop(hit)
        lost = [(name, c) for name, pool in unmatched.items() for c, _ in pool]
        reported = bool(result.skipped or result.adjusted or result.problems)
        assert reported or not (wrong or lost), (
            f"silently {'wrong' if wrong else 'lost'} instance(s) {wrong or lost} after {mutations} "
            f"(strict={strict})")


@pytest.mark.parametrize("fmt", ["labelstudio", "labelme", "coco"])
def test_mutated_exports_fail_loudly_or_import_the_same_instances(exports, fmt):
    @SETTINGS
    @given(st.data())
    def run(data):
        mutated: Any = exports.docs[fmt]
        mutations = []
        for _ in range(data.draw(st.integers(1, 2), label="number of mutations")):
            kind, path, arg = data.draw(mutation(mutated))  # drawn from the document as mutated so far
            mutations.append((kind, path, arg))
            mutated = apply(mutated, kind, path, arg)
            if isinstance(mutated, str) or not json_paths(mutated):
                break  # the file was cut, or nothing is left to mutate
        text = mutated if isinstance(mutated, str) else json.dumps(mutated)
        _check(exports, fmt, text, exports.reference[fmt], mutations)

    run()


LS_POINT = (0, "annotations", 0, "result", 0, "value", "points", 1, 0)
LS_BOX = (0, "annotations", 0, "result", 1, "value")
REGRESSIONS = [  # mutations that were imported silently wrong (or crashed) before this test existed
    ("labelstudio", "change type", LS_POINT, True),  # read as 1.0
    ("labelstudio", "change type", LS_POINT, "12.5"),  # read as 12.5
    ("labelstudio", "set", LS_POINT, 150.0),  # percent > 100: clipped
    ("labelstudio", "set", LS_BOX + ("width",), -20.0),  # a flipped box
    ("labelstudio", "set", LS_BOX + ("rotation",), 3610.0),
    ("labelstudio", "change type", (1, "annotations", 0, "result", 0, "value", "rle", 60), True),
    ("labelstudio", "set", (1, "annotations", 0, "result", 0, "type"), ["polygonlabels"]),  # crashed
    ("labelstudio", "set", (0, "annotations", 0, "result", 0, "original_width"), 1e309),  # crashed
    ("labelstudio", "delete key", (0, "annotations", 0, "result"), None),  # read as "no objects"
    ("labelstudio", "set", (1, "id"), 1),  # two tasks with one id
    ("labelme", "change type", ("shapes", 0, "points", 1, 0), False),
    ("labelme", "set", ("shapes", 0, "points", 1, 0), 5000.0),  # far outside: clipped
    ("labelme", "set", ("shapes", 2, "points", 1, 0), 1e15),  # a circle of millions of vertices
    ("labelme", "set", ("shapes", 4, "group_id"), [7]),  # crashed
    ("labelme", "set", ("imageWidth",), -64),  # ignored
    ("coco", "change type", ("annotations", 0, "segmentation", 0, 2), True),
    ("coco", "set", ("annotations", 0, "segmentation", 0, 0), -900.0),
    ("coco", "truncate RLE", ("annotations", 2, "segmentation", "counts"), 0.6),  # pixels left unset
    ("coco", "set", ("annotations", 2, "segmentation", "counts"), "0" + "o" * 6 + "1"),  # past the mask
    ("coco", "set", ("annotations", 0, "iscrowd"), "0"),  # truthy: a crowd, ignored in training
    ("coco", "set", ("annotations", 0, "image_id"), [1]),  # crashed
    ("coco", "delete key", ("images", 0, "width"), None),
]


@pytest.mark.parametrize("fmt, kind, path, arg", REGRESSIONS)
def test_known_bad_mutations_are_reported(exports, fmt, kind, path, arg):
    text = json.dumps(apply(exports.docs[fmt], kind, path, arg))
    try:
        result = exports.read(fmt, text)
    except UserError:
        pass
    else:
        assert result.skipped or result.adjusted, result  # a skip of its own, e.g. an unknown result type
    _check(exports, fmt, text, exports.reference[fmt], [(kind, path, arg)])  # lenient too: counted


def test_mutations_are_not_all_rejected(exports):
    """Guard against a vacuous property: harmless mutations must still import the same instances."""
    doc = exports.docs["coco"]
    harmless = apply(doc, "delete key", ("annotations", 0, "area"), None)  # area is recomputed
    harmless = apply(harmless, "invalid number", ("annotations", 1, "id"), "far too large")  # any unique id
    result = exports.read("coco", json.dumps(harmless))
    assert not (result.skipped or result.adjusted or result.problems)
    got = exports.instances(result)
    assert {k: [c for c, _ in v] for k, v in got.items()} == \
        {k: [c for c, _ in v] for k, v in exports.reference["coco"].items()}
    assert math.isclose(sum(int(m.sum()) for v in got.values() for _, m in v),
                        sum(int(m.sum()) for v in exports.reference["coco"].values() for _, m in v))


@settings(max_examples=50, deadline=None, database=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40), st.floats(0, 1), st.integers(0, 2**31)),
                min_size=1, max_size=6), st.floats(0.0, 0.99))
def test_coco_rle_totals_match_pycocotools_and_catch_cut_strings(masks, cut):
    strings, sizes = [], []
    for h, w, density, seed in masks:
        mask = np.random.default_rng(seed).random((h, w)) < density
        strings.append(mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode())
        sizes.append(h * w)
    totals, shortest = coco_rle_totals(strings + [""])  # decoded together, an empty string among them
    assert totals.tolist() == sizes + [0] and (shortest >= 0).all()
    shorter = strings[0][: int(len(strings[0]) * cut)]
    try:
        (total,), _ = coco_rle_totals([shorter])
    except ValueError:
        return  # the cut fell inside a run
    assert total < sizes[0]  # never mistaken for a whole mask


@pytest.mark.parametrize("chunk", [4, 1 << 16])  # the bad string in a later chunk, or all in one
def test_coco_rle_totals_name_the_bad_string(chunk):
    good = mask_util.encode(np.asfortranarray(np.eye(9, dtype=np.uint8)))["counts"].decode()
    for bad, reason in [("0z0", "character 'z'"), ("0P", "ends inside a run"),
                        ("0" + "a" * 8 + "0", "more than 7 characters"), ("é0", "character 'é'"),
                        ("0\ud800", "character '\\ud800'")]:  # a lone surrogate, as JSON "\ud800" gives
        with pytest.raises(ValueError, match=rf"^string 3: .*{re.escape(reason)}"):
            coco_rle_totals([good, "", good.encode(), bad, good], chunk=chunk)
    with pytest.raises(ValueError, match="^string 0: .*more than 7"):  # the first bad string, whatever its fault
        coco_rle_totals(["0" + "a" * 8 + "0", "0z0"], chunk=chunk)
    assert coco_rle_totals([good, "", good.encode()], chunk=chunk)[0].tolist() == [81, 0, 81]
