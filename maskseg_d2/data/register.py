"""Register a Label Studio or LabelMe dataset as ``<name>_train`` / ``<name>_val`` in Detectron2's catalogs.

Layout of a dataset folder (datasets/README.md)::

    <root>/images/...            the photos
    <root>/labelstudio.json      Label Studio "JSON" export      -- or --
    <root>/labelme/*.json        LabelMe files (imagePath relative to each JSON)
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from ..errors import UserError, fail
from .common import LoadResult
from .labelme import read_labelme
from .labelstudio import read_labelstudio

__all__ = ["DatasetInfo", "register_dataset", "split_train_val", "detect_format", "FORMATS"]

logger = logging.getLogger(__name__)

FORMATS = ("auto", "labelstudio", "labelme")
_LS_FILE = "labelstudio.json"
_LABELME_DIR = "labelme"


@dataclass
class DatasetInfo:
    """What :func:`register_dataset` registered; saved with every run.

    Attributes:
        train_name (str): DatasetCatalog name of the training split (``<name>_train``).
        val_name (str): DatasetCatalog name of the validation split (``<name>_val``).
        thing_classes (list[str]): class names; index = category_id; ``NUM_CLASSES = len(...)``.
        mask_format (str): ``"polygon"``, or ``"bitmask"`` when any segmentation is an RLE dict.
        num_train (int): images in the training split.
        num_val (int): images in the validation split.
        num_instances (int): instances over both splits.
        dataset_hash (str): sha256 over the annotation file(s), the image relative paths and the classes.
        format (str): the format loaded (``"labelstudio"`` or ``"labelme"``).
        annotations (str): the annotation file or folder loaded.
        image_root (str): the image folder.
    """

    train_name: str
    val_name: str
    thing_classes: list[str]
    mask_format: str
    num_train: int
    num_val: int
    num_instances: int
    dataset_hash: str
    format: str = ""
    annotations: str = ""
    image_root: str = ""
    skipped: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- config


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def _plain(value: Any) -> Any:
    """DictConfig/ListConfig -> dict/list (no OmegaConf import needed for plain dicts)."""
    if hasattr(value, "_content") or type(value).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def _join(root: str, *parts: str) -> str:
    return str(PurePath(root, *parts))


def _has_labelme_json(folder: str) -> bool:
    return os.path.isdir(folder) and any(Path(folder).rglob("*.json"))


def detect_format(name: str, root: str) -> str:
    """``format: auto``: labelstudio when ``<root>/labelstudio.json`` exists, else labelme when
    ``<root>/labelme/`` holds JSON files; else a one-line error saying where to put the data.

    Args:
        name (str): the dataset name (for the error).
        root (str): the dataset folder, as given in the config.

    Returns:
        str: ``"labelstudio"`` or ``"labelme"``.
    """
    if os.path.isfile(_join(root, _LS_FILE)):
        return "labelstudio"
    if _has_labelme_json(_join(root, _LABELME_DIR)):
        return "labelme"
    raise UserError(
        f"Dataset '{name}' not found under {root} — put the Label Studio JSON export at "
        f"{_join(root, _LS_FILE)} and the photos in {_join(root, 'images')}/, or LabelMe JSON files in "
        f"{_join(root, _LABELME_DIR)}/ (layout: datasets/README.md)"
    )


# ----------------------------------------------------------------------------------------- split


def _hash_fraction(relpath: str, seed: int) -> float:
    digest = hashlib.sha1((relpath + str(seed)).encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / float(16**15)


def split_train_val(relpaths: list[str], val_fraction: float, seed: int) -> list[bool]:
    """Deterministic split by a hash of each image's relative path.

    ``sha1(relpath + str(seed))`` mapped to [0, 1): below ``val_fraction`` -> val. An image keeps its
    split when others are added or removed. With >= 2 images both splits are made non-empty (the image
    with the lowest hash moves to val, or the highest to train).

    Args:
        relpaths (list[str]): image paths relative to the image root (POSIX separators).
        val_fraction (float): expected share of validation images, in [0, 1).
        seed (int): ``split_seed``; changes the split.

    Returns:
        list[bool]: True where the image goes to val.
    """
    fractions = [_hash_fraction(r, seed) for r in relpaths]
    is_val = [f < val_fraction for f in fractions]
    if len(relpaths) >= 2:
        if not any(is_val):
            is_val[min(range(len(fractions)), key=fractions.__getitem__)] = True
        if all(is_val):
            is_val[max(range(len(fractions)), key=fractions.__getitem__)] = False
    return is_val


# -------------------------------------------------------------------------------------- loading


def _relpath(file_name: str, bases: list[str]) -> str:
    for base in bases:
        rel = os.path.relpath(file_name, base)
        if not rel.startswith(".." + os.sep) and rel != ".." and not os.path.isabs(rel):
            return Path(rel).as_posix()
    return Path(file_name).as_posix()


def _load(fmt: str, annotations: str, images: str, classes: Any, class_map: Any) -> LoadResult:
    if fmt == "labelstudio":
        if not os.path.isfile(annotations):
            raise fail(annotations, "Label Studio export not found",
                       "export the project as 'JSON' and save it there, or set dataset.annotations")
        return read_labelstudio(annotations, images, classes, class_map)
    return read_labelme(annotations, classes, class_map)


def _dataset_hash(annotations: str, relpaths: list[str], classes: list[str]) -> str:
    h = hashlib.sha256()
    ann = Path(annotations)
    if ann.is_file():
        h.update(ann.read_bytes() + b"\0")
    else:
        for f in sorted(ann.rglob("*.json")):
            rel = f.relative_to(ann)
            if not any(part.startswith(".") for part in rel.parts):
                h.update(rel.as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    h.update("\n".join(sorted(relpaths)).encode() + b"\0")
    h.update("\n".join(classes).encode())
    return h.hexdigest()


def _check_duplicates(dicts: list[dict], relpaths: list[str], source: str, item: str) -> None:
    seen: dict[str, Any] = {}
    for d, rel in zip(dicts, relpaths):
        if rel in seen:
            raise fail(source, f"image {rel} is annotated twice ({item}{seen[rel]} and {item}{d['image_id']})",
                       "delete one of them so each image is annotated once")
        seen[rel] = d["image_id"]


def _register(name: str, records: list[dict], metadata: dict) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: copy.deepcopy(records))
    MetadataCatalog.get(name).set(**metadata)


def register_dataset(cfg: Any) -> DatasetInfo:
    """Load a dataset once and register ``<name>_train`` and ``<name>_val`` (idempotent).

    Records are sorted by ``file_name`` and get ``image_id`` = their index. The split is
    :func:`split_train_val` over paths relative to the image root. Registering the same name again
    (Hydra multirun jobs share one process) replaces the previous entries. Metadata: ``thing_classes``,
    ``evaluator_type="coco"``, ``image_root``, ``annotation_file``, ``mask_format``, ``dataset_hash``.
    ``json_file`` is deliberately NOT set: Detectron2's COCOEvaluator would read it as a COCO file.

    Args:
        cfg (dict or DictConfig): ``name``, ``root``, ``format`` (auto | labelstudio | labelme),
            ``annotations`` (null: ``<root>/labelstudio.json`` or ``<root>/labelme/``), ``images``
            (null: ``<root>/images``), ``classes`` (list or null = discover), ``class_map`` (dict),
            ``val_fraction`` (float in [0, 1)), ``split_seed`` (int).

    Returns:
        DatasetInfo: names, classes, mask format, counts and the dataset hash.
    """
    name, root = str(_get(cfg, "name", "")), str(_get(cfg, "root", ""))
    if not name or not root:
        raise fail("dataset", "config needs 'name' and 'root'", "set dataset.name and dataset.root")
    fmt = str(_get(cfg, "format", "auto"))
    if fmt not in FORMATS:
        raise fail(f"dataset.format={fmt}", "unknown format", f"use one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(name, root)
    default_ann = _join(root, _LS_FILE) if fmt == "labelstudio" else _join(root, _LABELME_DIR)
    annotations = str(_get(cfg, "annotations", default_ann))
    images = str(_get(cfg, "images", _join(root, "images")))
    if fmt == "labelme" and not os.path.isdir(images):
        images = annotations if os.path.isdir(annotations) else os.path.dirname(annotations)  # photos beside JSON
    val_fraction = float(_get(cfg, "val_fraction", 0.2))
    if not 0.0 <= val_fraction < 1.0:
        raise fail(f"dataset.val_fraction={val_fraction}", "must be in [0, 1)", "e.g. 0.2")
    classes = _plain(_get(cfg, "classes"))
    class_map = _plain(_get(cfg, "class_map", {}))

    loaded = _load(fmt, annotations, images, list(classes) if classes is not None else None, dict(class_map))
    if not loaded.dicts:
        raise fail(annotations, "no labelled image", "annotate at least 2 images and export again")
    seed = int(_get(cfg, "split_seed", 0))
    return _finish(name, fmt, annotations, images, root, loaded, val_fraction, seed)


def _finish(name: str, fmt: str, annotations: str, images: str, root: str, loaded: LoadResult,
            val_fraction: float, seed: int) -> DatasetInfo:
    classes = loaded.thing_classes
    dicts = sorted(loaded.dicts, key=lambda d: d["file_name"])
    relpaths = [_relpath(d["file_name"], [images, root]) for d in dicts]
    _check_duplicates(dicts, relpaths, annotations, "task " if fmt == "labelstudio" else "")
    for i, d in enumerate(dicts):
        d["image_id"] = i
    is_val = split_train_val(relpaths, val_fraction, seed)
    train = [d for d, v in zip(dicts, is_val) if not v]
    val = [d for d, v in zip(dicts, is_val) if v]
    if len(dicts) == 1:  # nothing to split: train and evaluate on the one image (a smoke test, not a result)
        train, val = list(dicts), list(dicts)
        logger.warning("%s: only 1 image — it is used for both %s_train and %s_val", annotations, name, name)
    segms = [a.get("segmentation") for d in dicts for a in d["annotations"]]
    mask_format = "bitmask" if any(isinstance(s, dict) for s in segms) else "polygon"
    info = DatasetInfo(
        train_name=f"{name}_train", val_name=f"{name}_val", thing_classes=list(classes),
        mask_format=mask_format, num_train=len(train), num_val=len(val),
        num_instances=len(segms), dataset_hash=_dataset_hash(annotations, relpaths, list(classes)),
        format=fmt, annotations=annotations, image_root=images, skipped=dict(loaded.skipped),
    )
    metadata = dict(thing_classes=list(classes), evaluator_type="coco", image_root=images,
                    annotation_file=annotations, mask_format=mask_format, dataset_hash=info.dataset_hash)
    _register(info.train_name, train, metadata)
    _register(info.val_name, val, metadata)
    logger.info("Registered %s (%d images) and %s (%d images): %d instances, classes %s, mask_format=%s",
                info.train_name, info.num_train, info.val_name, info.num_val, info.num_instances,
                info.thing_classes, mask_format)
    return info
