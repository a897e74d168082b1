"""The ``labelstudio_api`` dataset source: a live Label Studio project -> a snapshot file -> the file importer.

``dataset.source=labelstudio_api`` with ``dataset.url`` and ``dataset.project`` (id or title):

1. the project's JSON export is pulled through the API (``GET /api/projects/<id>/export?exportType=JSON``,
   every task) and saved as ``<root>/snapshots/<sha256>.json``: a canonical dump (keys sorted, tasks by id), so an
   unchanged project gives the same file and hash, and each pull a new file only when the project changed.
   Written atomically: an interrupted pull leaves no snapshot;
2. the images of its labelled tasks are fetched once into ``<root>/labelstudio_images/`` (uploads under
   ``upload/<project>/<8 hex>-<name>``, local-storage files under their ``?d=`` path, URLs under
   ``url/<host>/<path>``), each written atomically, so the importer finds them as it finds a user's photos;
3. registration reads the snapshot with the image cache as the image root: the same importer, options and
   checks as a JSON export saved by hand (:mod:`maskseg_d2.data.labelstudio`).

``dataset.snapshot`` (a hash, or a prefix of one) reads a saved snapshot instead of pulling: a run is
reproduced after the project changed, offline. Images the server no longer has are counted and named (one
line, exit 2; with ``dataset.on_error=skip`` their tasks are left out). The token comes from
``LABEL_STUDIO_API_KEY`` or ``dataset.token_file`` only (:mod:`maskseg_d2.data.labelstudio_client`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import UserError, fail
from ..utils.fileio import atomic_write
from .jsonio import read_json
from .labelstudio import _image_uri, pick_annotation
from .labelstudio_client import LabelStudioClient, read_token, refuse_config_token
from .labelstudio_paths import parse_uri

__all__ = ["SOURCES", "SNAPSHOT_DIR", "IMAGE_CACHE", "Snapshot", "canonical_export", "pull_project",
           "snapshot_source", "project_url", "pull_inputs", "find_project"]

logger = logging.getLogger(__name__)

SOURCES = ("files", "labelstudio_api")
SNAPSHOT_DIR = "snapshots"
IMAGE_CACHE = "labelstudio_images"
_PROJECT_URL = re.compile(r"^(?P<base>https?://.+?)/projects/(?P<id>\d+)(?:[/?#].*)?$")


@dataclass
class Snapshot:
    """A pulled (or reused) project export and where its images are.

    Attributes:
        path (str): the snapshot file ``<root>/snapshots/<sha>.json``.
        sha (str): sha256 of its canonical content.
        images (str): the image cache (the importer's image root).
        url (str): the server (``""`` for a reused snapshot).
        project (int | None): the project id (None for a reused snapshot).
        title (str): the project title.
        tasks (int): tasks in the snapshot.
        fetched (int): images downloaded by this pull (the others were cached).
        missing (list[str]): ``task <id>: <image>`` of labelled tasks whose image the server no longer has.
    """

    path: str
    sha: str
    images: str
    url: str = ""
    project: int | None = None
    title: str = ""
    tasks: int = 0
    fetched: int = 0
    missing: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What ``run_info.json`` keeps (``dataset.source``): enough to re-read this exact snapshot."""
        return {k: v for k, v in asdict(self).items() if k not in ("images", "fetched")}


def _task_order(task: dict) -> tuple[int, int, str]:
    tid = task.get("id")
    return (0, tid, "") if isinstance(tid, int) and not isinstance(tid, bool) else (1, 0, str(tid))


def canonical_export(tasks: Any, where: str) -> bytes:
    """The export as canonical JSON: tasks sorted by id, keys sorted, UTF-8; the bytes that are hashed and saved."""
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise fail(where, "the export is not a list of tasks", "check that dataset.url is a Label Studio server")
    ordered = sorted(tasks, key=_task_order)
    return json.dumps(ordered, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def project_url(value: str) -> tuple[str, int] | None:
    """``(server, project id)`` of a project page URL (``http://host:8080/projects/3/data?...``), else None."""
    m = _PROJECT_URL.match(str(value))
    return (m.group("base"), int(m.group("id"))) if m else None


# ----------------------------------------------------------------------------------------- project


def find_project(client: LabelStudioClient, project: Any) -> tuple[int, str, dict]:
    """A project given by id or exact title (``client.keys.project_key``: where errors point), fetched once.

    Returns:
        tuple: its id, its title and its ``GET /api/projects/<id>/`` (``label_config``, ``parsed_label_config``...).
    """
    where, server = f"{client.keys.project_key}={project}", f"{client.keys.url_key}={client.url}"
    if isinstance(project, int) and not isinstance(project, bool) or str(project).strip().isdigit():
        pid = int(str(project).strip())
        detail = client.get_json(f"/api/projects/{pid}/", server, missing_ok=True)  # a refused token: the server's
        if detail is None:
            client.projects(server)  # a server that is not Label Studio says so
            raise fail(where, f"no project {pid} at {client.url} that this token can see",
                       "use the id in the project's address (/projects/<id>/) or its title")
    else:
        projects = client.projects(server)
        hits = [p for p in projects if p.get("title") == str(project)]
        if len(hits) != 1:
            titles = ", ".join(f"{p.get('id')}={p.get('title')!r}" for p in projects[:8])
            what = "no project titled" if not hits else f"{len(hits)} projects titled"
            raise fail(where, f"{what} {str(project)!r} at {client.url} (projects: {titles or 'none'})",
                       f"set {client.keys.project_key} to the project's id")
        pid = int(hits[0]["id"])
        detail = client.get_json(f"/api/projects/{pid}/", where)
    if not isinstance(detail, dict):
        raise client.not_label_studio(where, f"answered /api/projects/{pid}/ with something else than a project")
    return pid, str(detail.get("title") or ""), detail


# ------------------------------------------------------------------------------------------ images


def _safe_relative(path: str) -> PurePosixPath | None:
    posix = PurePosixPath(path.replace("\\", "/").lstrip("/"))
    if not posix.parts or ".." in posix.parts or re.match(r"^[A-Za-z]:", posix.parts[0]):
        return None
    return posix


def cache_path(uri: str) -> PurePosixPath | None:
    """Where a task image goes in the cache (relative), so the importer resolves the URI to it; None: not fetchable.

    Uploads keep Label Studio's stored name (``<8 hex>-<name>``, unique per project), local-storage files their
    relative path (resolved exactly), URLs their host and path, cloud-storage objects (not downloaded: copied there
    by the user) ``cloud/<bucket>/<key>``; ``..`` or an absolute path never leaves the cache.
    """
    ref = parse_uri(uri)
    if ref.kind in ("local", "upload"):
        return _safe_relative(ref.path)
    if ref.kind == "url" and ref.host:
        return _safe_relative(f"url/{ref.host.replace(':', '_')}/{ref.path}")
    if ref.kind == "cloud" and ref.host:
        return _safe_relative(f"cloud/{ref.host}/{ref.path}")
    return None


def _fetch_images(client: LabelStudioClient, tasks: list[dict], cache: Path, image_key: str | None,
                  pick: str) -> tuple[int, list[str]]:
    """Download the images of the labelled tasks not yet cached; returns (downloaded, missing)."""
    fetched, missing = 0, []
    for task in tasks:
        if pick_annotation(task.get("annotations") or [], pick) is None:
            continue  # the importer skips unlabelled tasks: their images are not needed
        where = f"Label Studio task {task.get('id')}"
        uri = _image_uri(task, image_key, where)
        rel = cache_path(uri)
        if rel is None:
            missing.append(f"task {task.get('id')}: {uri} (not served by Label Studio or http)")
            continue
        dest = cache / rel
        if dest.is_file():
            continue
        if parse_uri(uri).kind == "cloud":  # not fetched: Label Studio would need its keys
            missing.append(f"task {task.get('id')}: {uri} (cloud storage: copy it to {dest})")
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        status = []
        try:
            atomic_write(dest, lambda f: status.append(client.download(uri, f, f"{where} image {uri}")))
        except OSError as e:
            raise fail(str(dest), f"cannot write the image ({e.strerror})", "free disk space or fix rights") from None
        if status[0] != 200:
            os.remove(dest)  # nothing was written: no empty file in the cache
            missing.append(f"task {task.get('id')}: {uri} (HTTP {status[0]})")
        else:
            fetched += 1
    return fetched, missing


# ---------------------------------------------------------------------------------------- snapshot


def _save_snapshot(data: bytes, folder: Path) -> tuple[str, str]:
    sha = hashlib.sha256(data).hexdigest()
    path = folder / f"{sha}.json"
    if not path.is_file():  # same content, same name: an unchanged project adds no file
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(data))
    return str(path), sha


def pull_project(url: str, project: Any, root: str | os.PathLike, token_file: str | None = None,
                 image_key: str | None = None, pick: str = "ground_truth_then_latest") -> Snapshot:
    """Pull a project's JSON export into ``<root>/snapshots/`` and its labelled tasks' images into the cache.

    Args:
        url (str): the Label Studio server.
        project (int or str): the project id, or its exact title.
        root (str or PathLike): the dataset folder.
        token_file (str or None): a file holding the token; None: ``$LABEL_STUDIO_API_KEY``.
        image_key (str or None): the task data field of the image (None: guessed, as the importer does).
        pick (str): the importer's annotation policy (which tasks count as labelled).

    Returns:
        Snapshot: the file, its hash and counts; ``missing`` lists images the server no longer has.
    """
    client = LabelStudioClient(url, read_token(token_file))
    pid, title, _ = find_project(client, project)
    what = f"Label Studio project {pid} export"
    tasks = client.get_json(f"/api/projects/{pid}/export", what,
                            params={"exportType": "JSON", "download_all_tasks": "true"})
    data = canonical_export(tasks, what)
    path, sha = _save_snapshot(data, Path(root) / SNAPSHOT_DIR)
    cache = Path(root) / IMAGE_CACHE
    fetched, missing = _fetch_images(client, tasks, cache, image_key, pick)
    logger.info("Label Studio project %d (%s) at %s: %d tasks -> %s; %d image(s) downloaded, %d missing",
                pid, title, client.url, len(tasks), path, fetched, len(missing))
    return Snapshot(path, sha, str(cache), client.url, pid, title, len(tasks), fetched, missing)


def _saved_snapshot(root: str, sha: str) -> Snapshot:
    folder = Path(root) / SNAPSHOT_DIR
    hits = sorted(folder.glob(f"{sha}*.json")) if re.fullmatch(r"[0-9a-f]{6,64}", sha) else []
    if len(hits) != 1:
        have = ", ".join(p.stem[:12] for p in sorted(folder.glob("*.json"))[:5]) or "none"
        raise fail(f"dataset.snapshot={sha}", f"{'no' if not hits else len(hits)} snapshot(s) match in {folder} "
                   f"(saved: {have})", "use the hash run_info.json records (dataset.source.sha), or null to pull")
    tasks = read_json(hits[0], "Label Studio snapshot", "dataset.snapshot",
                      "delete it and pull the project again (leave dataset.snapshot unset)")  # one line
    return Snapshot(str(hits[0]), hits[0].stem, str(Path(root) / IMAGE_CACHE), tasks=len(tasks))


def snapshot_source(cfg: Any, root: str) -> Snapshot:
    """The snapshot ``dataset.source=labelstudio_api`` trains on: ``dataset.snapshot``, else a fresh pull.

    Args:
        cfg (dict or DictConfig): the dataset config (``url``, ``project``, ``token_file``, ``snapshot``,
            ``image_key``, ``pick``, ``on_error``).
        root (str): the dataset folder.

    Returns:
        Snapshot: ready for the importer (the image cache holds every image it can).
    """
    refuse_config_token(cfg)
    if cfg.get("snapshot"):
        return _saved_snapshot(root, str(cfg.get("snapshot")).strip().lower())
    if not cfg.get("url") or cfg.get("project") is None:
        raise UserError("dataset.source=labelstudio_api needs dataset.url and dataset.project — e.g. "
                        "dataset.url=http://localhost:8080 dataset.project=3 (id or title)")
    snap = pull_project(str(cfg.get("url")), cfg.get("project"), root, cfg.get("token_file"),
                        cfg.get("image_key"), str(cfg.get("pick") or "ground_truth_then_latest"))
    return _check_missing(snap, str(cfg.get("on_error") or "error"), "dataset.on_error=skip")


def _check_missing(snap: Snapshot, on_error: str, skip_option: str) -> Snapshot:
    """Lost images: one line naming them (exit 2); with ``on_error=skip`` a warning (the importer skips them)."""
    if snap.missing:
        shown = "; ".join(snap.missing[:3]) + (" ..." if len(snap.missing) > 3 else "")
        if on_error != "skip":
            raise fail(f"Label Studio project {snap.project}", f"{len(snap.missing)} labelled task(s) show an image "
                       f"the server no longer has ({shown})", f"delete or fix those tasks, or set {skip_option} "
                       "to go on without them")
        logger.warning("Label Studio project %s: %d task(s) left out, their image is gone (%s)", snap.project,
                       len(snap.missing), shown)
    return snap


def pull_inputs(inputs: list[str], image_root: str | None, on_error: str) -> tuple[list[str], str | None]:
    """``tools/convert.py``'s inputs with a Label Studio project page URL pulled (its snapshot, its image cache).

    Args:
        inputs (list[str]): files, folders, or one ``http(s)://<server>/projects/<id>`` URL.
        image_root (str or None): for a URL, the dataset folder it is pulled into (None:
            ``datasets/labelstudio_<id>``); else the photos, returned as they are.
        on_error (str): ``skip`` goes on without the tasks whose image is gone.

    Returns:
        tuple: the inputs (the URL replaced by its snapshot) and the image root (the image cache).
    """
    urls = [project_url(i) for i in inputs]
    if not any(urls):
        return inputs, image_root
    if len(inputs) != 1:
        raise fail(", ".join(inputs), "a Label Studio project URL is converted alone", "pass it as the only input")
    url, pid = urls[0]
    snap = pull_project(url, pid, image_root or os.path.join("datasets", f"labelstudio_{pid}"))
    _check_missing(snap, on_error, "--on-error skip")
    return [snap.path], snap.images
