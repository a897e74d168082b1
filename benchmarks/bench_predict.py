"""Our ``predict_source()`` vs the Detectron2 demo loop (DefaultPredictor + Visualizer), same model, same images.

    python benchmarks/bench_predict.py [--run <run dir>] [--n 12] [--size 640x480] [--detections 20]
                                       [--batch 4] [--workers 2] [--device cpu] [--repeats 3]

Both sides read the same images, run the same model at the same test size with the same score threshold (0) and
detection cap, and write one JPEG overlay per image:

* baseline, the ``demo/demo.py`` way: ``read_image`` -> ``DefaultPredictor`` -> ``Visualizer
  .draw_instance_predictions`` (ColorMode.IMAGE) -> ``cv2.imwrite``, one image after the other;
* ours: ``maskseg_d2.predict.predict_source(save=[overlay])``: batched ``inference_mode`` (+ AMP on CUDA), BatchNorm
  folded, channels-last, decoding and writing in threads, OpenCV drawing.

Same instances on both sides. The two sides used to draw 19.5-19.6 vs 20.0 instances per image: our predictor drops
an instance whose pasted mask has no pixel above 0.5 (it has no outline, cut-out or polygon; ``empty_masks`` in the
summary), which a 2-iteration model produces now and then, while ``DefaultPredictor`` keeps it and the Visualizer
draws its box and label. Neither the cap (``TEST.DETECTIONS_PER_IMAGE``, the same on both sides), the score
threshold (0 on both), the resize (both ``ResizeShortestEdge(MIN_SIZE_TEST)``) nor fp rounding (scores agree to
1e-9, masks to IoU >= 0.998) made the difference. The baseline now drops empty masks as ours does (inside its timed
loop), and an untimed check pass compares every image's instances: same count, each matched to one of the same class
(box IoU >= 0.5) with mask IoU >= 0.99 (ours through its ``save=[coco]`` output). Each timed repeat must then draw the
same number of instances on both sides. A difference exits with status 1 and says which image differed.

The sides alternate over ``--repeats`` rounds (baseline, ours, ours, baseline, ...); each round builds its model
anew (timed as ``load``: config, model, weights; ours also folds BatchNorm) and predicts all images (``predict``).
Medians and the ratio baseline / ours (> 1: ours is faster; goal >= 2x on CPU) are printed per row.
Without ``--run`` a model is trained for 2 iterations on a generated demo set (CPU-sized ResNet-18 FPN) with its test
size set to the images' short side, so the model sees the images at full resolution.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util

# maskseg_d2 before detectron2: importing the package is what makes the Python-only Detectron2 importable
from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.engine.run import Run
from maskseg_d2.predict import Detections, list_images, predict_source

from _same import Mismatch, check_same_detections, exit_on_mismatch  # isort: skip
from _timing import Sample, Stopwatch, interleave, machine, median, ratio_table  # isort: skip
from _tiny_run import train_tiny_run  # isort: skip
from detectron2.data import MetadataCatalog  # isort: skip
from detectron2.data.detection_utils import read_image  # isort: skip
from detectron2.engine import DefaultPredictor  # isort: skip
from detectron2.utils.visualizer import ColorMode, Visualizer  # isort: skip


class Baseline:
    """The demo.py loop: DefaultPredictor, Visualizer (ColorMode.IMAGE), cv2.imwrite."""

    def __init__(self, run_dir: str, detections: int, device: str) -> None:
        self.run = Run.open(run_dir, device=device, score_threshold=0.0, max_detections=detections)
        self.metadata = MetadataCatalog.get("__bench_predict")
        self.metadata.thing_classes = self.run.thing_classes

    def __call__(self, images: list[str], out: Path, keep: bool = False) -> Sample:
        """Build the predictor (``load``), predict, draw and write every image (``predict``); ``keep``: return
        the drawn instances too."""
        out.mkdir(parents=True, exist_ok=True)
        watch, drawn, empty = Stopwatch(), [], 0
        with watch("load"):
            predictor = DefaultPredictor(self.run.d2cfg)
        with watch("predict"):
            for path in images:
                img = read_image(path, format="BGR")
                instances = predictor(img)["instances"].to("cpu")
                filled = instances.pred_masks.flatten(1).any(dim=1)  # as ours: an empty mask is dropped
                empty += int((~filled).sum())
                instances = instances[filled]
                vis = Visualizer(img[:, :, ::-1], self.metadata, instance_mode=ColorMode.IMAGE)
                canvas = vis.draw_instance_predictions(predictions=instances).get_image()
                cv2.imwrite(str(out / (Path(path).stem + ".jpg")), canvas[:, :, ::-1])
                drawn.append(instances if keep else len(instances))
        watch.times["load + predict"] = watch.times["load"] + watch.times["predict"]
        count = sum(len(i) if keep else i for i in drawn)
        return Sample(watch.times, {"instances": count, "empty": empty, "drawn": drawn})


def ours(run_dir: str, folder: str, out: Path, args: argparse.Namespace, save: list[str]) -> Sample:
    """``predict_source``; its own ``seconds`` start after the model is loaded."""
    start = time.perf_counter()
    summary = predict_source(run_dir, folder, str(out), score_threshold=0.0, device=args.device,
                             max_detections=args.detections, save=save, batch_size=args.batch,
                             workers=args.workers, progress=False)
    total = time.perf_counter() - start
    times = {"load": total - summary.seconds, "predict": summary.seconds, "load + predict": total}
    return Sample(times, {"instances": summary.instances, "empty": summary.empty_masks, "summary": summary})


def read_coco_output(out: Path, images: list[str]) -> list[Detections]:
    """Our ``coco_results.json`` + ``coco_images.json`` back into one :class:`Detections` per image."""
    index = json.loads((out / "coco_images.json").read_text())["images"]
    by_name = {Path(im["file_name"]).name: im for im in index}
    results = json.loads((out / "coco_results.json").read_text())
    dets = []
    for path in images:
        im = by_name[Path(path).name]
        rs = sorted((r for r in results if r["image_id"] == im["id"]), key=lambda r: -r["score"])
        if not rs:
            dets.append(Detections.empty(im["height"], im["width"]))
            continue
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in rs)], np.float32)
        masks = np.stack([mask_util.decode(r["segmentation"]).astype(bool) for r in rs])
        dets.append(Detections(boxes, np.array([r["score"] for r in rs], np.float32),
                               np.array([r["category_id"] - 1 for r in rs], np.int64), masks))
    return dets


def check_pass(baseline: Baseline, run_dir: str, folder: str, images: list[str], tmp: Path,
               args: argparse.Namespace) -> tuple[dict, int]:
    """Untimed (also both sides' warm-up): every image's instances on both sides; returns the match summary."""
    base = baseline(images, tmp / "check_baseline", keep=True)
    mine = ours(run_dir, folder, tmp / "check_ours", args, ["overlay", "coco"])
    ref = [Detections.from_instances(i) for i in base.output["drawn"]]
    report = check_same_detections(ref, read_coco_output(tmp / "check_ours", images), [Path(p).name for p in images],
                                   names=("DefaultPredictor", "predict_source"))
    if base.output["empty"] != mine.output["empty"]:
        raise Mismatch(f"empty masks dropped: {base.output['empty']} (baseline) vs {mine.output['empty']} (ours)")
    return report, base.output["empty"]


@exit_on_mismatch
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a run dir (default: train a 2-iteration demo model)")
    ap.add_argument("--n", type=int, default=12, help="images")
    ap.add_argument("--size", default="640x480", help="WxH of the generated images")
    ap.add_argument("--detections", type=int, default=20, help="instances per image at most (score threshold 0)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the sides alternate (medians reported)")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp = Path(tmp)
        make_demo_dataset(tmp / "demo", num_images=args.n, width=width, height=height, seed=3)
        folder = str(tmp / "demo" / "images")
        images = list_images(folder)
        run_dir = args.run
        if run_dir is None:
            run_dir = str(tmp / "run")
            train_tiny_run(tmp / "demo", Path(run_dir), min(width, height), device=args.device)
        baseline = Baseline(run_dir, args.detections, args.device)
        report, empty = check_pass(baseline, run_dir, folder, images, tmp, args)
        print(f"same output: {report['images']} images, {report['instances']} instances on both sides, "
              f"min mask IoU {report['min_mask_iou']:.4f} (>= 0.99), {empty} empty mask(s) dropped on both", flush=True)
        results = interleave({
            "DefaultPredictor": lambda r: baseline(images, tmp / f"out_baseline_{r}"),
            "predict_source": lambda r: ours(run_dir, folder, tmp / f"out_ours_{r}", args, ["overlay"]),
        }, args.repeats)
    for r, (a, b) in enumerate(zip(results["DefaultPredictor"], results["predict_source"])):
        if (a.output["instances"], a.output["empty"]) != (b.output["instances"], b.output["empty"]):
            raise Mismatch(f"repeat {r + 1}: baseline drew {a.output['instances']} instances ({a.output['empty']} "
                           f"empty dropped), ours {b.output['instances']} ({b.output['empty']})")
    n = len(images)
    print(f"\n{n} images {width}x{height}, device={args.device}, batch={args.batch}, workers={args.workers}, "
          f"{report['instances'] / n:.1f} instances/image drawn by both; {machine()}")
    print(ratio_table(results, "DefaultPredictor", "predict_source",
                      [("load (model + weights)", "load"), (f"predict + draw + write {n} images", "predict"),
                       ("load + predict", "load + predict")]))
    base, mine = (median(results[k], "predict") for k in ("DefaultPredictor", "predict_source"))
    print(f"\nimages/s (predict, median): DefaultPredictor + Visualizer {n / base:.2f}, predict_source {n / mine:.2f}; "
          f"ratio {base / mine:.2f}x (goal >= 2x on CPU)")


if __name__ == "__main__":
    main()
