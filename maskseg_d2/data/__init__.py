"""Dataset importers (Label Studio JSON / JSON_MIN / COCO exports, COCO, LabelMe), conversion to COCO,
validation report, and registration in Detectron2's catalogs.

``register_dataset(cfg.dataset)`` is the entry point used by training/evaluation; ``read_dataset``
reads any supported export (format detected); the ``load_*`` functions return Detectron2 standard
dataset dicts for one format and can be used on their own.
"""
from .coco import load_coco
from .formats import FORMATS, detect_format, read_dataset
from .labelme import load_labelme
from .labelstudio import load_labelstudio
from .labelstudio_min import load_labelstudio_min
from .register import DatasetInfo, register_dataset

__all__ = ["register_dataset", "DatasetInfo", "read_dataset", "detect_format", "FORMATS", "load_labelstudio",
           "load_labelstudio_min", "load_coco", "load_labelme"]
