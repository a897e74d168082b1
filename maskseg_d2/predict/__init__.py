"""Prediction with a trained run: masked images, mask PNGs, cut-outs, COCO results, Label Studio
pre-annotations and LabelMe files for images, folders, globs, videos and webcams.

``python tools/predict.py run=<run dir> input=<...>`` calls :func:`predict` (the options of
``configs/predict.yaml``), which calls :func:`predict_source` (the same as Python arguments); the pieces
(:class:`BatchPredictor`, :class:`OutputWriter`, the format functions in :mod:`.annotations`) can be used
on their own.
"""
from .detections import Detections
from .model import BatchPredictor
from .outputs import SAVE_KINDS, ExportOptions, OutputWriter
from .runner import MODEL_BACKENDS, PredictSummary, VideoOptions, class_indices, predict, predict_source
from .sources import list_images, read_bgr, resolve_input

__all__ = [
    "predict", "predict_source", "list_images", "PredictSummary", "VideoOptions", "ExportOptions",
    "SAVE_KINDS", "Detections", "BatchPredictor", "OutputWriter", "class_indices",
    "read_bgr", "resolve_input", "MODEL_BACKENDS",
]
