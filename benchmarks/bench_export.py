"""Exported (TorchScript, ONNX Runtime) vs eager PyTorch: images/s on CPU, same model, same images.

    python benchmarks/bench_export.py [--run <run dir>] [--n 8] [--repeats 3] [--threads 2]
                                      [--detections 20] [--model r18_fpn_scratch] [--test-size 192]

All three sides use the same pre/post-processing (:mod:`maskseg_d2.deploy`: resize to the test size, the model,
boxes rescaled and masks pasted at full resolution) and the same score threshold (0) and detection cap; only the
network call differs:

* eager: ``model.inference(..., do_postprocess=False)`` under ``torch.inference_mode``;
* torchscript: the ``torch.jit.trace`` of Detectron2's TracingAdapter (``tools/export.py format=torchscript``);
* onnx: the same graph through ``torch.onnx.export`` run by ONNX Runtime (CPU provider).

Without ``--run`` a model (``--model``, random init) is trained for 2 iterations on a generated demo set (so masks
and boxes are not degenerate); speed does not depend on the weights' quality. Export is not timed. The sides take
turns over ``--repeats`` rounds (eager, torchscript, onnx, then reversed, ...); each round times ``load`` (the eager
model from the run / the exported file), one end-to-end pass over the images and one model-only pass (preprocessed
inputs, the four raw outputs). Medians and the speed-up over eager (eager time / side time) are printed per row.

Same output, before timing: ``maskseg_d2.deploy.compare_models`` on every image (the check ``tools/export.py`` runs:
same instance count, each matched to one of the same class with box IoU >= 0.99, score and in-box mask
probabilities within 1e-3; the pasted masks' IoU is printed but not bounded, since an untrained mask head sits at
the 0.5 threshold where a 1e-7 difference flips pixels). Every timed pass must then yield the same instance count per
image on every side. A difference exits with status 1 with the comparison table.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from maskseg_d2.demo import make_demo_dataset
from maskseg_d2.deploy import EagerModel, compare_models, export_run, format_comparison, load_exported
from maskseg_d2.predict import list_images, read_bgr

from _same import Mismatch, exit_on_mismatch  # isort: skip
from _timing import Sample, Stopwatch, interleave, machine, median, ratio_table  # isort: skip
from _tiny_run import train_tiny_run  # isort: skip


def _load(name: str, run_dir: str, paths: dict[str, str], common: dict, threads: int):
    return EagerModel(run_dir, **common) if name == "eager" else load_exported(paths[name], threads=threads)


def _side(name: str, run_dir: str, paths: dict[str, str], common: dict, args: argparse.Namespace,
          images: list, inputs: list) -> Sample:
    """Load, one end-to-end pass (returns the instance count per image), one model-only pass."""
    watch = Stopwatch()
    with watch("load"):
        model = _load(name, run_dir, paths, common, args.threads)
    for _ in range(2):  # warm-up, untimed: TorchScript profiles and optimises on its first calls
        model(images[0])
        model.raw(inputs[0])
    with watch("end-to-end"):
        counts = [len(model(img)) for img in images]
    with watch("model only"):
        for x in inputs:
            model.raw(x)
    return Sample(watch.times, counts)


@exit_on_mismatch
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a trained run dir (default: train a tiny one in a temp dir)")
    parser.add_argument("--n", type=int, default=8, help="images per pass")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the sides take turns (medians reported)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime")
    parser.add_argument("--detections", type=int, default=20, help="instances per image (score threshold 0)")
    parser.add_argument("--model", default="r18_fpn_scratch", help="configs/model/* for the tiny run")
    parser.add_argument("--test-size", type=int, default=192, help="INPUT.MIN_SIZE_TEST of the tiny run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        _bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench(args: argparse.Namespace, tmp: Path) -> None:
    data_root = tmp / "demo"
    make_demo_dataset(data_root, num_images=max(args.n, 8), seed=3)
    run_dir = args.run
    if run_dir is None:
        run_dir = str(tmp / "run")
        train_tiny_run(data_root, Path(run_dir), args.test_size, model=args.model)
    image_paths = list_images(str(data_root / "images"))[: args.n]
    images = [read_bgr(p) for p in image_paths]
    common = dict(score_threshold=0.0, max_detections=args.detections)
    eager = EagerModel(run_dir, **common)
    paths = {}
    for fmt in ("torchscript", "onnx"):
        result = export_run(run_dir, fmt, output=str(tmp / "export"), images=str(data_root / "images"),
                            num_images=2, **common)
        if not result.ok:
            raise Mismatch(f"{fmt} export differs from eager:\n{result.message()}")
        paths[fmt] = result.path
        rows = compare_models(eager, load_exported(result.path, threads=args.threads), image_paths)
        if not all(r["ok"] for r in rows):
            raise Mismatch(f"{fmt} differs from eager on the benchmark images:\n{format_comparison(rows)}")
        worst = min((r["min_mask_iou"] for r in rows if r["min_mask_iou"] is not None), default=1.0)
        print(f"same output: {fmt} vs eager on {len(rows)} images, {sum(r['ref'] for r in rows)} instances matched "
              f"within the export tolerances (min pasted-mask IoU {worst:.4f})", flush=True)
    h, w = images[0].shape[:2]
    test = tuple(eager.preprocess(images[0]).shape[1:])
    inputs = [eager.preprocess(img) for img in images]  # every side resizes the same way (deploy's _resize)
    sides = {name: (lambda r, name=name: _side(name, run_dir, paths, common, args, images, inputs))
             for name in ("eager", "torchscript", "onnx")}
    out = interleave(sides, args.repeats)
    for name in ("torchscript", "onnx"):
        for r, (a, b) in enumerate(zip(out["eager"], out[name])):
            if a.output != b.output:
                raise Mismatch(f"repeat {r + 1}: instances per image eager {a.output} vs {name} {b.output}")
    per_image = sum(out["eager"][0].output) / len(images)
    print(f"\n{len(images)} images {w}x{h} (model input {test[1]}x{test[0]}), {per_image:.1f} instances/image on "
          f"every side, {args.threads} threads, model {Path(run_dir).name}; {machine()}")
    for name in ("torchscript", "onnx"):
        print(ratio_table(out, "eager", name, [("load", "load"), (f"end-to-end, {len(images)} images", "end-to-end"),
                                                (f"model only, {len(images)} images", "model only")]))
    print("\nimages/s (median): " + "; ".join(
        f"{name} end-to-end {len(images) / median(out[name], 'end-to-end'):.2f}, model only "
        f"{len(images) / median(out[name], 'model only'):.2f}" for name in out))


if __name__ == "__main__":
    main()
