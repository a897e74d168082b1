"""A Detectron2 ``EventWriter`` for Weights & Biases, plus the run's start (mode, name, config).

What is logged, with ``iteration`` as the x-axis of every chart:

- every scalar of the event storage when the PeriodicWriter fires: losses, ``lr``, ``time``, ``data_time``,
  the evaluation (``bbox/AP``, ``segm/AP50``, ``segm/AP-<class>``...) and ``val/*`` losses;
- at each evaluation a ``eval/per_class_AP`` table (class, bbox AP, segm AP) and ``val/predictions``:
  validation images with ground-truth and predicted masks and boxes, class labels attached;
- the resolved Hydra config and the Detectron2 CfgNode as the run config (secret-looking keys dropped).

The API key is never read or written here: ``wandb`` finds it itself (``wandb login`` / ``WANDB_API_KEY``).
Secret values (:mod:`maskseg_d2.utils.secrets`) become ``***`` in the config, name, notes, tags and group;
when the command line holds one, W&B's system metadata (which records the command line) is turned off.
"""
from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import wandb
import yaml
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import annotations_to_instances, read_image
from detectron2.structures import BoxMode
from detectron2.utils.events import EventWriter, get_event_storage
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ..utils.secrets import SECRET_KEY_NAME, argv_has_secret, protect_run, redact, redact_tree
from . import wandb_mode

__all__ = ["WandbWriter", "init_wandb_run", "run_name_from_overrides", "wandb_image", "scrub_secrets", "RUN_ID_FILE"]

logger = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run_id.txt"  # in the run dir: resume=true continues this W&B run
_PER_CLASS = re.compile(r"^(bbox|segm)/AP-(.+)$")
_hint_printed = False
# Overrides that say where, not what: they would only clutter a run name.
_NAME_SKIP = ("experiment=", "hydra.", "paths.", "dataset.root=", "device=", "resume=", "logger")


def scrub_secrets(tree: Any) -> Any:
    """Drop keys that look like credentials (api_key, token, secret, password) from a nested dict/list."""
    if isinstance(tree, Mapping):
        return {k: scrub_secrets(v) for k, v in tree.items() if not SECRET_KEY_NAME.search(str(k))}
    if isinstance(tree, (list, tuple)):
        return [scrub_secrets(v) for v in tree]
    return tree


def run_name_from_overrides(overrides: Sequence[str], fallback: str) -> str:
    """``["experiment=demo", "solver.base_lr=0.01"]`` -> ``"solver.base_lr=0.01"``; ``fallback`` if none is left."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(_NAME_SKIP)]
    return ",".join(kept) or fallback


def _task_overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not launched by @hydra.main (compose API, tests)
        return []


def _print_mode_hint(mode: str, why: str, run_dir: str) -> None:
    global _hint_printed
    if mode == "offline" and not _hint_printed:
        print(f"W&B offline ({why}); upload later: wandb sync {run_dir}/wandb/offline-run-*", flush=True)
        _hint_printed = True


def init_wandb_run(cfg: Any, d2cfg: Any, output_dir: str):
    """Start the W&B run for a training run (``logger=wandb``).

    Args:
        cfg (DictConfig): the composed Hydra config (``cfg.logger``: project, entity, group, run_name, tags,
            notes, dir).
        d2cfg (CfgNode): logged with the config.
        output_dir (str): the run dir (default W&B dir, fallback run name).

    Returns:
        wandb.sdk.wandb_run.Run
    """
    protect_run(cfg)
    lg = cfg.logger
    mode, why = wandb_mode()
    wandb_dir = lg.get("dir") or os.environ.get("WANDB_DIR") or output_dir
    os.makedirs(wandb_dir, exist_ok=True)
    _print_mode_hint(mode, why, wandb_dir)
    config = redact_tree(scrub_secrets(OmegaConf.to_container(cfg, resolve=True)))
    config["detectron2"] = redact_tree(scrub_secrets(yaml.safe_load(d2cfg.dump())))
    name = lg.get("run_name") or run_name_from_overrides(_task_overrides(), os.path.basename(output_dir.rstrip("/")))
    notes = "\n".join(str(n) for n in (lg.get("notes"), f"run dir: {output_dir}") if n)
    settings = None
    if argv_has_secret():  # the metadata records sys.argv (wandb-metadata.json, the .wandb log): keep it out
        logger.info("W&B: the command line holds a secret: no system metadata (command line, host, git)")
        settings = wandb.Settings(x_disable_meta=True)
    id_file = os.path.join(output_dir, RUN_ID_FILE)
    resume_id = None
    if cfg.get("resume") and os.path.isfile(id_file):  # resume=true continues the same W&B run, same charts
        with open(id_file, encoding="utf-8") as f:
            resume_id = f.read().strip() or None
    run = wandb.init(project=lg.get("project"), entity=lg.get("entity"), group=redact(lg.get("group")),
                     name=redact(name), tags=[redact(str(t)) for t in lg.get("tags") or []], dir=wandb_dir,
                     mode=mode, config=config, job_type="train", notes=redact(notes), settings=settings,
                     id=resume_id, resume="allow" if resume_id else None)
    os.makedirs(output_dir, exist_ok=True)
    with open(id_file, "w", encoding="utf-8") as f:
        f.write(run.id)
    run.define_metric("iteration")
    run.define_metric("*", step_metric="iteration")  # evaluations can arrive after later losses: no step clash
    return run


def _label_map(masks: np.ndarray, classes: Sequence[int], order: Sequence[int], shape: tuple) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    for i in order:  # later instances are drawn over earlier ones
        out[masks[i]] = int(classes[i]) + 1
    return out


def _resize_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(label, size, interpolation=cv2.INTER_NEAREST) if label.shape[::-1] != size else label


def _box_data(boxes: np.ndarray, classes: Sequence[int], names: Sequence[str], scale: float,
              scores: Sequence[float] | None = None) -> list[dict]:
    out = []
    for i, (x0, y0, x1, y1) in enumerate(boxes * scale):
        c = int(classes[i])
        item = {"position": {"minX": float(x0), "maxX": float(x1), "minY": float(y0), "maxY": float(y1)},
                "domain": "pixel", "class_id": c + 1, "box_caption": names[c]}
        if scores is not None:
            item["box_caption"] = f"{names[c]} {scores[i]:.2f}"
            item["scores"] = {"score": float(scores[i])}
        out.append(item)
    return out


def wandb_image(image_rgb: np.ndarray, instances: Any, record: dict | None, class_names: Sequence[str],
                score_threshold: float = 0.5, max_size: int = 640):
    """One validation image with predicted and ground-truth masks/boxes as a ``wandb.Image``.

    Args:
        image_rgb (np.ndarray): (H, W, 3) RGB uint8, the original image.
        instances (Instances): predictions in original resolution (``pred_masks``, ``pred_boxes``, ``scores``,
            ``pred_classes``), on CPU.
        record (dict or None): the dataset dict of the image (ground truth); None: predictions only.
        class_names (list[str]): ``thing_classes``.
        score_threshold (float): predictions below are not drawn.
        max_size (int): the longer side is scaled down to this (keeps the W&B upload small).

    Returns:
        wandb.Image
    """
    h, w = image_rgb.shape[:2]
    scale = min(1.0, max_size / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA) if scale < 1 else image_rgb
    labels = {0: "background", **{i + 1: n for i, n in enumerate(class_names)}}
    masks, boxes = {}, {}

    keep = instances[instances.scores >= score_threshold] if len(instances) else instances
    scores = keep.scores.numpy() if len(keep) else np.zeros(0)
    classes = keep.pred_classes.numpy() if len(keep) else []
    if len(keep) and keep.has("pred_masks"):
        pm = keep.pred_masks.numpy().astype(bool)
        masks["predictions"] = {"mask_data": _resize_nearest(
            _label_map(pm, classes, np.argsort(scores), (h, w)), size), "class_labels": labels}
    boxes["predictions"] = {"box_data": _box_data(keep.pred_boxes.tensor.numpy() if len(keep) else np.zeros((0, 4)),
                                                  classes, class_names, scale, scores), "class_labels": labels}
    if record is not None:
        annos = [dict(a, bbox_mode=a.get("bbox_mode", BoxMode.XYWH_ABS)) for a in record.get("annotations", [])
                 if not a.get("iscrowd", 0)]
        gt = annotations_to_instances(annos, (h, w), mask_format="bitmask")
        gt_classes = gt.gt_classes.numpy()
        if len(gt) and gt.has("gt_masks"):
            gm = gt.gt_masks.tensor.numpy().astype(bool)
            masks["ground_truth"] = {"mask_data": _resize_nearest(
                _label_map(gm, gt_classes, range(len(gt)), (h, w)), size), "class_labels": labels}
        boxes["ground_truth"] = {"box_data": _box_data(gt.gt_boxes.tensor.numpy(), gt_classes, class_names, scale),
                                 "class_labels": labels}
    caption = os.path.basename(record["file_name"]) if record else None
    return wandb.Image(small, masks=masks or None, boxes=boxes, caption=caption)


class WandbWriter(EventWriter):
    """Writes the event storage to a W&B run; the PeriodicWriter calls :meth:`write` every 20 iterations.

    Scalars use the same window smoothing as Detectron2's JSONWriter. :meth:`log_predictions` is called
    by the Trainer at each evaluation with a few validation predictions. The run is finished by
    :meth:`finish` (the Trainer calls it in a ``finally``), not by :meth:`close`, so whatever comes after
    the last write (the curves image) still reaches the run.
    """

    def __init__(self, run: Any, dataset_name: str, class_names: Sequence[str], window_size: int = 20,
                 score_threshold: float = 0.5) -> None:
        """
        Args:
            run (wandb Run): from :func:`init_wandb_run`.
            dataset_name (str): the validation split (ground truth for the images).
            class_names (list[str]): ``thing_classes``.
            window_size (int): median smoothing window of the training scalars.
            score_threshold (float): predictions drawn on the images.
        """
        self.run = run
        self._dataset_name = dataset_name
        self._class_names = list(class_names)
        self._window = window_size
        self._score_threshold = score_threshold
        self._last_write = -1
        self._records: dict[Any, dict] | None = None

    def write(self) -> None:
        storage = get_event_storage()
        rows: dict[int, dict[str, float]] = defaultdict(dict)
        for key, (value, it) in storage.latest_with_smoothing_hint(self._window).items():
            if it > self._last_write:
                rows[it][key] = value
        for it in sorted(rows):
            self.run.log({"iteration": it, **rows[it]})
            table = self._per_class_table(rows[it])
            if table is not None:
                self.run.log({"iteration": it, "eval/per_class_AP": table})
        if rows:
            self._last_write = max(rows)

    def _per_class_table(self, row: Mapping[str, float]):
        per_class: dict[str, dict[str, float]] = defaultdict(dict)
        for key, value in row.items():
            m = _PER_CLASS.match(key)
            if m:
                per_class[m.group(2)][m.group(1)] = value
        if not per_class:
            return None
        data = [[c, per_class[c].get("bbox"), per_class[c].get("segm")] for c in sorted(per_class)]
        return wandb.Table(columns=["class", "bbox AP", "segm AP"], data=data)

    def _record(self, image_id: Any) -> dict | None:
        if self._records is None:
            self._records = {r["image_id"]: r for r in DatasetCatalog.get(self._dataset_name)}
        return self._records.get(image_id)

    def log_predictions(self, iteration: int, samples: Sequence[tuple[dict, Any]]) -> None:
        """Log ``val/predictions``: one ``wandb.Image`` per (input meta, predicted Instances) pair."""
        images = []
        for meta, instances in samples:
            image = read_image(meta["file_name"], format="RGB")  # EXIF applied, as in training
            images.append(wandb_image(image, instances, self._record(meta.get("image_id")), self._class_names,
                                      self._score_threshold))
        if images:
            self.run.log({"iteration": iteration, "val/predictions": images})

    def log_image_file(self, key: str, path: str) -> None:
        """Attach a PNG written to disk (e.g. ``curves.png``)."""
        if os.path.isfile(path):
            self.run.log({key: wandb.Image(path)})

    def close(self) -> None:
        pass  # the run outlives the PeriodicWriter: see finish()

    def finish(self, exit_code: int = 0) -> None:
        """End the W&B run (idempotent)."""
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
