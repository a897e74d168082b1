"""The model behind the ML backend: loaded once, in the background; tasks in, Label Studio predictions out.

:class:`Backend` holds one predictor (a run's :class:`~maskseg_d2.predict.BatchPredictor`, or any callable with
its output, which is what the unit tests pass), fetches each task's image (:class:`ImageFetcher`), runs the model
on all of a request's images in batches and turns each image's instances into regions with the encoders of
:mod:`maskseg_d2.predict.annotations` (``shape=auto``: a polygon for a one-part mask, a brush mask otherwise),
under the tag names of the project's own labeling config (:mod:`maskseg_d2.data.labelstudio_config`).
"""
from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from ..data.labelstudio_config import Targets, parse_label_config
from ..data.labelstudio_client import ConfigKeys, LabelStudioClient, is_personal_token, read_token
from ..data.labelstudio_paths import ImageURI, local_path, parse_uri
from ..errors import UserError, fail
from ..predict import BatchPredictor, Detections
from ..predict.annotations import LS_SHAPES, labelstudio_results, labelstudio_task
from ..predict.sources import prefetch
from ..utils.secrets import redact

__all__ = ["Backend", "ImageFetcher", "batch_predictor", "LOADING", "READY", "FAILED"]

logger = logging.getLogger(__name__)
Predict = Callable[[list[np.ndarray]], list[Detections]]
LOADING, READY, FAILED = "LOADING", "READY", "FAILED"
# Label Studio's access tokens (from a personal access token) live 5 min (simplejwt's ACCESS_TOKEN_LIFETIME)
ACCESS_RENEW_S = 240.0
SERVE_KEYS = ConfigKeys("url", "project", "token_file")  # what the client's errors name: configs/serve.yaml


def batch_predictor(d2cfg: Any, amp: bool, batch_size: int) -> Predict:
    """A run's :class:`BatchPredictor` as ``images (BGR) -> detections``, ``batch_size`` images per model call."""
    model = BatchPredictor(d2cfg, amp=amp)

    def predict(images: list[np.ndarray]) -> list[Detections]:
        out: list[Detections] = []
        for i in range(0, len(images), batch_size):
            out += model([model.preprocess(im) for im in images[i:i + batch_size]])
        return out

    return predict


def decode_bgr(data: bytes, where: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR of an encoded image, EXIF orientation applied (as browsers show it in Label Studio)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise fail(where, f"not a readable image ({type(e).__name__})", "check the task's image") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


class ImageFetcher:
    """Reads the image a task's data names: from Label Studio (its token), another URL, or a local folder.

    Args:
        url (str | None): the Label Studio server for ``/data/...`` paths; None: the ``hostname`` its ``/setup``
            sent.
        image_root (str | None): a folder read directly for local-storage tasks (``/data/local-files/?d=<rel>``,
            = ``LOCAL_FILES_DOCUMENT_ROOT``) and plain relative paths; None: everything through Label Studio.
        token_file (str | None): the API token's file; None: ``$LABEL_STUDIO_API_KEY`` (unset: only images
            that need no token can be read).
    """

    def __init__(self, url: str | None = None, image_root: str | None = None, token_file: str | None = None):
        self.url, self.token_file = url, token_file
        self.image_root = Path(image_root).resolve() if image_root else None
        self.token = read_token(token_file, SERVE_KEYS, required=False)
        self._clients: dict[str, tuple[LabelStudioClient, float]] = {}
        self._lock = threading.Lock()
        if url:  # a wrong url= (or a refused personal token) is told at start, not at the first request
            self._client(url)

    def _client(self, url: str) -> LabelStudioClient:
        """One session per server; a personal access token is exchanged again before its access token expires."""
        with self._lock:
            client, made = self._clients.get(url, (None, 0.0))
            if client is None or is_personal_token(self.token) and time.monotonic() - made > ACCESS_RENEW_S:
                client, made = LabelStudioClient(url, self.token, SERVE_KEYS), time.monotonic()
                self._clients[url] = client, made
            return client

    def _local(self, ref: ImageURI, uri: str) -> Path | None:
        """The file under ``image_root`` of a local-storage task or a plain relative path; None: not local."""
        if self.image_root is None or ref.kind not in ("local", "relative"):
            return None
        rel = local_path(ref, uri, "image") if ref.kind == "local" else ref.path
        path = (self.image_root / rel).resolve()
        if not path.is_relative_to(self.image_root):
            raise fail(uri, f"outside image_root={self.image_root}", "point image_root at the images' folder")
        return path

    def fetch(self, uri: str, hostname: str | None = None) -> np.ndarray:
        """The image of ``uri`` as BGR.

        Raises:
            UserError: the image cannot be read (one line naming it).
        """
        where, ref = f"image {uri}", parse_uri(uri)
        local = self._local(ref, uri)
        if local is not None:
            try:
                return decode_bgr(local.read_bytes(), where)
            except OSError as e:
                raise fail(where, f"cannot read {local} ({e.strerror})", "check image_root") from None
        server = self.url or hostname
        if ref.kind in ("url", "local", "upload") and ref.host:  # an http(s) URL, Label Studio's or another host's
            server = server or uri
        elif ref.kind in ("local", "upload", "server"):  # a path on the Label Studio server
            if not server:
                raise fail(where, "a Label Studio path, and no server is known", "pass url=<Label Studio URL>")
        else:
            raise fail(where, "neither a Label Studio path, an http(s) URL nor a file under image_root",
                       "set image_root=<folder> for local paths; cloud storage: open its URLs to Label Studio")
        out = io.BytesIO()
        status = self._client(server).download(uri, out, where)
        if status != 200:
            raise fail(where, f"Label Studio or its host answered HTTP {status}", "is the image still there?")
        return decode_bgr(out.getvalue(), where)


class Backend:
    """One run's model answering Label Studio's prediction requests.

    Args:
        load (callable): builds the predictor (``images -> detections``); run once, by :meth:`start`.
        class_names (list[str]): the run's classes (index = predicted class).
        model_version (str): reported to Label Studio (the run directory's name).
        fetcher (ImageFetcher): reads the tasks' images.
        shape (str): ``auto`` | ``polygon`` | ``brush`` (see ``labelstudio_results``).
        polygon_tolerance (float): polygon simplification in pixels.
        workers (int): threads fetching and decoding images ahead of the model.
    """

    def __init__(self, load: Callable[[], Predict], class_names: Sequence[str], model_version: str,
                 fetcher: ImageFetcher, shape: str = "auto", polygon_tolerance: float = 0.7, workers: int = 4):
        if shape not in LS_SHAPES:
            raise UserError(f"shape={shape}: use one of {', '.join(LS_SHAPES)}")
        self._load, self.class_names, self.model_version = load, list(class_names), model_version
        self.fetcher, self.shape, self.tolerance, self.workers = fetcher, shape, float(polygon_tolerance), workers
        self.state, self.error = LOADING, ""
        self.hostname: str | None = None  # Label Studio's address, as its last /setup gave it
        self._predict: Predict | None = None
        self._model_lock = threading.Lock()  # one request on the model at a time: one device, one set of buffers

    def start(self) -> threading.Thread:
        """Load the model in a background thread (the server answers 503 meanwhile)."""
        thread = threading.Thread(target=self._load_now, name="maskseg-serve-load", daemon=True)
        thread.start()
        return thread

    def _load_now(self) -> None:
        t0 = time.perf_counter()
        try:
            self._predict = self._load()
        except Exception as e:  # noqa: BLE001 — any failure is reported by /health instead of a dead thread
            self.state, self.error = FAILED, f"loading the model failed: {type(e).__name__}: {e}"
            logger.exception("ML backend: %s", self.error)
            return
        self.state = READY
        logger.info("ML backend: model %s loaded in %.1f s", self.model_version, time.perf_counter() - t0)

    def _tags(self, targets: Targets) -> tuple[str, str, str | None]:
        """(shape, from_name, brush_from_name) for this project: what the config has tags for."""
        shape = targets.shape(self.shape, "label_config")
        tag = targets.brush if shape == "brush" else targets.polygon
        assert tag is not None, "Targets.shape() returned a shape without its tag"
        return shape, tag, targets.brush

    def _fetch(self, uri: str) -> np.ndarray | str:
        try:
            return self.fetcher.fetch(uri, self.hostname)
        except UserError as e:
            return redact(str(e))

    def predict(self, tasks: list[dict], label_config: str) -> list[dict]:
        """One prediction per task, in order: ``{"result": [regions], "score", "model_version"}``.

        A task whose image cannot be read gets ``{"error", "model_version"}`` instead: Label Studio skips an entry
        without ``result`` (and logs it) but stores the others, so one lost image does not cost a whole batch.

        Raises:
            UserError: the config has no tag for our regions, a task lacks its image, or no task's image can be
                read (the first one's error).
        """
        targets = parse_label_config(label_config)
        shape, from_name, brush_from_name = self._tags(targets)
        names = targets.label_names(self.class_names)
        uris = []
        for task in tasks:
            uri = (task.get("data") or {}).get(targets.data_key)
            if not isinstance(uri, str) or not uri:
                raise fail(f"task {task.get('id')}", f"its data has no '{targets.data_key}' (the $variable of "
                           f"<Image name=\"{targets.to_name}\">)", "check the tasks' data against the labeling config")
            uris.append(uri)
        t0 = time.perf_counter()
        images = list(prefetch(self._fetch, uris, workers=self.workers))
        failed = {k: im for k, im in enumerate(images) if isinstance(im, str)}
        if len(failed) == len(tasks):
            raise UserError(next(iter(failed.values())))
        t1 = time.perf_counter()
        assert self._predict is not None, "predict() before the model was loaded"
        with self._model_lock:
            detections = iter(self._predict([im for im in images if not isinstance(im, str)]))
        known = np.array([n is not None for n in names], dtype=bool)
        labels = [n or "" for n in names]
        out = []
        for k, (task, uri) in enumerate(zip(tasks, uris)):
            if k in failed:  # Label Studio stores the others and logs this one: an entry without "result"
                out.append({"error": failed[k], "model_version": self.model_version})
                continue
            dets = next(detections)
            dets = dets.select(known[dets.classes])  # classes the project has no label for are left out
            results = labelstudio_results(dets, labels, shape, from_name, targets.to_name, self.tolerance,
                                          id_seed=f"{task.get('id')}:{uri}", brush_from_name=brush_from_name)
            scores = np.array([r["score"] for r in results])
            out.append(labelstudio_task(uri, results, scores, self.model_version)["predictions"][0])
        for k, error in failed.items():
            logger.warning("ML backend: task %s skipped: %s", tasks[k].get("id"), error)
        logger.info("ML backend: %d task(s) -> %d region(s) (images %.2f s, model %.2f s)", len(tasks),
                    sum(len(p.get("result", ())) for p in out), t1 - t0, time.perf_counter() - t1)
        return out
