"""Bad-input corpus: every importer and tools/eval.py inputs -> exit 2 with one line naming file and item.

The corpus is generated in tmp_path (small photos, exports of each format, then one defect per case):
truncated / non-JSON / wrongly typed files, missing keys, degenerate or NaN polygons, percentages outside
0-100, negative and huge sizes, brush RLE too short or too long, unknown labels, missing / zero-byte /
corrupt / undecodable-name / huge images, path traversal and duplicate ids. Each case runs the real tool in
a forked child (one interpreter imports the package once; see ``forked_tool.py``) under an address-space
limit, so a case that tries to allocate a giant mask fails instead of swapping. With ``--on-error skip``
(``dataset.on_error=skip``) the valid rest imports and the skipped items are counted.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from maskseg_d2.data import labelstudio_rle, register_dataset
from maskseg_d2.errors import UserError
from helpers.forked_tool import run_cases
from pycocotools import mask as mask_util

ROOT = Path(__file__).resolve().parents[2]
CONVERT = str(ROOT / "tools" / "convert.py")
EVAL = str(ROOT / "tools" / "eval.py")
W, H = 80, 60
CLASSES = ["car", "sign board"]


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("error:")]


def check_exit_2(cases: dict[str, tuple[list[str], list[str]]], results: list[dict]) -> dict[str, str]:
    """Assert every case exited 2 with one ``error:`` line containing its needles; -> case -> line."""
    failures, lines = [], {}
    for (name, (_, needles)), res in zip(cases.items(), results):
        errs = error_lines(res["log"])
        if res["code"] != 2 or "Traceback" in res["log"] or len(errs) != 1:
            failures.append(f"{name}: exit {res['code']}, {len(errs)} error line(s):\n{res['log'][-1500:]}")
            continue
        missing = [n for n in needles if n not in errs[0]]
        if missing:
            failures.append(f"{name}: {missing} not in {errs[0]!r}")
        lines[name] = errs[0]
    assert not failures, "\n".join(failures)
    return lines


# ------------------------------------------------------------------------------------------- data


def png_header(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels and holds none (Pillow reads the size from the header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b"")


GOOD = [(10, 10), (50, 12), (45, 40)]  # pixels
MASK = np.zeros((H, W), bool)
MASK[12:30, 20:44] = True


def ls_poly(rid: str, points=GOOD, label: str = "car", w: int = W, h: int = H) -> dict:
    return {"id": rid, "type": "polygonlabels", "from_name": "label", "to_name": "image", "original_width": w,
            "original_height": h, "image_rotation": 0,
            "value": {"points": [[x / W * 100, y / H * 100] for x, y in points], "polygonlabels": [label]}}


def ls_rect(rid: str, x: float, y: float, w: float, h: float, label: str = "sign board") -> dict:
    return {"id": rid, "type": "rectanglelabels", "from_name": "box", "to_name": "image", "original_width": W,
            "original_height": H, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}


def ls_brush(rid: str, rle: list[int] | None = None, label: str = "car", w: int = W, h: int = H) -> dict:
    return {"id": rid, "type": "brushlabels", "from_name": "brush", "to_name": "image", "original_width": w,
            "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": labelstudio_rle.mask_to_brush_rle(MASK) if rle is None else rle,
                      "brushlabels": [label]}}


def ls_task(tid, image: str, results: list[dict]) -> dict:
    return {"id": tid, "data": {"image": f"/data/upload/1/{image}" if "/" not in image else image},
            "annotations": [{"id": tid, "was_cancelled": False, "ground_truth": False, "result": results}]}


def min_record(tid, image: str, regions: list[dict], aid: int = 1) -> dict:
    return {"image": f"/data/upload/1/{image}", "id": tid, "annotator": 1, "annotation_id": aid,
            "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:00:00Z", "lead_time": 2.5,
            "label": regions}


def min_region(points=GOOD, label: str = "car") -> dict:
    return {"points": [[x / W * 100, y / H * 100] for x, y in points], "polygonlabels": [label],
            "original_width": W, "original_height": H, "closed": True}


def coco_doc(images: list[dict] | None = None, annotations: list[dict] | None = None,
             labelstudio: bool = False) -> dict:
    doc = {"images": images if images is not None else [{"id": 1, "file_name": "street.jpg", "width": W,
                                                         "height": H}],
           "annotations": annotations if annotations is not None else [coco_ann()],
           "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "sign board"}]}
    if labelstudio:
        doc["info"] = {"contributor": "Label Studio", "description": "", "year": 2024}
    return doc


def coco_ann(aid: int = 1, image_id: int = 1, **kw) -> dict:
    ann = {"id": aid, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": 600.0,
           "segmentation": [[v for p in GOOD for v in p]], "bbox": [10, 10, 40, 30]}
    ann.update(kw)
    return ann


def lm_doc(shapes: list[dict] | None = None, image: str = "street.jpg", **kw) -> dict:
    doc = {"version": "5.4.1", "flags": {}, "shapes": [lm_shape()] if shapes is None else shapes,
           "imagePath": image, "imageData": None, "imageHeight": H, "imageWidth": W}
    doc.update(kw)
    return doc


def lm_shape(points=GOOD, label: str = "car", shape_type: str = "polygon", **kw) -> dict:
    shape = {"label": label, "points": [list(p) for p in points], "group_id": None, "description": "",
             "shape_type": shape_type, "flags": {}, "mask": None}
    shape.update(kw)
    return shape


def coco_rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


class Corpus:
    """Writes the bad inputs in one folder: photos in ``images/``, an export (or LabelMe folder) per case."""

    def __init__(self, root: Path, tools) -> None:
        self.root, self.images = root, root / "images"
        tools.write_photo(self.images / "street.jpg", W, H, seed=1)
        tools.write_photo(self.images / "park.jpg", W, H, seed=2)
        (self.images / "zero.jpg").write_bytes(b"")
        (self.images / "garbage.jpg").write_bytes(b"this is not a JPEG\n" * 20)
        (self.images / "huge.png").write_bytes(png_header(100_000, 100_000))
        with open(os.fsencode(self.images) + b"/caf\xe9.jpg", "wb") as f:  # a Latin-1 name, as from a zip
            f.write((self.images / "street.jpg").read_bytes())
        self.cases: dict[str, tuple[list[str], list[str]]] = {}

    def out(self) -> list[str]:
        return ["-o", str(self.root / "out.json")]

    def write(self, name: str, doc=None, text: str | None = None, raw: bytes | None = None) -> Path:
        path = self.root / f"{name}.json"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text(text if text is not None else json.dumps(doc), encoding="utf-8")
        return path

    def export(self, name: str, needles: list[str], doc=None, extra=(), **kw) -> None:
        """A Label Studio / COCO file read with --image-root images/."""
        path = self.write(name, doc, **kw)
        self.cases[name] = ([str(path), "--image-root", str(self.images), *self.out(), *extra],
                            [f"{name}.json", *needles])

    def labelme(self, name: str, needles: list[str], doc=None, text: str | None = None,
                image: str | None = "street.jpg", extra=(), files: dict | None = None) -> None:
        """A LabelMe folder: x.json (+ the photo next to it, as LabelMe keeps them)."""
        folder = self.root / name
        folder.mkdir()
        if image:
            (folder / image).write_bytes((self.images / image).read_bytes())
        for fname, content in (files or {"x.json": doc}).items():
            (folder / fname).write_text(text if text is not None else json.dumps(content), encoding="utf-8")
        self.cases[name] = ([str(folder), *self.out(), *extra], [f"{name}/", *needles])


def build_convert_corpus(c: Corpus) -> None:
    """Every case of tools/convert.py: name -> (argv, needles of its one error line)."""
    ok_ls = [ls_task(1, "e97d4735-street.jpg", [ls_poly("r1"), ls_rect("r2", 60, 10, 20, 30)]),
             ls_task(2, "park.jpg", [ls_brush("r3")])]
    text = json.dumps(ok_ls)
    classes = ["--classes", *CLASSES]

    def ls_with(name, needles, results, image="street.jpg", **kw):
        c.export(name, needles, [ls_task(1, image, results)], **kw)

    # ---- Label Studio JSON: files
    c.export("ls_truncated", ["looks truncated"], text=text[: len(text) // 2])
    c.export("ls_not_utf8", ["invalid JSON: byte 12 is not utf-16-le text", "save it as UTF-8 JSON"],
             raw=b"\xff\xfe[{\x00\x81garbage")
    c.export("ls_nested", ["nested too deeply"], text="[" * 50_000 + "]" * 50_000)
    c.export("ls_top_dict", ["unrecognised annotation file (a JSON dict)"], {"tasks": ok_ls})
    c.export("ls_top_number", ["unrecognised annotation file (a JSON int)"], 42)
    c.export("ls_single_task", ["single Label Studio task"], ok_ls[0])
    # ---- Label Studio JSON: tasks and regions
    c.export("ls_task_number", ["task #1", "not an object"], [ok_ls[0], 7])
    c.export("ls_no_data", ["task 1", "no 'data'"], [{"id": 1, "annotations": ok_ls[0]["annotations"]}])
    c.export("ls_task_id_list", ["task #0", "task id is [1]"], [{**ok_ls[0], "id": [1]}])
    c.export("ls_duplicate_task_id", ["task 1", "appears twice"], [ok_ls[0], {**ok_ls[1], "id": 1}])
    no_value = ls_poly("r9")
    del no_value["value"]
    ls_with("ls_no_value", ["task 1 result r9", "no 'value'"], [no_value])
    no_points = ls_poly("r9")
    del no_points["value"]["points"]
    ls_with("ls_no_points", ["task 1 result r9", "points"], [no_points])
    no_size = ls_poly("r9")
    del no_size["original_width"]
    ls_with("ls_no_size", ["task 1 result r9", "original_width/original_height is missing"], [no_size])
    ls_with("ls_polygon_2_points", ["task 1 result r9", "2 point(s)"], [ls_poly("r9", [(1, 1), (9, 9)])])
    nan = ls_poly("r9")
    nan["value"]["points"][1][0] = float("nan")
    ls_with("ls_polygon_nan", ["task 1 result r9", "NaN"], [nan])
    inf = ls_poly("r9")
    inf["value"]["points"][2][1] = float("inf")
    ls_with("ls_polygon_inf", ["task 1 result r9", "NaN or infinite"], [inf])
    over = ls_poly("r9")
    over["value"]["points"][1] = [150.0, 20.0]
    ls_with("ls_percent_over_100", ["task 1 result r9", "150 is outside 0-100"], [over])
    ls_with("ls_percent_negative", ["task 1 result r9", "-30 is outside 0-100"],
            [ls_rect("r9", -30, 10, 20, 20)])
    ls_with("ls_rect_negative_width", ["task 1 result r9", "value.width is -20"],
            [ls_rect("r9", 60, 10, -20, 30)])
    ls_with("ls_negative_size", ["task 1 result r9", "-80x-60"], [ls_poly("r9", w=-80, h=-60)])
    ls_with("ls_brush_too_short", ["task 1 result r9", "brush RLE truncated"],
            [ls_brush("r9", labelstudio_rle.mask_to_brush_rle(MASK)[:-6])])
    ls_with("ls_brush_too_long", ["task 1 result r9", "holds 19440 values but the 80x60 image needs 19200"],
            [ls_brush("r9", labelstudio_rle.mask_to_brush_rle(np.zeros((H, W + 1), bool)))])
    ls_with("ls_brush_not_bytes", ["task 1 result r9", "integers in 0..255"], [ls_brush("r9", [300, -1])])
    ls_with("ls_unknown_label", ["'tree' (1×", "task 1 result r9"], [ls_poly("r9", label="tree")],
            extra=classes)
    # ---- Label Studio JSON: images
    ls_with("ls_missing_image", ["task 1", "gone.jpg", "not found"], [ls_poly("r1")], image="gone.jpg")
    ls_with("ls_zero_byte_image", ["task 1", "zero.jpg", "cannot read image"], [ls_poly("r1")],
            image="zero.jpg")
    ls_with("ls_corrupt_image", ["task 1", "garbage.jpg", "cannot read image"], [ls_poly("r1")],
            image="garbage.jpg")
    ls_with("ls_latin1_file_name", ["task 1", "café.jpg", "not UTF-8", "caf\\xe9.jpg"], [ls_poly("r1")],
            image="café.jpg")
    ls_with("ls_undecodable_name", ["task 1", "caf\\xe9.jpg", "is not valid UTF-8"], [ls_poly("r1")],
            image="caf\udce9.jpg")  # a name only a lone surrogate can spell in JSON
    ls_with("ls_path_traversal", ["task 1", "'../../etc/passwd'", "leaves the image folder"], [ls_poly("r1")],
            image="../../etc/passwd")
    ls_with("ls_absolute_path", ["task 1", "'/etc/passwd'", "absolute"], [ls_poly("r1")], image="/etc/passwd")
    ls_with("ls_declared_huge", ["task 1 result r9", "100000x100000", "larger than any image"],
            [ls_poly("r9", w=100_000, h=100_000)])
    ls_with("ls_declared_huge_brush", ["task 1", "12000x9000", "150 times smaller"],
            [ls_brush("r9", w=12_000, h=9_000)])
    ls_with("ls_huge_image", ["task 1", "huge.png", "too large to open"], [], image="huge.png")

    # ---- JSON_MIN
    ok_min = [min_record(1, "street.jpg", [min_region()]), min_record(2, "park.jpg", [min_region()])]
    c.export("min_truncated", ["looks truncated"], text=json.dumps(ok_min)[:-40])
    c.export("min_record_number", ["record #1", "not a JSON_MIN record"], [ok_min[0], 5])
    no_id = dict(ok_min[0])
    del no_id["id"]
    c.export("min_record_without_id", ["record #0", "not a JSON_MIN record"], [no_id])
    nan_region = min_region()
    nan_region["points"][0][1] = float("nan")
    c.export("min_region_nan", ["task 1 result label[0]", "NaN"], [min_record(1, "street.jpg", [nan_region])])
    sizeless = min_region()
    del sizeless["original_height"]
    c.export("min_region_without_size", ["task 1 result label[0]", "original_width/original_height"],
             [min_record(1, "street.jpg", [sizeless])])
    c.export("min_same_id_other_image", ["record #1 (task 1)", "appears again with another image"],
             [ok_min[0], min_record(1, "park.jpg", [min_region()], aid=2)])
    c.export("min_unknown_label", ["'tree' (1×", "task 1 result label[0]"],
             [min_record(1, "street.jpg", [min_region(label="tree")])], extra=classes)

    # ---- Label Studio COCO export
    ls_coco = coco_doc([{"id": 0, "file_name": "../media/upload/1/e97d4735-street.jpg", "width": W,
                         "height": H}], [coco_ann(0, 0)], labelstudio=True)
    c.export("lsc_truncated", ["looks truncated"], text=json.dumps(ls_coco)[:-25])
    short = copy.deepcopy(ls_coco)
    short["annotations"][0]["segmentation"] = [[10, 10, 50, 12]]
    c.export("lsc_polygon_2_points", ["annotation 0", "image 0", "2 point(s)"], short)
    gone = copy.deepcopy(ls_coco)
    gone["images"][0]["file_name"] = "../media/upload/1/abcdef12-gone.jpg"
    c.export("lsc_missing_image", ["image 0", "gone.jpg", "not found"], gone)
    trav = copy.deepcopy(ls_coco)
    trav["images"][0]["file_name"] = "../../../../../etc/passwd"
    c.export("lsc_path_traversal", ["image 0", "passwd", "not found"], trav)  # only the name is looked up

    # ---- COCO
    c.export("coco_truncated", ["looks truncated"], text=json.dumps(coco_doc())[:-10])
    c.export("coco_list_as_coco", ["Label Studio JSON export, not a COCO instances file"], ok_ls,
             extra=("--format", "coco"))
    c.export("coco_without_images", ["unrecognised annotation file (a JSON dict)"],
             {"annotations": [], "categories": []})
    c.export("coco_image_without_file_name", ["images[0]", "without 'file_name'"], coco_doc([{"id": 1}]))
    c.export("coco_polygon_2_points", ["annotation 1", "image 1", "2 point(s)"],
             coco_doc(annotations=[coco_ann(segmentation=[[10, 10, 50, 12]])]))
    c.export("coco_polygon_nan", ["annotation 1", "NaN"],
             coco_doc(annotations=[coco_ann(segmentation=[[10, float("nan"), 50, 12, 45, 40]])]))
    c.export("coco_negative_size", ["image 1", "width/height is -80x-60"],
             coco_doc([{"id": 1, "file_name": "street.jpg", "width": -80, "height": -60}]))
    c.export("coco_declared_huge", ["image 1", "100000x100000", "larger than any image"],
             coco_doc([{"id": 1, "file_name": "street.jpg", "width": 100_000, "height": 100_000}]))
    rle = coco_rle(MASK)
    c.export("coco_rle_too_short", ["annotation 1", "RLE counts"],
             coco_doc(annotations=[coco_ann(segmentation={**rle, "counts": rle["counts"][:-2]})]))
    c.export("coco_rle_too_long", ["annotation 1", "RLE counts cover", "not 80x60"],
             coco_doc(annotations=[coco_ann(segmentation={**rle, "counts": rle["counts"] + "1"})]))
    c.export("coco_rle_long_run", ["annotation 1", "not a COCO RLE string: a run of more than 7 characters"],
             coco_doc(annotations=[coco_ann(segmentation={**rle, "counts": rle["counts"] + "o" * 8 + "1"})]))
    c.export("coco_rle_huge_size", ["annotation 1", "mask is 100000x100000 (WxH) but the image is 80x60"],
             coco_doc(annotations=[coco_ann(segmentation={"size": [100_000, 100_000], "counts": "0"})]))
    c.export("coco_rle_negative_counts", ["annotation 1", "non-negative"],
             coco_doc(annotations=[coco_ann(segmentation={"size": [H, W], "counts": [-5, H * W + 5]})]))
    c.export("coco_unknown_category_id", ["annotations[0] (id 1)", "category_id 7"],
             coco_doc(annotations=[coco_ann(category_id=7)]))
    c.export("coco_image_id_list", ["annotations[0] (id 1)", "image_id [1]"],
             coco_doc(annotations=[coco_ann(image_id=[1])]))
    c.export("coco_unknown_label", ["'tree' (1×", "annotation 1"],
             {**coco_doc(), "categories": [{"id": 1, "name": "tree"}]}, extra=classes)
    c.export("coco_duplicate_image_id", ["images[1]", "image id 1 appears twice"],
             coco_doc([{"id": 1, "file_name": "street.jpg"}, {"id": 1, "file_name": "park.jpg"}]))
    c.export("coco_iscrowd_string", ["annotation 1", "iscrowd is '0'"],
             coco_doc(annotations=[coco_ann(iscrowd="0")]))
    c.export("coco_absolute_path", ["image 1", "'/etc/passwd'", "absolute"],
             coco_doc([{"id": 1, "file_name": "/etc/passwd"}]))
    c.export("coco_zero_byte_image", ["image 1", "zero.jpg", "cannot read image"],
             coco_doc([{"id": 1, "file_name": "zero.jpg"}]))
    c.export("coco_huge_image", ["image 1", "huge.png", "too large to open"],
             coco_doc([{"id": 1, "file_name": "huge.png"}]))
    c.export("coco_undecodable_name", ["image 1", "is not valid UTF-8"],
             coco_doc([{"id": 1, "file_name": "caf\udce9.jpg"}]))

    # ---- LabelMe (one folder per case)
    c.labelme("lm_truncated", ["x.json", "looks truncated"], text=json.dumps(lm_doc())[:-30])
    c.labelme("lm_top_list", ["x.json", "not a LabelMe file"], [lm_doc()])
    c.labelme("lm_without_shapes", ["x.json", "not a LabelMe file"], {k: v for k, v in lm_doc().items()
                                                                       if k != "shapes"})
    c.labelme("lm_polygon_2_points", ["x.json shape 0 ('car')", "2 point(s)"],
              lm_doc([lm_shape([(1, 1), (9, 9)])]))
    c.labelme("lm_polygon_nan", ["x.json shape 0", "NaN"],
              lm_doc([lm_shape([(1, 1), (9, float("nan")), (5, 9)])]))
    c.labelme("lm_bool_coordinate", ["x.json shape 0", "not a list of [x, y] numbers"],
              lm_doc([lm_shape([(True, 10), (50, 12), (45, 40)])]))
    c.labelme("lm_far_outside", ["x.json shape 0", "far outside the 80x60 image"],
              lm_doc([lm_shape([(10, 10), (5000, 12), (45, 40)])]))
    c.labelme("lm_circle_huge", ["x.json shape 0", "circle radius"],
              lm_doc([lm_shape([(10, 10), (1e12, 10)], shape_type="circle")]))
    c.labelme("lm_group_id_list", ["x.json shape 1", "group_id is [1]"],
              lm_doc([lm_shape(), lm_shape(group_id=[1])]))
    c.labelme("lm_negative_size", ["x.json", "imageWidth/imageHeight is -80x-60"],
              lm_doc(imageWidth=-80, imageHeight=-60))
    c.labelme("lm_declared_huge", ["x.json", "100000x75000", "larger than any image"],
              lm_doc(imageWidth=100_000, imageHeight=75_000))
    c.labelme("lm_mask_bomb", ["x.json shape 0", "mask is not a base64 PNG", "exceeds limit"],
              lm_doc([lm_shape([(0, 0), (3, 3)], shape_type="mask",
                               mask=base64.b64encode(png_header(100_000, 100_000)).decode())]))
    c.labelme("lm_image_data_bomb", ["x.json", "imageData is not a base64 image"],
              lm_doc(image="nope.jpg", imageData=base64.b64encode(png_header(100_000, 100_000)).decode()),
              image=None)
    c.labelme("lm_unknown_label", ["'tree' (1×", "x.json shape 0 ('tree')"],
              lm_doc([lm_shape(label="tree")]), extra=classes)
    c.labelme("lm_zero_byte_image", ["x.json", "zero.jpg", "cannot read image"], lm_doc(image="zero.jpg"),
              image="zero.jpg")
    c.labelme("lm_corrupt_image", ["x.json", "garbage.jpg", "cannot read image"], lm_doc(image="garbage.jpg"),
              image="garbage.jpg")
    c.labelme("lm_path_traversal", ["x.json", "/etc/passwd", "cannot read image"],
              lm_doc(image="../" * 40 + "etc/passwd"))
    c.labelme("lm_absolute_path", ["x.json", "'/etc/passwd'", "not found"], lm_doc(image="/etc/passwd"))
    undecodable = c.root / "lm_undecodable_name"
    c.labelme("lm_undecodable_name", ["x.json", "is not valid UTF-8"], lm_doc(image="caf\udce9.jpg"),
              image=None)
    with open(os.fsencode(undecodable) + b"/caf\xe9.jpg", "wb") as f:
        f.write((c.images / "street.jpg").read_bytes())
    c.labelme("lm_same_image_twice", ["street.jpg", "annotated twice"],
              files={"a.json": lm_doc(), "b.json": lm_doc([lm_shape(label="sign board")])})


# --------------------------------------------------------------------------------------- convert


@pytest.fixture(scope="module")
def convert_corpus(tmp_path_factory, tools):
    corpus = Corpus(tmp_path_factory.mktemp("bad"), tools)
    build_convert_corpus(corpus)
    return corpus


def test_every_bad_input_exits_2_with_one_line(convert_corpus):
    cases = convert_corpus.cases
    results = run_cases(CONVERT, "maskseg_d2.data.convert", [argv for argv, _ in cases.values()])
    lines = check_exit_2(cases, results)
    assert len(lines) == len(cases) >= 80
    assert not (convert_corpus.root / "out.json").exists()  # nothing half-written on error
    families = {name.split("_")[0] for name in cases}
    assert families == {"ls", "min", "lsc", "coco", "lm"}


def _mixed_inputs(c: Corpus) -> dict[str, tuple[list[str], int, int]]:
    """Per importer, one input with valid and invalid items -> (argv, instances kept, items skipped)."""
    root = c.root / "mixed"
    root.mkdir()
    nan = ls_poly("r4")
    nan["value"]["points"][0][0] = float("nan")
    tasks = [ls_task(1, "street.jpg", [ls_poly("r1"), ls_rect("r2", 60, 10, 20, 30),
                                       ls_poly("r3", [(1, 1), (5, 5)]), nan]),
             ls_task(2, "park.jpg", [ls_brush("r5"), ls_brush("r6", labelstudio_rle.mask_to_brush_rle(MASK)[:-6])]),
             ls_task(3, "gone.jpg", [ls_poly("r7")]), ls_task(4, "zero.jpg", [ls_poly("r8")])]
    (root / "ls.json").write_text(json.dumps(tasks))
    records = [min_record(1, "street.jpg", [min_region(), min_region([(1, 1), (2, 2)])]),
               min_record(2, "park.jpg", [min_region()]), 7, min_record(3, "gone.jpg", [min_region()])]
    (root / "min.json").write_text(json.dumps(records))
    doc = coco_doc([{"id": 1, "file_name": "street.jpg", "width": W, "height": H},
                    {"id": 2, "file_name": "park.jpg", "width": W, "height": H},
                    {"id": 3, "file_name": "../secret.jpg"}, {"id": 4, "file_name": "zero.jpg"}],
                   [coco_ann(1, 1), coco_ann(2, 1, segmentation=[[1, 2, 3, 4]]),
                    coco_ann(3, 2, segmentation=coco_rle(MASK)), coco_ann(4, 2, category_id=9),
                    coco_ann(5, 2, iscrowd="yes"), coco_ann(6, 3), coco_ann(7, 99)])
    (root / "coco.json").write_text(json.dumps(doc))
    lm = root / "labelme"
    lm.mkdir()
    for name in ("street.jpg", "park.jpg"):
        (lm / name).write_bytes((c.images / name).read_bytes())
    (lm / "a.json").write_text(json.dumps(lm_doc([lm_shape(), lm_shape([(1, 1), (2, float("nan")), (3, 1)]),
                                                  lm_shape([(60, 10), (70, 10), (65, 30)], "sign board")])))
    (lm / "b.json").write_text(json.dumps(lm_doc(image="park.jpg"))[:-5])  # truncated file
    (lm / "c.json").write_text(json.dumps(lm_doc([lm_shape(group_id={"g": 1})], image="park.jpg")))
    images = ["--image-root", str(c.images)]
    return {"labelstudio": ([str(root / "ls.json"), *images], 3, 5),
            "labelstudio_min": ([str(root / "min.json"), *images], 2, 3),
            "coco": ([str(root / "coco.json"), *images], 2, 6),
            "labelme": ([str(lm)], 2, 3)}


def test_on_error_skip_imports_the_valid_rest_and_counts(convert_corpus, tools):
    mixed = _mixed_inputs(convert_corpus)
    argvs = []
    for fmt, (argv, _, _) in mixed.items():
        argvs.append([*argv, "-o", str(convert_corpus.root / f"skip_{fmt}.json")])  # default: exit 2
        argvs.append([*argv, "-o", str(convert_corpus.root / f"skip_{fmt}.json"), "--on-error", "skip"])
    results = run_cases(CONVERT, "maskseg_d2.data.convert", argvs)
    for (fmt, (_, kept, skipped)), strict, lenient in zip(mixed.items(), results[::2], results[1::2]):
        assert strict["code"] == 2 and len(error_lines(strict["log"])) == 1, (fmt, strict["log"][-2000:])
        assert lenient["code"] == 0, (fmt, lenient["log"][-3000:])
        assert f"skipped {skipped} invalid item(s) (--on-error skip)" in lenient["log"], (fmt, lenient["log"])
        doc = json.loads((convert_corpus.root / f"skip_{fmt}.json").read_text())
        assert len(doc["annotations"]) == kept, fmt
        for ann in doc["annotations"]:  # every written instance is one of the valid ones, unchanged
            im = next(i for i in doc["images"] if i["id"] == ann["image_id"])
            got = tools.annotation_mask(ann, im["height"], im["width"])
            refs = [tools.polygon_mask(GOOD, H, W), MASK,
                    tools.polygon_mask([(60, 10), (70, 10), (65, 30)], H, W),
                    tools.polygon_mask([(48, 6), (64, 6), (64, 24), (48, 24)], H, W)]
            assert max(tools.iou(got, r) for r in refs) > 0.95, (fmt, ann)


def test_register_dataset_on_error_skip(convert_corpus, caplog):
    root = convert_corpus.root / "mixed"
    cfg = {"name": "bad_skip", "root": str(root), "annotations": str(root / "ls.json"),
           "images": str(convert_corpus.images), "classes": CLASSES, "val_fraction": 0.5}
    with pytest.raises(UserError, match=r"ls\.json: task 1 result r3 .*2 point\(s\)"):
        register_dataset(cfg)
    with pytest.raises(UserError, match="dataset.on_error=maybe"):
        register_dataset({**cfg, "on_error": "maybe"})
    info = register_dataset({**cfg, "on_error": "skip"})
    assert (info.num_train + info.num_val, info.num_instances) == (2, 3)
    invalid = {k: v for k, v in info.skipped.items() if k.startswith("invalid")}
    assert sum(invalid.values()) == 5 and invalid["invalid: fewer than 3 points"] == 1
    assert "skipped 5 invalid item(s) (dataset.on_error=skip)" in caplog.text


def test_skip_with_nothing_valid_left_is_still_an_error(convert_corpus):
    from maskseg_d2.data.convert import convert

    bad = convert_corpus.root / "ls_missing_image.json"
    expected = r"no labelled image \(1 invalid item\(s\) skipped, e\.g\. .*not found"
    with pytest.raises(UserError, match=expected):
        convert(bad, convert_corpus.root / "none.json", convert_corpus.images, on_error="skip")


# ------------------------------------------------------------------------------------------ eval


def _coco_counts(runs: list[int]) -> str:
    """pycocotools' compressed RLE string of ``runs`` (any ints, also negative ones no encoder writes)."""
    out = []
    for i, x in enumerate(runs):
        x -= runs[i - 2] if i > 2 else 0
        more = True
        while more:
            c, x = x & 0x1F, x >> 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(48 + (c | 0x20 if more else c)))
    return "".join(out)


def _eval_pair():
    """A small valid GT/results pair, the index of a result with an RLE and of a GT polygon annotation."""
    from helpers.synthetic import make_synthetic_coco

    gt, preds = make_synthetic_coco(num_images=3, preds_per_image=3, seed=5)
    i_rle = next(i for i, p in enumerate(preds) if isinstance(p.get("segmentation"), dict))
    i_gt_poly = next(i for i, a in enumerate(gt["annotations"]) if isinstance(a.get("segmentation"), list))
    return gt, preds, i_rle, i_gt_poly


def _eval_corpus(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """tools/eval.py cases: name -> (overrides, needles of its one error line)."""
    import math

    gt, preds, i_rle, i_gt_poly = _eval_pair()
    cases = {}

    def case(name, needles, g=None, p=None, gt_text=None, pred_raw=None, pred_text=None):
        gp, pp = root / f"{name}_gt.json", root / f"{name}_pred.json"
        gp.write_text(gt_text if gt_text is not None else json.dumps(g if g is not None else gt))
        if pred_raw is not None:
            pp.write_bytes(pred_raw)
        else:
            pp.write_text(pred_text if pred_text is not None else json.dumps(p if p is not None else preds))
        out = root / "out" / name
        cases[name] = ([f"gt={gp}", f"pred={pp}", f"output={out}", "plots=false", "num_worst=0"],
                       [f"{name}_{'gt' if name.startswith('gt_') else 'pred'}.json", *needles])

    def gt_with(f):
        g = copy.deepcopy(gt)
        f(g)
        return g

    def preds_with(f):
        p = copy.deepcopy(preds)
        f(p)
        return p

    img = next(im for im in gt["images"] if im["id"] == gt["annotations"][i_gt_poly]["image_id"])
    h, w = img["height"], img["width"]
    short = {"size": [h, w], "counts": _coco_counts([h * w - 40, 30])}  # 10 pixels short
    negative = {"size": [h, w], "counts": _coco_counts([h * w + 10, 5, -15])}  # sums to h*w, a run < 0
    # ---- GT: files
    case("gt_truncated", ["invalid JSON"], gt_text=json.dumps(gt)[:-40])
    case("gt_nested", ["invalid JSON: nested too deeply"], gt_text="[" * 50_000 + "]" * 50_000)
    case("gt_int_too_long", ["invalid JSON: Exceeds the limit"], gt_text='{"images": ' + "1" * 5000 + "}")
    case("gt_list", ["not a COCO instances file"], g=[gt])
    case("gt_is_results", ["looks like COCO results", "swap gt= and pred="], g=preds)
    case("gt_labelstudio_export", ["Label Studio export, not a COCO instances file", "tools/convert.py"],
         g=[ls_task(1, "street.jpg", [ls_poly("r1")])])
    case("gt_labelme_file", ["LabelMe file", "tools/convert.py"], g=lm_doc())
    case("gt_without_categories", ["no categories"], g=gt_with(lambda g: g.pop("categories")))
    case("gt_without_annotations", ["no 'annotations' list"], g=gt_with(lambda g: g.pop("annotations")))
    # ---- GT: images and categories
    case("gt_negative_size", ["image id 1 has no valid height/width"],
         g=gt_with(lambda g: g["images"][0].update(width=-5)))
    case("gt_size_string", ["image id 1 has no valid height/width ('60' x"],
         g=gt_with(lambda g: g["images"][0].update(height="60")))
    case("gt_huge_image", ["image id 1 is 100000x100000", "larger than any image"],
         g=gt_with(lambda g: g["images"][0].update(height=100_000, width=100_000)))
    case("gt_duplicate_image_id", ["image ids must be unique"],
         g=gt_with(lambda g: g["images"][1].update(id=g["images"][0]["id"])))
    case("gt_image_id_list", ["image ids must be unique integers (image #1 has id [1])"],
         g=gt_with(lambda g: g["images"][1].update(id=[1])))
    case("gt_image_not_object", ["image #2 is 'x.jpg', not an object"],
         g=gt_with(lambda g: g["images"].__setitem__(2, "x.jpg")))
    case("gt_category_id_list", ["category #0 has id [1], not an integer"],
         g=gt_with(lambda g: g["categories"][0].update(id=[1])))
    case("gt_category_duplicate", ["category id 2 appears twice (#0 and #1)"],
         g=gt_with(lambda g: g["categories"][1].update(id=2)))
    case("gt_category_name_list", ["category id 2 has name ['car']"],
         g=gt_with(lambda g: g["categories"][0].update(name=["car"])))
    # ---- GT: annotations
    case("gt_annotation_not_object", ["annotation #1 is 7, not an object"],
         g=gt_with(lambda g: g["annotations"].__setitem__(1, 7)))
    case("gt_unknown_image_id", ["annotation #0 refers to image id 999"],
         g=gt_with(lambda g: g["annotations"][0].update(image_id=999)))
    case("gt_annotation_image_id_list", ["annotation #0 has image_id [1], not an integer"],
         g=gt_with(lambda g: g["annotations"][0].update(image_id=[1])))
    case("gt_category_id_string", ["annotation #0 (image 1) has category_id '2', not in categories"],
         g=gt_with(lambda g: g["annotations"][0].update(category_id="2")))
    case("gt_area_string", ["annotation #0 (image 1): area is 'big'"],
         g=gt_with(lambda g: g["annotations"][0].update(area="big")))
    case("gt_area_nan", ["annotation #0 (image 1): area is nan"],
         g=gt_with(lambda g: g["annotations"][0].update(area=float("nan"))))
    case("gt_iscrowd_string", ["annotation #0 (image 1): iscrowd is 'yes', expected 0 or 1"],
         g=gt_with(lambda g: g["annotations"][0].update(iscrowd="yes")))
    case("gt_bbox_3_numbers", ["annotation #0 (image 1): bbox [1, 2, 3] is not [x, y, width, height]"],
         g=gt_with(lambda g: g["annotations"][0].update(bbox=[1, 2, 3])))
    case("gt_bbox_nan", ["annotation #0 (image 1): bbox [1, nan, 3, 4] is not"],
         g=gt_with(lambda g: g["annotations"][0].update(bbox=[1, float("nan"), 3, 4])))
    case("gt_bbox_huge", ["annotation #0 (image 1): bbox", "more than 10x the image size"],
         g=gt_with(lambda g: g["annotations"][0].update(bbox=[1, 2, 1e15, 4])))
    case("gt_polygon_2_points", ["annotation #0", "neither polygons"],
         g=gt_with(lambda g: g["annotations"][0].update(segmentation=[[1, 2, 3, 4]], area=1.0)))
    case("gt_polygon_nan", [f"annotation #{i_gt_poly}", "NaN or infinite"],
         g=gt_with(lambda g: g["annotations"][i_gt_poly]["segmentation"][0].__setitem__(0, float("nan"))))
    case("gt_polygon_huge", [f"annotation #{i_gt_poly}", "polygon coordinate 1e+15 is more than 10x"],
         g=gt_with(lambda g: g["annotations"][i_gt_poly]["segmentation"][0].__setitem__(3, 1e15)))
    case("gt_polygon_huge_int", [f"annotation #{i_gt_poly}", "polygon coordinate inf is more than 10x"],
         g=gt_with(lambda g: g["annotations"][i_gt_poly]["segmentation"][0].__setitem__(3, 10**400)))
    case("gt_rle_too_short", [f"annotation #{i_gt_poly}", f"RLE counts cover {h * w - 10} pixels"],
         g=gt_with(lambda g: g["annotations"][i_gt_poly].update(segmentation=short)))
    case("gt_rle_negative_run", [f"annotation #{i_gt_poly}", "RLE counts hold a negative run"],
         g=gt_with(lambda g: g["annotations"][i_gt_poly].update(segmentation=negative)))
    case("gt_rle_size_strings", [f"annotation #{i_gt_poly}", "RLE 'size' ['60', '80'] is not [height,"],
         g=gt_with(lambda g: g["annotations"][i_gt_poly].update(segmentation={"size": ["60", "80"],
                                                                              "counts": "PP"})))
    # ---- results: files
    case("pred_truncated", ["invalid JSON"], pred_text=json.dumps(preds)[:-40])
    case("pred_not_utf8", ["invalid JSON"], pred_raw=b"\xff\xfe[\x00\x81")
    case("pred_dict", ["must be a JSON list"], p={"results": preds})
    case("pred_gt_file", ["looks like a GT file"], p=gt)
    # ---- results: ids and scores
    case("pred_not_object", ["result #0 is not an object"], p=[5, *preds])
    case("pred_without_score", ["result #0 has no 'score'"], p=preds_with(lambda p: p[0].pop("score")))
    case("pred_nan_score", ["result #0 has score nan"], p=preds_with(lambda p: p[0].update(score=math.nan)))
    case("pred_inf_score", ["result #2 has score inf"], p=preds_with(lambda p: p[2].update(score=math.inf)))
    case("pred_score_string", ["result #0 has score '0.9'", "scores must be finite numbers"],
         p=preds_with(lambda p: p[0].update(score="0.9")))
    case("pred_image_id_list", ["result #0 has image_id [1], not an integer"],
         p=preds_with(lambda p: p[0].update(image_id=[1])))
    case("pred_image_id_bool", ["result #1 has image_id True, not an integer"],
         p=preds_with(lambda p: p[1].update(image_id=True)))
    case("pred_category_id_string", ["result #0 has category_id '99', not an integer", "1, not \"1\""],
         p=preds_with(lambda p: p[0].update(category_id=str(p[0]["category_id"]))))
    case("pred_unknown_image", ["refer to image ids not in the GT"],
         p=preds_with(lambda p: p[0].update(image_id=999)))
    case("pred_unknown_category", ["category ids [77] are not in the GT"],
         p=preds_with(lambda p: p[0].update(category_id=77)))
    # ---- results: boxes
    case("pred_nan_bbox", ["result #1: bbox", "nan"],
         p=preds_with(lambda p: p[1].update(bbox=[1, 2, math.nan, 3])))
    case("pred_negative_bbox", ["result #1: bbox", "width, height >= 0"],
         p=preds_with(lambda p: p[1].update(bbox=[1, 2, -3, 3])))
    case("pred_bbox_3_numbers", ["result #1: bbox [1, 2, 3] is not [x, y, width, height]"],
         p=preds_with(lambda p: p[1].update(bbox=[1, 2, 3])))
    case("pred_bbox_strings", ["result #1: bbox ['1', '2', '3', '4'] is not"],
         p=preds_with(lambda p: p[1].update(bbox=["1", "2", "3", "4"])))
    case("pred_bbox_huge", ["result #1 (image 1): bbox", "more than 10x the image size"],
         p=preds_with(lambda p: p[1].update(bbox=[1e15, 2, 3, 4])))
    case("pred_bbox_huge_int", ["result #1 (image 1): bbox", "more than 10x the image size"],
         p=preds_with(lambda p: p[1].update(bbox=[10**400, 2, 3, 4])))
    # ---- results: masks
    case("pred_polygon_2_points", [f"result #{i_rle}", "polygon mask needs lists of >= 6 numbers"],
         p=preds_with(lambda p: p[i_rle].update(segmentation=[[1, 2, 3, 4]])))
    case("pred_polygon_nan", [f"result #{i_rle}", "NaN or infinite"],
         p=preds_with(lambda p: p[i_rle].update(segmentation=[[1, 2, float("nan"), 4, 5, 6]])))
    case("pred_polygon_huge", [f"result #{i_rle}", "polygon coordinate 1e+15 is more than 10x"],
         p=preds_with(lambda p: p[i_rle].update(segmentation=[[1, 2, 1e15, 4, 5, 1e15]])))
    case("pred_rle_wrong_size", [f"result #{i_rle}", "differs from the image size"],
         p=preds_with(lambda p: p[i_rle]["segmentation"].update(size=[100_000, 100_000])))
    case("pred_rle_size_strings", [f"result #{i_rle}", "RLE 'size' ['a', 'b'] is not [height, width]"],
         p=preds_with(lambda p: p[i_rle]["segmentation"].update(size=["a", "b"])))
    case("pred_rle_garbage", [f"result #{i_rle}", "not a pycocotools string: character '#'"],
         p=preds_with(lambda p: p[i_rle]["segmentation"].update(counts="#$%^")))
    case("pred_rle_long_run", [f"result #{i_rle}", "not a pycocotools string: a run of more than 7"],
         p=preds_with(lambda p: p[i_rle]["segmentation"].update(counts="0" + "o" * 8 + "1")))
    case("pred_rle_unfinished", [f"result #{i_rle}", "not a pycocotools string: the counts string ends inside"],
         p=preds_with(lambda p: p[i_rle]["segmentation"].update(counts="oo")))
    case("pred_rle_too_long", [f"result #{i_rle}", "malformed mask: RLE counts cover"],
         p=preds_with(lambda p: p[i_rle]["segmentation"].update(
             counts=p[i_rle]["segmentation"]["counts"] + "o" * 6 + "1")))
    case("pred_rle_negative_counts", [f"result #{i_rle}", "non-negative ints"],
         p=preds_with(lambda p: p[i_rle]["segmentation"].update(counts=[-5, 5])))
    case("pred_mixed_masks", ["have no 'segmentation' while the others do"],
         p=preds_with(lambda p: p[i_rle].pop("segmentation")))
    return cases


def test_eval_bad_inputs_exit_2_with_one_line(tmp_path):
    cases = _eval_corpus(tmp_path)
    results = run_cases(EVAL, "maskseg_d2.engine.evaluate,hydra", [argv for argv, _ in cases.values()])
    lines = check_exit_2(cases, results)
    assert all(" — " in line for line in lines.values())  # each says what to do


def test_eval_valid_edge_inputs_exit_0(tmp_path):
    """Valid although unusual: results for some images only, images without file_name, ids written 2.0."""
    gt, preds, _, _ = _eval_pair()
    gt_images = [a["image_id"] for a in gt["annotations"]]
    dropped = max(gt_images, key=gt_images.count)  # the image with most GT: its instances count as missed
    subset = [p for p in preds if p["image_id"] != dropped]
    no_names = copy.deepcopy(gt)
    for img in no_names["images"]:
        del img["file_name"]
    float_ids = [{**p, "image_id": float(p["image_id"]), "category_id": float(p["category_id"])}
                 for p in preds]
    cases = {"subset": (gt, subset, "num_worst=2"), "no_file_names": (no_names, preds, "num_worst=3"),
             "float_ids": (gt, float_ids, "num_worst=0")}
    argvs = []
    for name, (g, p, worst) in cases.items():
        (tmp_path / f"{name}_gt.json").write_text(json.dumps(g))
        (tmp_path / f"{name}_pred.json").write_text(json.dumps(p))
        argvs.append([f"gt={tmp_path / f'{name}_gt.json'}", f"pred={tmp_path / f'{name}_pred.json'}",
                      f"output={tmp_path / name}", "plots=false", worst])
    results = run_cases(EVAL, "maskseg_d2.engine.evaluate,hydra", argvs)
    for name, res in zip(cases, results):
        ok = res["code"] == 0 and not error_lines(res["log"]) and "Traceback" not in res["log"]
        assert ok, (name, res["log"][-3000:])
    stats = {name: json.loads((tmp_path / name / "results.json").read_text()) for name in cases}
    assert 0 <= stats["subset"]["segm"]["AP"] < stats["float_ids"]["segm"]["AP"]
    assert "image(s) without a file_name" in (tmp_path / "no_file_names" / "results.md").read_text()
