"""Register a dataset as ``<name>_train`` / ``<name>_val`` in Detectron2's catalogs.

Layout of a dataset folder (datasets/README.md)::

    <root>/images/...            the photos
    <root>/labelstudio.json      a Label Studio export (JSON, JSON_MIN or COCO)   -- or --
    <root>/coco.json             a COCO instances file (file_name relative to images/)   -- or --
    <root>/labelme/*.json        LabelMe files (imagePath relative to each JSON)

``dataset.annotations`` may also name any file(s) or folder; ``format: auto`` detects the format
from the content (:mod:`maskseg_d2.data.formats`).
"""
from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from omegaconf import OmegaConf

from ..errors import UserError, fail
from .formats import FORMATS, read_dataset
from .labelstudio_api import SOURCES, snapshot_source
from .loading import ON_ERROR_POLICIES, LoadResult

__all__ = ["DatasetInfo", "register_dataset", "split_train_val", "split_by_lists", "find_annotations",
           "FORMATS", "ON_ERROR_POLICIES"]

logger = logging.getLogger(__name__)

_LS_FILE = "labelstudio.json"
_COCO_FILE = "coco.json"
_LABELME_DIR = "labelme"
_DEFAULT_FILES = {"labelstudio": _LS_FILE, "labelstudio_min": _LS_FILE, "labelstudio_coco": _LS_FILE,
                  "coco": _COCO_FILE, "labelme": _LABELME_DIR}


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
        format (str): the format(s) loaded (``"labelstudio"``, ``"coco"``, ``"labelme"`` ...).
        annotations (str): the annotation file(s) or folder loaded (``", "``-joined when several).
        image_root (str): the image folder.
        skipped (dict[str, int]): skipped items by reason.
        adjusted (dict[str, int]): items kept after an adjustment (EXIF, rescale ...), by reason.
        source (dict): ``dataset.source=labelstudio_api``: url, project, snapshot path and hash, task count.
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
    adjusted: dict[str, int] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- config


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def _plain(value: Any) -> Any:
    """DictConfig/ListConfig -> dict/list; anything else as it is."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _join(root: str, *parts: str) -> str:
    return str(PurePath(root, *parts))


def _has_labelme_json(folder: str) -> bool:
    return os.path.isdir(folder) and any(Path(folder).rglob("*.json"))


def find_annotations(name: str, root: str, fmt: str = "auto") -> str:
    """Where the annotations are when ``dataset.annotations`` is null.

    ``auto``: ``<root>/labelstudio.json``, else ``<root>/coco.json``, else ``<root>/labelme/`` when it
    holds JSON files; else a one-line error saying where to put the data. An explicit format names
    its default file (``coco.json`` for coco, ``labelme/`` for labelme, ``labelstudio.json`` else).

    Args:
        name (str): the dataset name (for the error).
        root (str): the dataset folder, as given in the config.
        fmt (str): the configured format.

    Returns:
        str: the annotation file or folder.
    """
    if fmt != "auto":
        path = _join(root, _DEFAULT_FILES[fmt])
        if not os.path.exists(path):
            raise UserError(f"Dataset '{name}': {path} not found — put the annotations ({fmt}) there, or set "
                            "dataset.annotations to the file(s) (layout: datasets/README.md)")
        return path
    for candidate in (_LS_FILE, _COCO_FILE):
        if os.path.isfile(_join(root, candidate)):
            return _join(root, candidate)
    if _has_labelme_json(_join(root, _LABELME_DIR)):
        return _join(root, _LABELME_DIR)
    raise UserError(
        f"Dataset '{name}' not found under {root} — put the Label Studio export (JSON, JSON_MIN or COCO) at "
        f"{_join(root, _LS_FILE)} and the photos in {_join(root, 'images')}/, or a COCO file at "
        f"{_join(root, _COCO_FILE)}, or LabelMe JSON files in {_join(root, _LABELME_DIR)}/ "
        "(layout: datasets/README.md)"
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


def _matches(entry: str, relpaths: list[str], names: dict[str, list[int]]) -> list[int]:
    entry = entry.replace("\\", "/").strip()
    entry = entry[2:] if entry.startswith("./") else entry
    if any(ch in entry for ch in "*?["):
        return [i for i, r in enumerate(relpaths) if fnmatch.fnmatchcase(r, entry)]
    exact = [i for i, r in enumerate(relpaths) if r == entry]
    return exact or names.get(entry, [])


def split_by_lists(relpaths: list[str], split: Any, source: str) -> list[bool]:
    """Explicit split: ``{train: [...], val: [...]}`` lists of image paths, names or glob patterns.

    Entries match an image's path relative to the image root, its file name, or (with ``*?[``) a glob
    on the relative path. With only ``val`` given, the other images train (and vice versa); with both,
    every image must be listed once. Entries that match nothing, images in both lists and (with both
    lists) unlisted images are errors.

    Args:
        relpaths (list[str]): image paths relative to the image root (POSIX separators).
        split (dict): ``train`` and/or ``val`` lists.
        source (str): named in errors (``dataset.split``).

    Returns:
        list[bool]: True where the image goes to val.
    """
    if not isinstance(split, dict) or not set(split) <= {"train", "val"} or not split:
        raise fail(source, f"expected {{train: [...], val: [...]}}, got {split!r}",
                   "list image paths per split")
    names: dict[str, list[int]] = {}
    for i, r in enumerate(relpaths):
        names.setdefault(r.rsplit("/", 1)[-1], []).append(i)
    member: dict[str, set[int]] = {}
    for part in ("train", "val"):
        entries = split.get(part)
        if entries is None:
            continue
        if isinstance(entries, str) or not isinstance(entries, (list, tuple)):
            raise fail(f"{source}.{part}", "is not a list", "write a YAML list of image paths")
        member[part] = set()
        for entry in entries:
            hits = _matches(str(entry), relpaths, names)
            if not hits:
                raise fail(f"{source}.{part}", f"entry {entry!r} matches no image of the dataset",
                           "use paths relative to the image folder, file names or glob patterns")
            member[part].update(hits)
    both = member.get("train", set()) & member.get("val", set())
    if both:
        listed = ", ".join(relpaths[i] for i in sorted(both)[:5])
        raise fail(source, f"{len(both)} image(s) are in both train and val: {listed}",
                   "list each image once")
    if len(member) == 2:
        unlisted = [relpaths[i] for i in range(len(relpaths)) if i not in member["train"] | member["val"]]
        if unlisted:
            raise fail(source, f"{len(unlisted)} image(s) are in neither list: {', '.join(unlisted[:5])}"
                       + (" ..." if len(unlisted) > 5 else ""), "add them to train or val (or drop one list)")
    if "val" in member:
        return [i in member["val"] for i in range(len(relpaths))]
    return [i not in member["train"] for i in range(len(relpaths))]


# -------------------------------------------------------------------------------------- loading


def _relpath(file_name: str, bases: list[str]) -> str:
    for base in bases:
        rel = os.path.relpath(file_name, base)
        if not rel.startswith(".." + os.sep) and rel != ".." and not os.path.isabs(rel):
            return Path(rel).as_posix()
    return Path(file_name).as_posix()


def _dataset_hash(annotations: list[str], relpaths: list[str], classes: list[str]) -> str:
    h = hashlib.sha256()
    for path in annotations:
        ann = Path(path)
        if ann.is_file():
            h.update(ann.read_bytes() + b"\0")
            continue
        for f in sorted(ann.rglob("*.json")):
            rel = f.relative_to(ann)
            if not any(part.startswith(".") for part in rel.parts):  # fsencode: any name on disk
                h.update(os.fsencode(rel.as_posix()) + b"\0" + f.read_bytes() + b"\0")
    h.update("\n".join(sorted(relpaths)).encode() + b"\0")
    h.update("\n".join(classes).encode())
    return h.hexdigest()


def _check_duplicates(dicts: list[dict], relpaths: list[str], source: str, item: str) -> None:
    seen: dict[str, Any] = {}
    for d, rel in zip(dicts, relpaths):
        if rel in seen:
            both = f"{item}{seen[rel]} and {item}{d['image_id']}"
            raise fail(source, f"image {rel} is annotated twice ({both})",
                       "delete one of them so each image is annotated once")
        seen[rel] = d["image_id"]


def _register(name: str, records: list[dict], metadata: dict) -> None:
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    # shallow copies: Detectron2's DatasetMapper deep-copies each record it maps and no reader in maskseg_d2
    # changes an annotation in place; a deepcopy would copy every polygon of the split at each get()
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    MetadataCatalog.get(name).set(**metadata)


def _annotation_paths(cfg: Any, name: str, root: str, fmt: str) -> list[str]:
    value = _plain(_get(cfg, "annotations"))
    if value is None:
        return [find_annotations(name, root, fmt)]
    paths = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    for path in paths:
        if not os.path.exists(path):
            raise fail(path, "annotation file or folder not found",
                       "export the annotations there, or fix dataset.annotations")
    return paths


def _image_folder(cfg: Any, root: str, fmt: str, annotations: list[str]) -> str:
    images = str(_get(cfg, "images", _join(root, "images")))
    if not os.path.isdir(images) and (fmt == "labelme" or all(os.path.isdir(a) for a in annotations)):
        first = annotations[0]  # LabelMe photos beside their JSON files
        images = first if os.path.isdir(first) else os.path.dirname(first)
    return images


def register_dataset(cfg: Any) -> DatasetInfo:
    """Load a dataset once and register ``<name>_train`` and ``<name>_val`` (idempotent).

    Records are sorted by ``file_name`` and get ``image_id`` = their index. The split is
    :func:`split_by_lists` when ``split`` lists are given, else :func:`split_train_val` over paths
    relative to the image root. Registering the same name again (Hydra multirun jobs share one
    process; every DDP worker registers in its own process) replaces the previous entries; loading is
    deterministic, so every process gets the same records and split. Metadata: ``thing_classes``,
    ``evaluator_type="coco"``, ``image_root``, ``annotation_file``, ``mask_format``, ``dataset_hash``.
    ``json_file`` is deliberately NOT set: Detectron2's COCOEvaluator would read it as a COCO file.
    ``DatasetCatalog.get`` returns shallow copies: a new list of new top-level record dicts, whose nested
    ``annotations`` (and their polygons) are shared by every call: do not mutate them in place (copy first).

    Args:
        cfg (dict or DictConfig): ``name``, ``root``, ``format`` (one of :data:`FORMATS`),
            ``annotations`` (file, folder or list; null: found under ``root``, see
            :func:`find_annotations`), ``images`` (null: ``<root>/images``), ``classes`` (list or
            null = discover), ``class_map`` (dict), ``unknown`` (error | skip), ``pick`` (Label Studio
            annotation policy), ``image_key``, ``val_fraction`` (float in [0, 1)), ``split_seed`` (int),
            ``split`` (null or ``{train: [...], val: [...]}``), ``on_error`` (error | skip: an invalid
            item -- a bad region, image or file -- stops the load, or is skipped and counted in
            ``DatasetInfo.skipped``).

    Returns:
        DatasetInfo: names, classes, mask format, counts and the dataset hash.
    """
    name, root = str(_get(cfg, "name", "")), str(_get(cfg, "root", ""))
    if not name or not root:
        raise fail("dataset", "config needs 'name' and 'root'", "set dataset.name and dataset.root")
    fmt = str(_get(cfg, "format", "auto"))
    if fmt not in FORMATS:
        raise fail(f"dataset.format={fmt}", "unknown format", f"use one of {', '.join(FORMATS)}")
    source = str(_get(cfg, "source", "files"))
    if source not in SOURCES:
        raise fail(f"dataset.source={source}", "unknown source", f"use one of {', '.join(SOURCES)}")
    snap = snapshot_source(cfg, root) if source == "labelstudio_api" else None  # a file export, pulled
    annotations = [snap.path] if snap else _annotation_paths(cfg, name, root, fmt)
    images = snap.images if snap else _image_folder(cfg, root, fmt, annotations)
    val_fraction = float(_get(cfg, "val_fraction", 0.2))
    if not 0.0 <= val_fraction < 1.0:
        raise fail(f"dataset.val_fraction={val_fraction}", "must be in [0, 1)", "e.g. 0.2")
    classes = _plain(_get(cfg, "classes"))
    on_error = str(_get(cfg, "on_error", "error"))
    if on_error not in ON_ERROR_POLICIES:
        raise fail(f"dataset.on_error={on_error}", "unknown policy",
                   f"use one of {', '.join(ON_ERROR_POLICIES)}")
    loaded = read_dataset(
        annotations, images, fmt, classes=list(classes) if classes is not None else None,
        class_map=dict(_plain(_get(cfg, "class_map", {}))), unknown=str(_get(cfg, "unknown", "error")),
        pick=str(_get(cfg, "pick", "ground_truth_then_latest")), image_key=_get(cfg, "image_key"),
        strict=on_error == "error",
    )
    source = ", ".join(annotations)
    if loaded.problems:  # on_error=skip: the invalid items were left out; say so once, with the first
        logger.warning("%s: skipped %d invalid item(s) (dataset.on_error=skip), e.g. %s", source,
                       len(loaded.problems), loaded.problems[0][1])
    if not loaded.dicts:
        first = f" ({len(loaded.problems)} invalid item(s) skipped, e.g. {loaded.problems[0][1]})" \
            if loaded.problems else ""
        raise fail(source, f"no labelled image{first}", "annotate at least 2 images and export again")
    dicts = sorted(loaded.dicts, key=lambda d: d["file_name"])
    relpaths = [_relpath(d["file_name"], [images, root]) for d in dicts]
    _check_duplicates(dicts, relpaths, source, "task " if loaded.format.startswith("labelstudio") else "")
    split = _plain(_get(cfg, "split"))
    if split:
        is_val = split_by_lists(relpaths, split, "dataset.split")
    else:
        is_val = split_train_val(relpaths, val_fraction, int(_get(cfg, "split_seed", 0)))
    info = _finish(name, annotations, images, loaded, dicts, relpaths, is_val)
    info.source = snap.record() if snap else {}
    return info


def _finish(name: str, annotations: list[str], images: str, loaded: LoadResult, dicts: list[dict],
            relpaths: list[str], is_val: list[bool]) -> DatasetInfo:
    classes = loaded.thing_classes
    source = ", ".join(annotations)
    for i, d in enumerate(dicts):
        d["image_id"] = i
    train = [d for d, v in zip(dicts, is_val) if not v]
    val = [d for d, v in zip(dicts, is_val) if v]
    if len(dicts) == 1:  # nothing to split: train and evaluate on the one image (a smoke test, not a result)
        train, val = list(dicts), list(dicts)
        logger.warning("%s: only 1 image — it is used for both %s_train and %s_val", source, name, name)
    elif not train or not val:
        raise fail("dataset.split", f"the {'train' if not train else 'val'} split is empty",
                   "put at least one image in each split")
    segms = [a.get("segmentation") for d in dicts for a in d["annotations"]]
    mask_format = "bitmask" if any(isinstance(s, dict) for s in segms) else "polygon"
    info = DatasetInfo(
        train_name=f"{name}_train", val_name=f"{name}_val", thing_classes=list(classes),
        mask_format=mask_format, num_train=len(train), num_val=len(val),
        num_instances=len(segms), dataset_hash=_dataset_hash(annotations, relpaths, list(classes)),
        format=loaded.format, annotations=source, image_root=images, skipped=dict(loaded.skipped),
        adjusted=dict(loaded.adjusted),
    )
    metadata = dict(thing_classes=list(classes), evaluator_type="coco", image_root=images,
                    annotation_file=source, mask_format=mask_format, dataset_hash=info.dataset_hash)
    _register(info.train_name, train, metadata)
    _register(info.val_name, val, metadata)
    logger.info("Registered %s (%d images) and %s (%d images): %d instances, classes %s, mask_format=%s",
                info.train_name, info.num_train, info.val_name, info.num_val, info.num_instances,
                info.thing_classes, mask_format)
    return info
