"""Label Studio JSON export -> Detectron2 dicts: our importer next to label-studio-sdk's converter.

    python benchmarks/bench_labelstudio_import.py [--tasks 2000] [--width 1024 --height 768] [--no-sdk]

Writes a synthetic export of ``--tasks`` tasks (each: 2 polygons + 1 brush mask, at WIDTH x HEIGHT; brush
RLE bit-identical to the SDK's ``mask2rle``), then times on the same file, in one run:

* ours: ``read_dataset(..., fmt="labelstudio")`` -> dataset dicts (image lookup + header/EXIF size check,
  polygons in pixels, brush decoded and re-encoded as COCO RLE, boxes);
* label-studio-sdk 2.1.2 (its own venv ``.venv-ls``, created on first use): ``Converter.convert(..., "COCO")``
  (polygons -> pixels; it skips brushes) plus ``brush.decode_from_annotation`` on every task (the
  BRUSH_TO_NUMPY path without writing files) -- together, the same instances as ours.

and prints both times and the ratio.
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

import numpy as np

from maskseg_d2.data import labelstudio_rle, read_dataset

ROOT = Path(__file__).resolve().parents[1]
SDK_PIN = "label-studio-sdk==2.1.2"
SDK_VENV = ROOT / ".venv-ls"
CONFIG = """<View><Image name="image" value="$image"/>
<PolygonLabels name="poly" toName="image"><Label value="car"/><Label value="sign board"/></PolygonLabels>
<BrushLabels name="brush" toName="image"><Label value="car"/><Label value="sign board"/></BrushLabels>
</View>"""
SDK_SCRIPT = r"""
import json, sys, tempfile, time
from label_studio_sdk.converter import Converter, brush
export, config, upload = sys.argv[1:4]
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    Converter(config, project_dir=None, upload_dir=upload, download_resources=False).convert(
        export, out, "COCO", is_dir=False)
t1 = time.perf_counter()
n = 0
for task in json.load(open(export)):
    results = [dict(r["value"], type=r["type"], original_width=r["original_width"],
                    original_height=r["original_height"]) for r in task["annotations"][0]["result"]]
    n += len(brush.decode_from_annotation("brush", results))
t2 = time.perf_counter()
print(json.dumps({"coco": t1 - t0, "brush": t2 - t1, "masks": n}))
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
    import cv2

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--no-sdk", action="store_true", help="time only our importer")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export = make_export(Path(tmp), args.tasks, args.width, args.height)
        size_mb = export.stat().st_size / 1e6
        print(f"export: {args.tasks} tasks, {3 * args.tasks} regions at {args.width}x{args.height}, "
              f"{size_mb:.1f} MB (written in {time.perf_counter() - t0:.1f} s)")
        t0 = time.perf_counter()
        res = read_dataset(export, Path(tmp) / "images", fmt="labelstudio")
        ours = time.perf_counter() - t0
        n = sum(len(d["annotations"]) for d in res.dicts)
        per_task = ours / args.tasks * 1e3
        print(f"ours  read_dataset -> dicts:       {ours:8.2f} s  ({n} instances, {per_task:.2f} ms/task)")
        if args.no_sdk:
            return
        out = subprocess.run([sdk_python(), "-c", SDK_SCRIPT, str(export), CONFIG, str(Path(tmp) / "upload")],
                             capture_output=True, text=True, check=True)
        sdk = json.loads(out.stdout.strip().splitlines()[-1])
        total = sdk["coco"] + sdk["brush"]
        print(f"sdk   COCO export (polygons):      {sdk['coco']:8.2f} s")
        print(f"sdk   brush decode ({sdk['masks']} masks):  {sdk['brush']:8.2f} s")
        print(f"sdk   total:                       {total:8.2f} s")
        print(f"ratio sdk / ours: {total / ours:.1f}x faster")


if __name__ == "__main__":
    main()
