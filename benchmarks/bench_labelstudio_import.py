"""Label Studio JSON export -> Detectron2 dicts: our importer next to label-studio-sdk's converter.

    python benchmarks/bench_labelstudio_import.py [--tasks 2000] [--width 1024 --height 768] [--repeats 3]

Writes a synthetic export of ``--tasks`` tasks (each: 2 polygons + 1 brush mask, at WIDTH x HEIGHT; brush RLE
bit-identical to the SDK's ``mask2rle``), then, on the same file:

* ours: ``read_dataset(..., fmt="labelstudio")`` -> dataset dicts (JSON read, image lookup + header size check,
  polygons in pixels, brush decoded and re-encoded as COCO RLE, boxes);
* label-studio-sdk 2.1.2 (its own venv ``.venv-ls``, created on first use): ``Converter.convert(..., "COCO")``
  (JSON read, image sizes, polygons -> pixels; it skips brushes) plus ``brush.decode_from_annotation`` on every
  task (the BRUSH_TO_NUMPY path without writing files) -- together, the same instances as ours. The brush pass
  needs the tasks again: its JSON parse is timed apart (``sdk brush: JSON parse``) and left out of the SDK total,
  which thus pays one JSON read, as ours does.

The SDK runs in its own process (its own venv); it times itself, so its interpreter start and imports are not
counted, as ours are not. The sides alternate over ``--repeats`` rounds (ours, SDK, SDK, ours, ...); medians and
the ratio SDK / ours (> 1: ours is faster) are printed. Same output: in the first round the SDK side writes what it
produced (its COCO file, and every brush mask as run lengths) and the script checks, task by task, that ours holds
the same instances: image size, class names, polygon coordinates (<= 1e-6 px), boxes, and every brush mask pixel
for pixel (alpha >= 128); later rounds must produce the same instance counts. A difference exits with status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util

from maskseg_d2.data import labelstudio_rle, read_dataset

from _same import Mismatch, exit_on_mismatch  # isort: skip
from _timing import Sample, interleave, machine, median, ratio_table  # isort: skip

ROOT = Path(__file__).resolve().parents[1]
SDK_PIN = "label-studio-sdk==2.1.2"
SDK_VENV = ROOT / ".venv-ls"
CONFIG = """<View><Image name="image" value="$image"/>
<PolygonLabels name="poly" toName="image"><Label value="car"/><Label value="sign board"/></PolygonLabels>
<BrushLabels name="brush" toName="image"><Label value="car"/><Label value="sign board"/></BrushLabels>
</View>"""
SDK_SCRIPT = r"""
import json, os, shutil, sys, tempfile, time
import numpy as np
from label_studio_sdk.converter import Converter, brush
export, config, upload, dump = sys.argv[1:5]
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    Converter(config, project_dir=None, upload_dir=upload, download_resources=False).convert(
        export, out, "COCO", is_dir=False)
    t1 = time.perf_counter()
    if dump:
        shutil.copy(os.path.join(out, "result.json"), os.path.join(dump, "coco.json"))
t2 = time.perf_counter()
tasks = json.load(open(export))
t3 = time.perf_counter()
masks = []
for task in tasks:
    results = [dict(r["value"], type=r["type"], original_width=r["original_width"],
                    original_height=r["original_height"]) for r in task["annotations"][0]["result"]]
    masks.append(brush.decode_from_annotation("brush", results))
t4 = time.perf_counter()
n = sum(len(m) for m in masks)
if dump:
    runs = [{name: np.flatnonzero(np.diff(np.r_[0, (alpha >= 128).ravel().astype(np.int8), 0])).tolist()
             for name, alpha in m.items()} for m in masks]
    json.dump(runs, open(os.path.join(dump, "brush_runs.json"), "w"))
print(json.dumps({"coco": t1 - t0, "parse": t3 - t2, "brush": t4 - t3, "masks": n}))
"""


def _shape_bank(rng: np.random.Generator, w: int, h: int, n: int = 40) -> tuple[list, list]:
    """Random star-shaped polygons (percent) and blob masks to draw tasks from."""
    polys, masks = [], []
    ys, xs = np.mgrid[0:h, 0:w]
    for _ in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.05, 0.15) * h
        t = np.sort(rng.uniform(0, 2 * np.pi, 16))
        rad = r * rng.uniform(0.6, 1.0, 16)
        polys.append([[float((cx + a * np.cos(b)) / w * 100), float((cy + a * np.sin(b)) / h * 100)]
                      for a, b in zip(rad, t)])
        ax, ay = r * rng.uniform(0.8, 1.6), r * rng.uniform(0.6, 1.2)
        masks.append(labelstudio_rle.mask_to_brush_rle(((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1.0))
    return polys, masks


def make_export(out: Path, tasks: int, w: int, h: int) -> Path:
    """Write ``tasks`` photos (hard links of one JPEG), their upload copies and the JSON export."""
    rng = np.random.default_rng(0)
    images, upload = out / "images", out / "upload" / "1"
    images.mkdir(parents=True)
    upload.mkdir(parents=True)
    ok, jpg = cv2.imencode(".jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (out / "photo.jpg").write_bytes(jpg.tobytes())
    polys, masks = _shape_bank(rng, w, h)
    export = []
    for i in range(tasks):
        name = f"photo_{i:05d}.jpg"
        for folder, stored in ((images, name), (upload, f"{i:08x}-{name}")):
            os.link(out / "photo.jpg", folder / stored)  # same bytes: the header read is what counts
        common = {"from_name": "poly", "to_name": "image", "original_width": w, "original_height": h,
                  "image_rotation": 0}
        results = [dict(common, id=f"p{i}_{k}", type="polygonlabels",
                        value={"points": polys[(i + k) % len(polys)], "closed": True,
                               "polygonlabels": ["car" if k else "sign board"]}) for k in range(2)]
        results.append(dict(common, id=f"b{i}", type="brushlabels", from_name="brush",
                            value={"format": "rle", "rle": masks[i % len(masks)], "brushlabels": ["car"]}))
        export.append({"id": i + 1, "data": {"image": f"/data/upload/1/{i:08x}-{name}"},
                       "annotations": [{"id": i + 1, "was_cancelled": False, "ground_truth": False,
                                        "created_at": "2024-05-01T10:00:00Z", "result": results}]})
    path = out / "export.json"
    path.write_text(json.dumps(export))
    return path


def sdk_python() -> str:
    python = SDK_VENV / "bin" / "python"
    if not (SDK_VENV / f".maskseg-{SDK_PIN}").exists():
        print(f"creating {SDK_VENV} with {SDK_PIN} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(SDK_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", SDK_PIN], check=True)
        (SDK_VENV / f".maskseg-{SDK_PIN}").touch()
    return str(python)


def sdk_side(python: str, export: Path, upload: Path, dump: Path | None) -> Sample:
    """One SDK run in its venv; times measured inside it."""
    out = subprocess.run([python, "-c", SDK_SCRIPT, str(export), CONFIG, str(upload), str(dump or "")],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the label-studio-sdk side failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    t = json.loads(out.stdout.strip().splitlines()[-1])
    times = {"COCO export (polygons)": t["coco"], "brush decode": t["brush"], "total": t["coco"] + t["brush"],
             "brush: JSON parse (not in total)": t["parse"]}
    return Sample(times, {"instances": None, "masks": t["masks"]})


def ours_side(export: Path, images: Path) -> Sample:
    start = time.perf_counter()
    res = read_dataset(export, images, fmt="labelstudio")
    total = time.perf_counter() - start
    return Sample({"total": total}, {"instances": sum(len(d["annotations"]) for d in res.dicts), "result": res})


def _runs(mask: np.ndarray) -> list[int]:
    """Start/end offsets of the foreground runs of a row-major mask (what the SDK side writes)."""
    return np.flatnonzero(np.diff(np.r_[0, mask.ravel().astype(np.int8), 0])).tolist()


def check_same(result, dump: Path) -> int:
    """Task by task, ours (dataset dicts) vs the SDK's COCO file and brush masks; returns the instances compared."""
    coco = json.loads((dump / "coco.json").read_text())
    runs = json.loads((dump / "brush_runs.json").read_text())
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    sdk_anns: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        sdk_anns.setdefault(a["image_id"], []).append(a)
    ours = {Path(d["file_name"]).name: d for d in result.dicts}
    if len(ours) != len(coco["images"]):
        raise Mismatch(f"{len(ours)} images (ours) vs {len(coco['images'])} (SDK)")
    compared = 0
    for k, img in enumerate(coco["images"]):
        name = Path(img["file_name"]).name.split("-", 1)[1]  # the upload copy: <8 hex>-<name>
        mine = ours.get(name)
        if mine is None:
            raise Mismatch(f"task {k + 1}: {name} is not in our dicts")
        where = f"task {k + 1} ({name})"
        if (mine["width"], mine["height"]) != (img["width"], img["height"]):
            raise Mismatch(f"{where}: size {mine['width']}x{mine['height']} (ours) vs {img['width']}x{img['height']}")
        polys = [a for a in mine["annotations"] if isinstance(a["segmentation"], list)]
        brushes = [a for a in mine["annotations"] if isinstance(a["segmentation"], dict)]
        sdk_polys = sdk_anns.get(img["id"], [])
        if (len(polys), len(brushes)) != (len(sdk_polys), len(runs[k])):
            raise Mismatch(f"{where}: {len(polys)} polygons + {len(brushes)} brush masks (ours) vs "
                           f"{len(sdk_polys)} + {len(runs[k])} (SDK)")
        for i, (a, b) in enumerate(zip(polys, sdk_polys)):
            if result.thing_classes[a["category_id"]] != cats[b["category_id"]]:
                raise Mismatch(f"{where} polygon {i}: class {result.thing_classes[a['category_id']]!r} (ours) vs "
                               f"{cats[b['category_id']]!r} (SDK)")
            pa, pb = np.asarray(a["segmentation"][0]), np.asarray(b["segmentation"][0])
            if pa.shape != pb.shape or not np.allclose(pa, pb, rtol=0, atol=1e-6):
                raise Mismatch(f"{where} polygon {i}: coordinates differ (max {np.abs(pa - pb).max():.3g} px)"
                               if pa.shape == pb.shape else f"{where} polygon {i}: {pa.size} vs {pb.size} values")
            if not np.allclose(a["bbox"], b["bbox"], rtol=0, atol=1e-6):
                raise Mismatch(f"{where} polygon {i}: box {a['bbox']} (ours) vs {b['bbox']} (SDK)")
        for a, (layer, r) in zip(brushes, sorted(runs[k].items())):
            label = layer.split("-")[1]  # brush-<label>-<i>
            if result.thing_classes[a["category_id"]] != label:
                raise Mismatch(f"{where} brush: class {result.thing_classes[a['category_id']]!r} (ours) vs {label!r}")
            if _runs(mask_util.decode(a["segmentation"]).astype(bool)) != r:
                raise Mismatch(f"{where} brush ({label}): the mask differs from the SDK's decoded alpha >= 128")
        compared += len(polys) + len(brushes)
    return compared


@exit_on_mismatch
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the sides alternate (medians reported)")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    python = sdk_python()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        export = make_export(tmp, args.tasks, args.width, args.height)
        print(f"export: {args.tasks} tasks, {3 * args.tasks} regions at {args.width}x{args.height}, "
              f"{export.stat().st_size / 1e6:.1f} MB (written in {time.perf_counter() - t0:.1f} s)", flush=True)
        dump = tmp / "sdk_output"
        dump.mkdir()
        t0 = time.perf_counter()
        json.loads(export.read_text())
        parse = time.perf_counter() - t0
        out = interleave({
            "ours": lambda r: ours_side(export, tmp / "images"),
            "label-studio-sdk": lambda r: sdk_side(python, export, tmp / "upload", dump if r == 0 else None),
        }, args.repeats)
        compared = check_same(out["ours"][0].output["result"], dump)
    for r, (a, b) in enumerate(zip(out["ours"], out["label-studio-sdk"])):
        if a.output["instances"] != compared or b.output["masks"] != args.tasks:
            raise Mismatch(f"repeat {r + 1}: ours {a.output['instances']} instances, SDK {b.output['masks']} brush "
                           f"masks (expected {compared} and {args.tasks})")
    print(f"\nsame output: {compared} instances of {args.tasks} tasks identical (classes, polygons, boxes, brush "
          f"masks pixel for pixel); {machine()}")
    print(ratio_table(out, "label-studio-sdk", "ours", [("JSON -> instances (total)", "total")]))
    sdk = out["label-studio-sdk"]
    print("SDK parts (median s): " + ", ".join(
        f"{k} {median(sdk, k):.2f}" for k in sdk[0].times if k != "total")
        + f"; a plain json.loads of the export: {parse:.2f} s")


if __name__ == "__main__":
    main()
