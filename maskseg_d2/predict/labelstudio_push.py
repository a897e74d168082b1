"""Predictions to the tasks of a live Label Studio project: ``tools/predict.py ... labelstudio.push=<project>``.

1. :func:`connect` runs before the model loads, so a wrong URL, token or project fails in seconds (one line,
   exit 2, the client's errors): the project (id, exact title, or its page URL ``http://host/projects/3``), its
   labeling config (:mod:`maskseg_d2.data.labelstudio_config`, the reader the ML backend uses), and every task's
   image. The regions are written in the project's own names: its ``<PolygonLabels>`` and ``<BrushLabels>``
   tags on one ``<Image>`` and that tag's ``$variable``; ``shape=auto`` needs both tags, else the project's one
   tag decides.
2. Each task's image is looked up among the input images with the importer's path logic
   (:mod:`maskseg_d2.data.labelstudio_paths`): an upload ``/data/upload/<p>/<8 hex>-<name>`` by its stored
   name, then as uploaded; a local-storage ``/data/local-files/?d=<path>`` by its path (then shorter tails); a URL
   by its file name.
3. :meth:`LabelStudioPush.send` posts the regions of ``labelstudio_predictions.json`` (the file's encoder, so
   file and push agree) to their tasks (``POST /api/projects/<id>/import/predictions``, 500 a call),
   ``model_version`` = the run's name; then deletes the predictions that model version had on those tasks
   before: pushing again replaces, and a push cut off between the two leaves the old set beside the new, never
   none. Images without a task and tasks whose image is not an input are counted and listed (the console: a few;
   ``labelstudio_push.json`` beside the outputs: all).
"""
from __future__ import annotations

import json
import logging
import os
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, open_dict

from ..data.images import ImageIndex, normalize_name
from ..data.labelstudio_api import find_project, project_url
from ..data.labelstudio_config import REGION_TAGS, Targets, parse_label_config
from ..data.labelstudio_client import ConfigKeys, LabelStudioClient, read_token, refuse_config_token
from ..data.labelstudio_paths import resolve_image, uri_names
from ..errors import UserError, fail
from ..utils.fileio import atomic_write_json
from .sources import resolve_input

__all__ = ["PUSH_KEYS", "REPORT_FILE", "PushReport", "LabelStudioPush", "connect"]

logger = logging.getLogger(__name__)

PUSH_KEYS = ConfigKeys("labelstudio.url", "labelstudio.push", "labelstudio.token_file")
REPORT_FILE = "labelstudio_push.json"
BATCH = 500  # predictions per import call: Label Studio 1.23 processes imports in batches of 500
_SHOWN = 5


@dataclass
class PushReport:
    """What a push did; saved as ``labelstudio_push.json`` in the output folder.

    Attributes:
        url (str): the server.
        project (int): the project id.
        title (str): its title.
        model_version (str): the version the predictions carry.
        tasks (int): tasks that received a prediction.
        regions (int): regions sent.
        replaced (int): predictions of this model version deleted from those tasks (an earlier push).
        images_without_task (list[str]): input images no task shows (relative to the input).
        tasks_without_image (list[int]): tasks whose image is not among the inputs.
        unmatched (list[str]): tasks whose image could not be told apart (``task <id>: <why>``).
    """

    url: str
    project: int
    title: str
    model_version: str = ""
    tasks: int = 0
    regions: int = 0
    replaced: int = 0
    images_without_task: list[str] = field(default_factory=list)
    tasks_without_image: list[int] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def message(self, path: str) -> str:
        """str: the console lines (a few of each list; ``path``, the report, holds all)."""
        def few(items: list) -> str:
            return ", ".join(map(str, items[:_SHOWN])) + (" ..." if len(items) > _SHOWN else "")

        lines = [f"Label Studio project {self.project} ({self.title}) at {self.url}: {self.tasks} task(s) got a "
                 f"prediction ({self.regions} region(s), model_version {self.model_version}), "
                 f"{self.replaced} earlier one(s) of that version replaced -> {path}"]
        if self.images_without_task:
            lines.append(f"  {len(self.images_without_task)} image(s) without a task: {few(self.images_without_task)}")
        if self.tasks_without_image:
            lines.append(f"  {len(self.tasks_without_image)} task(s) whose image is not an input: "
                         f"{few(self.tasks_without_image)}")
        if self.unmatched:
            lines.append(f"  {len(self.unmatched)} task(s) not matched: {few(self.unmatched)}")
        return "\n".join(lines)


class LabelStudioPush:
    """A connected project and which input image each of its tasks shows (made by :func:`connect`).

    Args:
        client (LabelStudioClient): the authenticated client.
        report (PushReport): the project (filled in by :meth:`send`).
        tags (Targets): the names regions take (the project's labeling config).
        paths (list[str]): the input images, in input order.
        root (str): the input folder (names in the report are relative to it).
        task_of (dict[str, list[int]]): absolute image path -> the tasks showing it.
    """

    def __init__(self, client: LabelStudioClient, report: PushReport, tags: Targets, paths: list[str],
                 root: str, task_of: dict[str, list[int]]) -> None:
        self.client, self.report, self.tags = client, report, tags
        self.paths, self.root, self.task_of = paths, root, task_of

    def configure(self, cfg: DictConfig, shape: str) -> DictConfig:
        """``cfg`` with the project's names and ``labelstudio`` in ``save`` (the file is what is sent)."""
        cfg = cfg.copy()
        t = self.tags
        with open_dict(cfg):
            cfg.labelstudio.shape = shape
            cfg.labelstudio.from_name = t.polygon if shape != "brush" and t.polygon else t.brush
            cfg.labelstudio.brush_from_name = t.brush
            cfg.labelstudio.to_name, cfg.labelstudio.data_key = t.to_name, t.data_key
            save = cfg.save if cfg.save is not None else ["overlay"]
            save = [save] if isinstance(save, str) else list(save)
            cfg.save = save + ["labelstudio"] if "labelstudio" not in save else save
        return cfg

    def _check_labels(self, items: list[dict]) -> None:
        for item in items:
            for r in item["result"]:
                labels = self.tags.labels.get(r["from_name"], [])
                tag = REGION_TAGS.get(r["type"], r["type"])
                for label in r["value"].get(r["type"], []):
                    if label not in labels:
                        raise fail(f"labelstudio.push={self.report.project}", f"class {label!r} is not a label of "
                                   f"the <{tag} name=\"{r['from_name']}\"> tag "
                                   f"(its labels: {', '.join(labels) or 'none'})",
                                   f"add <Label value=\"{label}\"/> to the project's labeling config, or keep the "
                                   "other classes with classes=[...]")

    def send(self, summary: Any) -> PushReport:
        """Post the predictions of ``summary``'s Label Studio file to their tasks, replacing this version's.

        Args:
            summary (PredictSummary): the finished prediction (``files["labelstudio"]``, ``skipped``).

        Returns:
            PushReport: also written to ``<output>/labelstudio_push.json``; its path goes in ``summary.files``.
        """
        with open(summary.files["labelstudio"], encoding="utf-8") as f:
            file_tasks = json.load(f)
        skipped = {p for p, _ in summary.skipped}
        predicted = [p for p in self.paths if p not in skipped]
        if len(predicted) != len(file_tasks):
            raise RuntimeError(f"{len(file_tasks)} Label Studio tasks written for {len(predicted)} images")
        rep, items = self.report, []
        for path, task in zip(predicted, file_tasks):
            tids = self.task_of.get(os.path.abspath(path))
            if not tids:
                rep.images_without_task.append(os.path.relpath(path, self.root).replace(os.sep, "/"))
            pred = task["predictions"][0]
            rep.model_version = str(pred["model_version"])
            items += [{"task": tid, "result": pred["result"], "score": pred["score"],
                       "model_version": rep.model_version} for tid in tids or []]
        self._check_labels(items)
        where = f"Label Studio project {rep.project} predictions"
        mine = {i["task"] for i in items}
        old = [p["id"] for p in self.client.predictions(rep.project, where)
               if p.get("model_version") == rep.model_version and p.get("task") in mine]
        for start in range(0, len(items), BATCH):
            self.client.post_json(f"/api/projects/{rep.project}/import/predictions", items[start:start + BATCH],
                                  where)
        for pid in old:
            self.client.delete(f"/api/predictions/{pid}/", where)
        rep.tasks, rep.regions, rep.replaced = len(items), sum(len(i["result"]) for i in items), len(old)
        path = os.path.join(summary.output, REPORT_FILE)
        atomic_write_json(path, asdict(rep), indent=1, ensure_ascii=False)
        summary.files["labelstudio_push"] = path
        logger.info(rep.message(path))
        return rep


def _match(tasks: list[dict], data_key: str, paths: list[str], root: str, report: PushReport
           ) -> dict[str, list[int]]:
    """Input image (absolute path) -> the tasks that show it; the others go to ``report``'s lists."""
    wanted = {os.path.abspath(p) for p in paths}
    index = ImageIndex(root, "input")
    task_of: dict[str, list[int]] = {}
    for task in tasks:
        tid, uri = task.get("id"), (task.get("data") or {}).get(data_key)
        where = f"Label Studio task {tid}"
        if not isinstance(uri, str) or not uri:
            report.unmatched.append(f"task {tid}: no image in data.{data_key}")
            continue
        try:  # the names first: a task whose name no input has is no one's (and needs no folder search)
            names = [unicodedata.normalize("NFC", n) for n in uri_names(uri, where)]
            found = any(normalize_name(n) in index.by_norm for n in names) and resolve_image(uri, root, index, where)
        except UserError as e:  # an embedded data: URI; a name that several input images share
            report.unmatched.append(f"task {tid}: {str(e).split(': ', 1)[-1]}")
            continue
        if found and os.path.abspath(found) in wanted:
            task_of.setdefault(os.path.abspath(found), []).append(tid)
        else:
            report.tasks_without_image.append(tid)
    return task_of


def connect(cfg: DictConfig) -> tuple[LabelStudioPush, DictConfig]:
    """Connect to ``labelstudio.push``'s project and match its tasks to ``input=``'s images.

    Args:
        cfg (DictConfig): the predict config (``labelstudio.push``, ``.url``, ``.token_file``, ``.shape``,
            ``.from_name``; ``input``; ``save``).

    Returns:
        tuple: the push, and ``cfg`` with the project's tag names and ``labelstudio`` in ``save``.
    """
    ls = cfg.labelstudio
    refuse_config_token(ls, PUSH_KEYS)
    page = project_url(str(ls.push))
    url, project = page if page else (ls.get("url"), ls.push)
    if not url:
        raise UserError(f"labelstudio.push={ls.push} needs labelstudio.url — e.g. labelstudio.url="
                        "http://localhost:8080, or labelstudio.push=<the project's address, .../projects/<id>>")
    spec = resolve_input(cfg.input)
    if spec.kind != "images":
        raise UserError(f"labelstudio.push: input={cfg.input} is a {spec.kind}; predictions go to tasks of images "
                        "— give an image, a folder or a glob")
    client = LabelStudioClient(str(url), read_token(ls.get("token_file"), PUSH_KEYS), PUSH_KEYS)
    pid, title, detail = find_project(client, project)
    where = f"labelstudio.push={ls.push} (project {pid})"
    tags = parse_label_config(str(detail.get("label_config") or ""), where, str(ls.get("from_name") or ""))
    shape = tags.shape(str(ls.shape), where, "labelstudio.shape")
    if str(ls.shape) == "auto" and not tags.brush:
        logger.info("%s: no <BrushLabels> tag: a mask of several parts or with holes goes as its largest polygon "
                    "(add a <BrushLabels> tag to keep it whole)", where)
    report = PushReport(client.url, pid, title)
    task_of = _match(client.tasks(pid, f"{where} tasks"), tags.data_key, spec.paths, spec.root, report)
    push = LabelStudioPush(client, report, tags, spec.paths, spec.root, task_of)
    return push, push.configure(cfg, shape)
