"""Video files and webcams: annotated video out, a live window when a display exists, FPS on screen.

A reader thread grabs frames ahead of the model, the main thread predicts and draws (the live window
must be driven from one thread), and a single writer thread appends frames to the video in order.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import UserError
from ..visualization.overlay import class_colors, draw_detections, draw_text
from .model import BatchPredictor
from .outputs import ExportOptions, ImageItem, OutputWriter
from .sources import InputSpec

__all__ = ["display_available", "predict_video", "CODEC_EXT"]

CODEC_EXT = {"mp4v": ".mp4", "avc1": ".mp4", "MJPG": ".avi", "XVID": ".avi"}
_WINDOW = "maskseg-d2 (q / Esc to stop)"
_DEFAULT_WEBCAM_FPS = 30.0


def display_available() -> bool:
    """bool: whether a live window can be opened (a display is set and OpenCV has a GUI backend)."""
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not has_display:
        return False
    try:  # opencv-python-headless raises "The function is not implemented"
        cv2.namedWindow(_WINDOW, cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        return False


def _want_window(show: str) -> bool:
    show = str(show).lower()
    if show in ("false", "0", "no"):
        return False
    available = display_available()
    if show in ("true", "1", "yes") and not available:
        raise UserError("video.show=true but no display / GUI is available (opencv-python-headless or no "
                        "$DISPLAY) — use video.show=auto or false; the annotated video is written anyway")
    return available


def _open_capture(spec: InputSpec) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(spec.camera if spec.kind == "webcam" else spec.paths[0])
    if not cap.isOpened():
        what = f"webcam {spec.camera}" if spec.kind == "webcam" else spec.paths[0]
        raise UserError(f"input={what}: OpenCV cannot open it — check the path / camera index "
                        "(a codec OpenCV lacks: convert the video to H.264 .mp4)")
    return cap


def _open_writer(path: str, codec: str, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise UserError(f"{path}: OpenCV cannot write {codec} video here — "
                        "try video.codec=MJPG (writes .avi)")
    return writer


def _frames(cap: cv2.VideoCapture, predictor: BatchPredictor, max_frames: int | None,
            stop: threading.Event, depth: int) -> Iterator[tuple[int, np.ndarray, dict]]:
    """Frames decoded and resized in a thread, ``depth`` ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=max(depth, 1))

    def read() -> None:
        n = 0
        try:
            while not stop.is_set() and (max_frames is None or n < max_frames):
                ok, frame = cap.read()
                if not ok:
                    break
                q.put((n, frame, predictor.preprocess(frame)))
                n += 1
        finally:
            q.put(None)

    thread = threading.Thread(target=read, name="predict-video-read", daemon=True)
    thread.start()
    try:
        while (got := q.get()) is not None:
            yield got
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass


def predict_video(spec: InputSpec, predictor: BatchPredictor, writer: OutputWriter, summary,
                  class_names: Sequence[str], options: ExportOptions, video, save: Sequence[str],
                  batch_size: int, progress: bool) -> None:
    """Predict every frame of a video file or webcam and write ``<output>/<name><ext>``.

    Args:
        spec (InputSpec): a ``video`` or ``webcam`` input.
        predictor (BatchPredictor): the model.
        writer (OutputWriter): collects the ``coco`` records (frame n = image id n + 1).
        summary (PredictSummary): updated in place (frames, instances, files["video"]).
        class_names (list[str]): the run's classes.
        options (ExportOptions): overlay look.
        video (VideoOptions): window, codec, frame limit, fps.
        save (list[str]): ``overlay`` writes the video; ``coco`` the results; other kinds are ignored.
        batch_size (int): frames per model call (a webcam uses 1: latency over throughput).
        progress (bool): show a tqdm bar.
    """
    ignored = [s for s in save if s not in ("overlay", "coco")]
    if ignored:
        print(f"note: save={ignored} apply to images only; a video gets the annotated video and coco",
              file=sys.stderr)
    if video.codec not in CODEC_EXT:
        raise UserError(f"video.codec={video.codec}: use one of {', '.join(CODEC_EXT)}")
    cap = _open_capture(spec)
    show = _want_window(video.show)
    webcam = spec.kind == "webcam"
    batch_size = 1 if webcam else batch_size
    fps_in = float(video.fps or cap.get(cv2.CAP_PROP_FPS) or 0) or _DEFAULT_WEBCAM_FPS
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not webcam else 0
    if video.max_frames:
        total = min(total, int(video.max_frames)) if total > 0 else int(video.max_frames)
    name = spec.name
    out_path = os.path.join(writer.output, name + CODEC_EXT[video.codec])
    colors = class_colors(len(class_names))
    out_video: cv2.VideoWriter | None = None
    stop = threading.Event()
    rate, last = 0.0, time.perf_counter()
    bar = tqdm(total=total or None, desc=name, unit="frame", disable=not progress, dynamic_ncols=True)
    # one writer thread: frames reach the video in order
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-video-write")
    pending: deque[Future] = deque()
    frames = _frames(cap, predictor, video.max_frames, stop, depth=2 * batch_size)
    try:
        batch: list = []
        for got in _with_end(frames):  # None marks the end: flush the last partial batch
            if got is not None:
                batch.append(got)
                if len(batch) < batch_size:
                    continue
            if not batch:
                break
            dets = predictor([inputs for _, _, inputs in batch])
            now = time.perf_counter()
            inst = len(batch) / max(now - last, 1e-6)  # frames per second of the whole loop
            rate, last = (inst if rate == 0 else 0.8 * rate + 0.2 * inst), now
            for (n, frame, _), d in zip(batch, dets):
                vis = draw_detections(frame, d, class_names, options.alpha, options.show_boxes,
                                      options.show_labels, colors=colors)
                draw_text(vis, f"{rate:.1f} FPS", (8, 8 + max(14, vis.shape[0] // 40)), (40, 40, 40),
                          max(0.45, vis.shape[0] / 900))
                if "overlay" in save:
                    if out_video is None:
                        out_video = _open_writer(out_path, video.codec, fps_in, (vis.shape[1], vis.shape[0]))
                    pending.append(pool.submit(out_video.write, vis))
                    while len(pending) > 4 * batch_size:  # bound the frames waiting for the encoder
                        pending.popleft().result()
                if "coco" in save:
                    label = spec.paths[0] if spec.paths else f"webcam{spec.camera}"
                    writer.write(ImageItem(n, f"{label}#frame={n}", f"{name}_{n:06d}"), frame, d)
                summary.images += 1
                summary.instances += len(d)
                if show:
                    cv2.imshow(_WINDOW, vis)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        stop.set()
            bar.update(len(batch))
            bar.set_postfix(fps=f"{rate:.1f}", refresh=False)
            batch = []
            if stop.is_set() or got is None:
                break
    except KeyboardInterrupt:  # Ctrl-C on a webcam: keep what was recorded
        stop.set()
    finally:
        stop.set()
        frames.close()  # joins the reader thread before the capture is released
        pool.shutdown(wait=True)
        bar.close()
        cap.release()
        if out_video is not None:
            out_video.release()
            summary.files["video"] = [out_path]
        if show:
            cv2.destroyAllWindows()


def _with_end(frames: Iterator) -> Iterator:
    yield from frames
    yield None
