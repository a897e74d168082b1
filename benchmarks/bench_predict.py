"""Our ``predict_source()`` (eager and ONNX Runtime) vs the Detectron2 demo loop (DefaultPredictor + Visualizer), same
model, same images; ``--video``: frames per second of a video (as a webcam sees it), eager vs ONNX.

    python benchmarks/bench_predict.py [--run <run dir>] [--n 12] [--size 640x480] [--detections 20]
                                       [--batch 4] [--workers 2] [--device cpu] [--repeats 3] [--backends eager,onnx]
    python benchmarks/bench_predict.py --video [--frames 24] [--size 640x480] [--repeats 3]

Images. All sides read the same images, run the same model at the same test size with the same score threshold (0)
and detection cap, and write one JPEG overlay per image:

* baseline, the ``demo/demo.py`` way: ``read_image`` -> ``DefaultPredictor`` -> ``Visualizer
  .draw_instance_predictions`` (ColorMode.IMAGE) -> ``cv2.imwrite``, one image after the other;
* ``predict_source`` (``backend=eager``): batched ``inference_mode`` (+ AMP on CUDA), BatchNorm folded,
  channels-last, decoding and writing in threads, OpenCV drawing;
* ``predict_source onnx`` (``backend=onnx``): the same, with the run's ONNX export run by ONNX Runtime (exported
  once, before timing, by the check pass; ``load`` is then opening the file).

Same instances on every side. The sides used to draw 19.5-19.6 vs 20.0 instances per image: our predictor drops
an instance whose pasted mask has no pixel above 0.5 (it has no outline, cut-out or polygon; ``empty_masks`` in the
summary), which a 2-iteration model produces now and then, while ``DefaultPredictor`` keeps it and the Visualizer
draws its box and label. Neither the cap (``TEST.DETECTIONS_PER_IMAGE``, the same on both sides), the score
threshold (0 on both), the resize (both ``ResizeShortestEdge(MIN_SIZE_TEST)``) nor fp rounding (scores agree to
1e-9, masks to IoU >= 0.998) made the difference. The baseline now drops empty masks as ours does (inside its timed
loop), and an untimed check pass compares every image's instances: same count, each matched to one of the same class
(box IoU >= 0.5) with mask IoU >= 0.99 (ours through its ``save=[coco]`` output; >= 0.98 for an exported model, the
bound of ``backend=`` vs eager). Each timed repeat must then draw the
same number of instances on every side. A difference exits with status 1 and says which image differed.

Without ``--run`` a model is trained for 2 iterations on a generated demo set (CPU-sized ResNet-18 FPN) with its test
size set to the images' short side, so the model sees the images at full resolution; its mask predictor's weights
are then multiplied by 100 (:func:`sharpen_masks`). A 2-iteration mask head outputs probabilities within 0.44-0.53,
a third of them within 0.01 of the 0.5 threshold, where ONNX Runtime's last-bit differences (1e-6) flip pixels; the
scaled head draws clear masks, so the mask IoU check means something, and the speed is the same.

The sides alternate over ``--repeats`` rounds (A B C, C B A, ...); each round builds its model anew (timed as
``load``: config, model, weights; ours also folds BatchNorm / opens the ONNX file) and predicts all images
(``predict``). Medians and the ratio baseline / side (> 1: the side is faster; goal >= 5x on CPU for ONNX) are
printed per row.

Video (``--video``): a clip of ``--frames`` generated frames (``--size``, MJPG) through ``predict_source`` with
``backend=eager`` and ``backend=onnx``, batch 1 as for a webcam, the annotated video written; fps = frames /
``summary.seconds`` (reading, model, drawing, encoding). Same check first: every frame's instances equal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_util

# maskseg_d2 before detectron2: importing the package is what makes the Python-only Detectron2 importable
from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.engine.run import Run
from maskseg_d2.deploy import open_predictor
from maskseg_d2.predict import Detections, VideoOptions, list_images, predict_source, read_bgr
from maskseg_d2.visualization.overlay import class_colors, draw_detections

from _same import Mismatch, check_same_detections, exit_on_mismatch  # isort: skip
from _timing import Sample, Stopwatch, interleave, machine, median, ratio_table  # isort: skip
from _tiny_run import train_tiny_run  # isort: skip
from detectron2.data import MetadataCatalog  # isort: skip
from detectron2.data.detection_utils import read_image  # isort: skip
from detectron2.engine import DefaultPredictor  # isort: skip
from detectron2.utils.visualizer import ColorMode, Visualizer  # isort: skip


# lowest mask IoU of a matched instance: the same eager network on both sides (True), or an exported one (False),
# where a pixel centre that falls where the pasted probability crosses 0.5 can flip an edge row of a small mask
MIN_MASK_IOU = {True: 0.99, False: 0.98}


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


def ours(run_dir: str, source: str, out: Path, args: argparse.Namespace, save: list[str], backend: str = "eager",
         **kw) -> Sample:
    """``predict_source``; its own ``seconds`` start after the model is loaded."""
    start = time.perf_counter()
    summary = predict_source(run_dir, source, str(out), score_threshold=0.0, device=args.device,
                             max_detections=args.detections, save=save, batch_size=args.batch,
                             workers=args.workers, progress=False, backend=backend, open_model=open_predictor, **kw)
    total = time.perf_counter() - start
    if summary.backend != backend:
        raise Mismatch(f"backend={backend} ran {summary.backend}")
    times = {"load": total - summary.seconds, "predict": summary.seconds, "load + predict": total}
    return Sample(times, {"instances": summary.instances, "empty": summary.empty_masks, "summary": summary})


def sharpen_masks(run_dir: str, factor: float = 100.0) -> None:
    """Multiply the mask predictor's weights of the run's checkpoint by ``factor`` (see the module docstring)."""
    path = Run.open(run_dir, device="cpu").d2cfg.MODEL.WEIGHTS  # the checkpoint every side loads
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("roi_heads.mask_head.predictor.weight", "roi_heads.mask_head.predictor.bias"):
        ckpt["model"][key] = ckpt["model"][key] * factor
    torch.save(ckpt, path)


def read_coco_output(out: Path, labels: list[str]) -> list[Detections]:
    """Our ``coco_results.json`` + ``coco_images.json`` back into one :class:`Detections` per image (or frame)."""
    index = json.loads((out / "coco_images.json").read_text())["images"]
    by_name = {Path(im["file_name"]).name: im for im in index}
    results = json.loads((out / "coco_results.json").read_text())
    dets = []
    for label in labels:
        im = by_name[Path(label).name]
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
               args: argparse.Namespace, backends: list[str]) -> tuple[dict, int]:
    """Untimed (also every side's warm-up, and the ONNX export): every image's instances on every side, against the
    baseline's; returns the match summary (the lowest mask IoU over the sides)."""
    base = baseline(images, tmp / "check_baseline", keep=True)
    ref = [Detections.from_instances(i) for i in base.output["drawn"]]
    names = [Path(p).name for p in images]
    report = None
    for backend in backends:
        mine = ours(run_dir, folder, tmp / f"check_{backend}", args, ["overlay", "coco"], backend)
        got = check_same_detections(ref, read_coco_output(tmp / f"check_{backend}", images), names,
                                    min_mask_iou=MIN_MASK_IOU[backend == "eager"],
                                    names=("DefaultPredictor", f"predict_source {backend}"))
        if base.output["empty"] != mine.output["empty"]:
            raise Mismatch(f"empty masks dropped: {base.output['empty']} (baseline) vs {mine.output['empty']} "
                           f"({backend})")
        report = got if report is None or got["min_mask_iou"] < report["min_mask_iou"] else report
    return report, base.output["empty"]


def stage_profile(run_dir: str, images: list[str], args: argparse.Namespace, backend: str,
                  tmp: Path) -> dict[str, float]:
    """Where one image's time goes on ``backend``, each stage timed alone in one thread (no overlap): seconds per
    image, medians over the images."""
    run = Run.open(run_dir, device=args.device, score_threshold=0.0, max_detections=args.detections)
    predictor = open_predictor(run, backend)
    colors = class_colors(len(run.thing_classes))
    per: dict[str, list[float]] = {}
    for path in images:
        watch = Stopwatch()
        with watch("decode"):
            bgr = read_bgr(path)
        with watch("resize"):
            inputs = predictor.preprocess(bgr)
        if backend == "eager":
            with watch("network + paste masks"):
                dets = predictor([inputs])[0]
        else:
            with watch("network"):
                raw = predictor.model.raw(inputs["image"])
            with watch("paste masks"):
                dets = predictor.detections(raw, inputs)
        with watch("draw"):
            vis = draw_detections(bgr, dets, run.thing_classes, colors=colors)
        with watch("encode + write"):
            cv2.imwrite(str(tmp / "profile.jpg"), vis)
        for k, v in watch.times.items():
            per.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in per.items()}


def side_name(backend: str) -> str:
    return "predict_source" if backend == "eager" else f"predict_source {backend}"


def make_clip(path: Path, frames: int, width: int, height: int, tmp: Path) -> None:
    """A ``frames``-frame MJPG clip of generated demo scenes (``width`` x ``height``)."""
    make_demo_dataset(tmp / "clip_frames", num_images=frames, width=width, height=height, seed=5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for image in list_images(str(tmp / "clip_frames" / "images")):
        writer.write(cv2.imread(image))
    writer.release()


def bench_video(run_dir: str, tmp: Path, args: argparse.Namespace, backends: list[str], size: tuple[int, int]) -> None:
    """``--video``: fps of ``predict_source`` on a generated clip, eager vs ONNX, outputs compared first."""
    clip = tmp / "clip.avi"
    make_clip(clip, args.frames, *size, tmp)
    args.batch = 1  # a webcam's batch: each frame as soon as it arrives
    video = VideoOptions(show="false")
    labels = [f"{clip}#frame={n}" for n in range(args.frames)]
    ref = None
    for backend in backends:  # untimed check pass (and warm-up / export)
        ours(run_dir, str(clip), tmp / f"vcheck_{backend}", args, ["overlay", "coco"], backend, video=video)
        dets = read_coco_output(tmp / f"vcheck_{backend}", labels)
        if ref is None:
            ref = dets
            continue
        report = check_same_detections(ref, dets, labels, MIN_MASK_IOU[False], names=("eager", backend))
        print(f"same output: {report['images']} frames, {report['instances']} instances on both sides, "
              f"min mask IoU {report['min_mask_iou']:.4f} (>= {MIN_MASK_IOU[False]})", flush=True)
    results = interleave({b: (lambda r, b=b: ours(run_dir, str(clip), tmp / f"video_{b}_{r}", args, ["overlay"],
                                                   b, video=video)) for b in backends}, args.repeats)
    counts = {b: {s.output["instances"] for s in results[b]} for b in backends}
    if len({frozenset(c) for c in counts.values()}) != 1 or any(len(c) != 1 for c in counts.values()):
        raise Mismatch(f"instances per timed run differ: {counts}")
    print(f"\n{args.frames} frames {size[0]}x{size[1]} (a generated clip, MJPG), batch 1 (as a webcam), "
          f"device={args.device}; {machine()}")
    for b in backends[1:]:
        print(ratio_table(results, backends[0], b, [(f"read + predict + draw + encode {args.frames} frames",
                                                     "predict"), ("load + predict", "load + predict")]))
    print("\nframes/s (median): " + "; ".join(f"{b} {args.frames / median(results[b], 'predict'):.2f}"
                                             for b in backends))


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
    ap.add_argument("--backends", default="eager,onnx", help="predict_source backends to time")
    ap.add_argument("--video", action="store_true", help="fps on a generated clip, eager vs onnx")
    ap.add_argument("--frames", type=int, default=24, help="--video: frames in the clip")
    args = ap.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
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
            sharpen_masks(run_dir)
        if args.video:
            bench_video(run_dir, tmp, args, backends, (width, height))
            return
        baseline = Baseline(run_dir, args.detections, args.device)
        report, empty = check_pass(baseline, run_dir, folder, images, tmp, args, backends)
        print(f"same output: {report['images']} images, {report['instances']} instances on every side, "
              f"min mask IoU {report['min_mask_iou']:.4f} (>= 0.99 eager, >= 0.98 exported), {empty} empty mask(s) "
              "dropped on each", flush=True)
        sides = {"DefaultPredictor": lambda r: baseline(images, tmp / f"out_baseline_{r}")}
        for b in backends:
            sides[side_name(b)] = lambda r, b=b: ours(run_dir, folder, tmp / f"out_{b}_{r}", args, ["overlay"], b)
        results = interleave(sides, args.repeats)
        profiles = {b: stage_profile(run_dir, images, args, b, tmp) for b in backends}
    for r, a in enumerate(results["DefaultPredictor"]):
        for b in backends:
            o = results[side_name(b)][r].output
            if (a.output["instances"], a.output["empty"]) != (o["instances"], o["empty"]):
                raise Mismatch(f"repeat {r + 1}: baseline drew {a.output['instances']} instances ({a.output['empty']} "
                               f"empty dropped), {side_name(b)} {o['instances']} ({o['empty']})")
    n = len(images)
    print(f"\n{n} images {width}x{height}, device={args.device}, batch={args.batch}, workers={args.workers}, "
          f"{report['instances'] / n:.1f} instances/image drawn by every side; {machine()}")
    for b in backends:
        print(ratio_table(results, "DefaultPredictor", side_name(b),
                          [("load (model + weights)", "load"), (f"predict + draw + write {n} images", "predict"),
                           ("load + predict", "load + predict")]))
    for b, stages in profiles.items():
        print(f"{side_name(b)}, one image at a time, no threads (median s/image): " + ", ".join(
            f"{k} {v:.3f}" for k, v in stages.items()) + f"; sum {sum(stages.values()):.3f}")
    base = median(results["DefaultPredictor"], "predict")
    print(f"\nimages/s (predict, median): DefaultPredictor + Visualizer {n / base:.2f}; " + "; ".join(
        f"{side_name(b)} {n / median(results[side_name(b)], 'predict'):.2f} "
        f"({base / median(results[side_name(b)], 'predict'):.2f}x)" for b in backends) + " (goal >= 5x on CPU)")


if __name__ == "__main__":
    main()
