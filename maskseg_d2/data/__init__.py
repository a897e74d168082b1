"""Dataset importers (Label Studio JSON / JSON_MIN / COCO exports, COCO, LabelMe), conversion to COCO,
validation report, and registration in Detectron2's catalogs.

The public pair, in Detectron2's shape: :func:`load_dataset` reads any supported export (format
detected from the content) into Detectron2 standard dataset dicts, like ``load_coco_json``;
:func:`register_dataset` registers a dataset folder as ``<name>_train`` / ``<name>_val`` (what
training and evaluation use). :func:`read_dataset` is the detailed form of ``load_dataset`` (also the
classes and counts). The per-format parsers are the building blocks behind them.
"""
from .formats import FORMATS, detect_format, load_dataset, read_dataset
from .register import DatasetInfo, register_dataset

__all__ = ["load_dataset", "register_dataset", "read_dataset", "DatasetInfo", "detect_format", "FORMATS"]
