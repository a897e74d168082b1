"""``predict_source()``: a run's model on an image, a folder, a glob, a video file or a webcam.

Images flow through three overlapping stages: reader threads decode (EXIF applied) and resize, the
main thread runs the model on batches, writer threads draw and save the outputs. The model is the
only stage that has to wait for nothing but itself.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from tqdm import tqdm

from ..engine.run import Run
from ..errors import UserError
from . import labelstudio_push
from .model import BatchPredictor
from .outputs import ExportOptions, ImageItem, OutputWriter
from .sources import InputSpec, output_stems, prefetch, read_bgr, resolve_input
from .video import predict_video

__all__ = ["MODEL_BACKENDS", "PredictSummary", "VideoOptions", "predict", "predict_source", "class_indices"]

logger = logging.getLogger(__name__)

# eager: this package's BatchPredictor; onnx / torchscript / auto: maskseg_d2.deploy.open_predictor
MODEL_BACKENDS = ("eager", "onnx", "torchscript", "auto")  # predict.yaml backend= (not cocoeval.BACKENDS)


@dataclass
class VideoOptions:
    """Video and webcam settings.

    Attributes:
        show (str): ``auto`` (a live window when a display exists), ``true`` or ``false``.
        codec (str): FourCC of the written video (``mp4v`` -> .mp4; ``MJPG``/``XVID`` -> .avi).
        max_frames (int or None): stop after this many frames (a webcam runs until ``q``/Esc otherwise).
        fps (float or None): frame rate of the written video; None = the source's (webcam: 30).
    """

    show: str = "auto"
    codec: str = "mp4v"
    max_frames: int | None = None
    fps: float | None = None


@dataclass
class PredictSummary:
    """What a prediction run did.

    Attributes:
        output (str): the output folder.
        kind (str): ``images``, ``video`` or ``webcam``.
        backend (str): the model that predicted: ``eager``, ``onnx`` or ``torchscript``.
        images (int): images (or frames) predicted.
        instances (int): instances kept over all of them.
        empty_masks (int): detections dropped because their mask was empty.
        seconds (float): wall time after the model was loaded.
        skipped (list[tuple[str, str]]): unreadable files and why.
        files (dict): written files per output kind (see :meth:`OutputWriter.close`).
    """

    output: str
    kind: str
    backend: str = "eager"
    images: int = 0
    instances: int = 0
    empty_masks: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """float: throughput (images or frames per second)."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def overlays(self) -> list[str]:
        """list[str]: the overlay images written (empty for a video)."""
        return list(self.files.get("overlay", []))

    def message(self) -> str:
        """str: a one-paragraph report for the console."""
        lines = [f"predicted {self.images} {'frame' if self.kind != 'images' else 'image'}(s), "
                 f"{self.instances} instance(s), {self.images_per_second:.2f} img/s ({self.backend}) -> {self.output}"]
        if self.empty_masks:
            lines.append(f"  dropped {self.empty_masks} detection(s) with an empty mask")
        for kind, value in self.files.items():
            n = len(value) if isinstance(value, list) else 1
            lines.append(f"  {kind}: {value if isinstance(value, str) else f'{n} file(s)'}")
        if self.skipped:
            shown = ", ".join(f"{p} ({why})" for p, why in self.skipped[:5])
            more = f" and {len(self.skipped) - 5} more (summary.json)" if len(self.skipped) > 5 else ""
            lines.append(f"  skipped {len(self.skipped)} unreadable file(s): {shown}{more}")
        return "\n".join(lines)


def class_indices(classes: Sequence[str] | None, thing_classes: Sequence[str]) -> list[int] | None:
    """Indices of the ``classes=`` subset (None = all).

    Args:
        classes (list[str] or None): class names to keep.
        thing_classes (list[str]): the run's classes.

    Returns:
        list[int] or None: sorted indices.
    """
    if classes is None:
        return None
    names = [classes] if isinstance(classes, str) else list(classes)
    unknown = [c for c in names if c not in thing_classes]
    if unknown:
        raise UserError(f"classes={names}: {unknown[0]!r} is not a class of this run — "
                        f"choose from {list(thing_classes)}")
    return sorted(thing_classes.index(c) for c in names)


def _batches(stream: Iterable[tuple], size: int, skipped: list) -> Iterator[list[tuple]]:
    """Group readable images into batches of ``size``; unreadable ones go to ``skipped``."""
    batch = []
    for item, bgr, inputs, error in stream:
        if error is not None:
            skipped.append((item.path, error))
            logger.info("skipped %s: %s", item.path, error)
            continue
        batch.append((item, bgr, inputs))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict_images(spec: InputSpec, predictor: BatchPredictor, writer: OutputWriter, summary: PredictSummary,
                    batch_size: int, workers: int, progress: bool) -> None:
    stems = output_stems(spec.paths, spec.root)
    items = [ImageItem(i, p, s) for i, (p, s) in enumerate(zip(spec.paths, stems))]

    def load(item: ImageItem) -> tuple:
        try:
            bgr = read_bgr(item.path)
        except Exception as e:  # any decoder error (truncated, not an image, unsupported mode): report, go on
            why = str(e).splitlines()[0][:120] if str(e) else "unreadable"
            return item, None, None, f"{type(e).__name__}: {why}"
        return item, bgr, predictor.preprocess(bgr), None

    pending: deque[Future] = deque()
    counted_skips = 0
    bar = tqdm(total=len(items), desc="predict", unit="img", disable=not progress, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="predict-write") as pool:
        stream = prefetch(load, items, workers, depth=2 * batch_size + workers)
        for batch in _batches(stream, batch_size, summary.skipped):
            dets = predictor([inputs for _, _, inputs in batch])
            for (item, bgr, _), d in zip(batch, dets):
                pending.append(pool.submit(writer.write, item, bgr, d))
                summary.images += 1
                summary.instances += len(d)
            while len(pending) > 2 * batch_size:  # bound the images held in memory
                pending.popleft().result()
            bar.update(len(batch) + len(summary.skipped) - counted_skips)
            counted_skips = len(summary.skipped)
            bar.set_postfix(skipped=counted_skips, refresh=False)
        while pending:
            pending.popleft().result()
        bar.update(len(summary.skipped) - counted_skips)
    bar.close()


def predict_source(
    run_dir: str,
    source: str | int,
    output: str | None = None,
    score_threshold: float = 0.5,
    checkpoint: str | None = None,
    device: str = "auto",
    *,
    save: Sequence[str] = ("overlay",),
    classes: Sequence[str] | None = None,
    batch_size: int = 4,
    max_detections: int = 100,
    amp: bool = True,
    workers: int = 2,
    options: ExportOptions | None = None,
    video: VideoOptions | None = None,
    progress: bool = True,
    backend: str = "eager",
    open_model: Callable[..., Any] | None = None,
) -> PredictSummary:
    """Predict instances with a trained run and write the selected outputs.

    Unreadable or corrupt images are reported and skipped (counted in the summary), never a crash
    halfway through a folder.

    Args:
        run_dir (str): a directory written by ``tools/train.py``.
        source (str or int): an image, a folder (recursive), a glob, a video file or a webcam index.
        output (str or None): output folder; None = ``<run_dir>/predict/<input name>``.
        score_threshold (float): detections below this confidence are dropped.
        checkpoint (str or None): weights file in the run dir (or a path); None: ``model_best.pth``,
            else ``model_final.pth``, else the last one.
        device (str): auto | cpu | cuda[:N].
        save (list[str]): outputs, a subset of ``overlay, masks, cutout, coco, labelstudio, labelme``
            (videos: ``overlay`` = the annotated video, and ``coco``).
        classes (list[str] or None): keep only these classes.
        batch_size (int): images per model call.
        max_detections (int): instances per image at most.
        amp (bool): fp16 autocast on CUDA (no effect on CPU).
        workers (int): reader threads and writer threads (each).
        options (ExportOptions or None): output formats; None = defaults.
        video (VideoOptions or None): video/webcam settings; None = defaults.
        progress (bool): show a tqdm bar.
        backend (str): ``eager`` (:class:`BatchPredictor`), ``onnx``, ``torchscript`` or ``auto``; the others
            than eager need ``open_model``.
        open_model (callable or None): ``open_model(run, backend, keep_classes, amp, samples)`` -> a predictor
            with :class:`BatchPredictor`'s ``preprocess`` / ``__call__`` / ``empty_masks`` / ``backend``
            (``maskseg_d2.deploy.open_predictor``, which sits a layer above this package); None: eager only.

    Returns:
        PredictSummary: counts, throughput, skipped files and the written files; also saved as
        ``<output>/summary.json``.
    """
    spec = resolve_input(source)
    if int(batch_size) < 1:
        raise UserError(f"batch_size={batch_size}: must be >= 1")
    if backend not in MODEL_BACKENDS:
        raise UserError(f"backend={backend}: choose one of {', '.join(MODEL_BACKENDS)}")
    run = Run.open(run_dir, checkpoint, device, score_threshold=score_threshold, max_detections=max_detections)
    keep = class_indices(classes, run.thing_classes)
    output = output or os.path.join(run_dir, "predict", spec.name)
    options = options or ExportOptions()
    writer_save = save if spec.kind == "images" else [s for s in save if s == "coco"]
    writer = OutputWriter(output, writer_save, run.thing_classes, options, spec.root, run.name)
    samples = spec.paths if spec.kind == "images" else None  # what an export is checked on
    predictor = (open_model or _open_eager)(run, backend, keep, amp, samples)
    summary = PredictSummary(output=output, kind=spec.kind, backend=predictor.backend)
    start = time.perf_counter()
    if spec.kind == "images":
        _predict_images(spec, predictor, writer, summary, int(batch_size), int(workers), progress)
    else:
        predict_video(spec, predictor, writer, summary, run.thing_classes, options, video or VideoOptions(),
                      save, int(batch_size), progress)
    summary.seconds = time.perf_counter() - start
    summary.empty_masks = predictor.empty_masks
    summary.files.update(writer.close())
    _save_summary(summary, run, spec, save, score_threshold, classes)
    if summary.skipped:
        logger.warning("skipped %d unreadable file(s): %s", len(summary.skipped),
                       ", ".join(p for p, _ in summary.skipped[:10]))
    return summary


def _open_eager(run: Run, backend: str, keep: list[int] | None, amp: bool, samples: Any) -> BatchPredictor:
    if backend != "eager":
        raise ValueError(f"backend={backend} needs open_model=maskseg_d2.deploy.open_predictor")
    return BatchPredictor(run.d2cfg, amp=amp, keep_classes=keep)


def _save_summary(summary: PredictSummary, run: Run, spec: InputSpec, save: Sequence[str],
                  score_threshold: float, classes: Sequence[str] | None) -> None:
    doc = asdict(summary)
    doc.update(images_per_second=round(summary.images_per_second, 3), run=os.path.abspath(run.run_dir),
               input=spec.paths if spec.kind == "video" else spec.root, save=list(save),
               score_threshold=float(score_threshold), classes=list(classes) if classes else None,
               thing_classes=run.thing_classes,
               skipped=[{"file": p, "reason": r} for p, r in summary.skipped])
    with open(os.path.join(summary.output, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)


def _list(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.strip("[]").split(",") if v.strip()]
    return [str(v) for v in value]


def predict(cfg: Any, open_model: Callable[..., Any] | None = None) -> PredictSummary:
    """:func:`predict_source` with the options of ``configs/predict.yaml`` (what ``tools/predict.py`` runs).

    Args:
        cfg (DictConfig): the composed predict config.
        open_model (callable or None): see :func:`predict_source` (``backend=`` other than eager needs it).

    Returns:
        PredictSummary: see :func:`predict_source`.
    """
    if cfg.run is None or cfg.input is None or str(cfg.run) == "" or str(cfg.input) == "":
        raise UserError("run= and input= are required — python tools/predict.py run=<run dir> "
                        "input=<image | folder | glob | video | webcam index>")
    push = None
    if cfg.labelstudio.get("push"):  # before the model loads: a wrong project or token fails in seconds
        push, cfg = labelstudio_push.connect(cfg)
    ov, ls, lm, vid = cfg.overlay, cfg.labelstudio, cfg.labelme, cfg.video
    options = ExportOptions(
        overlay_format=str(ov.format), jpeg_quality=int(ov.quality), alpha=float(ov.alpha),
        show_boxes=bool(ov.boxes), show_labels=bool(ov.labels),
        polygon_tolerance=float(cfg.polygon_tolerance),
        ls_shape=str(ls.shape), ls_from_name=str(ls.from_name), ls_to_name=str(ls.to_name),
        ls_brush_from_name=str(ls.brush_from_name) if ls.get("brush_from_name") else None,
        ls_data_key=str(ls.data_key), ls_image_prefix=str(ls.image_prefix or ""),
        ls_image_root=str(ls.image_root) if ls.image_root else None,
        ls_model_version=str(ls.model_version) if ls.model_version else None,
        labelme_shape=str(lm.shape), labelme_next_to_images=bool(lm.next_to_images),
    )
    video = VideoOptions(show=str(vid.show), codec=str(vid.codec),
                         max_frames=int(vid.max_frames) if vid.max_frames else None,
                         fps=float(vid.fps) if vid.fps else None)
    summary = predict_source(
        str(cfg.run), cfg.input, str(cfg.output) if cfg.output else None, float(cfg.score_threshold),
        str(cfg.checkpoint) if cfg.checkpoint else None, str(cfg.device), save=_list(cfg.save) or ["overlay"],
        classes=_list(cfg.classes), batch_size=int(cfg.batch_size), max_detections=int(cfg.max_detections),
        amp=bool(cfg.amp), workers=int(cfg.workers), options=options, video=video,
        progress=bool(cfg.progress), backend=str(cfg.get("backend", "eager")), open_model=open_model,
    )
    if push is not None:
        push.send(summary)
    return summary
